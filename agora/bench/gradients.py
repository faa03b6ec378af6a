"""How much of the student's update TD's terms make, by loss weight, on MovieLens 100K.

``agora bench gradients [--quick]`` runs the paper's two-node TD (k = 2 rounds, one weight
``w`` on interact, message and state consistency; Scratch: no edge) on the sparse Genres 6 and
8, and writes ``gradients.md`` and ``gradients.json`` into ``--out`` (default
``docs/results``):

- the norm of each TD term's gradient on the student's backbone (``lower``, ``upper``,
  ``head``: :func:`~agora.analysis.gradients.term_gradients`) over the task term's, median over
  :data:`BATCHES` training batches, at initialisation and at the best validation epoch;
- the best validation RMSE of each weight beside Scratch's, over ``--seeds`` seeds.

It asks which weights can matter at all: a term whose gradient is a thousandth of the task
term's leaves the student where Scratch would have put it. Validation RMSE only: the test split
stays for the tuned benchmarks. Measuring changes nothing in the training: it updates nothing,
runs in a forked RNG, and ``fit`` seeds every generator when it starts anyway.

Cost: 2 genres x 6 settings x 5 seeds = 60 runs (the results page gives the wall time);
``--quick``
(one genre, one seed, one epoch, weights 0.1 and 10) a minute or two, ``--limit 300`` seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agora.analysis.gradients import relative, term_gradients
from agora.bench import movielens as bench
from agora.bench.graphs import DataView, Plan, _cell, _table, teacher_path
from agora.bench.movielens import Budget, Runner, pretrain_teacher, student_agent, teacher_agent
from agora.graph import Graph
from agora.train import FitConfig, fit

WEIGHTS = (0.1, 1.0, 10.0, 30.0, 100.0)
GENRES = ("Adventure", "War")  # Genres 6 and 8: sparse, where the paper expects TD to help
TERMS = ("interact", "message_consistency", "state_consistency")
NAMES = {  # a term's name in Losses, for the student talking to the teacher
    "interact": "interact[student]",
    "message_consistency": "message_consistency[student->teacher]",
    "state_consistency": "state_consistency[student->teacher]",
}
BATCHES = 16  # training batches the gradients are measured on
LR = 1e-3  # Scratch's and TD's learning rate, as tuned by `agora bench movielens`


@dataclass
class Setup:
    """What :func:`run` runs: genres, loss weights, seeds, training budget, batches measured."""

    genres: list[str]
    weights: list[float]
    seeds: list[int]
    budget: Budget
    batches: int = BATCHES
    limit: int | None = None
    notes: list[str] = field(default_factory=list)


def setup(seeds: int, quick: bool, limit: int | None) -> Setup:
    """The full setup, or with ``quick`` a smoke test: War, one seed and epoch, w 0.1 and 10."""
    if quick:
        return Setup(
            ["War"], [0.1, 10.0], [0], Budget(epochs=1, teacher_epochs=1), batches=2,
            limit=limit, notes=["--quick: 1 genre, 1 seed, 1 epoch: a smoke test, not a result"],
        )  # fmt: skip
    return Setup(list(GENRES), list(WEIGHTS), list(range(seeds)), Budget(), limit=limit)


def _ratios(graph: Graph, batches: list[tuple[Any, Any]]) -> dict[str, float]:
    """Each TD term's gradient norm over the task term's, median over ``batches``."""
    per_term: dict[str, list[float]] = {term: [] for term in TERMS}
    with torch.random.fork_rng():  # the training draws the same random numbers as without this
        for x, y in batches:
            ratios = relative(term_gradients(graph, x, y))["student"]
            for term in TERMS:
                per_term[term].append(ratios[NAMES[term]])
    return {term: statistics.median(values) for term, values in per_term.items()}


def train(ml: Any, genre: str, weight: float, seed: int, teacher: str, s: Setup) -> dict[str, Any]:
    """One run: the student on ``genre`` (``weight`` 0: Scratch); gradient ratios at the start
    and at the best epoch, best validation RMSE."""
    started = time.perf_counter()
    splits = DataView(ml, limit=s.limit).splits(genre)
    torch.manual_seed(seed)
    graph = Graph([teacher_agent(ml.meta, teacher), student_agent(ml.meta)], message_dim=128,
                  codec_hidden=256)  # fmt: skip
    if weight:
        graph.add_edge("student", "teacher", "talk", rounds=2, weights=dict.fromkeys(TERMS, weight))
    order = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(seed))
    batches = [
        splits["train"].__getitems__(index)
        for index in order.split(s.budget.batch_size)[: s.batches]
    ]
    graph.build(batches[0][0])
    before = _ratios(graph, batches) if weight else {}
    config = FitConfig(
        epochs=s.budget.epochs, patience=s.budget.patience, batch_size=s.budget.batch_size,
        lr=LR, seed=seed, metric="student/rmse", progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    after = _ratios(graph, batches) if weight else {}
    return {
        "genre": genre, "weight": weight, "seed": seed, "before": before, "after": after,
        "valid_rmse": result.metrics["student/rmse"], "best_step": result.best_step,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip


def _train_task(task: tuple[str, float, int, str, Setup]) -> dict[str, Any]:
    genre, weight, seed, teacher, s = task
    return train(bench._ML, genre, weight, seed, teacher, s)


def _pretrain_task(task: tuple[int, str, Setup]) -> dict[str, Any]:
    seed, path, s = task
    return pretrain_teacher(DataView(bench._ML, limit=s.limit), seed, Path(path), s.budget)


def run(
    out: Path, *, quick: bool = False, data_dir: str | None = None, workers: int = 2,
    threads: int = 1, seeds: int = 5, cache_dir: Path | None = None, limit: int | None = None,
    command: str = "agora bench gradients",
) -> dict[str, Any]:  # fmt: skip
    """Run every genre, weight (and Scratch) and seed; write ``gradients.md`` and ``.json``."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    s = setup(seeds, quick, limit)
    if limit:
        s.notes.append(f"--limit {limit}: the first {limit} ratings of every split")
    cache = Path(cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache/agora")
    if limit:
        cache = out / ".teachers"
    # the all-genre teacher of `agora bench movielens` and `agora bench graphs` (same files)
    where = Plan([], [], [], s.budget, {}, limit)
    teachers = {seed: str(teacher_path("teacher", seed, cache, where)) for seed in s.seeds}
    runner = Runner(data_dir, workers, threads)
    try:
        missing = [(seed, p, s) for seed, p in teachers.items() if not Path(p).exists()]
        pretrained = runner.map(_pretrain_task, missing, "teachers")
        tasks = [(genre, weight, seed, teachers[seed], s) for seed in s.seeds
                 for genre in s.genres for weight in (0.0, *s.weights)]  # fmt: skip
        rows = runner.map(_train_task, tasks, "runs")
    finally:
        runner.close()
    results = {
        "command": command, "quick": quick, "setup": asdict(s), "rows": rows,
        "teachers": pretrained, "wall_seconds": time.perf_counter() - started,
        "workers": workers, "threads": threads, "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": bench._machine(),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    name = "gradients-quick" if quick else "gradients"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    (out / f"{name}.md").write_text(page(results))
    return results


# -- the page --------------------------------------------------------------------------------


def page(results: dict[str, Any]) -> str:
    """The results page, every number computed from ``results``."""
    s, rows = results["setup"], results["rows"]
    seeds = len(s["seeds"])
    lines = [
        "# How much of the student's update TD's terms make", "",
        f"Written by `{results['command']}` on {results['date']} ({results['machine']}, torch "
        f"{results['torch']}), {seeds} seed{'s' * (seeds != 1)}, {results['workers']} worker(s) "
        f"× {results['threads']} thread(s), {results['wall_seconds'] / 60:.1f} min wall.", "",
        *([f"> {note}" for note in s["notes"]] + [""] if s["notes"] else []),
        "The paper's two-node TD on MovieLens 100K: the pre-trained teacher (frozen) and a "
        f"fresh student, k = 2 rounds, one weight w on {', '.join(TERMS)}; lr {LR:g}, batch "
        f"{s['budget']['batch_size']}, up to {s['budget']['epochs']} epoch(s) with early stopping "
        f"on validation RMSE (patience {s['budget']['patience']}). Scratch has no edge.", "",
        "## The pull of each term", "",
        "The norm of each weighted term's gradient on the student's backbone (lower, upper, "
        "head; not its codec) divided by the task term's: median over "
        f"{s['batches']} training batches, mean ± standard error over seeds. At the start "
        "(initialisation) and at the end (the best validation epoch's weights).", "",
    ]  # fmt: skip
    table = []
    for genre in s["genres"]:
        for weight in s["weights"]:
            mine = [r for r in rows if r["genre"] == genre and r["weight"] == weight]
            table.append([genre, f"{weight:g}"] + [
                _cell([r[when][term] for r in mine], ".2e")
                for when in ("before", "after") for term in TERMS
            ])  # fmt: skip
    header = ["genre", "w", *(f"{t} ({when})" for when in ("start", "end") for t in TERMS)]
    lines += _table(header, table)
    lines += [
        "## Best validation RMSE", "",
        "Mean ± standard error over seeds; *− Scratch* pairs each seed with Scratch's run of "
        "the same seed (same initial student).", "",
    ]  # fmt: skip
    table = []
    for genre in s["genres"]:
        scratch = {r["seed"]: r["valid_rmse"] for r in rows
                   if r["genre"] == genre and r["weight"] == 0}  # fmt: skip
        table.append([genre, "Scratch", _cell(list(scratch.values())), ""])
        for weight in s["weights"]:
            mine = {r["seed"]: r["valid_rmse"] for r in rows
                    if r["genre"] == genre and r["weight"] == weight}  # fmt: skip
            paired = [mine[k] - scratch[k] for k in sorted(mine.keys() & scratch.keys())]
            table.append([genre, f"TD, w = {weight:g}", _cell(list(mine.values())),
                          _cell(paired, "+.4f")])  # fmt: skip
    lines += _table(["genre", "method", "validation RMSE", "− Scratch"], table)
    seconds = sum(r["seconds"] for r in rows)
    lines += [f"Every run's own time, summed: {seconds:.0f} s over {len(rows)} runs."]
    return "\n".join(lines) + "\n"
