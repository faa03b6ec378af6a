"""MovieLens 100K: every method of the paper's Tables 1, 3, 5, 7 and 8, tuned on validation.

``python -m benchmarks movielens`` writes ``movielens.md``, ``.csv``, ``.png`` and ``.json`` into
``--out`` (default ``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page.
"""

from benchmarks.harness import Benchmark
from benchmarks.movielens import page, task

BENCHMARK = Benchmark(
    name="movielens",
    summary="MovieLens 100K: every method of the paper's tables, tuned on validation, 5 seeds",
    run=task.run,
    write=page.write,
    check=task.check_data,
)
