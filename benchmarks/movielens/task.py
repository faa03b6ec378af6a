"""The paper's MovieLens experiments (Tables 1, 3, 5, 7 and 8), end to end on a CPU.

For each seed a teacher is pre-trained on every genre's training ratings
(:func:`~agora.models.recommender.pretrain_teacher`: early stopping on its own latest ratings,
never on the students' validation or test periods) and saved as safetensors; it is frozen and
reused by every genre and method. Each method then trains a fresh student on one genre's
ratings (the library's recipe, :data:`~agora.models.recommender.STUDENT`: four evaluations per
epoch, early stopping) and is scored by test RMSE at its evaluation of best validation RMSE.

Every setting is chosen on validation only, with seed 0, by mean validation RMSE over the
eight genres, before any test number is read (:func:`tune`): Scratch's learning rate and
dropout; each baseline's weight; TD's shared weight, then each of its three weights on its
own, then its rounds. A choice on the edge of its grid widens the grid (:data:`WIDEN`).

``python -m benchmarks movielens [--quick]`` runs it and writes ``movielens.md``,
``movielens.csv`` and ``movielens.png`` into ``--out`` (default ``docs/results``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agora.agent import Agent
from agora.data.movielens import MovieLensMeta
from agora.graph import Graph
from agora.models.recommender import (
    STUDENT,
    TEACHER,
    Recipe,
    Recommender,
    RecommenderConfig,
    pretrain_teacher,
    teacher_agent,
    teacher_file,
)
from agora.protocols import expand, get_protocol
from agora.protocols.talk import Talk
from agora.stages import Stage, fit_stages
from agora.train import evaluate, fit
from benchmarks.harness import (
    BenchmarkError,
    Runner,
    RunStore,
    cache_dir,
    run_all,
    stamp,
    widening_search,
)

# -- methods ---------------------------------------------------------------------------------

TD_WEIGHTS = ("interact", "message_consistency", "state_consistency")


@dataclass(frozen=True)
class Method:
    """One way to train the student: the edge ``student -> teacher`` it adds, if any.

    ``weights`` are every loss weight by name (TD's ``interact`` and ``rounds`` go to the
    edge's ``Talk``, the others to the edge's weights);
    ``schedule="separately"`` is Table 8's: the student alone, then the codecs alone, then
    everything together (:data:`SEPARATELY`). ``model="before"`` is the student as it was
    before new users were handled (N(0, 1) embeddings, no OOV row, no dropout) with one
    evaluation per epoch and a patience of 2: the reference of the page's first table.
    """

    name: str
    protocols: tuple[str, ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    rounds: int = 0
    noise: float = 0.0
    temperature: float = 1.0
    lr: float = STUDENT.lr
    dropout: float | None = None
    schedule: str = "together"
    model: str = "fixed"

    def weight(self, name: str) -> float:
        """The weight ``name``; 0 when the method has none."""
        return dict(self.weights).get(name, 0.0)

    def set(self, param: str, value: float) -> Method:
        """The same method with ``param`` (a field or a weight's name) set to ``value``.

        Example:
            >>> Method("TD", ("talk",), (("interact", 1.0),)).set("interact", 3.0).weights
            (('interact', 3.0),)
        """
        if param in {f for f in Method.__dataclass_fields__}:
            return replace(self, **{param: value})
        weights = dict(self.weights)
        weights[param] = float(value)
        return replace(self, weights=tuple(weights.items()))

    def describe(self) -> str:
        """The setting as the results show it (and run keys use it).

        Example:
            >>> Method("TD", ("talk",), tuple((w, 30.0) for w in TD_WEIGHTS), rounds=2).describe()
            'w=30, k=2, lr=0.001'
            >>> Method("LD", ("logit",), (("logit", 0.3),), dropout=0.2).describe()
            'w=0.3, lr=0.001, dropout=0.2'
        """
        values = {w for _, w in self.weights}
        parts = []
        if len(values) == 1:
            parts.append(f"w={values.pop():g}")
        else:
            parts += [f"{_SHORT.get(k, k)}={v:g}" for k, v in self.weights]
        if "talk" in self.protocols:
            parts.append(f"k={self.rounds}")
        parts.append(f"lr={self.lr:g}")
        if self.dropout is not None:
            parts.append(f"dropout={self.dropout:g}")
        if self.noise:
            parts.append(f"noise={self.noise:g}")
        if self.temperature != 1:
            parts.append(f"T={self.temperature:g}")
        if self.schedule != "together":
            parts.append(self.schedule)
        if self.model != "fixed":
            parts.append(f"model={self.model}")
        return ", ".join(parts)

    def edge(self) -> dict[str, Any]:
        """The edge's fields: its protocols (talk with the method's rounds and ``interact``
        weight), its other weights, noise and temperature.

        Example:
            >>> ld = Method("LD", ("logit",), (("logit", 1.0),), lr=3e-4, temperature=3.0)
            >>> ld.edge(), ld.describe()
            ({'protocols': ('logit',), 'weights': {'logit': 1.0}, 'noise': 0.0, 'temperature': 3.0}, 'w=1, lr=0.0003, T=3')
            >>> Method("TD", ("talk",), (("interact", 3.0),), rounds=2).edge()["protocols"]
            (Talk(rounds=2, interact_weight=3.0),)
        """
        talk = Talk(rounds=self.rounds, interact_weight=self.weight("interact"))
        protocols = tuple(talk if p == "talk" else p for p in self.protocols)
        weights = {k: v for k, v in self.weights if k != "interact"}
        return {
            "protocols": protocols, "weights": weights, "noise": self.noise,
            "temperature": self.temperature,
        }  # fmt: skip


_SHORT = {"interact": "wi", "message_consistency": "wmc", "state_consistency": "wsc"}

METHODS = ("Scratch", "LD", "FD", "FitNet", "Hybrid", "TD")
PROTOCOLS = {"Scratch": (), "LD": ("logit",), "FD": ("feature",), "FitNet": ("fitnet",),
             "Hybrid": ("hybrid",), "TD": ("talk",)}  # fmt: skip


def method(name: str, weight: float = 0.0, **fields: Any) -> Method:
    """Method ``name`` with ``weight`` on every loss weight of its protocols.

    Example:
        >>> method("Hybrid", 0.3).weights
        (('logit', 0.3), ('feature', 0.3))
    """
    protocols = PROTOCOLS[name]
    names = [w for p in expand(protocols) for w in get_protocol(p).weights]
    names += ["interact"] if "talk" in protocols else []
    return Method(name, protocols, tuple((w, float(weight)) for w in names), **fields)


# Each parameter's first grid, searched on validation with seed 0 over the eight genres. A
# choice on an edge adds the next value beyond it (WIDEN), up to MAX_WIDEN times.
GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "Scratch": {"lr": (3e-4, 1e-3, 3e-3), "dropout": (0.1, 0.2, 0.3)},
    "LD": {"weight": (0.1, 0.3, 1.0, 3.0)},
    "FD": {"weight": (0.3, 1.0, 3.0, 10.0)},
    "FitNet": {"weight": (0.3, 1.0, 3.0, 10.0)},
    "Hybrid": {"weight": (0.1, 0.3, 1.0, 3.0)},
    "TD": {"weight": (3.0, 10.0, 30.0, 100.0), "factor": (1 / 3, 1.0, 3.0), "rounds": (0, 1, 2, 3)},
}
MAX_WIDEN = 3
NOISE = 0.1  # std of the Gaussian noise of Table 8, on the teacher's decoded states
SEPARATELY = (1000, 500)  # Table 8: steps of the student alone, then of the codecs alone


def widen(param: str, value: float, up: bool) -> float | None:
    """The next grid value beyond ``value``: weights and learning rates times or over 3,
    dropout plus or minus 0.1 (within [0, 0.6]), rounds plus or minus 1 (within [0, 4])."""
    if param == "dropout":
        step = round(value + (0.1 if up else -0.1), 2)
        return step if 0 <= step <= 0.6 else None
    if param == "rounds":  # the paper searched 0-3; one round more at the most
        return (value + 1 if value < 4 else None) if up else (value - 1 if value > 0 else None)
    return value * 3 if up else value / 3


# -- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How the students and teachers train (the library's recipes), and ``limit``: keep the
    first ``limit`` ratings of every split (a smoke test)."""

    student: Recipe = STUDENT
    teacher: Recipe = TEACHER
    limit: int | None = None


