"""``python -m benchmarks NAME [options]``: run a benchmark and write its results page."""

import sys

from benchmarks.harness import main

sys.exit(main())
