"""`python -m lab.cli`: the same as `python -m lab` and the `reglab` console script."""

import sys

from lab.cli.main import main

sys.exit(main())
