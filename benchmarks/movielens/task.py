"""The paper's MovieLens experiments (Tables 1, 3, 5, 7 and 8), end to end on a CPU.

For each seed a teacher is pre-trained on every genre's training ratings (early stopping on
validation) and saved as safetensors; it is frozen and reused by every genre and method. Each
method then trains a fresh student on one genre's ratings and is scored by test RMSE at the
epoch of best validation RMSE. Every loss weight, round count and learning rate is chosen on
validation only (:data:`GRID`), with one seed, before the test runs.

``python -m benchmarks movielens [--quick]`` runs it and writes ``movielens.md``,
``movielens.csv`` and ``movielens.png`` into ``--out`` (default ``docs/results``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agora.graph import Graph
from agora.models.recommender import pretrain_teacher, student_agent, teacher_agent, teacher_file
from agora.protocols import expand, get_protocol
from agora.train import FitConfig, evaluate, fit
from benchmarks.harness import BenchmarkError, Runner, RunStore, cache_dir, run_all, stamp

# -- methods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One way to train the student: the edge ``student -> teacher`` it adds, if any.

    ``weight`` is the distillation weight; TD gives it to all three of its losses (interact,
    message and state consistency), as the paper's tuning did, unless ``weights`` says more.
    """

    name: str
    protocols: tuple[str, ...] = ()
    weight: float = 0.0
    rounds: int = 0
    noise: float = 0.0
    lr: float = 1e-3
    weights: tuple[tuple[str, float], ...] = ()

    def loss_weights(self) -> dict[str, float]:
        """``weight`` for every loss of the protocols (TD's ``interact`` too), then
        ``weights`` over them.

        Example:
            >>> Method("TD", ("talk",), weight=0.1, weights=(("state_consistency", 0.0),)).loss_weights()
            {'message_consistency': 0.1, 'state_consistency': 0.0, 'interact': 0.1}
        """
        weights = {w: self.weight for p in expand(self.protocols) for w in get_protocol(p).weights}
        if "talk" in self.protocols:
            weights["interact"] = self.weight
        return {**weights, **dict(self.weights)}

    def edge(self) -> dict[str, Any]:
        """The edge's options: its weights (all but the learner's ``interact``) and noise."""
        weights = {k: v for k, v in self.loss_weights().items() if k != "interact"}
        return {"weights": weights, "noise": self.noise}

    def learner(self) -> dict[str, Any]:
        """The student's own settings: its rounds and its interact weight."""
        return {"rounds": self.rounds, "interact_weight": self.loss_weights().get("interact", 0.0)}

    def describe(self) -> str:
        """The setting as the results show it (and run keys use it); Scratch has only ``lr``.

        Example:
            >>> Method("TD", ("talk",), weight=0.1, rounds=2).describe()
            'w=0.1, k=2, lr=0.001'
        """
        if not self.protocols:
            return f"lr={self.lr:g}"
        parts = [f"w={self.weight:g}", f"lr={self.lr:g}"]
        if "talk" in self.protocols:
            parts.insert(1, f"k={self.rounds}")
        parts += [f"{k}={v:g}" for k, v in self.weights]
        if self.noise:
            parts.append(f"noise={self.noise:g}")
        return ", ".join(parts)


METHODS = ("Scratch", "LD", "FD", "FitNet", "Hybrid", "TD")
PROTOCOLS = {"Scratch": (), "LD": ("logit",), "FD": ("feature",), "FitNet": ("fitnet",),
             "Hybrid": ("hybrid",), "TD": ("talk",)}  # fmt: skip

# The tuning grid, searched on validation with seed 0 over every genre (mean validation RMSE).
# TD's rounds are tuned after its weight and learning rate, over ROUNDS.
GRID = {
    "Scratch": {"lr": (1e-3, 3e-3)},
    "LD": {"lr": (1e-3, 3e-3), "weight": (0.03, 0.1, 0.3, 1.0)},
    "FD": {"lr": (1e-3, 3e-3), "weight": (0.03, 0.1, 0.3, 1.0)},
    "FitNet": {"lr": (1e-3, 3e-3), "weight": (0.03, 0.1, 0.3, 1.0)},
    "Hybrid": {"lr": (1e-3, 3e-3), "weight": (0.03, 0.1, 0.3, 1.0)},
    "TD": {"lr": (1e-3, 3e-3), "weight": (0.03, 0.1, 0.3), "rounds": (2,)},
}
ROUNDS = (1, 2, 3)
NOISE = 0.1  # std of the Gaussian noise of Table 8, on the teacher's decoded states


