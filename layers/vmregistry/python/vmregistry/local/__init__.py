"""Local single-process mode: the same handlers, served over HTTP from one process."""
