"""Speed: agora's TD step against a hand-written one and torchdistill; rounds, tutors, cache,
peak memory.

``python -m benchmarks speed`` writes ``speed.md`` and ``speed.json`` into ``--out`` (default
``docs/results``): :mod:`.task` measures, :mod:`.page` writes the page.
"""

from benchmarks.harness import Benchmark
from benchmarks.speed import page, task

BENCHMARK = Benchmark(
    name="speed",
    summary="Step time against a hand-written TD step and torchdistill; scaling; cache; memory",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    pool=False,
)
