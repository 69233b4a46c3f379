"""Allow `python -m relay` as well as the `dmrelay` script."""

import sys

from relay.cli import main

sys.exit(main())
