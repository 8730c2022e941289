"""`python -m engine.cli`: the same entry point as the `strata` script."""

import sys

from .main import main

sys.exit(main())
