"""The vision results page, every number computed from the results of
:func:`benchmarks.vision.task.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import header, table

ORDER = ("Scratch", "LD", "FD", "FitNet", "Hybrid", "TD k=0", "TD k=1", "TD k=2", "TD no SC",
         "TD noise")  # fmt: skip
NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}


def write(results: dict[str, Any], out: Path, stem: str = "vision") -> None:
    """Write ``<stem>.md`` into ``out``."""
    (Path(out) / f"{stem}.md").write_text(page(results))


def page(results: dict[str, Any]) -> str:
    """The results page, computed from ``results``."""
    r, b = results, results["budget"]
    teacher = (
        f"`{r['weights']}`, a tiny random ViT (never trained) standing in for ViT-B/32"
        if r.get("quick")
        else f"`{r['weights']}` (ViT-B/32 pre-trained on ImageNet-21k; 12 blocks, though the "
        "appendix says 16 in one place)"
    )
    lines = [
        *header("Images: ViT-B/32 teaches a 4-layer ViT (the paper's Tables 4, 6 and 9)", r),
        "## Protocol",
        "",
        f"Teacher: {teacher}, frozen, split after block 6, without a head for these "
        "labels; LD and Hybrid learn from a linear probe on its CLS token trained on the training "
        "split. Student: its first 4 blocks and a fresh classifier, split after block 2. "
        f"Per-token messages of size {b['message_dim']}, codecs of hidden size "
        f"{b['codec_hidden']}. Each run: {b['steps']} steps of SGD (momentum 0.9, batch "
        f"{b['batch_size']}, lr {b['lr']:g}, cosine decay after {b['warmup_steps']} warm-up "
        f"steps, clipping at 1), {b['image_size']} × {b['image_size']} images, standard "
        f"augmentation; scored at its best of {b['evals']} validation evaluations "
        f"({b['valid_size']} training images held out). One run per method, as the paper.",
        "",
    ]
    for dataset in r["datasets"]:
        rows = {row["method"]: row for row in r["rows"] if row["dataset"] == dataset}
        paper = r["paper"].get(dataset, {})
        scratch, paper_scratch = rows.get("Scratch"), paper.get("Scratch")
        probe = r["probes"].get(dataset, {})
        lines += [
            f"## {NAMES.get(dataset, dataset)} (test accuracy, %)",
            "",
            f"The teacher's linear probe: {100 * probe.get('valid_accuracy', float('nan')):.2f} "
            "on validation.",
            "",
        ]
        body = []
        for name in ORDER:
            if name not in rows:
                continue
            row, ours = rows[name], 100 * rows[name]["test_accuracy"]
            theirs = paper.get(name)
            body.append([
                name, row["setting"], f"{ours:.2f}", f"{100 * row['valid_accuracy']:.2f}",
                "-" if name == "Scratch" or scratch is None
                else f"{ours - 100 * scratch['test_accuracy']:+.2f}",
                "-" if theirs is None else f"{100 * theirs:.2f}",
                "-" if name == "Scratch" or theirs is None or paper_scratch is None
                else f"{100 * (theirs - paper_scratch):+.2f}",
            ])  # fmt: skip
        lines += table(["Method", "Setting", "Test", "Validation", "− Scratch", "Paper",
                        "Paper − Scratch"], body)  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"
