"""`python -m overnight`."""

import sys

from overnight.cli import main

sys.exit(main())
