"""The SST-2 results page, every number computed from the results of
:func:`benchmarks.text.task.run`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import header, mean_se, table
from benchmarks.text.task import (
    BALANCED_TD,
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


def _reuse_note(r: dict[str, Any]) -> list[str]:
    """How many runs an earlier invocation finished (read back from the run log): the wall
    times above are this invocation's only."""
    unique = {
        (row["method"], row["setting"], row["seed"], row["track"], row.get("balance", False)): row
        for row in [*r.get("tuning_rows", []), *r["rows"]]
    }
    reused = [row for row in unique.values() if row.get("reused")]
    if not reused:
        return []
    seconds = sum(row["seconds"] for row in unique.values())
    return [
        f"{len(reused)} of {len(unique)} runs were finished by an earlier invocation of the same "
        "command and read back from its run log (`text-runs.jsonl`); the wall times above are "
        f"this invocation's. Every run's own time, summed: {seconds / 60:.0f} min.",
        "",
    ]


def text_page(results: dict[str, Any]) -> str:
    """The results page, computed from ``results`` (what :func:`run` returns)."""
    r, budget, tb = results, results["budget"], results["teacher_budget"]
    tuned, probe = r["finetuned"], r["probe"]
    lines = [
        *header("SST-2: all-MiniLM-L6-v2 teaches a 2-layer student", r),
        *_reuse_note(r),
        "## Protocol",
        "",
        f"Teacher: all-MiniLM-L6-v2 (6 layers, 384-d), frozen, split after layer {TEACHER_LOWER} "
        f"(`lower` = embeddings + layers 1-{TEACHER_LOWER}, `upper` = the rest). Student: the same "
        f"architecture with {STUDENT_LAYERS} layers, initialised from the teacher's embeddings and "
        f"first {STUDENT_LAYERS} layers, split after layer {STUDENT_LOWER}, with a fresh classifier "
        f"on masked mean pooling. Messages are per token, `[B, T, {MESSAGE_DIM}]` (MLP codecs, "
        f"hidden {CODEC_HIDDEN}); padding tokens never enter a loss, a pooling or an attention.",
        "",
        "Two tracks, each with its own frozen teacher:",
        "",
        "- **probe** (the paper's): the pre-trained model as it is. It has no head for SST-2's "
        "labels; LD and Hybrid learn from the predictions of a linear probe (logistic regression "
        "on its mean-pooled last layer, trained on the student's training sentences, L2 penalty "
        f"{probe['decay']:g} chosen on validation from {list(PROBE_DECAYS)}). FD, FitNet and TD "
        "use only its states.",
        f"- **fine-tuned** (how most users distil): the model with a classifier, every layer "
        f"fine-tuned on the first {tuned['train_sentences']} training sentences ({tb['epochs']} "
        f"epochs, lr {tb['lr']:g}, batch {tb['batch_size']}, the best of {tb['evals_per_epoch']} "
        f"validation scores an epoch kept; {tuned['seconds'] / 60:.0f} minutes), then frozen.",
        "",
        f"Data (a CPU budget): the student trains on {r['sizes']['train']} training sentences of "
        f"SST-2's train.tsv (the first of the fine-tuned teacher's), {r['sizes']['valid']} more "
        f"are validation (a fixed shuffle, the same for every run), GLUE's dev set "
        f"({r['sizes']['test']} sentences) is test; at most {budget['max_length']} tokens (mean "
        f"{r['mean_tokens']['train']:.1f} in train, {r['mean_tokens']['test']:.1f} in test). "
        f"Each student trains {budget['epochs']} epochs (batch {budget['batch_size']}, AdamW, "
        "batches grouped by length) and is scored at its epoch of best validation accuracy.",
        "",
        "The whole train set (about 66k sentences) is a GPU's budget: `python -m benchmarks "
        "text --train-size all --teacher-train-size all --epochs 3 --out DIR` runs it. This "
        f"page ran on: {r.get('device', 'cpu')}.",
        "",
        f"Tuning (validation, seed 0, before any test number is read): the learning rate with "
        f"Scratch from {r['grid']['lr']}, then on each track each method's distillation weight "
        f"from {r['grid']['weight']} (TD's with k = 1; TD gives the weight to all three of its "
        f"losses), and TD's weight with the loss balancer (`FitConfig.balance_losses`: 1 makes "
        f"each term pull on the student as hard as the task) from {r['grid']['balanced']}, "
        f"then interact's own balanced weight from the same grid with the consistency terms "
        f"kept at that choice (*TD balanced, interact*). A choice on the "
        f"edge of its grid adds the value beyond it (times or over 3), up to "
        f"{r['grid']['max_widen']} times. Accuracy on dev is the mean ± standard error (ddof=1) "
        f"over {len(r['seeds'])} seed(s) {r['seeds']}.",
        "",
        "## The teachers",
        "",
    ]
    by_track: dict[str, dict[str, list[dict]]] = {}
    for row in r["rows"]:
        by_track.setdefault(row["track"], {}).setdefault(row["method"], []).append(row)
    scratch = by_track.get("", {}).get("Scratch", [])
    teachers = r["teachers"]
    body = [
        ["pre-trained + linear probe", f"{100 * teachers['probe']['valid']:.2f}",
         f"{100 * teachers['probe']['test']:.2f}"],
        ["fine-tuned", f"{100 * teachers['fine-tuned']['valid']:.2f}",
         f"{100 * teachers['fine-tuned']['test']:.2f}"],
        ["the student alone (Scratch)", _accuracy([x["valid_accuracy"] for x in scratch]),
         _accuracy([x["test_accuracy"] for x in scratch])],
    ]  # fmt: skip
    lines += table(["Teacher", "Validation", "Dev (test)"], body)
    sentence = 100 / r["sizes"]["test"]
    order = [*METHODS[1:-1], *(f"TD k={k}" for k in r["grid"]["rounds"]), *BALANCED_TD]
    for track in ("probe", "fine-tuned"):
        methods = by_track.get(track, {})
        lines += ["", f"## Results, {track} teacher (dev accuracy, %)", ""]
        body = []
        for name in ["Scratch", *order]:
            rows = scratch if name == "Scratch" else methods.get(name, [])
            if not rows:
                continue
            seconds = [s for row in rows for s in row.get("epoch_seconds", [])]
            setting = r["chosen"][""]["Scratch"] if name == "Scratch" else r["chosen"][track][name]
            body.append([
                name, setting, _accuracy([x["test_accuracy"] for x in rows]),
                _accuracy([x["valid_accuracy"] for x in rows]),
                "-" if name == "Scratch" else _difference(rows, scratch),
                f"{sorted(seconds)[len(seconds) // 2]:.0f}" if seconds else "-",
            ])  # fmt: skip
        lines += table(
            ["Method", "Setting", "Dev (test)", "Validation", "Dev − Scratch, paired", "s / epoch"],
            body,
        )
    lines += [
        "",
        f"Differences are in percentage points, paired by seed, mean ± standard error; one dev "
        f'sentence is {sentence:.2f} points. "(2 SE)" marks a difference larger than twice '
        "its standard error.",
        "",
        *_marks(r, by_track, scratch),
        "## Tuning",
        "",
        "Validation accuracy (%) with seed 0 at each grid value; the chosen one in bold.",
        "",
    ]
    body = []
    for search in r["searches"]:
        cells = [
            f"**{v:g}: {100 * score:.1f}**"
            if v == search["chosen"]
            else f"{v:g}: {100 * score:.1f}"
            for v, score in zip(search["grid"], search["scores"])
        ]
        edge = "on the edge" if search["on_edge"] else "inside"
        body.append([search["track"], search["method"], search["param"], ", ".join(cells), edge])
    lines += table(["Track", "Method", "Parameter", "Grid", "Choice"], body)
    cache = r["cache"]
    on, off = cache["with_cache"], cache["without_cache"]
    lines += [
        "",
        "## The frozen teacher's state cache",
        "",
        f"TD (k = 1, w = 0.1, lr = {LRS[0]:g}) on the first {cache.get('examples', '?')} "
        f"training sentences, probe track, seed 0, trained alone with "
        f"{r['workers'] * r['threads']} threads: seconds per epoch (training steps only). The "
        "first epoch with the cache computes and stores the teacher's round-0 states; later "
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


def _marks(r: dict[str, Any], by_track: dict[str, dict[str, list[dict]]],
           scratch: list[dict]) -> list[str]:  # fmt: skip
    """The benchmark's marks, each with its measured value: the fine-tuned teacher >= 4 points
    above Scratch, LD or TD above Scratch by > 2 SE on its track, balanced TD's weight in
    [0.3, 3]."""
    if not scratch:
        return []
    alone = mean_se([100 * row["test_accuracy"] for row in scratch])[0]
    gap = 100 * r["teachers"]["fine-tuned"]["test"] - alone
    beating = [
        name for name, rows in by_track.get("fine-tuned", {}).items()
        if (name == "LD" or name.startswith("TD")) and _beats(rows, scratch)
    ]  # fmt: skip
    weights = {s["track"]: s["chosen"] for s in r["searches"]
               if s["method"] == "TD balanced" and s["param"] == "weight"}  # fmt: skip
    interact = {s["track"]: s["chosen"] for s in r["searches"]
                if s["method"] == "TD balanced, interact"}  # fmt: skip
    inside = all(0.3 <= w <= 3 for w in weights.values())
    chosen = ", ".join(f"{w:g} ({track})" for track, w in weights.items())
    interact_line = [
        "- Interact's own balanced weight, the consistency terms kept there: "
        + ", ".join(f"{w:g} ({track})" for track, w in interact.items())
        + " (not a mark: where its optimum lies when the three terms do not add up)."
    ] if interact else []  # fmt: skip
    return [
        "## Marks",
        "",
        f"- The fine-tuned teacher is {gap:+.2f} points from Scratch on dev (mark: at least +4): "
        f"{'met' if gap >= 4 else 'missed'}.",
        f"- LD or TD above Scratch by more than 2 SE, paired, fine-tuned track: "
        f"{', '.join(beating) if beating else 'none'}: {'met' if beating else 'missed'}.",
        f"- TD's weight with the balancer, chosen on validation: {chosen} (mark: in [0.3, 3] "
        f"on both tracks): {'met' if weights and inside else 'missed'}.",
        *interact_line,
        "",
    ]


def _paired(rows: list[dict], scratch: list[dict]) -> list[float]:
    """The method's dev accuracy minus Scratch's, in points, seed by seed."""
    alone = {row["seed"]: row["test_accuracy"] for row in scratch}
    return [100 * (x["test_accuracy"] - alone[x["seed"]]) for x in rows if x["seed"] in alone]


def _beats(rows: list[dict], scratch: list[dict]) -> bool:
    """Higher dev accuracy than Scratch by more than two paired standard errors."""
    diffs = _paired(rows, scratch)
    if len(diffs) < 2:
        return False
    mean, se = mean_se(diffs)
    return se is not None and mean > 2 * se


def _difference(rows: list[dict], scratch: list[dict]) -> str:
    """The method's dev accuracy minus Scratch's, paired by seed: ``+0.52 ± 0.20 (2 SE)``."""
    diffs = _paired(rows, scratch)
    if not diffs:
        return "-"
    mean, se = mean_se(diffs)
    if se is None:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} ± {se:.2f}" + (" (2 SE)" if abs(mean) > 2 * se else "")
