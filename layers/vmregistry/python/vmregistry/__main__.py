"""`python -m vmregistry`: the command line, as the `vmregistry` script runs it."""

import sys

from vmregistry.cli.main import main

sys.exit(main())
