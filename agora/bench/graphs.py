"""N-way graphs on MovieLens 100K: several teachers, one teacher for eight students, and peers.

``agora bench graphs [--quick]`` runs three experiments and writes ``graphs.md`` and
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

The learning rate and the TD weight are chosen on validation only (seed 0, :data:`GRID`):
Scratch's learning rate for every student without a tutor, the single-teacher TD setting for
every talk edge. A joint run (b, c) keeps the epoch of its students' best *mean* validation
RMSE, where separate runs each keep their own: the page says so beside the numbers.

Cost: ``--quick`` (one genre, one seed, one epoch) takes a minute or two; ``--quick --limit
300`` seconds. The full run is about 3.5 CPU-hours, 1.5-2 hours on the default 2 workers of a
2-core CPU (the page sums each run's own time by experiment): about two thirds in (a), whose
three-tutor runs cost about 3x a single-tutor run. Every finished run is appended to
``graphs-runs.jsonl`` in ``--out``, so a stopped benchmark resumes, and runs another grid
(``--weights``) shares with it reuse them. The all-genre teachers are shared with ``agora
bench movielens`` (same cache files).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agora.bench import movielens as bench
from agora.bench.movielens import (
    Budget,
    Runner,
    append_log,
    pretrain_teacher,
    read_log,
    student_agent,
    teacher_agent,
)
from agora.bench.report import _table as markdown_table
from agora.bench.report import mean_se
from agora.graph import Graph
from agora.orchestrator import Orchestrator
from agora.train import FitConfig, evaluate, fit

GROUPS = {  # the specialists' genres: two disjoint groups
    "drama_teacher": ("Drama", "Comedy", "Romance"),
    "action_teacher": ("Action", "Thriller", "Adventure", "Sci-Fi", "War"),
}
TUTORS = ("teacher", *GROUPS)
PEERS = ("Adventure", "Sci-Fi")  # Genres 6 and 7: related, both sparse
# TD's weights reach 30: below 1 its terms make under 1 % of the student's gradient (see
# `agora bench gradients`); 0.03-0.3, the first grid, left every TD run tied with Scratch
GRID = {"scratch_lr": (1e-3, 3e-3), "lr": (1e-3, 3e-3), "weight": (0.1, 1.0, 10.0, 30.0)}
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


class DataView:
    """MovieLens as :func:`~agora.bench.movielens.pretrain_teacher` reads it: ``meta`` and
    ``splits(genre)``, the pre-training data (``genre=None``) being the ``genres`` group, every
    split cut to its first ``limit`` ratings."""

    def __init__(self, ml: Any, genres: Sequence[str] | None = None, limit: int | None = None):
        self.ml, self.genres, self.limit, self.meta = ml, genres, limit, ml.meta

    def splits(self, genre: Any = None) -> dict[str, Any]:
        """``{"train", "valid", "test"}`` of ``genre``; ``None``: the ``genres`` group (every
        genre without one). Each split is cut to its first ``limit`` ratings."""
        which = list(self.genres) if genre is None and self.genres else genre
        return {k: v.head(self.limit) for k, v in self.ml.splits(which).items()}


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
            budget=Budget(epochs=1, teacher_epochs=1),
            grid={"scratch_lr": (1e-3,), "lr": (1e-3,), "weight": (0.1,)}, limit=limit,
            notes=["--quick: 1 genre (a), 2 students (b), 1 seed, 1 epoch, no tuning: a smoke "
                   "test, not a result"],
        )  # fmt: skip
    grid = {**GRID, "weight": tuple(weights)} if weights else GRID
    return Plan([dense[0], *dense[4:]], dense, list(range(seeds)), Budget(), grid, limit)


# -- one run ---------------------------------------------------------------------------------


def teacher_path(name: str, seed: int, cache: Path, plan: Plan) -> Path:
    """Where tutor ``name`` pre-trained with ``seed`` is cached. The all-genre ``teacher`` is
    shared with ``agora bench movielens`` (:func:`~agora.bench.movielens.teacher_file`) unless
    ``plan.limit`` is set; a shorter pre-training or a ``limit`` gets its own file.

    Example:
        >>> full = Plan(["War"], ["War"], [0], Budget(), GRID)
        >>> teacher_path("drama_teacher", 1, Path("/c"), full).as_posix()
        '/c/movielens/drama_teacher-seed1.safetensors'
    """
    if name == "teacher" and plan.limit is None:  # shared with `agora bench movielens`
        return bench.teacher_file(seed, cache, plan.budget.teacher_epochs)
    suffix = "" if plan.budget.teacher_epochs == Budget.teacher_epochs else "-short"
    suffix += f"-limit{plan.limit}" if plan.limit else ""
    return cache / "movielens" / f"{name}-seed{seed}{suffix}.safetensors"


def train(ml: Any, run: Run, teachers: dict[str, str], budget: Budget, limit: int | None) -> list:
    """Train one run; a row per learner: validation and test RMSE, and the run's seconds."""
    started = time.perf_counter()
    graph = Graph(message_dim=128, codec_hidden=256)
    learners = [genre.lower() for genre in run.genres]
    for name, genre in zip(learners, run.genres):
        # a student's initial weights depend on its seed and genre only, not on the run it is
        # in, so that methods compare the same students (paired across methods)
        torch.manual_seed(run.seed * 1_000_003 + zlib.crc32(genre.encode()))
        student = student_agent(ml.meta)
        student.name = name
        many = len(run.tutors) + (len(learners) - 1) * run.peers > 1
        graph.add_agent(student, aggregation=run.aggregation if many else "mean")
    tutors = []
    for name in run.tutors:  # added after the students: their codecs are built after them
        tutor = teacher_agent(ml.meta, teachers[name])
        tutor.name = name
        tutors.append(graph.add_agent(tutor))
    talk = dict.fromkeys(("interact", "message_consistency", "state_consistency"), run.weight)
    for learner in learners:
        others = [t.name for t in tutors] + [p for p in learners if run.peers and p != learner]
        for tutor in others:
            graph.add_edge(learner, tutor, "talk", rounds=ROUNDS, weights=talk)
    data = {name: DataView(ml, limit=limit).splits(g) for name, g in zip(learners, run.genres)}
    config = FitConfig(
        epochs=budget.epochs, patience=budget.patience, batch_size=budget.batch_size, lr=run.lr,
        seed=run.seed, progress=False, log_every=10**9,
    )  # fmt: skip
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
        weights = graph.aggregators[name].last_weights
        tutors = [edge.tutor for edge in graph.tutors_of(name)]
        mean = weights.reshape(-1, len(tutors)).float().mean(0).tolist()
        out[name] = dict(zip(tutors, mean))
    return out


