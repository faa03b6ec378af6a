"""How much of the student's update TD's terms make, by loss weight, on MovieLens 100K.

``python -m benchmarks gradients`` writes ``gradients.md`` and ``gradients.json`` into
``--out`` (default ``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page.
"""

from benchmarks.gradients import page, task
from benchmarks.harness import Benchmark
from benchmarks.movielens.task import check_data

BENCHMARK = Benchmark(
    name="gradients",
    summary="TD's terms' share of the student's gradient, and validation RMSE, by loss weight",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    check=check_data,
)
