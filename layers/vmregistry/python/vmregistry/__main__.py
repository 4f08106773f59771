import sys

from vmregistry.cli.main import main

sys.exit(main())