def _train_task(task: tuple[Run, dict[str, str], Budget, int | None]) -> list:
    run, teachers, budget, limit = task
    return train(bench._ML, run, teachers, budget, limit)


def _pretrain_task(task: tuple[str, int, str, Budget, int | None]) -> dict[str, Any]:
    name, seed, path, budget, limit = task
    view = DataView(bench._ML, None if name == "teacher" else GROUPS[name], limit)
    return {"name": name, **pretrain_teacher(view, seed, Path(path), budget)}


# -- the benchmark ---------------------------------------------------------------------------


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


class Done(dict):
    """Finished runs' rows by :meth:`Run.key`, appended to a JSON-lines file as each ends, so
    that a benchmark stopped part-way resumes without repeating them. Lines written under
    another budget or ``limit`` are ignored."""

    def __init__(self, path: Path | None, budget: Budget, limit: int | None) -> None:
        super().__init__()
        self.path, self.stamp = path, {"budget": asdict(budget), "limit": limit}
        for record in read_log(path, self.stamp):
            rows = [{**row, "reused": True} for row in record["rows"]]
            super().__setitem__(_frozen(record["key"]), rows)

    def __setitem__(self, key: tuple, rows: list[dict]) -> None:
        super().__setitem__(key, rows)
        append_log(self.path, {"key": key, **self.stamp, "rows": rows})


