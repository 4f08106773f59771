"""Local mode: the same handlers, served over HTTP from one process or pre-forked workers."""
