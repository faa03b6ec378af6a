"""``python -m benchmarks NAME [options]``: run a benchmark and write its results page."""

import sys
import time

started = time.perf_counter()  # before torch loads: a page's wall time is the whole command's

from benchmarks.harness import main  # noqa: E402

sys.exit(main(started=started))