def _run_all(runner: Runner, runs: list[Run], teachers, plan: Plan, done: dict, label: str):
    """Every run, a run already ``done`` (same key) reused; the rows, relabelled."""
    fresh = [r for r in dict.fromkeys(r.key() for r in runs) if r not in done]
    by_key = {r.key(): r for r in runs}
    tasks = [(by_key[k], teachers(by_key[k].seed), plan.budget, plan.limit) for k in fresh]
    tasks.sort(key=lambda t: -len(t[0].genres) * (1 + len(t[0].tutors)))  # longest first
    for task, rows in zip(tasks, runner.map(_train_task, tasks, label)):
        done[task[0].key()] = rows
    return [
        {**row, "experiment": run.experiment, "method": run.method}
        for run in runs
        for row in done[run.key()]
    ]


def _tune(runner: Runner, plan: Plan, teachers, done: dict) -> tuple[dict[str, float], list]:
    """Scratch's lr and single-teacher TD's lr and weight, by mean validation RMSE (seed 0)."""
    genres = tuple(plan.teacher_genres)
    scratch = [Run("tuning", "Scratch", (g,), lr=lr) for lr in plan.grid["scratch_lr"]
               for g in genres]  # fmt: skip
    td = [Run("tuning", "TD", (g,), ("teacher",), lr=lr, weight=w)
          for lr, w in itertools.product(plan.grid["lr"], plan.grid["weight"]) for g in genres]  # fmt: skip
    rows = _run_all(runner, scratch + td, teachers, plan, done, "tuning")

    def best(method: str, fields: tuple[str, ...]) -> dict[str, float]:
        scores: dict[tuple, list[float]] = {}
        for row in rows:
            if row["method"] == method:
                scores.setdefault(tuple(row[f] for f in fields), []).append(row["valid_rmse"])
        choice = min(scores, key=lambda k: sum(scores[k]) / len(scores[k]))
        return dict(zip(fields, choice))

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


