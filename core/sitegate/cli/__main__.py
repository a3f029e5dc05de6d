"""`python -m sitegate.cli` is the same as the `sitegate` command."""

import sys

from . import main

sys.exit(main())
