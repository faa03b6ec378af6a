"""The paper's image experiment: ViT-B/32 (ImageNet-21k) teaches a 4-layer ViT on CIFAR-10,
CIFAR-100 and ImageNet; every method beside the paper's Tables 4, 6 and 9.

``python -m benchmarks vision`` writes ``vision.md`` and ``vision.json`` into ``--out``
(default ``docs/results``): :mod:`.task` runs it, :mod:`.page` writes the page. It runs where
the data, the weights and a GPU are; ``--quick`` is a smoke test on a tiny random ViT and
generated images.
"""

from benchmarks.harness import Benchmark
from benchmarks.vision import page, task

BENCHMARK = Benchmark(
    name="vision",
    summary="ViT-B/32 teaches a 4-layer ViT on CIFAR and ImageNet; every method, beside Tables 4, 6, 9",
    run=task.run,
    write=page.write,
    arguments=task.arguments,
    check=task.check,
    seeds=1,
)
