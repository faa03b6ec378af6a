"""The N-way graphs page, every number computed from the results of
:func:`benchmarks.graphs.task.run`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.graphs.task import ROUNDS, TUTORS
from benchmarks.harness import cell, grid, mean_se, table


def write(results: dict[str, Any], out: Path, stem: str = "graphs") -> None:
    """Write ``<stem>.md`` into ``out``."""
    (Path(out) / f"{stem}.md").write_text(page(results))


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [*table(head, rows), ""]


def _values(rows: list[dict], **match: Any) -> list[float]:
    return [r["test_rmse"] for r in rows if all(r[k] == v for k, v in match.items())]


def _paired(rows: list[dict], method: str, reference: str, genre: str) -> list[float]:
    """Test RMSE of ``method`` minus ``reference`` on ``genre``, seed by seed (seeds with both)."""
    by_seed: dict[str, dict[int, float]] = {method: {}, reference: {}}
    for r in rows:
        if r["genre"] == genre and r["method"] in by_seed:
            by_seed[r["method"]][r["seed"]] = r["test_rmse"]
    ours, theirs = by_seed[method], by_seed[reference]
    return [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]


def _rank(results: dict[str, Any], genre: str) -> str:
    names = [name for name, _ in results["genre_ranking"]]
    return f"{genre} (Genre {names.index(genre) + 1})" if genre in names else genre


def _best_single(rows: list[dict], genre: str) -> str:
    """The single tutor with the best mean *validation* RMSE on ``genre``."""
    scores = {}
    for tutor in TUTORS:
        valid = [r["valid_rmse"] for r in rows if r["experiment"] == "teachers"
                 and r["method"] == f"TD {tutor}" and r["genre"] == genre]  # fmt: skip
        if valid:
            scores[tutor] = sum(valid) / len(valid)
    return min(scores, key=scores.get)


def _edge(results: dict[str, Any]) -> str:
    """``; on the grid's edge`` when the chosen weight is its grid's least or greatest."""
    weights = results["plan"]["grid"]["weight"]
    on_edge = len(weights) > 1 and results["chosen"]["weight"] in (min(weights), max(weights))
    return "; on the grid's edge" if on_edge else ""


def page(results: dict[str, Any]) -> str:
    """The results page, every number computed from ``results``."""
    rows, plan_ = results["rows"], results["plan"]
    seeds = len(plan_["seeds"])
    lines = [
        "# N-way graphs on MovieLens 100K", "",
        f"Written by `{results['command']}` on {results['date']} ({results['machine']}, torch "
        f"{results['torch']}), {seeds} seed{'s' * (seeds != 1)}, {results['workers']} worker(s). "
        "Test RMSE at the epoch of best validation RMSE, mean ± standard error over seeds.", "",
        *([f"> {note}" for note in plan_["notes"]] + [""] if plan_["notes"] else []),
        f"Chosen on validation (seed 0): Scratch lr {results['chosen']['scratch_lr']:g} (of "
        f"{grid(plan_['grid']['scratch_lr'])}); TD (every talk edge, k = {ROUNDS}) lr "
        f"{results['chosen']['lr']:g} (of {grid(plan_['grid']['lr'])}), weight "
        f"{results['chosen']['weight']:g} (of {grid(plan_['grid']['weight'])}{_edge(results)}) "
        "on interact, message and state consistency.", "",
        "## a. Three teachers, one student", "",
        "Tutors: `teacher` (every genre), "
        + ", ".join(f"`{n}` ({', '.join(g)})" for n, g in results["groups"].items())
        + ". *Best single* is the single tutor with the best validation RMSE on the genre.", "",
    ]  # fmt: skip
    teach = [r for r in rows if r["experiment"] == "teachers"]
    methods = ["Scratch", *(f"TD {t}" for t in TUTORS)]
    aggregated = [f"TD 3 tutors, {a}" for a in ("mean", "weights", "router")]
    body = []
    for genre in plan_["teacher_genres"]:
        best = _best_single(teach, genre)
        body.append([_rank(results, genre)]
                     + [cell(_values(teach, method=m, genre=genre)) for m in methods]
                     + [best] + [cell(_values(teach, method=m, genre=genre)) for m in aggregated])  # fmt: skip
    lines += _table(["genre", *methods, "best single", "mean", "weights", "router"], body)
    lines += ["Test RMSE minus Scratch's, paired by seed (negative: the tutors help):", ""]
    body = []
    for genre in plan_["teacher_genres"]:
        best = f"TD {_best_single(teach, genre)}"
        body.append([_rank(results, genre)]
                     + [cell(_paired(teach, m, "Scratch", genre), "+.4f")
                        for m in (*methods[1:], best, *aggregated)])  # fmt: skip
    lines += _table(["genre", *methods[1:], "best single", "mean", "weights", "router"], body)
    listening = [r for r in teach if r["weights"] and r["aggregation"] == "router"]
    if listening:
        lines += ["Mean router weight of each tutor on the test ratings (whom the student "
                  "listens to):", ""]  # fmt: skip
        lines += _table(["genre", *TUTORS], [
            [_rank(results, g)] + [f"{mean_se([r['weights'][t] for r in listening if r['genre'] == g])[0]:.3f}"
                                   for t in TUTORS]
            for g in plan_["teacher_genres"]
        ])  # fmt: skip
    students = [r for r in rows if r["experiment"] == "students"]
    lines += ["## b. One teacher, eight students in one run", "",
              "The one run keeps the epoch of its students' best *mean* validation RMSE; each "
              "separate run keeps its own best epoch.", ""]  # fmt: skip
    body = []
    for genre in plan_["all_genres"]:
        one = _values(students, method="one run", genre=genre)
        apart = _values(students, method="separate runs", genre=genre)
        paired = _paired(students, "one run", "separate runs", genre)
        body.append([_rank(results, genre), cell(apart), cell(one), cell(paired, "+.4f")])
    walls = {}
    for method in ("one run", "separate runs"):
        per_seed: dict[int, dict] = {}
        for r in students:
            if r["method"] == method:
                per_seed.setdefault(r["seed"], {})[tuple(r["genres"])] = r["seconds"]
        walls[method] = [sum(runs.values()) for runs in per_seed.values()]
    body.append(["wall time of all students (s)", cell(walls["separate runs"], ".1f"),
                  cell(walls["one run"], ".1f"), ""])  # fmt: skip
    lines += _table(["genre", "separate runs", "one run", "one run − separate"], body)
    if results.get("train_sizes"):
        size = plan_["budget"]["student"]["batch_size"]
        batches = {g: math.ceil(n / size) for g, n in results["train_sizes"].items()}
        lines += [
            "Wall time is each run's own time (one process, "
            f"{results['threads']} thread(s)), summed over the students' runs. An epoch of the "
            "one run is a pass over the largest genre's batches, one batch of every student per "
            "step (a smaller genre starts another pass when its data runs out): "
            f"{len(batches) * max(batches.values())} student batches per epoch, against "
            f"{sum(batches.values())} in the separate runs together (batch size {size}).", "",
        ]  # fmt: skip
    peers = [r for r in rows if r["experiment"] == "peers"]
    lines += ["## c. Peers", "", f"Two students, on {' and '.join(results['peers'])}, talk both "
              "ways, each on its own genre (one run).", ""]  # fmt: skip
    cols = ("alone", "taught by the teacher", "peers")
    lines += _table(["genre", *cols, "peers − alone", "peers − taught"], [
        [_rank(results, g)] + [cell(_values(peers, method=m, genre=g)) for m in cols]
        + [cell(_paired(peers, "peers", ref, g), "+.4f") for ref in cols[:2]]
        for g in results["peers"]
    ])  # fmt: skip
    lines += ["## Where the time went", "",
              "Each run's own time, summed by experiment (a run is counted once in each "
              "experiment that reports it):", ""]  # fmt: skip
    runs: dict[str, dict[str, dict]] = {}  # experiment -> run -> a row of it
    for row in [*results["tuning_rows"], *results["rows"]]:
        key = json.dumps([row[f] for f in ("genres", "tutors", "aggregation", "peers", "lr",
                                            "weight", "seed")])  # fmt: skip
        runs.setdefault(row["experiment"], {}).setdefault(key, row)
    lines += _table(["experiment", "runs", "run time (s)"], [
        [name, str(len(by_key)), f"{sum(r['seconds'] for r in by_key.values()):.0f}"]
        for name, by_key in runs.items()
    ])  # fmt: skip
    unique = {key: row for by_key in runs.values() for key, row in by_key.items()}
    reused = sum(bool(row.get("reused")) for row in unique.values())
    if reused == len(unique):
        lines += [f"This invocation trained nothing: all {reused} runs were read back from the "
                  "run log, finished by earlier invocations."]  # fmt: skip
    else:
        if reused:
            lines += [f"{reused} of the {len(unique)} runs were read back from the run log "
                      "(finished by an earlier invocation); this invocation's phases count only "
                      "the others:", ""]  # fmt: skip
        lines += _table(["phase (this invocation)", "wall time (s)"],
                        [[k, f"{v:.0f}"] for k, v in results["timings"].items()])  # fmt: skip
    return "\n".join(lines)
