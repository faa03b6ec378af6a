"""How much of the student's update TD's terms make, by loss weight, on MovieLens 100K.

``python -m benchmarks gradients [--quick]`` runs the paper's two-node TD (k = 2 rounds, one weight
``w`` on interact, message and state consistency; Scratch: no edge) on the sparse Genres 6 and
8, and writes ``gradients.md`` and ``gradients.json`` into ``--out`` (default
``docs/results``):

- the norm of each TD term's gradient on the student's backbone (``lower``, ``upper``,
  ``head``: :func:`~agora.analysis.gradients.term_gradients`) over the task term's, median over
  :data:`BATCHES` training batches, at initialisation and at the best validation epoch;
- the best validation RMSE of each weight beside Scratch's, over ``--seeds`` seeds;
- the same with the loss balancer (``FitConfig.balance_losses``), whose weights mean "this many
  times the task term's pull": the balancer's scales at the end, the pulls they give, and where
  the validation optimum lies; then each term alone as strong as the task, the other two weak
  (:data:`SOLO`): which term a strong pull harms.

It asks which weights can matter at all: a term whose gradient is a thousandth of the task
term's leaves the student where Scratch would have put it. Validation RMSE only: the test split
stays for the tuned benchmarks. Measuring changes nothing in the training: it updates nothing,
runs in a forked RNG, and ``fit`` seeds every generator when it starts anyway.

Cost: 2 genres x 14 settings x 5 seeds = 140 runs (the results page gives the wall time);
``--quick`` (one genre, one seed, one epoch, two weights each) a minute or two, ``--limit 300``
seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agora.analysis.gradients import relative, term_gradients
from agora.graph import Graph
from agora.models.recommender import STUDENT, TEACHER, teacher_agent
from agora.train import fit
from benchmarks import movielens
from benchmarks.harness import Runner, cache_dir, stamp
from benchmarks.movielens.task import Budget, DataView, method, pretrain, student_for, teacher_path

WEIGHTS = (0.1, 1.0, 10.0, 30.0, 100.0)
BALANCED = (0.03, 0.1, 0.3, 1.0, 3.0)  # with the loss balancer: 1 pulls as hard as the task
# balanced, one term as strong as the task and the other two at BALANCED's least: which term
# a strong pull harms (or helps)
SOLO = (1.0, 0.03)
GENRES = ("Adventure", "War")  # Genres 6 and 8: sparse, where the paper expects TD to help
TERMS = ("interact", "message_consistency", "state_consistency")
NAMES = {  # a term's name in Losses, for the student talking to the teacher
    "interact": "interact[student]",
    "message_consistency": "message_consistency[student->teacher]",
    "state_consistency": "state_consistency[student->teacher]",
}
BATCHES = 16  # training batches the gradients are measured on
LR = STUDENT.lr  # the student's recipe (agora.models.recommender.STUDENT)


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
    balanced: list[float] = field(default_factory=lambda: list(BALANCED))
    solo: list[float] = field(default_factory=lambda: list(SOLO))


def setup(seeds: int, quick: bool, limit: int | None) -> Setup:
    """The full setup, or with ``quick`` a smoke test: War, one seed and epoch, w 0.1 and 10
    (balanced: 0.3 and 1)."""
    if quick:
        return Setup(
            ["War"], [0.1, 10.0], [0],
            Budget(replace(STUDENT, epochs=1), replace(TEACHER, epochs=1), limit), batches=2,
            limit=limit, notes=["--quick: 1 genre, 1 seed, 1 epoch: a smoke test, not a result"],
            balanced=[0.3, 1.0],
        )  # fmt: skip
    return Setup(list(GENRES), list(WEIGHTS), list(range(seeds)), Budget(limit=limit), limit=limit)


def _ratios(
    graph: Graph, batches: list[tuple[Any, Any]], scales: dict[str, float] | None = None
) -> dict[str, float]:
    """Each TD term's gradient norm over the task term's, median over ``batches``, each term
    multiplied by its balancer scale (``scales``: a run's last ones) where given."""
    scales = scales or {}
    per_term: dict[str, list[float]] = {term: [] for term in TERMS}
    with torch.random.fork_rng():  # the training draws the same random numbers as without this
        for x, y in batches:
            ratios = relative(term_gradients(graph, x, y))["student"]
            for term in TERMS:
                per_term[term].append(ratios[NAMES[term]] * scales.get(NAMES[term], 1.0))
    return {term: statistics.median(values) for term, values in per_term.items()}


def train(
    ml: Any,
    genre: str,
    weight: float,
    seed: int,
    teacher: str,
    s: Setup,
    balance: bool = False,
    solo: str | None = None,
) -> dict[str, Any]:
    """One run: the student on ``genre`` (``weight`` 0: Scratch), with the loss balancer or
    not; gradient ratios at the start (unbalanced runs: a balanced run starts at its weights
    by construction) and at the best epoch (balanced: with the run's last scales), the
    balancer's last scales, best validation RMSE. With ``solo`` (a term), that term is
    weighted ``s.solo[0]`` and the other two ``s.solo[1]``; ``weight`` is then ignored."""
    started = time.perf_counter()
    splits = DataView(ml, limit=s.limit).splits(genre)
    torch.manual_seed(seed)
    weights = dict.fromkeys(TERMS, weight)
    if solo is not None:
        strong, weak = s.solo
        weights = {term: strong if term == solo else weak for term in TERMS}
    td = replace(method("TD", rounds=2), weights=tuple(weights.items()))
    student = student_for(ml, splits["train"], td)
    graph = Graph([teacher_agent(ml.meta, teacher), student], message_dim=128, codec_hidden=256)
    if weight or solo:
        graph.add_edge("student", "teacher", **td.edge())
    order = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(seed))
    batches = [
        splits["train"].__getitems__(index)
        for index in order.split(s.budget.student.batch_size)[: s.batches]
    ]
    graph.build(batches[0][0])
    talks = bool(weight or solo)
    before = _ratios(graph, batches) if talks and not balance else {}
    config = s.budget.student.fit_config(seed, metric="student/rmse", balance_losses=balance)
    result = fit(graph, splits["train"], splits["valid"], config)
    after = _ratios(graph, batches, result.scales) if talks else {}
    scales = {term: result.scales.get(NAMES[term], 1.0) for term in TERMS} if balance else {}
    return {
        "genre": genre, "weight": weight, "balance": balance, "solo": solo, "seed": seed,
        "before": before,
        "after": after, "scales": scales,
        "valid_rmse": result.metrics["student/rmse"], "best_step": result.best_step,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip


def _train_task(task: tuple[str, float, int, str, Setup, bool, str | None]) -> dict[str, Any]:
    genre, weight, seed, teacher, s, balance, solo = task
    return train(movielens.task.ML, genre, weight, seed, teacher, s, balance, solo)


def _pretrain_task(task: tuple[int, str, Setup]) -> dict[str, Any]:
    seed, path, s = task
    return pretrain(DataView(movielens.task.ML, limit=s.limit), seed, Path(path), s.budget)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every genre, weight (and Scratch) and seed."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    s = setup(args.seeds, args.quick, args.limit)
    if args.limit:
        s.notes.append(f"--limit {args.limit}: the first {args.limit} ratings of every split")
    cache = cache_dir(args)
    # the all-genre teacher of the movielens and graphs benchmarks (same files)
    teachers = {seed: str(teacher_path("teacher", seed, cache, s.budget))
                for seed in s.seeds}  # fmt: skip
    with Runner(
        args.workers, args.threads, movielens.task.load_movielens, (args.data_dir,)
    ) as runner:
        missing = [(seed, p, s) for seed, p in teachers.items() if not Path(p).exists()]
        pretrained = runner.map(_pretrain_task, missing, "teachers")
        tasks = [(genre, weight, seed, teachers[seed], s, False, None) for seed in s.seeds
                 for genre in s.genres for weight in (0.0, *s.weights)]  # fmt: skip
        tasks += [(genre, weight, seed, teachers[seed], s, True, None) for seed in s.seeds
                  for genre in s.genres for weight in s.balanced]  # fmt: skip
        tasks += [(genre, 0.0, seed, teachers[seed], s, True, term) for seed in s.seeds
                  for genre in s.genres for term in TERMS]  # fmt: skip
        rows = runner.map(_train_task, tasks, "runs")
    return {
        **stamp(args), "setup": asdict(s), "rows": rows, "teachers": pretrained,
        "wall_seconds": time.perf_counter() - started,
    }  # fmt: skip


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--limit``: a slice of every split, for a smoke test."""
    parser.add_argument(
        "--limit", type=int, help="keep the first N ratings of every split (a smoke test)"
    )
