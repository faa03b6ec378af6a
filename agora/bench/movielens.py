"""The paper's MovieLens experiments (Tables 1, 3, 5, 7 and 8), end to end on a CPU.

For each seed a teacher is pre-trained on every genre's training ratings (early stopping on
validation) and saved as safetensors; it is frozen and reused by every genre and method. Each
method then trains a fresh student on one genre's ratings and is scored by test RMSE at the
epoch of best validation RMSE. Every loss weight, round count and learning rate is chosen on
validation only (:data:`GRID`), with one seed, before the test runs.

``agora bench movielens [--quick]`` runs it and writes ``movielens.md``, ``movielens.csv`` and
``movielens.png`` into ``--out`` (default ``docs/results``).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from agora.agent import Agent
from agora.graph import Graph
from agora.train import FitConfig, evaluate, fit

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

    def edge_weights(self) -> dict[str, float]:
        """``weight`` for every loss of the protocols, then ``weights`` over them.

        Example:
            >>> Method("TD", ("talk",), weight=0.1, weights=(("state_consistency", 0.0),)).edge_weights()
            {'interact': 0.1, 'message_consistency': 0.1, 'state_consistency': 0.0}
        """
        names = {
            "logit": ("logit",),
            "feature": ("feature",),
            "fitnet": ("fitnet",),
            "hybrid": ("logit", "feature"),
            "talk": ("interact", "message_consistency", "state_consistency"),
        }
        weights = {w: self.weight for p in self.protocols for w in names[p]}
        return {**weights, **dict(self.weights)}

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


def teacher_agent(meta: Any, path: str | os.PathLike | None = None) -> Agent:
    """The paper's teacher as a frozen agent, with pre-trained weights when ``path`` is given."""
    from agora.models.mlp import Recommender

    agent = Agent.from_model(
        "teacher", Recommender.teacher(meta), "lower", "upper", "head", task="regression"
    )
    if path is not None:
        backbone = torch.nn.ModuleDict(
            {"lower": agent.lower, "upper": agent.upper, "head": agent.head}
        )
        backbone.load_state_dict(load_file(str(path)))
    return agent.freeze()


def student_agent(meta: Any) -> Agent:
    """The paper's student as a trainable agent named ``"student"``, freshly initialised."""
    from agora.models.mlp import Recommender

    return Agent.from_model(
        "student", Recommender.student(meta), "lower", "upper", "head", task="regression"
    )


