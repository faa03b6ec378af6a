"""N-way graphs on MovieLens 100K: several teachers, one teacher for eight students, peers.

``python -m benchmarks graphs`` writes ``graphs.md`` and ``graphs.json`` into ``--out``
(default ``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page.
"""

from benchmarks.graphs import page, task
from benchmarks.harness import Benchmark
from benchmarks.movielens.task import check_data

BENCHMARK = Benchmark(
    name="graphs",
    summary="N-way graphs on MovieLens 100K: several teachers, eight students in one run, peers",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    check=check_data,
)
