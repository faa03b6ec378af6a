"""SST-2: all-MiniLM-L6-v2 (frozen) teaches a 2-layer student; every method, 3 seeds.

``python -m benchmarks text`` writes ``text.md`` and ``text.json`` into ``--out`` (default
``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page. Needs the text extra.
"""

from benchmarks.harness import Benchmark
from benchmarks.text import page, task

BENCHMARK = Benchmark(
    name="text",
    summary="SST-2: all-MiniLM-L6-v2 teaches a 2-layer student; every method, 3 seeds",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    check=task.check,
    seeds=3,
)
