"""`python -m examples.devices`: run a fleet of simulated sensor nodes (see fleet.py)."""

import sys

from .fleet import main

sys.exit(main())