BEFORE = Recipe(lr=1e-3, epochs=8, evals_per_epoch=1, patience=2)  # the old benchmark's budget


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


def seen_in_training(data: DataView, genres: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per genre, how many test ratings come from a user or movie that the teacher's training
    ratings (every genre's, ``data.splits(None)``) or the student's (the genre's own) hold:
    where a frozen teacher could know what its student does not. Counts of test ratings:

    - ``test``: all of them;
    - ``user_teacher``, ``movie_teacher``: whose user (movie) the teacher's training ratings
      hold; ``user_student``, ``movie_student``: the student's;
    - ``teacher_only``: whose user or movie the teacher's hold and the student's do not;
    - ``user_ratings_teacher``, ``user_ratings_student``: over the test ratings whose user the
      teacher saw, that user's training ratings in each one's data, summed.

    Example (with the data in ``$AGORA_DATA_DIR/ml-100k/``):
        >>> from agora.data.movielens import MovieLens
        >>> seen_in_training(DataView(MovieLens()), ["War"])["War"]["test"]  # doctest: +SKIP
        939
    """
    teacher_train = data.splits(None)["train"]
    teacher_users, teacher_movies, _ = teacher_train.vocabulary()
    rows = data.meta.n_users + 1
    teacher_count = torch.bincount(teacher_train.user, minlength=rows)  # [n_users + 1]
    seen = {}
    for genre in genres:
        splits = data.splits(genre)
        test, train = splits["test"], splits["train"]
        student_users, student_movies, _ = train.vocabulary()
        student_count = torch.bincount(train.user, minlength=rows)  # [n_users + 1]
        user_teacher = torch.isin(test.user, teacher_users)  # [N], N test ratings
        user_student = torch.isin(test.user, student_users)
        movie_teacher = torch.isin(test.movie, teacher_movies)
        movie_student = torch.isin(test.movie, student_movies)
        teacher_only = (user_teacher & ~user_student) | (movie_teacher & ~movie_student)
        known = test.user[user_teacher]  # the users the teacher saw, one per test rating
        seen[genre] = {
            "test": len(test),
            "user_teacher": int(user_teacher.sum()),
            "user_student": int(user_student.sum()),
            "movie_teacher": int(movie_teacher.sum()),
            "movie_student": int(movie_student.sum()),
            "teacher_only": int(teacher_only.sum()),
            "user_ratings_teacher": int(teacher_count[known].sum()),
            "user_ratings_student": int(student_count[known].sum()),
        }
    return seen


def teacher_path(name: str, seed: int, cache: Path, budget: Budget) -> Path:
    """Where tutor ``name`` pre-trained with ``seed`` is kept. The all-genre ``teacher`` is the
    library's own (:func:`~agora.models.recommender.teacher_file`, what ``agora run
    paper-movielens`` uses) unless the budget differs; a specialist, another budget or a
    ``limit`` gets a file of its own.

    Example:
        >>> teacher_path("drama_teacher", 1, Path("/c"), Budget()).as_posix()
        '/c/movielens/drama_teacher-seed1.safetensors'
    """
    tag = "" if budget.teacher == TEACHER else json.dumps(asdict(budget.teacher))
    tag += f"-limit{budget.limit}" if budget.limit else ""
    if name == "teacher":
        return teacher_file(seed, cache, tag)
    digest = f"-{hashlib.sha256(tag.encode()).hexdigest()[:8]}" if tag else ""
    return cache / "movielens" / f"{name}-seed{seed}{digest}.safetensors"


def pretrain(data: Any, seed: int, path: Path, budget: Budget) -> dict[str, float]:
    """Pre-train the teacher on ``data`` (a MovieLens or a :class:`DataView`) into ``path``."""
    return pretrain_teacher(data, seed, path, recipe=budget.teacher)


def student_for(ml: Any, train: Any, m: Method, name: str = "student") -> Agent:
    """The student agent of method ``m``, its vocabulary that of ``train``; ``model="before"``
    is the student as it was before new users were handled (N(0, 1) rows, no OOV row)."""
    dropout = {} if m.dropout is None else {"dropout": m.dropout}
    if m.model == "before":
        model = Recommender.student(ml.meta, init_scale=None, oov=False, id_dropout=0.0,
                                    **dropout)  # fmt: skip
    else:
        model = Recommender.student(ml.meta, **dropout).set_vocabulary(train)
    return Agent.from_model(name, model, "lower", "upper", "head", task="regression")


def train_student(
    ml: Any, genre: str, m: Method, seed: int, teacher: Path, budget: Budget
) -> dict[str, Any]:
    """One student on one genre: validation and test RMSE at the best validation evaluation."""
    started = time.perf_counter()
    splits = DataView(ml, limit=budget.limit).splits(genre)
    torch.manual_seed(seed)
    graph = Graph(
        [teacher_agent(ml.meta, teacher), student_for(ml, splits["train"], m)],
        message_dim=128,
        codec_hidden=256,
    )
    if m.protocols:
        graph.add_edge("student", "teacher", **m.edge())
    recipe = replace(BEFORE if m.model == "before" else budget.student, lr=m.lr)
    config = recipe.fit_config(seed, metric="student/rmse")
    if m.schedule == "separately":
        alone, codecs = SEPARATELY
        stages = [
            Stage("alone", steps=alone, edges=[]),
            Stage("codecs", steps=codecs, edges=["student->teacher"], train=[]),
            Stage("together", edges=["student->teacher"], train=["student"]),
        ]
        results = fit_stages(graph, stages, splits["train"], splits["valid"], config)
        result = results["together"]
        steps = sum(r.steps for r in results.values())
    else:
        result = fit(graph, splits["train"], splits["valid"], config)
        steps = result.steps
    test = evaluate(graph, splits["test"])
    return {
        "genre": genre,
        "method": m.name,
        "setting": m.describe(),
        "seed": seed,
        "valid_rmse": result.metrics["student/rmse"],
        "test_rmse": test["student/rmse"],
        "teacher_valid_rmse": evaluate(graph, splits["valid"], agents=["teacher"])["teacher/rmse"],
        "teacher_test_rmse": test["teacher/rmse"],
        "best_step": result.best_step,
        "steps": steps,
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
    genre, m, seed, teacher, budget = task
    return train_student(ML, genre, m, seed, Path(teacher), budget)


def _pretrain_task(task: tuple[int, str, Budget]) -> dict[str, float]:
    seed, path, budget = task
    return pretrain(DataView(ML, limit=budget.limit), seed, Path(path), budget)


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
    """What :func:`run` runs: genres, seeds, budget, the first grids, how far they may widen,
    whether to run the ablations, and notes for the page."""

    genres: list[str]
    seeds: list[int]
    budget: Budget
    grid: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=lambda: dict(GRID))
    max_widen: int = MAX_WIDEN
    ablations: bool = True
    notes: list[str] = field(default_factory=list)


def quick_plan(genres: list[str]) -> Plan:
    """Two genres (densest and 8th), one seed, one epoch, a point or two of each grid."""
    small = {name: {k: v[:1] for k, v in spec.items()} for name, spec in GRID.items()}
    small["TD"] = {"weight": (10.0,), "factor": (1.0,), "rounds": (1,)}
    budget = Budget(student=replace(STUDENT, epochs=1), teacher=replace(TEACHER, epochs=1),
                    limit=2000)  # fmt: skip
    return Plan(
        genres=[genres[0], genres[-1]], seeds=[0], budget=budget, grid=small, max_widen=0,
        notes=["--quick: 2 genres, 1 seed, 1 epoch, the first 2,000 ratings of every split, "
               "1 grid point: a smoke test, not a result"],
    )  # fmt: skip


class Tuner:
    """Chooses settings by mean validation RMSE over the genres with seed 0 (every run kept
    in ``rows``), widening any grid whose choice lands on its edge."""

    def __init__(self, runner: Runner, plan: Plan, teacher: Callable[[int], Path], store: RunStore):
        self.runner, self.plan, self.teacher, self.store = runner, plan, teacher, store
        self.rows: list[dict] = []
        self.searches: list[dict[str, Any]] = []  # what the page shows: each grid, each choice

    def score(self, methods: Sequence[Method], label: str) -> dict[Method, float]:
        """Mean validation RMSE over the genres (seed 0) of each method."""
        rows = _run_all(self.runner, methods, self.plan.genres, [0], self.teacher,
                        self.plan.budget, label, self.store)  # fmt: skip
        self.rows += rows
        return {
            m: statistics.fmean(r["valid_rmse"] for r in rows if r["setting"] == m.describe())
            for m in methods
        }

    def search(
        self, base: Method, param: str, values: Sequence[float], make: Callable[[float], Method],
        label: str,
    ) -> Method:  # fmt: skip
        """The best of ``make(v)`` over ``values``, widened past an edge choice."""

        def score(todo: list[float]) -> list[float]:
            return list(self.score([make(v) for v in todo], f"{label}: {param}").values())

        values, scores, best, edge = widening_search(
            values, score, lambda v, up: widen(param, v, up), self.plan.max_widen
        )
        self.searches.append({
            "method": base.name, "param": param, "grid": values, "chosen": best,
            "scores": [scores[v] for v in values], "on_edge": edge,
            "setting": make(best).describe(),
        })  # fmt: skip
        return make(best)


_META = MovieLensMeta(1, 1, 1, 19, 1)  # sizes do not matter here: the student's defaults


def tune(tuner: Tuner) -> dict[str, Method]:
    """Every method's setting, on validation with seed 0 (see the module's docstring)."""
    grid = tuner.plan.grid
    scratch = method("Scratch", dropout=RecommenderConfig.student(_META).dropout)
    scratch = tuner.search(
        scratch, "lr", grid["Scratch"]["lr"], lambda v: scratch.set("lr", v), "Scratch"
    )
    scratch = tuner.search(scratch, "dropout", grid["Scratch"]["dropout"],
                           lambda v: scratch.set("dropout", v), "Scratch")  # fmt: skip
    common = {"lr": scratch.lr, "dropout": scratch.dropout}
    chosen = {"Scratch": scratch}
    for name in METHODS[1:-1]:
        base = method(name, 1.0, **common)
        chosen[name] = tuner.search(base, "weight", grid[name]["weight"],
                                    lambda v, n=name: method(n, v, **common), name)  # fmt: skip
    td = tuner.search(method("TD", 1.0, rounds=2, **common), "weight", grid["TD"]["weight"],
                      lambda v: method("TD", v, rounds=2, **common), "TD")  # fmt: skip
    for weight in TD_WEIGHTS:  # then each of its weights on its own, the others as chosen
        base, shared = td, td.weight(weight)
        td = tuner.search(base, weight, [shared * f for f in grid["TD"]["factor"]],
                          lambda v, b=base, w=weight: b.set(w, v), "TD")  # fmt: skip
    td = tuner.search(
        td, "rounds", grid["TD"]["rounds"], lambda v, b=td: b.set("rounds", int(v)), "TD"
    )
    chosen["TD"] = td
    return chosen


def ablations(td: Method) -> list[Method]:
    """Table 5 (rounds 0-3), Table 7 (no L_MC, no L_SC) and Table 8 (noise, codecs trained
    separately) around the tuned TD."""
    variants = [replace(td, name=f"TD k={k}", rounds=k) for k in range(4) if k != td.rounds]
    variants += [
        replace(td.set("message_consistency", 0.0), name="TD no MC"),
        replace(td.set("state_consistency", 0.0), name="TD no SC"),
        replace(td, name="TD noise", noise=NOISE),
        replace(td, name="TD separately", schedule="separately"),
    ]
    return variants


def _key(task: tuple[str, Method, int, str, Budget]) -> str:
    """Runs with equal keys train identically (whatever the method's display name)."""
    genre, m, seed = task[:3]
    return json.dumps([genre, list(m.protocols), m.describe(), seed])


def _cost(task: tuple[str, Method, int, str, Budget]) -> float:
    m = task[1]
    return (1 + 4 * m.rounds + 2 * bool(m.protocols)) * (1 + (m.schedule != "together"))


def _run_all(
    runner: Runner, methods: Sequence[Method], genres: Sequence[str], seeds: Sequence[int],
    teacher: Callable[[int], Path], budget: Budget, label: str, store: RunStore,
) -> list[dict]:  # fmt: skip
    """Every (method, genre, seed), each row under its method's name."""
    tasks = [(g, m, s, str(teacher(s)), budget) for s in seeds for m in methods for g in genres]
    rows = run_all(runner, _run_task, tasks, store, _key, label, cost=_cost)
    return [{**row, "method": task[1].name} for task, row in zip(tasks, rows)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark: teachers, tuning, the main table and the ablations."""
    from agora.data.movielens import MovieLens

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ml = MovieLens(args.data_dir)
    dense = ml.dense_genres(8)
    plan = quick_plan(dense) if args.quick else Plan(dense, list(range(args.seeds)), Budget())
    budget, cache = plan.budget, cache_dir(args)

    def teacher(seed: int) -> Path:  # shared with `agora run paper-movielens` (same files)
        return teacher_path("teacher", seed, cache, budget)

    # every finished run, by key: seed 0 of the chosen settings is reused from tuning, and a
    # benchmark stopped part-way picks up where it was
    store = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                     json.loads(json.dumps(asdict(budget))))  # fmt: skip
    timings: dict[str, float] = {}
    with Runner(args.workers, args.threads, load_movielens, (args.data_dir,)) as runner:
        clock = time.perf_counter()
        missing = [(s, str(teacher(s)), budget) for s in plan.seeds if not teacher(s).exists()]
        teachers = runner.map(_pretrain_task, missing, "teachers")
        timings["teacher pre-training"] = time.perf_counter() - clock

        clock = time.perf_counter()
        tuner = Tuner(runner, plan, teacher, store)
        chosen = tune(tuner)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        main = [chosen[name] for name in METHODS]
        before = replace(method("Scratch", lr=1e-3, dropout=0.0), name="Scratch before",
                         model="before")  # fmt: skip
        rows = _run_all(runner, [*main, before], plan.genres, plan.seeds, teacher, budget,
                        "methods", store)  # fmt: skip
        timings["main table (6 methods, and Scratch before)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        variants = ablations(chosen["TD"]) if plan.ablations else []
        rows += _run_all(
            runner, variants, plan.genres, plan.seeds, teacher, budget, "ablations", store
        )
        timings["ablations"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return {
        **stamp(args),
        "genres": plan.genres,
        "genre_ranking": ml.genre_ranking(),
        "seen": seen_in_training(DataView(ml, limit=budget.limit), plan.genres),
        "seeds": plan.seeds,
        "budget": json.loads(json.dumps(asdict(plan.budget))),
        "grid": {k: {n: list(v) for n, v in spec.items()} for k, spec in plan.grid.items()},
        "searches": tuner.searches,
        "chosen": {name: m.describe() for name, m in chosen.items()},
        "chosen_params": {name: asdict(m) for name, m in chosen.items()},
        "separately": list(SEPARATELY),
        "noise": NOISE,
        "rows": rows,
        "tuning_rows": tuner.rows,
        "teachers": teachers,
        "timings": timings,
        "notes": plan.notes,
    }
