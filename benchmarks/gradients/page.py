"""The gradients page, every number computed from the results of
:func:`benchmarks.gradients.task.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.gradients.task import TERMS
from benchmarks.harness import cell, table


def write(results: dict[str, Any], out: Path, stem: str = "gradients") -> None:
    """Write ``<stem>.md`` into ``out``."""
    (Path(out) / f"{stem}.md").write_text(page(results))


def page(results: dict[str, Any]) -> str:
    """The results page, every number computed from ``results``."""
    s, rows = results["setup"], results["rows"]
    seeds, student = len(s["seeds"]), s["budget"]["student"]
    lines = [
        "# How much of the student's update TD's terms make", "",
        f"Written by `{results['command']}` on {results['date']} ({results['machine']}, torch "
        f"{results['torch']}), {seeds} seed{'s' * (seeds != 1)}, {results['workers']} worker(s) "
        f"× {results['threads']} thread(s), {results['wall_seconds'] / 60:.1f} min wall.", "",
        *([f"> {note}" for note in s["notes"]] + [""] if s["notes"] else []),
        "The paper's two-node TD on MovieLens 100K: the pre-trained teacher (frozen) and a "
        f"fresh student, k = 2 rounds, one weight w on {', '.join(TERMS)}; the student's recipe "
        f"(lr {student['lr']:g}, batch {student['batch_size']}, {student['evals_per_epoch']} "
        f"evaluations per epoch, early stopping after {student['patience']} without improvement, "
        f"at most {student['epochs']} epochs). Scratch has no edge.", "",
        "## The pull of each term", "",
        "The norm of each weighted term's gradient on the student's backbone (lower, upper, "
        "head; not its codec) divided by the task term's: median over "
        f"{s['batches']} training batches, mean ± standard error over seeds. At the start "
        "(initialisation) and at the end (the best validation epoch's weights).", "",
    ]  # fmt: skip
    body = []
    for genre in s["genres"]:
        for weight in s["weights"]:
            mine = [r for r in rows if r["genre"] == genre and r["weight"] == weight]
            body.append([genre, f"{weight:g}"] + [
                cell([r[when][term] for r in mine], ".2e")
                for when in ("before", "after") for term in TERMS
            ])  # fmt: skip
    head = ["genre", "w", *(f"{t} ({when})" for when in ("start", "end") for t in TERMS)]
    lines += [*table(head, body), ""]
    lines += [
        "## Best validation RMSE", "",
        "Mean ± standard error over seeds; *− Scratch* pairs each seed with Scratch's run of "
        "the same seed (same initial student).", "",
    ]  # fmt: skip
    body = []
    for genre in s["genres"]:
        scratch = {r["seed"]: r["valid_rmse"] for r in rows
                   if r["genre"] == genre and r["weight"] == 0}  # fmt: skip
        body.append([genre, "Scratch", cell(list(scratch.values())), ""])
        for weight in s["weights"]:
            mine = {r["seed"]: r["valid_rmse"] for r in rows
                    if r["genre"] == genre and r["weight"] == weight}  # fmt: skip
            paired = [mine[k] - scratch[k] for k in sorted(mine.keys() & scratch.keys())]
            body.append([genre, f"TD, w = {weight:g}", cell(list(mine.values())),
                          cell(paired, "+.4f")])  # fmt: skip
    lines += [*table(["genre", "method", "validation RMSE", "− Scratch"], body), ""]
    seconds = sum(r["seconds"] for r in rows)
    lines += [f"Every run's own time, summed: {seconds:.0f} s over {len(rows)} runs."]
    return "\n".join(lines) + "\n"
