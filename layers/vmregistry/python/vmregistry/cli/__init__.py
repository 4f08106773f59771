"""The ``vmregistry`` command: each subcommand lives in its own module of this package."""
