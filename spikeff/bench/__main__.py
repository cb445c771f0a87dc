"""``python -m spikeff.bench``: the same as ``spikeff-bench``."""

import sys

from .command import main

sys.exit(main())
