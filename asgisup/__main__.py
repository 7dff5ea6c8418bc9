"""``python -m asgisup``: the same as the ``asgisup`` command."""

import sys

from asgisup import cli

if __name__ == "__main__":
    sys.exit(cli.main())