def grid(name: str, spec: dict[str, Sequence[Any]]) -> list[Method]:
    """Method ``name`` at every point of the product of ``spec``'s values.

    Example:
        >>> [m.describe() for m in grid("LD", {"lr": (1e-3,), "weight": (0.1, 0.3)})]
        ['w=0.1, lr=0.001', 'w=0.3, lr=0.001']
    """
    keys = list(spec)
    return [
        Method(name, PROTOCOLS[name], **dict(zip(keys, values)))
        for values in itertools.product(*(spec[k] for k in keys))
    ]


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Budget:
    """How long each student trains; early stopping on validation picks the epoch.

    Measured with the scratch student (lr 1e-3, batch 256): Drama's validation RMSE is best
    after 2 epochs, War's after 5-6, so 8 epochs with a patience of 2 serves both.
    """

    epochs: int = 8
    patience: int = 2
    batch_size: int = 256
    teacher_epochs: int = 8


class DataView:
    """MovieLens as :func:`~agora.models.recommender.pretrain_teacher` reads it: ``meta`` and
    ``splits(genre)``, the pre-training data (``genre=None``) being the ``genres`` group (every
    genre without one), every split cut to its first ``limit`` ratings."""

    def __init__(self, ml: Any, genres: Sequence[str] | None = None, limit: int | None = None):
        self.ml, self.genres, self.limit, self.meta = ml, genres, limit, ml.meta

    def splits(self, genre: Any = None) -> dict[str, Any]:
        """``{"train", "valid", "test"}`` of ``genre``; ``None``: the ``genres`` group."""
        which = list(self.genres) if genre is None and self.genres else genre
        return {k: v.head(self.limit) for k, v in self.ml.splits(which).items()}


def teacher_path(
    name: str, seed: int, cache: Path, budget: Budget, limit: int | None = None
) -> Path:
    """Where tutor ``name`` pre-trained with ``seed`` is kept. The all-genre ``teacher`` is the
    library's own (:func:`~agora.models.recommender.teacher_file`, what ``agora run
    paper-movielens`` uses) unless ``limit`` is set; a specialist, a shorter pre-training or a
    ``limit`` gets a file of its own.

    Example:
        >>> teacher_path("drama_teacher", 1, Path("/c"), Budget()).as_posix()
        '/c/movielens/drama_teacher-seed1.safetensors'
    """
    if name == "teacher" and limit is None:
        return teacher_file(seed, cache, budget.teacher_epochs)
    suffix = "" if budget.teacher_epochs == Budget.teacher_epochs else "-short"
    suffix += f"-limit{limit}" if limit else ""
    return cache / "movielens" / f"{name}-seed{seed}{suffix}.safetensors"


def pretrain(data: Any, seed: int, path: Path, budget: Budget) -> dict[str, float]:
    """Pre-train the teacher on ``data`` (a MovieLens or a :class:`DataView`) into ``path``."""
    return pretrain_teacher(
        data, seed, path, epochs=budget.teacher_epochs, batch_size=budget.batch_size
    )


