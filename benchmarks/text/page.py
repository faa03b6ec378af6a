"""The SST-2 results page, every number computed from the results of
:func:`benchmarks.text.task.run`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import header, mean_se, table
from benchmarks.text.task import (
    CODEC_HIDDEN,
    LRS,
    MESSAGE_DIM,
    METHODS,
    PROBE_DECAYS,
    STUDENT_LAYERS,
    STUDENT_LOWER,
    TEACHER_LOWER,
)


def write(results: dict[str, Any], out: Path, stem: str = "text") -> None:
    """Write ``<stem>.md`` into ``out``."""
    (Path(out) / f"{stem}.md").write_text(text_page(results))


def _accuracy(values: Sequence[float]) -> str:
    mean, se = mean_se([100 * v for v in values])
    return f"{mean:.2f}" if se is None else f"{mean:.2f} ± {se:.2f}"


def text_page(results: dict[str, Any]) -> str:
    """The results page, computed from ``results`` (what :func:`run` returns)."""
    r, budget = results, results["budget"]
    lines = [
        *header("SST-2: all-MiniLM-L6-v2 teaches a 2-layer student", r),
        "## Protocol",
        "",
        f"Teacher: all-MiniLM-L6-v2 (6 layers, 384-d), frozen, split after layer {TEACHER_LOWER} "
        f"(`lower` = embeddings + layers 1-{TEACHER_LOWER}, `upper` = the rest). Student: the same "
        f"architecture with {STUDENT_LAYERS} layers, initialised from the teacher's embeddings and "
        f"first {STUDENT_LAYERS} layers, split after layer {STUDENT_LOWER}, with a fresh classifier "
        f"on masked mean pooling. Messages are per token, `[B, T, {MESSAGE_DIM}]` (MLP codecs, "
        f"hidden {CODEC_HIDDEN}); padding tokens never enter a loss, a pooling or an attention.",
        "",
        f"Data (a CPU budget): {r['sizes']['train']} training sentences of SST-2's train.tsv, "
        f"{r['sizes']['valid']} more as validation (a fixed shuffle, the same for every run), "
        f"GLUE's dev set ({r['sizes']['test']} sentences) as test; at most {budget['max_length']} "
        f"tokens (mean {r['mean_tokens']['train']:.1f} in train, {r['mean_tokens']['test']:.1f} "
        f"in test). Each student trains {budget['epochs']} epochs (batch {budget['batch_size']}, "
        "AdamW, batches grouped by length) and is scored at its epoch of best validation accuracy.",
        "",
        "The whole train set (about 66k sentences) is a GPU's budget: `python -m benchmarks "
        f"text --train-size all --epochs 3 --out DIR` runs it. This page ran on: "
        f"{r.get('device', 'cpu')}.",
        "",
        "The pre-trained teacher has no head for SST-2's labels. LD and Hybrid learn from the "
        "predictions of a **linear probe** (logistic regression on the frozen teacher's "
        "mean-pooled last layer, trained on the same training sentences, L2 penalty "
        f"{r['probe']['decay']:g} chosen on validation from {list(PROBE_DECAYS)}); FD, FitNet and "
        "TD use only its states. The probe is also the reference row.",
        "",
        f"Tuning (validation, seed 0, before any test number is read): the learning rate with "
        f"Scratch from {r['grid']['lr']}, then each method's distillation weight from "
        f"{r['grid']['weight']} (TD's with k = 1; TD gives the weight to all three of its "
        f"losses). Accuracy on dev is the mean ± standard error (ddof=1) over "
        f"{len(r['seeds'])} seed(s) {r['seeds']}.",
        "",
        "## Results (dev accuracy, %)",
        "",
    ]
    by_method: dict[str, list[dict]] = {}
    for row in r["rows"]:
        by_method.setdefault(row["method"], []).append(row)
    order = [*METHODS[:-1], *(f"TD k={k}" for k in r["grid"]["rounds"])]
    body = [["Teacher + linear probe (reference)", "-", f"{100 * r['teacher_test_accuracy']:.2f}",
             "-", "-"]]  # fmt: skip
    for name in order:
        rows = by_method.get(name, [])
        if not rows:
            continue
        seconds = [s for row in rows for s in row.get("epoch_seconds", [])]
        body.append([
            name, r["chosen"].get(name, "-"), _accuracy([x["test_accuracy"] for x in rows]),
            _accuracy([x["valid_accuracy"] for x in rows]),
            f"{sorted(seconds)[len(seconds) // 2]:.0f}" if seconds else "-",
        ])  # fmt: skip
    lines += table(["Method", "Setting", "Dev (test)", "Validation", "s / epoch"], body)
    ordered = {name: by_method[name] for name in order if name in by_method}
    lines += ["", *_summary(ordered, 100 / r["sizes"]["test"])]
    cache = r["cache"]
    on, off = cache["with_cache"], cache["without_cache"]
    lines += [
        "",
        "## The frozen teacher's state cache",
        "",
        f"TD (k = 1, w = 0.1, lr = {LRS[0]:g}) on the first {cache.get('examples', '?')} training sentences, "
        f"seed 0, trained alone with {r['workers'] * r['threads']} "
        "threads: seconds per epoch (training steps only). "
        "The first epoch with the cache computes and stores the teacher's round-0 states; later "
        "epochs read them back.",
        "",
        *table(
            ["", *(f"epoch {i + 1}" for i in range(len(on)))],
            [["cache on", *(f"{s:.1f}" for s in on)], ["cache off", *(f"{s:.1f}" for s in off)]],
        ),
    ]
    if len(on) > 1:
        lines += ["", f"Later epochs, on / off: **{on[-1] / off[-1]:.3f}**."]
    return "\n".join(lines) + "\n"


def _summary(by_method: dict[str, list[dict]], sentence: float) -> list[str]:
    """Each method against Scratch, paired by seed: mean ± standard error of the difference
    (``sentence``: the points one test sentence is worth)."""
    scratch = {row["seed"]: row["test_accuracy"] for row in by_method.get("Scratch", [])}
    if not scratch:
        return []
    lines = [
        "Difference from Scratch in dev accuracy (percentage points), paired by seed, mean ± "
        f"standard error (one dev sentence is {sentence:.2f} points):",
        "",
    ]
    for name, rows in by_method.items():
        diffs = [
            100 * (r["test_accuracy"] - scratch[r["seed"]]) for r in rows if r["seed"] in scratch
        ]
        if name == "Scratch" or not diffs:
            continue
        mean, se = mean_se(diffs)
        spread = "" if se is None else f" ± {se:.2f}"
        verdict = ""
        if abs(mean) <= sentence + 1e-9:
            verdict = " (within one dev sentence of Scratch)"
        elif se is not None:
            verdict = (" (above Scratch by more than 2 SE)" if mean > 2 * se else
                       " (below Scratch by more than 2 SE)" if mean < -2 * se else
                       " (within 2 SE of Scratch)")  # fmt: skip
        lines.append(f"- {name}: {mean:+.2f}{spread}{verdict}")
    return lines
