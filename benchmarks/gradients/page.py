"""The gradients page, every number computed from the results of
:func:`benchmarks.gradients.task.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.gradients.task import TERMS
from benchmarks.harness import cell, mean_se, table


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
    plain = [r for r in rows if not r.get("balance")]
    balanced = [r for r in rows if r.get("balance") and not r.get("solo")]
    solo = [r for r in rows if r.get("solo")]
    lines += _per_term(plain, s["genres"], s["weights"], {"before": "start", "after": "end"})
    lines += [
        "## Best validation RMSE", "",
        "Mean ± standard error over seeds; *− Scratch* pairs each seed with Scratch's run of "
        "the same seed (same initial student).", "",
    ]  # fmt: skip
    lines += _rmse(plain, rows, s["genres"], s["weights"], "TD, w = ")
    if balanced:
        weights = s.get("balanced", [])
        lines += [
            "## With the loss balancer", "",
            "The same runs with `FitConfig(balance_losses=True)`: each TD term is multiplied by "
            "the task term's gradient norm on the student's backbone over its own (running "
            "means, measured every 10 steps), so that a term weighted w pulls w times as hard "
            "as the task. The balancer's last scale of each term (what the raw weight w is "
            "multiplied by; mean ± standard error over seeds), and the pulls those scales give "
            "on the measured batches at the best epoch:", "",
        ]  # fmt: skip
        lines += _per_term(balanced, s["genres"], weights, {"scales": "scale", "after": "pull"})
        lines += _rmse(balanced, rows, s["genres"], weights, "TD balanced, w = ")
        lines += _optimum(balanced, rows, s["genres"], weights)
        lines += _solo(solo, rows, s["genres"], s.get("solo", []))
        lines += [
            "On SST-2 the text benchmark searches TD's balanced weight on validation on both of "
            "its tracks ([its page](text.md), *Tuning*).", "",
        ]  # fmt: skip
    seconds = sum(r["seconds"] for r in rows)
    lines += [f"Every run's own time, summed: {seconds:.0f} s over {len(rows)} runs."]
    return "\n".join(lines) + "\n"


def _per_term(
    rows: list[dict], genres: list[str], weights: list[float], columns: dict[str, str]
) -> list[str]:
    """A value of each term by genre and weight, mean ± SE over seeds: for each row field of
    ``columns`` (``{"before": "start", "after": "end"}``), one column a term, headed
    ``term (label)``."""
    body = []
    for genre in genres:
        for weight in weights:
            mine = [r for r in rows if r["genre"] == genre and r["weight"] == weight]
            body.append([genre, f"{weight:g}"] + [
                cell([r[key][term] for r in mine], ".2e") for key in columns for term in TERMS
            ])  # fmt: skip
    head = ["genre", "w", *(f"{t} ({label})" for label in columns.values() for t in TERMS)]
    return [*table(head, body), ""]


def _scratch(row: dict) -> bool:
    """A run without an edge (a one-term-strong run has weight 0 too, but is balanced)."""
    return row["weight"] == 0 and not row.get("balance")


def _solo(rows: list[dict], every: list[dict], genres: list[str], solo: list[float]) -> list[str]:
    """Balanced, one term strong and the others weak: validation RMSE beside Scratch's and
    beside the balanced runs with every term weak, and every term strong, paired by seed."""
    if not rows:
        return []
    strong, weak = solo

    def by_seed(genre: str, keep) -> dict[int, float]:
        return {r["seed"]: r["valid_rmse"] for r in every if r["genre"] == genre and keep(r)}

    def paired(a: dict[int, float], b: dict[int, float]) -> str:
        return cell(_differences(a, b), "+.4f")

    body = []
    for genre in genres:
        scratch = by_seed(genre, _scratch)
        alike = {w: by_seed(genre, lambda r, w=w: r.get("balance") and not r.get("solo")
                            and r["weight"] == w) for w in (weak, strong)}  # fmt: skip
        for term in TERMS:
            mine = by_seed(genre, lambda r, t=term: r.get("solo") == t)
            body.append([genre, term, cell(list(mine.values())), paired(mine, scratch),
                         paired(mine, alike[weak]), paired(mine, alike[strong])])  # fmt: skip
    head = ["genre", f"at w = {strong:g}", "validation RMSE", "− Scratch",
            f"− all at {weak:g}", f"− all at {strong:g}"]  # fmt: skip
    return [
        f"### One term at w = {strong:g}, the other two at {weak:g}", "",
        "Balanced as above; each difference pairs seeds.", "",
        *table(head, body), "",
    ]  # fmt: skip


def _rmse(
    rows: list[dict], every: list[dict], genres: list[str], weights: list[float], label: str
) -> list[str]:
    """Validation RMSE by genre and weight beside Scratch's, paired by seed."""
    body = []
    for genre in genres:
        scratch = {r["seed"]: r["valid_rmse"] for r in every
                   if r["genre"] == genre and _scratch(r)}  # fmt: skip
        body.append([genre, "Scratch", cell(list(scratch.values())), ""])
        for weight in weights:
            mine = {r["seed"]: r["valid_rmse"] for r in rows
                    if r["genre"] == genre and r["weight"] == weight}  # fmt: skip
            paired = _differences(mine, scratch)
            body.append([genre, f"{label}{weight:g}", cell(list(mine.values())),
                         cell(paired, "+.4f")])  # fmt: skip
    return [*table(["genre", "method", "validation RMSE", "− Scratch"], body), ""]


def _optimum(
    rows: list[dict], every: list[dict], genres: list[str], weights: list[float]
) -> list[str]:
    """Where the balanced weight's validation optimum lies, per genre: the lowest mean, the
    weights within two paired standard errors of it, and whether any beats Scratch by more."""
    lines = []
    for genre in genres:
        by_weight: dict[float, dict[int, float]] = {}
        for r in rows:
            if r["genre"] == genre and r["weight"] in weights:
                by_weight.setdefault(r["weight"], {})[r["seed"]] = r["valid_rmse"]
        if not by_weight:
            continue
        scratch = {r["seed"]: r["valid_rmse"] for r in every
                   if r["genre"] == genre and _scratch(r)}  # fmt: skip
        means = {w: sum(v.values()) / len(v) for w, v in by_weight.items()}
        best = min(means, key=means.get)
        where = "on the edge of the grid" if best in (min(means), max(means)) else "inside the grid"
        close = [f"{w:g}" for w in sorted(by_weight) if _within(by_weight[w], by_weight[best])]
        better = [f"{w:g}" for w in sorted(by_weight) if _beats(by_weight[w], scratch)]
        lines.append(
            f"- {genre}: the lowest mean validation RMSE is at w = {best:g} ({where}); within two "
            f"paired standard errors of it: w = {', '.join(close)}. Better than Scratch by more "
            f"than two paired standard errors: {'w = ' + ', '.join(better) if better else 'none'}."
        )
    return [*lines, ""] if lines else []


def _differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """``a - b`` seed by seed, over the seeds both have."""
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]


def _within(a: dict[int, float], best: dict[int, float]) -> bool:
    """``a`` is ``best`` or not worse than it by two paired standard errors."""
    mean, se = mean_se(_differences(a, best))
    return a is best or (se is not None and mean <= 2 * se)


def _beats(a: dict[int, float], scratch: dict[int, float]) -> bool:
    """``a`` is lower than Scratch by more than two paired standard errors."""
    mean, se = mean_se(_differences(a, scratch))
    return se is not None and mean < -2 * se