def train_student(
    ml: Any, genre: str, method: Method, seed: int, teacher: Path, budget: Budget
) -> dict[str, Any]:
    """One student on one genre: validation and test RMSE at the best validation epoch."""
    started = time.perf_counter()
    splits = ml.splits(genre)
    torch.manual_seed(seed)
    graph = Graph(
        [teacher_agent(ml.meta, teacher), student_agent(ml.meta, **method.learner())],
        message_dim=128,
        codec_hidden=256,
    )
    if method.protocols:
        graph.add_edge("student", "teacher", method.protocols, **method.edge())
    config = FitConfig(
        epochs=budget.epochs, patience=budget.patience, batch_size=budget.batch_size,
        lr=method.lr, seed=seed, metric="student/rmse", progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    test = evaluate(graph, splits["test"])
    return {
        "genre": genre,
        "method": method.name,
        "setting": method.describe(),
        "seed": seed,
        "valid_rmse": result.metrics["student/rmse"],
        "test_rmse": test["student/rmse"],
        "teacher_test_rmse": test["teacher/rmse"],
        "best_step": result.best_step,
        "steps": result.steps,
        "seconds": time.perf_counter() - started,
    }


# -- worker processes: each loads MovieLens once ---------------------------------------------

ML: Any = None  # the data, in each worker process


def load_movielens(data_dir: str | None) -> None:
    """A worker's initializer: read MovieLens 100K once."""
    global ML
    from agora.data.movielens import MovieLens

    ML = MovieLens(data_dir)


def _run_task(task: tuple[str, Method, int, str, Budget]) -> dict[str, Any]:
    genre, method, seed, teacher, budget = task
    return train_student(ML, genre, method, seed, Path(teacher), budget)


def _pretrain_task(task: tuple[int, str, Budget]) -> dict[str, float]:
    seed, path, budget = task
    return pretrain(ML, seed, Path(path), budget)


def check_data(args: argparse.Namespace) -> None:
    """Fail at once, before any worker starts, when MovieLens cannot be found or downloaded."""
    from agora.data.download import DataError
    from agora.data.movielens import find_data

    try:
        find_data(args.data_dir)
    except DataError as error:
        raise BenchmarkError(str(error)) from None
    except OSError as error:  # the download from GroupLens failed
        raise BenchmarkError(
            f"MovieLens 100K is not here and could not be downloaded ({error}); set "
            "AGORA_DATA_DIR to a folder holding ml-100k/, or pass --data-dir"
        ) from None


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Plan:
    """What :func:`run` runs: genres, seeds, budget, each method's tuning grid, TD's rounds
    (tuned, and Table 5's), whether to run the ablations, and notes for the page."""

    genres: list[str]
    seeds: list[int]
    budget: Budget
    grid: dict[str, dict[str, Sequence[Any]]]
    rounds: Sequence[int] = ROUNDS
    ablations: bool = True
    notes: list[str] = field(default_factory=list)


def quick_plan(genres: list[str]) -> Plan:
    """Two genres (densest and 8th), one seed, one epoch, one grid point per method."""
    small = {name: {k: v[:1] for k, v in spec.items()} for name, spec in GRID.items()}
    return Plan(
        genres=[genres[0], genres[-1]], seeds=[0], budget=Budget(epochs=1, teacher_epochs=1),
        grid=small, rounds=(1,),
        notes=["--quick: 2 genres, 1 seed, 1 epoch, 1 grid point: a smoke test, not a result"],
    )  # fmt: skip


def tune(
    runner: Runner, plan: Plan, teacher: Callable[[int], Path], done: RunStore
) -> tuple[dict[str, Method], list[dict]]:
    """Pick each method's setting by mean validation RMSE over the genres (seed 0)."""
    candidates = [m for name in METHODS for m in grid(name, plan.grid[name])]
    rows = _run_all(runner, candidates, plan.genres, [0], teacher, plan.budget, "tuning", done)
    best = _best_by_validation(candidates, rows)
    rounds = [replace(best["TD"], rounds=k) for k in plan.rounds if k != best["TD"].rounds]
    if rounds:
        rows += _run_all(
            runner, rounds, plan.genres, [0], teacher, plan.budget, "tuning rounds", done
        )
        best["TD"] = _best_by_validation([best["TD"], *rounds], rows)["TD"]
    return best, rows


def _best_by_validation(candidates: Iterable[Method], rows: list[dict]) -> dict[str, Method]:
    scores: dict[Method, list[float]] = {}
    by_setting = {(m.name, m.describe()): m for m in candidates}
    for row in rows:
        method = by_setting.get((row["method"], row["setting"]))
        if method is not None:
            scores.setdefault(method, []).append(row["valid_rmse"])
    best: dict[str, Method] = {}
    for method, values in scores.items():
        mean = sum(values) / len(values)
        if method.name not in best or mean < _mean(scores[best[method.name]]):
            best[method.name] = method
    return best


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def ablations(td: Method, rounds: Sequence[int]) -> list[Method]:
    """Table 5 (rounds), Table 7 (no L_MC, no L_SC) and Table 8 (noise) around tuned TD."""
    variants = [replace(td, name=f"TD k={k}", rounds=k) for k in (0, *rounds) if k != td.rounds]
    variants += [
        replace(td, name="TD no MC", weights=(("message_consistency", 0.0),)),
        replace(td, name="TD no SC", weights=(("state_consistency", 0.0),)),
        replace(td, name="TD noise", noise=NOISE),
    ]
    return variants


def _key(task: tuple[str, Method, int, str, Budget]) -> str:
    """Runs with equal keys train identically (whatever the method's display name)."""
    genre, method, seed = task[:3]
    return json.dumps([genre, list(method.protocols), method.describe(), seed])


def _run_all(
    runner: Runner, methods: Sequence[Method], genres: Sequence[str], seeds: Sequence[int],
    teacher: Callable[[int], Path], budget: Budget, label: str, store: RunStore,
) -> list[dict]:  # fmt: skip
    """Every (method, genre, seed), each row under its method's name."""
    tasks = [(g, m, s, str(teacher(s)), budget) for s in seeds for m in methods for g in genres]
    rows = run_all(
        runner, _run_task, tasks, store, _key, label,
        cost=lambda t: (1 + t[1].rounds) * (1 + len(t[1].protocols)),
    )  # fmt: skip
    return [{**row, "method": task[1].name} for task, row in zip(tasks, rows)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark: teachers, tuning, the main table and the ablations."""
    from agora.data.movielens import MovieLens

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ml = MovieLens(args.data_dir)
    dense = ml.dense_genres(8)
    plan = quick_plan(dense) if args.quick else Plan(dense, list(range(args.seeds)), Budget(), GRID)
    budget = plan.budget
    cache = cache_dir(args)

    def teacher(seed: int) -> Path:  # shared with `agora run paper-movielens` (same files)
        return teacher_path("teacher", seed, cache, budget)

    # every finished run, by key: seed 0 of the chosen settings is reused from tuning, and a
    # benchmark stopped part-way picks up where it was
    store = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                     asdict(budget))  # fmt: skip
    timings: dict[str, float] = {}
    with Runner(args.workers, args.threads, load_movielens, (args.data_dir,)) as runner:
        clock = time.perf_counter()
        missing = [(s, str(teacher(s)), budget) for s in plan.seeds if not teacher(s).exists()]
        teachers = runner.map(_pretrain_task, missing, "teachers")
        timings["teacher pre-training"] = time.perf_counter() - clock

        clock = time.perf_counter()
        chosen, tuning_rows = tune(runner, plan, teacher, store)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        main = [chosen[name] for name in METHODS]
        rows = _run_all(runner, main, plan.genres, plan.seeds, teacher, budget, "methods", store)
        timings["main table (6 methods)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        variants = ablations(chosen["TD"], plan.rounds) if plan.ablations else []
        rows += _run_all(
            runner, variants, plan.genres, plan.seeds, teacher, budget, "ablations", store
        )
        timings["ablations"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return {
        **stamp(args),
        "genres": plan.genres,
        "genre_ranking": ml.genre_ranking(),
        "seeds": plan.seeds,
        "budget": asdict(plan.budget),
        "grid": {k: {n: list(v) for n, v in spec.items()} for k, spec in plan.grid.items()},
        "rounds_searched": list(plan.rounds),
        "chosen": {name: m.describe() for name, m in chosen.items()},
        "chosen_params": {name: asdict(m) for name, m in chosen.items()},
        "rows": rows,
        "tuning_rows": tuning_rows,
        "teachers": teachers,
        "timings": timings,
        "notes": plan.notes,
    }
