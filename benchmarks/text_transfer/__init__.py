"""SST-2 with a transfer set: the fine-tuned MiniLM teacher teaches the 2-layer student on
20,000 unlabelled sentences beside its 2,000 labelled ones; every method, 3 seeds.

``python -m benchmarks text-transfer`` writes ``text-transfer.md`` (and ``.json``, ``.png``)
into ``--out`` (default ``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page.
Needs the text extra.
"""

from benchmarks.harness import Benchmark
from benchmarks.text_transfer import page, task

BENCHMARK = Benchmark(
    name="text-transfer",
    summary="SST-2 with a transfer set: the student hears the teacher on unlabelled sentences",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    check=task.check,
    seeds=3,
)
