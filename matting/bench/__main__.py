"""python -m matting.bench"""

import sys

from .pipeline import main

sys.exit(main())