def run(
    out: Path, *, quick: bool = False, data_dir: str | None = None, workers: int = 2,
    threads: int = 1, seeds: int = 5, cache_dir: Path | None = None, limit: int | None = None,
    weights: Sequence[float] | None = None, command: str = "agora bench graphs",
) -> dict[str, Any]:  # fmt: skip
    """Run the three experiments and write ``graphs.md`` and ``graphs.json`` into ``out``;
    ``weights``: TD's weights to tune over (default: :data:`GRID`'s)."""
    from agora.data.movielens import MovieLens

    torch.set_num_threads(threads)
    started = time.perf_counter()
    ml = MovieLens(data_dir)
    the_plan = plan(ml, quick, seeds, limit, weights)
    if limit:
        the_plan.notes.append(f"--limit {limit}: the first {limit} ratings of every split")
    cache = Path(cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache/agora")
    if limit:
        cache = out / ".teachers"

    def teachers(seed: int) -> dict[str, str]:
        return {name: str(teacher_path(name, seed, cache, the_plan)) for name in TUTORS}

    timings: dict[str, float] = {}
    # every finished run, appended as it ends: a benchmark stopped part-way resumes from it
    done = Done(out / f"graphs{'-quick' if quick else ''}-runs.jsonl", the_plan.budget, limit)
    runner = Runner(data_dir, workers, threads)
    try:
        clock = time.perf_counter()
        missing = [(n, s, p, the_plan.budget, limit) for s in the_plan.seeds
                   for n, p in teachers(s).items() if not Path(p).exists()]  # fmt: skip
        pretrained = runner.map(_pretrain_task, missing, "teachers")
        timings["teacher pre-training"] = time.perf_counter() - clock
        clock = time.perf_counter()
        chosen, tuning_rows = _tune(runner, the_plan, teachers, done)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock
        clock = time.perf_counter()
        runs = experiments(the_plan, chosen)
        rows = []
        for seed in the_plan.seeds:  # seed by seed: a stopped benchmark leaves whole seeds
            mine = [r for r in runs if r.seed == seed]
            rows += _run_all(runner, mine, teachers, the_plan, done, f"runs, seed {seed}")
        timings["experiments"] = time.perf_counter() - clock
    finally:
        runner.close()
    timings["total"] = time.perf_counter() - started
    results = {
        "command": command, "quick": quick, "plan": asdict(the_plan), "chosen": chosen,
        "groups": {k: list(v) for k, v in GROUPS.items()}, "peers": list(PEERS),
        "genre_ranking": ml.genre_ranking(), "teachers": pretrained, "rows": rows,
        "tuning_rows": tuning_rows, "timings": timings, "workers": workers, "threads": threads,
        "train_sizes": {g: len(DataView(ml, limit=limit).splits(g)["train"])
                        for g in the_plan.all_genres},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": bench._machine(),
        "torch": torch.__version__,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "graphs.json").write_text(json.dumps(results, indent=1))
    (out / "graphs.md").write_text(page(results))
    return results


# -- the page --------------------------------------------------------------------------------


def _cell(values: Sequence[float], fmt: str = ".4f") -> str:
    """Mean ± standard error in ``fmt`` ("+.4f" signs the mean); "–" for no values."""
    if not values:
        return "–"
    mean, se = mean_se(values)
    mean = float(format(mean, fmt)) + 0.0  # no "-0.0000"
    return format(mean, fmt) + (f" ± {format(se, fmt.lstrip('+'))}" if se is not None else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [*markdown_table(header, rows), ""]


def _values(rows: list[dict], **match: Any) -> list[float]:
    return [r["test_rmse"] for r in rows if all(r[k] == v for k, v in match.items())]


def _grid(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


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
        f"{_grid(plan_['grid']['scratch_lr'])}); TD (every talk edge, k = {ROUNDS}) lr "
        f"{results['chosen']['lr']:g} (of {_grid(plan_['grid']['lr'])}), weight "
        f"{results['chosen']['weight']:g} (of {_grid(plan_['grid']['weight'])}) on interact, "
        "message and state consistency.", "",
        "## a. Three teachers, one student", "",
        "Tutors: `teacher` (every genre), "
        + ", ".join(f"`{n}` ({', '.join(g)})" for n, g in results["groups"].items())
        + ". *Best single* is the single tutor with the best validation RMSE on the genre.", "",
    ]  # fmt: skip
    teach = [r for r in rows if r["experiment"] == "teachers"]
    methods = ["Scratch", *(f"TD {t}" for t in TUTORS)]
    aggregated = [f"TD 3 tutors, {a}" for a in ("mean", "weights", "router")]
    table = []
    for genre in plan_["teacher_genres"]:
        best = _best_single(teach, genre)
        table.append([_rank(results, genre)]
                     + [_cell(_values(teach, method=m, genre=genre)) for m in methods]
                     + [best] + [_cell(_values(teach, method=m, genre=genre)) for m in aggregated])  # fmt: skip
    lines += _table(["genre", *methods, "best single", "mean", "weights", "router"], table)
    lines += ["Test RMSE minus Scratch's, paired by seed (negative: the tutors help):", ""]
    table = []
    for genre in plan_["teacher_genres"]:
        best = f"TD {_best_single(teach, genre)}"
        table.append([_rank(results, genre)]
                     + [_cell(_paired(teach, m, "Scratch", genre), "+.4f")
                        for m in (*methods[1:], best, *aggregated)])  # fmt: skip
    lines += _table(["genre", *methods[1:], "best single", "mean", "weights", "router"], table)
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
    table = []
    for genre in plan_["all_genres"]:
        one = _values(students, method="one run", genre=genre)
        apart = _values(students, method="separate runs", genre=genre)
        paired = _paired(students, "one run", "separate runs", genre)
        table.append([_rank(results, genre), _cell(apart), _cell(one), _cell(paired, "+.4f")])
    walls = {}
    for method in ("one run", "separate runs"):
        per_seed: dict[int, dict] = {}
        for r in students:
            if r["method"] == method:
                per_seed.setdefault(r["seed"], {})[tuple(r["genres"])] = r["seconds"]
        walls[method] = [sum(runs.values()) for runs in per_seed.values()]
    table.append(["wall time of all students (s)", _cell(walls["separate runs"], ".1f"),
                  _cell(walls["one run"], ".1f"), ""])  # fmt: skip
    lines += _table(["genre", "separate runs", "one run", "one run − separate"], table)
    if results.get("train_sizes"):
        size = plan_["budget"]["batch_size"]
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
        [_rank(results, g)] + [_cell(_values(peers, method=m, genre=g)) for m in cols]
        + [_cell(_paired(peers, "peers", ref, g), "+.4f") for ref in cols[:2]]
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
