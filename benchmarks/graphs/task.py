"""N-way graphs on MovieLens 100K: several teachers, one teacher for eight students, and peers.

``python -m benchmarks graphs [--quick]`` runs three experiments and writes ``graphs.md`` and
``graphs.json`` into ``--out`` (default ``docs/results``). Every student is scored by its test
RMSE at the epoch of best validation RMSE, over ``--seeds`` seeds (mean ± standard error):

a. **teachers**: the all-genre teacher and two specialists, pre-trained on disjoint groups of
   genres (:data:`GROUPS`), teach one student, on Genre 1 and the sparse Genres 5-8: Scratch,
   TD from each single tutor (the best of them chosen on validation), and TD from all three
   with each aggregation (mean, weights, router).
b. **students**: one teacher teaches the 8 genre students in one run (per-learner data) vs 8
   separate two-node runs: test RMSE per genre and wall time.
c. **peers**: two students on related genres (:data:`PEERS`) talking both ways, each on its
   own genre, vs each alone (Scratch) vs each taught by the teacher.

The learning rate and the TD weight are chosen on validation only (seed 0, :data:`GRID`; a
weight on the grid's edge widens it): Scratch's learning rate for every student without a
tutor, the single-teacher TD setting for every talk edge. A joint run (b, c) keeps the epoch of
its students' best *mean* validation RMSE, where separate runs each keep their own: the page
says so beside the numbers.

Cost: ``--quick`` (one genre, one seed, one epoch) takes a minute or two; ``--quick --limit
300`` seconds. The full run is about 3.5 CPU-hours, 1.5-2 hours on the default 2 workers of a
2-core CPU (the page sums each run's own time by experiment): about two thirds in (a), whose
three-tutor runs cost about 3x a single-tutor run. Every finished run is appended to
``graphs-runs.jsonl`` in ``--out``, so a stopped benchmark resumes, and runs another grid
(``--weights``) shares with it reuse them. The all-genre teachers are shared with ``agora
bench movielens`` (same cache files).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agora.graph import Graph
from agora.models.recommender import STUDENT, TEACHER, teacher_agent
from agora.orchestrator import Orchestrator
from agora.protocols.talk import Talk
from agora.train import evaluate, fit
from benchmarks import movielens
from benchmarks.harness import Runner, RunStore, cache_dir, run_all, stamp, widening_search
from benchmarks.movielens.task import (
    MAX_WIDEN,
    Budget,
    DataView,
    method,
    pretrain,
    student_for,
    teacher_path,
    widen,
)

GROUPS = {  # the specialists' genres: two disjoint groups
    "drama_teacher": ("Drama", "Comedy", "Romance"),
    "action_teacher": ("Action", "Thriller", "Adventure", "Sci-Fi", "War"),
}
TUTORS = ("teacher", *GROUPS)
PEERS = ("Adventure", "Sci-Fi")  # Genres 6 and 7: related, both sparse
# The learning rate is the student's recipe's (agora.models.recommender.STUDENT); TD's shared
# weight is tuned on validation: below 1 its terms make under 1 % of the student's gradient
# (`python -m benchmarks gradients`), and the movielens benchmark chose tens
GRID = {"scratch_lr": (STUDENT.lr,), "lr": (STUDENT.lr,), "weight": (3.0, 10.0, 30.0, 100.0)}
ROUNDS = 2


@dataclass(frozen=True)
class Run:
    """One training run: ``learners`` (one student per genre), each talking to every tutor of
    ``tutors`` (aggregated by ``aggregation``) and, with ``peers``, to every other learner."""

    experiment: str
    method: str
    genres: tuple[str, ...]
    tutors: tuple[str, ...] = ()
    aggregation: str = "mean"
    peers: bool = False
    lr: float = 1e-3
    weight: float = 0.1
    seed: int = 0

    def key(self) -> tuple:
        """Runs with equal keys train identically, whatever their experiment and method."""
        return (self.genres, self.tutors, self.aggregation, self.peers, self.lr, self.weight,
                self.seed)  # fmt: skip


@dataclass
class Plan:
    """What :func:`run` runs: the genres of experiments a and b, the seeds, the training budget,
    the tuning grid (:data:`GRID`), ``--limit`` and notes for the page."""

    teacher_genres: list[str]  # experiment a
    all_genres: list[str]  # experiment b
    seeds: list[int]
    budget: Budget
    grid: dict[str, Sequence[float]]
    limit: int | None = None
    notes: list[str] = field(default_factory=list)


def plan(
    ml: Any, quick: bool, seeds: int, limit: int | None, weights: Sequence[float] | None = None
) -> Plan:
    """The full plan (Genres 1 and 5-8 for a, the 8 densest for b, ``seeds`` seeds, :data:`GRID`
    with TD's ``weights`` in place of its own) or, with ``quick``, a smoke test: Genre 8 for a,
    Genres 6 and 8 for b, one seed and epoch, no tuning."""
    dense = ml.dense_genres(8)
    if quick:
        return Plan(
            teacher_genres=[dense[-1]], all_genres=[dense[5], dense[-1]], seeds=[0],
            budget=Budget(replace(STUDENT, epochs=1), replace(TEACHER, epochs=1), limit),
            grid={"scratch_lr": (STUDENT.lr,), "lr": (STUDENT.lr,), "weight": (10.0,)},
            limit=limit,
            notes=["--quick: 1 genre (a), 2 students (b), 1 seed, 1 epoch, no tuning: a smoke "
                   "test, not a result"],
        )  # fmt: skip
    grid = {**GRID, "weight": tuple(weights)} if weights else GRID
    return Plan([dense[0], *dense[4:]], dense, list(range(seeds)), Budget(limit=limit), grid,
                limit)  # fmt: skip


# -- one run ---------------------------------------------------------------------------------


def train(ml: Any, run: Run, teachers: dict[str, str], budget: Budget, limit: int | None) -> list:
    """Train one run; a row per learner: validation and test RMSE, and the run's seconds."""
    started = time.perf_counter()
    graph = Graph(message_dim=128, codec_hidden=256)
    learners = [genre.lower() for genre in run.genres]
    many = len(run.tutors) + (len(learners) - 1) * run.peers > 1
    for name, genre in zip(learners, run.genres):
        # a student's initial weights depend on its seed and genre only, not on the run it is
        # in, so that methods compare the same students (paired across methods)
        torch.manual_seed(run.seed * 1_000_003 + zlib.crc32(genre.encode()))
        train = DataView(ml, limit=limit).splits(genre)["train"]
        graph.add_agent(student_for(ml, train, method("TD", run.weight), name=name))
    tutors = []
    for name in run.tutors:  # added after the students: their codecs are built after them
        tutors.append(graph.add_agent(teacher_agent(ml.meta, teachers[name], name=name)))
    aggregation = run.aggregation if many else "mean"
    talk = Talk(rounds=ROUNDS, interact_weight=run.weight, aggregation=aggregation)
    weights = dict.fromkeys(("message_consistency", "state_consistency"), run.weight)
    for learner in learners:
        others = [t.name for t in tutors] + [p for p in learners if run.peers and p != learner]
        for tutor in others:
            graph.add_edge(learner, tutor, talk, weights=weights)
    data = {name: DataView(ml, limit=limit).splits(g) for name, g in zip(learners, run.genres)}
    config = replace(budget.student, lr=run.lr).fit_config(run.seed)
    result = fit(graph, {n: d["train"] for n, d in data.items()},
                 {n: d["valid"] for n, d in data.items()}, config)  # fmt: skip
    test = evaluate(graph, {n: d["test"] for n, d in data.items()})
    seconds = time.perf_counter() - started
    listens = _listening(graph, data) if len(run.tutors) > 1 else {}
    return [
        {**asdict(run), "genres": list(run.genres), "tutors": list(run.tutors), "genre": genre,
         "valid_rmse": result.metrics[f"{name}/rmse"], "test_rmse": test[f"{name}/rmse"],
         "best_step": result.best_step, "seconds": seconds, "weights": listens.get(name, {})}
        for name, genre in zip(learners, run.genres)
    ]  # fmt: skip


@torch.no_grad()
def _listening(graph: Graph, data: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each learner's mean aggregation weight per tutor on its test ratings."""
    step = Orchestrator(graph).eval()
    step(batches={name: d["test"].full_batch() for name, d in data.items()})
    out = {}
    for name in data:
        weights = graph.learner_module("talk", name).aggregator.last_weights
        tutors = [e.tutor for e in graph.active_edges if e.learner == name and e.protocol("talk")]
        mean = weights.reshape(-1, len(tutors)).float().mean(0).tolist()
        out[name] = dict(zip(tutors, mean))
    return out


def _train_task(task: tuple[Run, dict[str, str], Budget, int | None]) -> list:
    run, teachers, budget, limit = task
    return train(movielens.task.ML, run, teachers, budget, limit)


def _pretrain_task(task: tuple[str, int, str, Budget, int | None]) -> dict[str, Any]:
    name, seed, path, budget, limit = task
    view = DataView(movielens.task.ML, None if name == "teacher" else GROUPS[name], limit)
    return {"name": name, **pretrain(view, seed, Path(path), budget)}


# -- the benchmark ---------------------------------------------------------------------------


def _run_all(runner: Runner, runs: list[Run], teachers, plan: Plan, store: RunStore, label: str):
    """Every run, a finished one (same key) read back; the rows, relabelled."""
    tasks = [(run, teachers(run.seed), plan.budget, plan.limit) for run in runs]
    done = run_all(
        runner, _train_task, tasks, store, lambda t: json.dumps(t[0].key()), label,
        cost=lambda t: len(t[0].genres) * (1 + len(t[0].tutors)),
    )  # fmt: skip
    return [
        {**row, "experiment": run.experiment, "method": run.method}
        for run, rows in zip(runs, done)
        for row in rows
    ]


def _tune(runner: Runner, plan: Plan, teachers, store: RunStore) -> tuple[dict[str, float], list]:
    """Scratch's lr and single-teacher TD's lr and weight, by mean validation RMSE (seed 0).
    A weight chosen on the edge of its grid adds the value beyond it (times or over 3), up to
    :data:`~benchmarks.movielens.task.MAX_WIDEN` times; ``plan.grid`` ends as searched."""
    genres = tuple(plan.teacher_genres)
    scratch = [Run("tuning", "Scratch", (g,), lr=lr) for lr in plan.grid["scratch_lr"]
               for g in genres]  # fmt: skip
    rows = _run_all(runner, scratch, teachers, plan, store, "tuning")

    def best(method: str, fields: tuple[str, ...]) -> dict[str, float]:
        scores: dict[tuple, list[float]] = {}
        for row in rows:
            if row["method"] == method:
                scores.setdefault(tuple(row[f] for f in fields), []).append(row["valid_rmse"])
        choice = min(scores, key=lambda k: sum(scores[k]) / len(scores[k]))
        return dict(zip(fields, choice))

    def score(weights: list[float]) -> list[float]:
        """Each weight's mean validation RMSE over the genres, at its best learning rate."""
        td = [Run("tuning", "TD", (g,), ("teacher",), lr=lr, weight=w)
              for lr, w in itertools.product(plan.grid["lr"], weights) for g in genres]  # fmt: skip
        rows.extend(_run_all(runner, td, teachers, plan, store, "tuning"))
        return [
            min(statistics.fmean(r["valid_rmse"] for r in rows
                                 if r["method"] == "TD" and r["weight"] == w and r["lr"] == lr)
                for lr in plan.grid["lr"])
            for w in weights
        ]  # fmt: skip

    weights, *_ = widening_search(
        plan.grid["weight"], score, lambda w, up: widen("weight", w, up), MAX_WIDEN
    )
    plan.grid = {**plan.grid, "weight": tuple(weights)}
    chosen = {"scratch_lr": best("Scratch", ("lr",))["lr"], **best("TD", ("lr", "weight"))}
    return chosen, rows


def experiments(plan: Plan, chosen: dict[str, float]) -> list[Run]:
    """Every run of experiments a, b and c for every seed, with the tuned ``chosen`` settings:
    ``scratch_lr`` for runs without a tutor, ``lr`` and ``weight`` for runs with talk edges."""
    td = {"lr": chosen["lr"], "weight": chosen["weight"]}
    alone = {"lr": chosen["scratch_lr"]}
    runs = []
    for seed in plan.seeds:
        for genre in plan.teacher_genres:
            runs.append(Run("teachers", "Scratch", (genre,), seed=seed, **alone))
            for tutor in TUTORS:
                runs.append(Run("teachers", f"TD {tutor}", (genre,), (tutor,), seed=seed, **td))
            for aggregation in ("mean", "weights", "router"):
                runs.append(Run("teachers", f"TD 3 tutors, {aggregation}", (genre,), TUTORS,
                                aggregation, seed=seed, **td))  # fmt: skip
        runs.append(
            Run("students", "one run", tuple(plan.all_genres), ("teacher",), seed=seed, **td)
        )
        for genre in plan.all_genres:
            runs.append(Run("students", "separate runs", (genre,), ("teacher",), seed=seed, **td))
        for genre in PEERS:
            runs.append(Run("peers", "alone", (genre,), seed=seed, **alone))
            runs.append(
                Run("peers", "taught by the teacher", (genre,), ("teacher",), seed=seed, **td)
            )
        runs.append(Run("peers", "peers", PEERS, peers=True, seed=seed, **td))
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three experiments (teachers pre-trained first, tuning on validation)."""
    from agora.data.movielens import MovieLens

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ml = MovieLens(args.data_dir)
    the_plan = plan(ml, args.quick, args.seeds, args.limit, args.weights)
    if args.limit:
        the_plan.notes.append(
            f"--limit {args.limit}: the first {args.limit} ratings of every split"
        )
    cache = cache_dir(args)

    def teachers(seed: int) -> dict[str, str]:
        return {name: str(teacher_path(name, seed, cache, the_plan.budget))
                for name in TUTORS}  # fmt: skip

    timings: dict[str, float] = {}
    # every finished run, appended as it ends: a benchmark stopped part-way resumes from it
    store = RunStore(
        Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
        json.loads(json.dumps({"budget": asdict(the_plan.budget), "limit": args.limit})),
    )
    with Runner(
        args.workers, args.threads, movielens.task.load_movielens, (args.data_dir,)
    ) as runner:
        clock = time.perf_counter()
        missing = [(n, s, p, the_plan.budget, args.limit) for s in the_plan.seeds
                   for n, p in teachers(s).items() if not Path(p).exists()]  # fmt: skip
        pretrained = runner.map(_pretrain_task, missing, "teachers")
        timings["teacher pre-training"] = time.perf_counter() - clock
        clock = time.perf_counter()
        chosen, tuning_rows = _tune(runner, the_plan, teachers, store)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock
        clock = time.perf_counter()
        runs = experiments(the_plan, chosen)
        rows = []
        for seed in the_plan.seeds:  # seed by seed: a stopped benchmark leaves whole seeds
            mine = [r for r in runs if r.seed == seed]
            rows += _run_all(runner, mine, teachers, the_plan, store, f"runs, seed {seed}")
        timings["experiments"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    view = DataView(ml, limit=args.limit)
    return {
        **stamp(args), "plan": asdict(the_plan), "chosen": chosen,
        "groups": {k: list(v) for k, v in GROUPS.items()}, "peers": list(PEERS),
        "genre_ranking": ml.genre_ranking(), "teachers": pretrained, "rows": rows,
        "tuning_rows": tuning_rows, "timings": timings,
        "train_sizes": {g: len(view.splits(g)["train"]) for g in the_plan.all_genres},
    }  # fmt: skip


def _floats(text: str) -> tuple[float, ...]:
    """``"0.1,1,10"`` as ``(0.1, 1.0, 10.0)``: positive numbers, comma-separated."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"every weight must be > 0, got {text!r}")
    return values


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--limit`` (a slice of every split) and ``--weights`` (TD's grid)."""
    parser.add_argument(
        "--limit", type=int, help="keep the first N ratings of every split (a smoke test)"
    )
    parser.add_argument(
        "--weights", type=_floats,
        help="TD weights to tune over, comma-separated (default: the benchmark's grid)",
    )  # fmt: skip