def pretrain_teacher(ml: Any, seed: int, path: Path, budget: Budget) -> dict[str, float]:
    """Train the teacher on every genre (train split), keep its best validation weights."""
    torch.manual_seed(seed)
    agent = teacher_agent(ml.meta)
    agent.freeze(False)
    splits = ml.splits(None)
    graph = Graph([agent], message_dim=128, codec_hidden=256)
    config = FitConfig(
        epochs=budget.teacher_epochs, patience=2, batch_size=budget.batch_size, seed=seed,
        progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    backbone = {f"{part}.{k}": v.contiguous() for part in ("lower", "upper", "head")
                for k, v in getattr(agent, part).state_dict().items()}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # one per writer
    os.close(fd)
    save_file(backbone, tmp, metadata={"agora": json.dumps({"seed": seed, **result.metrics})})
    os.replace(tmp, path)
    return {"seed": seed, **result.metrics}


def train_student(
    ml: Any, genre: str, method: Method, seed: int, teacher_path: Path, budget: Budget
) -> dict[str, Any]:
    """One student on one genre: validation and test RMSE at the best validation epoch."""
    started = time.perf_counter()
    splits = ml.splits(genre)
    torch.manual_seed(seed)
    graph = Graph(
        [teacher_agent(ml.meta, teacher_path), student_agent(ml.meta)],
        message_dim=128,
        codec_hidden=256,
    )
    if method.protocols:
        graph.add_edge(
            "student", "teacher", method.protocols, weights=method.edge_weights(),
            rounds=method.rounds, noise=method.noise,
        )  # fmt: skip
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


# -- running many runs in worker processes ---------------------------------------------------

_ML: Any = None


def _init_worker(data_dir: str | None, threads: int) -> None:
    global _ML
    torch.set_num_threads(threads)
    from agora.data.movielens import MovieLens

    _ML = MovieLens(data_dir)


def _run_task(task: tuple[str, Any, int, str, Budget]) -> dict[str, Any]:
    genre, method, seed, teacher_path, budget = task
    return train_student(_ML, genre, method, seed, Path(teacher_path), budget)


def _pretrain_task(task: tuple[int, str, Budget]) -> dict[str, float]:
    seed, path, budget = task
    return pretrain_teacher(_ML, seed, Path(path), budget)


class Runner:
    """Runs tasks in ``workers`` processes of ``threads`` each, and shows progress.

    Each process first calls ``initializer(data_dir, threads)`` (default: load MovieLens)."""

    def __init__(
        self,
        data_dir: str | None,
        workers: int,
        threads: int,
        initializer: Callable[[str | None, int], None] | None = None,
    ) -> None:
        self.workers = workers
        initializer = initializer or _init_worker
        if workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(workers, initializer, (data_dir, threads))
        else:
            initializer(data_dir, threads)
            self.pool = None

    def imap(self, fn, tasks: Sequence[Any], label: str) -> Iterator[Any]:
        """Results in the order of ``tasks``, each as soon as it (and those before it) ends."""
        from tqdm.auto import tqdm

        iterator = self.pool.imap(fn, tasks) if self.pool else map(fn, tasks)
        yield from tqdm(iterator, total=len(tasks), desc=label, leave=False)

    def map(self, fn, tasks: Sequence[Any], label: str) -> list[Any]:
        """Every result of :meth:`imap`, in the order of ``tasks``, once all have ended."""
        return list(self.imap(fn, tasks, label))

    def close(self) -> None:
        """Let the worker processes finish and wait for them to exit (no-op without a pool)."""
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


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


def _key(genre: str, method: Method, seed: int) -> str:
    """Runs with equal keys train identically (whatever the method's display name)."""
    return json.dumps([genre, list(method.protocols), method.describe(), seed])


def read_log(path: Path | None, stamp: dict[str, Any]) -> Iterator[dict]:
    """The records of a JSON-lines run log written under ``stamp`` (budget and the like);
    records of another stamp are passed over, and a line cut short (a run killed while writing
    it) is skipped with a warning, so that run trains again."""
    if path is None or not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            import warnings

            warnings.warn(
                f"{path}: skipping an unreadable line (cut short?): {line[:80]!r}", stacklevel=3
            )
            continue
        if all(record.get(k) == v for k, v in stamp.items()):
            yield record


def append_log(path: Path | None, record: dict[str, Any]) -> None:
    """Append one record to a JSON-lines run log (nothing without a path)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as file:
            file.write(json.dumps(record) + "\n")


class RunStore:
    """Finished runs by key, appended to a JSON-lines file as each ends, so that a benchmark
    stopped part-way resumes without repeating them. Lines of another budget are ignored."""

    def __init__(self, path: Path | None, budget: Budget) -> None:
        self.path, self.budget = path, asdict(budget)
        self.rows = {r["key"]: r["row"] for r in read_log(path, {"budget": self.budget})}

    def get(self, key: str) -> dict | None:
        """The row of the finished run ``key``, or ``None``."""
        return self.rows.get(key)

    def add(self, key: str, row: dict) -> None:
        """Keep ``row`` under ``key`` and append it, with the budget, to the file."""
        self.rows[key] = row
        append_log(self.path, {"key": key, "budget": self.budget, "row": row})


def _run_all(runner, methods, genres, seeds, teacher, budget, label, done: RunStore) -> list[dict]:
    """Run every (method, genre, seed); a run already in ``done`` (same key) is reused."""
    tasks, rows = [], []
    for seed in seeds:
        for method in methods:
            for genre in genres:
                if (row := done.get(_key(genre, method, seed))) is not None:
                    rows.append({**row, "method": method.name, "reused": True})
                else:
                    tasks.append((genre, method, seed, str(teacher(seed)), budget))
    # the longest tasks first keep both workers busy to the end
    tasks.sort(key=lambda t: -(1 + t[1].rounds) * (1 + len(t[1].protocols)))
    for task, row in zip(tasks, runner.imap(_run_task, tasks, label)):
        done.add(_key(task[0], task[1], task[2]), row)
        rows.append(row)
    return rows


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def run(
    out: Path,
    *,
    quick: bool = False,
    data_dir: str | None = None,
    workers: int = 2,
    threads: int = 1,
    seeds: int = 5,
    cache_dir: Path | None = None,
    command: str = "agora bench movielens",
) -> dict[str, Any]:
    """Run the whole benchmark and write the results page, CSV and plot into ``out``."""
    from agora.data.movielens import MovieLens

    torch.set_num_threads(threads)
    started = time.perf_counter()
    ml = MovieLens(data_dir)
    dense = ml.dense_genres(8)
    plan = quick_plan(dense) if quick else Plan(dense, list(range(seeds)), Budget(), GRID)
    # teachers live where paper_teacher (the paper-movielens config) finds them too
    teacher = partial(teacher_file, cache_dir=cache_dir, teacher_epochs=plan.budget.teacher_epochs)
    # every finished run, by key: seed 0 of the chosen settings is reused from tuning, and a
    # benchmark stopped part-way picks up where it was
    done = RunStore(out / f"movielens{'-quick' if quick else ''}-runs.jsonl", plan.budget)
    timings: dict[str, float] = {}
    runner = Runner(data_dir, workers, threads)
    try:
        clock = time.perf_counter()
        missing = [s for s in plan.seeds if not teacher(s).exists()]
        budget = plan.budget
        teachers = runner.map(
            _pretrain_task, [(s, str(teacher(s)), budget) for s in missing], "teachers"
        )
        timings["teacher pre-training"] = time.perf_counter() - clock

        clock = time.perf_counter()
        chosen, tuning_rows = tune(runner, plan, teacher, done)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        main = [chosen[name] for name in METHODS]
        rows = _run_all(runner, main, plan.genres, plan.seeds, teacher, budget, "methods", done)
        timings["main table (6 methods)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        variants = ablations(chosen["TD"], plan.rounds) if plan.ablations else []
        rows += _run_all(
            runner, variants, plan.genres, plan.seeds, teacher, budget, "ablations", done
        )
        timings["ablations"] = time.perf_counter() - clock
    finally:
        runner.close()
    timings["total"] = time.perf_counter() - started
    results = {
        "command": command,
        "quick": quick,
        "genres": plan.genres,
        "genre_ranking": ml.genre_ranking(),
        "seeds": plan.seeds,
        "budget": asdict(plan.budget),
        "grid": {k: {n: list(v) for n, v in spec.items()} for k, spec in plan.grid.items()},
        "rounds_searched": list(plan.rounds),
        "chosen": {name: m.describe() for name, m in chosen.items()},
        "chosen_params": {name: asdict(m) for name, m in chosen.items()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "torch": torch.__version__,
        "rows": rows,
        "tuning_rows": tuning_rows,
        "teachers": teachers,
        "timings": timings,
        "workers": workers,
        "threads": threads,
        "notes": plan.notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "movielens.json").write_text(json.dumps(results, indent=1))
    from agora.bench.report import write_movielens

    write_movielens(results, out)
    return results


# -- agent factories for configs (`agora run paper-movielens`) -------------------------------


def teacher_file(
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    teacher_epochs: int = Budget.teacher_epochs,
) -> Path:
    """Where :func:`paper_teacher` keeps the teacher pre-trained with ``seed``:
    ``<cache>/movielens/teacher-seed{seed}.safetensors``, the cache being ``cache_dir``, else
    ``$AGORA_CACHE_DIR``, else ``~/.cache/agora``. A shorter pre-training than the paper's
    gets its own file (``...-epochs1.safetensors``), so that it is never taken for the real one.

    >>> teacher_file(3, "/tmp/c").as_posix()
    '/tmp/c/movielens/teacher-seed3.safetensors'
    >>> teacher_file(0, "/tmp/c", teacher_epochs=1).name
    'teacher-seed0-epochs1.safetensors'
    """
    root = cache_dir or os.environ.get("AGORA_CACHE_DIR") or Path.home() / ".cache" / "agora"
    budget = "" if teacher_epochs == Budget.teacher_epochs else f"-epochs{teacher_epochs}"
    return Path(root).expanduser() / "movielens" / f"teacher-seed{seed}{budget}.safetensors"


def paper_teacher(
    name: str = "teacher",
    seed: int = 0,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    teacher_epochs: int = Budget.teacher_epochs,
) -> Agent:
    """The paper's frozen teacher (300 -> 512 -> 256 -> 1), pre-trained once per seed.

    The weights come from :func:`teacher_file`; when it is missing, the teacher is first
    pre-trained there on every genre's training ratings (:func:`pretrain_teacher`, early
    stopping on validation, about a minute on a CPU), exactly as ``agora bench movielens``
    pre-trains its own. Configs name it as ``agora.bench.movielens:paper_teacher``.

    Args:
        name: the agent's name in its graph (default: ``"teacher"``).
        seed: the pre-training seed (default: ``0``).
        data_dir: see :func:`~agora.data.movielens.find_data` (default: ``None``).
        cache_dir: where pre-trained teachers are kept (default: ``None``, see above).
        teacher_epochs: pre-training epochs (default: the benchmark's ``8``).

    >>> teacher = paper_teacher(cache_dir="/tmp/agora-cache")  # doctest: +SKIP
    >>> teacher.frozen, teacher.lower.out_dim  # doctest: +SKIP
    (True, 300)
    """
    import random
    import sys

    import numpy as np
    from safetensors import SafetensorError

    from agora.data.movielens import MovieLens

    ml = MovieLens(data_dir)
    path = teacher_file(seed, cache_dir, teacher_epochs)
    if not path.exists():
        print(
            f"agora: pre-training the MovieLens teacher (seed {seed}, at most {teacher_epochs} "
            f"epoch{'s' * (teacher_epochs != 1)}) into {path}; later runs reuse it",
            file=sys.stderr,
            flush=True,
        )
        # pre-training seeds every generator; restore them so that the agents built after this
        # one start the same whether the teacher was pre-trained now or read from the cache
        states = random.getstate(), np.random.get_state()
        with torch.random.fork_rng():
            budget = Budget(teacher_epochs=teacher_epochs)
            metrics = pretrain_teacher(ml, seed, path, budget)
        random.setstate(states[0])
        np.random.set_state(states[1])
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        print(f"agora: teacher pre-trained ({scores})", file=sys.stderr, flush=True)
    try:
        agent = teacher_agent(ml.meta, path)
    except (RuntimeError, SafetensorError) as error:  # a corrupt file, or one for other data
        raise ValueError(
            f"{path} does not hold a teacher for the data in {ml.root}: {error}. Delete it to "
            "pre-train again, or pass another cache_dir"
        ) from None
    agent.name = name
    return agent


def paper_student(name: str = "student", data_dir: str | None = None) -> Agent:
    """The paper's trainable student, a quarter of the teacher (75 -> 128 -> 64 -> 1).

    Configs name it as ``agora.bench.movielens:paper_student``.

    >>> paper_student().lower.out_dim  # doctest: +SKIP
    75
    """
    from agora.data.movielens import MovieLens
    from agora.models.mlp import Recommender

    model = Recommender.student(MovieLens(data_dir).meta)
    return Agent.from_model(name, model, "lower", "upper", "head", task="regression")
