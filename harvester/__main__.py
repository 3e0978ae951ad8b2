"""`python -m harvester`: the `harvest` command, for child processes and uninstalled checkouts."""

import sys

from harvester.cli import main

if __name__ == "__main__":
    sys.exit(main())
