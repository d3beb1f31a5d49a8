"""`python -m lab`: reglab without its console script (a checkout, a venv without `pip install`)."""

import sys

from lab.cli.main import main

sys.exit(main())
