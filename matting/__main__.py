"""python -m matting: the command line (matting/cli.py)."""

import sys

from .cli import main

sys.exit(main())
