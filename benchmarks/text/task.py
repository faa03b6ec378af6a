"""The text experiment: all-MiniLM-L6-v2 teaches a 2-layer student SST-2, on two tracks.

The counterpart of the paper's ViT experiment (appendix 6.2): a pre-trained foundation model
teaches a student of the same architecture with fewer layers, initialised from its embeddings
and first layers. Messages are per token (``[B, T, m_dim]``), and padding never enters a loss.

Two teachers, each frozen while it teaches:

- **probe** (the paper's track): the pre-trained model as it is. It has no head for SST-2's
  labels; LD and Hybrid learn from a **linear probe** trained on the student's training
  sentences over its mean-pooled last layer (:func:`train_probe`).
- **fine-tuned** (how most users distil): the model fine-tuned on SST-2's training sentences,
  as many as the budget allows (:func:`finetune_teacher`), its head included.

Methods: Scratch (the student alone), LD, FD, FitNet, Hybrid and TD with 0, 1 and 2 rounds,
and TD with the loss balancer (``FitConfig.balance_losses``): one weight on its three terms,
then interact's own weight with the consistency terms kept at that choice. The student's
learning rate is chosen with Scratch, then each method's distillation weight on each track
(TD's with k = 1), all on validation with seed 0 before any test number is read; a choice on
the edge of its grid widens the grid (:func:`search`).

``python -m benchmarks text [--quick]`` writes ``text.md``, ``text.json`` and
``text-runs.jsonl`` (finished runs, so a stopped benchmark resumes) into ``--out`` (default
``docs/results``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from agora.folder import written_in_place
from agora.graph import Graph
from agora.loaders import eval_loader
from agora.train import FitConfig, evaluate, fit
from benchmarks.harness import (
    BenchmarkError,
    Runner,
    RunStore,
    linear_probe,
    run_all,
    stamp,
    widening_search,
)
from benchmarks.movielens.task import Method, method

TEACHER_LOWER = 3  # the teacher's split: embeddings + 3 layers | 3 layers
STUDENT_LAYERS, STUDENT_LOWER = 2, 1  # the student's: embeddings + 1 layer | 1 layer
MESSAGE_DIM, CODEC_HIDDEN = 256, 256

METHODS = ("Scratch", "LD", "FD", "FitNet", "Hybrid", "TD")
PROTOCOLS = {"Scratch": (), "LD": ("logit",), "FD": ("feature",), "FitNet": ("fitnet",),
             "Hybrid": ("hybrid",), "TD": ("talk",)}  # fmt: skip
TRACKS = ("probe", "fine-tuned")
LRS = (1e-4, 3e-4)  # the student's learning rate, chosen with Scratch
WEIGHTS = (0.1, 1.0)  # each distillation weight's first grid; TD's with k = 1
BALANCED = (0.3, 1.0)  # TD's weight with the loss balancer: 1 pulls as hard as the task
BALANCED_TD = ("TD balanced", "TD balanced, interact")  # with the balancer: all, interact
BALANCER = "gradient-norm"  # in a balanced run's key: runs of an earlier balancer do not count
MAX_WIDEN = 3  # a choice on a grid's edge adds the value beyond it (x or / 3), this many times
ROUNDS = (0, 1, 2)
PROBE_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)  # the probe's L2 penalty, chosen on validation


@dataclass
class TextBudget:
    """The data and training budget of every run (the CPU subset is documented on the page)."""

    train_size: int | None = 2000
    valid_size: int = 1000
    max_length: int = 64
    epochs: int = 2
    batch_size: int = 32
    test_size: int | None = None


@dataclass
class TeacherBudget:
    """How the fine-tuned teacher trains: on the first ``train_size`` training sentences
    (``None``: all but validation; the student's are the first of them), scored
    ``evals_per_epoch`` times an epoch on validation, the best kept."""

    train_size: int | None = 20000
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 32
    evals_per_epoch: int = 4


def task_data(budget: TextBudget, data_dir: str | None = None) -> dict[str, Any]:
    """SST-2 as the budget cuts it (see :func:`agora.data.sst2.sst2_task`)."""
    from agora.data.sst2 import sst2_task

    return sst2_task(
        budget.train_size, budget.valid_size, budget.max_length, budget.test_size, data_dir
    )


# -- the teacher's linear probe --------------------------------------------------------------


@torch.no_grad()
def pooled_features(agent: Any, data: Any, batch_size: int = 256) -> tuple[torch.Tensor, ...]:
    """The frozen agent's mean-pooled last layer over real tokens, and the labels."""
    from agora.models.transformer import masked_mean

    agent.eval()
    features, labels = [], []
    for x, y in eval_loader(data, batch_size):
        out = agent(x)
        features.append(masked_mean(out.e, out.mask))
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def agent_accuracy(agent: Any, data: Any, batch_size: int = 256) -> float:
    """Accuracy of one agent's predictions (in eval mode) over ``data``."""
    agent.eval()
    hits = total = 0
    for x, y in eval_loader(data, batch_size):
        hits += int((agent(x).y.argmax(-1) == y).sum())
        total += len(y)
    return hits / total


def train_probe(
    teacher: Any, splits: dict[str, Any], path: Path, decays: Sequence[float] = PROBE_DECAYS
) -> dict[str, float]:
    """Fit a logistic-regression probe on the frozen teacher's pooled features (L-BFGS, its
    L2 penalty chosen by validation accuracy) and save it as ``linear.weight``/``linear.bias``.
    """
    train = pooled_features(teacher, splits["train"])
    valid = pooled_features(teacher, splits["valid"])
    return linear_probe(train, valid, path, decays)


def finetune_teacher(
    budget: TextBudget, teacher: TeacherBudget, path: Path, data_dir: str | None = None
) -> dict[str, Any]:
    """Fine-tune all-MiniLM-L6-v2 with a classifier on SST-2 (every layer, the best
    validation accuracy kept) and save the whole agent to ``path``; read back instead when
    ``path`` and its record (``.json`` beside it) exist."""
    from agora.models.transformer import encoder_agent, load_encoder

    record = path.with_suffix(".json")
    if path.is_file() and record.is_file():
        return json.loads(record.read_text())
    started = time.perf_counter()
    splits = task_data(replace(budget, train_size=teacher.train_size), data_dir)
    torch.manual_seed(0)
    agent = encoder_agent("teacher", load_encoder(), TEACHER_LOWER, 2, dropout=0.1)
    config = FitConfig(
        epochs=teacher.epochs, batch_size=teacher.batch_size, lr=teacher.lr,
        evals_per_epoch=teacher.evals_per_epoch, metric="teacher/accuracy",
        group_by_length=True, progress=True, log_every=10**9,
    )  # fmt: skip
    result = fit(Graph([agent], message_dim=MESSAGE_DIM, codec="token"), splits["train"],
                 splits["valid"], config)  # fmt: skip
    weights = {k: v.detach().contiguous() for k, v in agent.state_dict().items()}
    with written_in_place(path) as tmp:
        save_file({k: v for k, v in weights.items() if not k.startswith("codec.")}, str(tmp))
    info = {
        "train_sentences": len(splits["train"]),
        "valid_accuracy": result.metrics["teacher/accuracy"],
        "best_step": result.best_step,
        "steps": result.steps,
        "seconds": time.perf_counter() - started,
        **asdict(teacher),
    }
    record.write_text(json.dumps(info, indent=2))
    return info


def teacher_agent(track: str, file: Path | None) -> Any:
    """The frozen teacher of ``track``: with its probe (or none), or fine-tuned."""
    from agora.models.transformer import minilm_teacher

    if track == "fine-tuned":
        return minilm_teacher(lower_layers=TEACHER_LOWER, weights=file)
    return minilm_teacher(lower_layers=TEACHER_LOWER, probe=file)


# -- one run ---------------------------------------------------------------------------------


def build_graph(method: Method, track: str, teacher_file: Path | None,
                student_layers: int = STUDENT_LAYERS) -> Graph:  # fmt: skip
    """The frozen teacher of ``track`` and the student (2 layers unless ``student_layers``
    says otherwise, split after its first), on token messages."""
    from agora.models.transformer import minilm_student

    teacher = teacher_agent(track, teacher_file)
    student = minilm_student(num_layers=student_layers, lower_layers=STUDENT_LOWER)
    graph = Graph(
        [teacher, student], message_dim=MESSAGE_DIM, codec="token", codec_hidden=CODEC_HIDDEN
    )
    if method.protocols:
        graph.add_edge("student", "teacher", **method.edge())
    return graph


def train_student(
    splits: dict[str, Any],
    method: Method,
    seed: int,
    track: str,
    teacher_file: Path | None,
    budget: TextBudget,
    cache: bool = True,
    balance: bool = False,
) -> dict[str, Any]:
    """One student: validation and test accuracy at the best validation epoch."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    if track == "probe" and not {"logit", "hybrid"} & set(method.protocols):
        teacher_file = None  # only LD and Hybrid read the probe's predictions
    graph = build_graph(method, track, teacher_file)
    config = FitConfig(
        epochs=budget.epochs, batch_size=budget.batch_size, lr=method.lr, seed=seed,
        metric="student/accuracy", group_by_length=True, cache_frozen=cache,
        balance_losses=balance, progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    test = evaluate(graph, splits["test"], batch_size=128)
    return {
        "method": method.name,
        "setting": method.describe(),
        "track": track,
        "balance": balance,
        "seed": seed,
        "valid_accuracy": result.metrics["student/accuracy"],
        "test_accuracy": test["student/accuracy"],
        "teacher_test_accuracy": test.get("teacher/accuracy"),
        "best_step": result.best_step,
        "steps": result.steps,
        "epoch_seconds": result.epoch_seconds,
        "seconds": time.perf_counter() - started,
    }


_DATA_DIR: str | None = None  # set in each worker process
_SPLITS: dict[str, Any] = {}  # each worker's tokenised data, by budget

# one run: (method, seed, track, the teacher's file, balance the losses?, budget)
Task = tuple[Method, int, str, "str | None", bool, TextBudget]


def _init_worker(data_dir: str | None) -> None:
    global _DATA_DIR
    _DATA_DIR = data_dir


def _splits(budget: TextBudget) -> dict[str, Any]:
    key = json.dumps(asdict(budget))
    if key not in _SPLITS:
        _SPLITS[key] = task_data(budget, _DATA_DIR)
    return _SPLITS[key]


def _run_task(task: Task) -> dict[str, Any]:
    method, seed, track, file, balance, budget = task
    return train_student(_splits(budget), method, seed, track, Path(file) if file else None,
                         budget, balance=balance)  # fmt: skip


def _key(task: Task) -> str:
    """Runs with equal keys train identically: Scratch is the same on both tracks."""
    method, seed, track, _, balance, _ = task
    track = track if method.protocols else "-"
    balanced = BALANCER if balance else False
    return json.dumps([list(method.protocols), method.describe(), seed, track, balanced])


class Tuner:
    """Runs (method, seed) on a track, reading back finished ones from the store, and
    searches a setting on validation with seed 0 (every search kept for the page)."""

    def __init__(self, runner: Runner, store: RunStore, budget: TextBudget,
                 files: dict[str, str], max_widen: int) -> None:  # fmt: skip
        self.runner, self.store, self.budget, self.files = runner, store, budget, files
        self.max_widen = max_widen
        self.searches: list[dict[str, Any]] = []
        self.rows: list[dict] = []

    def runs(self, methods: Sequence[Method], seeds: Sequence[int], track: str, label: str,
             balance: bool = False) -> list[dict]:  # fmt: skip
        tasks = [(m, seed, track, self.files[track], balance, self.budget)
                 for seed in seeds for m in methods]  # fmt: skip
        rows = run_all(
            self.runner, _run_task, tasks, self.store, _key, label,
            cost=lambda t: (1 + t[0].rounds) * (1 + len(t[0].protocols)),
        )  # fmt: skip
        return [{**row, "method": t[0].name, "track": track} for t, row in zip(tasks, rows)]

    def search(self, make: Callable[[float], Method], values: Sequence[float], param: str,
               track: str, label: str, balance: bool = False) -> Method:  # fmt: skip
        """The best of ``make(v)`` by validation accuracy (seed 0), the grid widened by 3
        past an edge choice (:data:`MAX_WIDEN` times at most)."""

        def score(todo: list[float]) -> list[float]:
            rows = self.runs([make(v) for v in todo], [0], track, f"{label}: {param}", balance)
            self.rows += rows
            return [row["valid_accuracy"] for row in rows]

        values, scores, best, edge = widening_search(
            values, score, lambda v, up: v * 3 if up else v / 3, self.max_widen, max
        )
        self.searches.append({
            "method": label.removeprefix(f"{track} "),
            "track": track if make(best).protocols else "both",
            "param": param, "grid": values,
            "scores": [scores[v] for v in values], "chosen": best, "on_edge": edge,
            "setting": make(best).describe(),
        })  # fmt: skip
        return make(best)


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Plan:
    seeds: list[int]
    budget: TextBudget
    teacher: TeacherBudget = field(default_factory=TeacherBudget)
    lrs: Sequence[float] = LRS
    weights: Sequence[float] = WEIGHTS
    balanced: Sequence[float] = BALANCED
    rounds: Sequence[int] = ROUNDS
    max_widen: int = MAX_WIDEN
    cache_epochs: int = 2
    cache_examples: int = 1000
    notes: list[str] = field(default_factory=list)


def quick_plan() -> Plan:
    """A smoke test: tiny slices, one seed, one epoch, one grid point, no widening."""
    budget = TextBudget(train_size=64, valid_size=32, max_length=16, epochs=1, test_size=32)
    teacher = TeacherBudget(train_size=128, epochs=1, evals_per_epoch=1)
    return Plan(
        seeds=[0], budget=budget, teacher=teacher, lrs=LRS[:1], weights=WEIGHTS[:1],
        balanced=BALANCED[:1], rounds=(0, 1), max_widen=0, cache_epochs=1, cache_examples=32,
        notes=["--quick: 64 training sentences, 1 seed, 1 epoch: a smoke test, not a result"],
    )  # fmt: skip


def cache_timing(
    splits: dict[str, Any], probe: Path, budget: TextBudget, epochs: int, examples: int
) -> dict:
    """Seconds per epoch of TD (k = 1) with and without the frozen teacher's state cache, on
    the first ``examples`` training sentences."""
    td = method("TD", 0.1, rounds=1, lr=LRS[0])
    train = splits["train"]
    timed = {**splits, "train": train.subset(range(min(examples, len(train))))}
    seconds: dict[str, Any] = {"examples": len(timed["train"])}
    for cache in (True, False):
        row = train_student(
            timed, td, 0, "probe", probe, replace(budget, epochs=epochs), cache=cache
        )
        seconds["with_cache" if cache else "without_cache"] = row["epoch_seconds"]
    return seconds


def tune(tuner: Tuner, plan: Plan) -> dict[str, dict[str, Method]]:
    """The learning rate with Scratch, then every method's weight on each track."""
    scratch = tuner.search(lambda v: method("Scratch", lr=v), plan.lrs, "lr", "probe", "Scratch")
    lr = scratch.lr
    chosen: dict[str, dict[str, Method]] = {"": {"Scratch": scratch}}
    for track in TRACKS:
        chosen[track] = {}
        for name in METHODS[1:]:
            rounds = 1 if name == "TD" else 0
            chosen[track][name] = tuner.search(
                lambda v, n=name, k=rounds: method(n, v, lr=lr, rounds=k), plan.weights,
                "weight", track, f"{track} {name}",
            )  # fmt: skip
        balanced = chosen[track]["TD balanced"] = tuner.search(
            lambda v: method("TD", v, lr=lr, rounds=1), plan.balanced, "weight", track,
            f"{track} TD balanced", balance=True,
        )  # fmt: skip
        # then interact alone: its own weight, the consistency terms kept at that choice
        chosen[track]["TD balanced, interact"] = tuner.search(
            lambda v, m=balanced: m.set("interact", v), plan.balanced, "interact", track,
            f"{track} TD balanced, interact", balance=True,
        )  # fmt: skip
    return chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark: the teachers, the cache timing, the tuning and every method.

    ``--train-size`` (``all``: all of train.tsv but validation), ``--epochs`` and
    ``--teacher-train-size`` set the budget; the defaults are the CPU subset."""
    # the teachers and the cache timing run here, before the workers start: on every core
    torch.set_num_threads(args.workers * args.threads)
    started = time.perf_counter()
    size = None if args.train_size == "all" else int(args.train_size)
    teacher_size = None if args.teacher_train_size == "all" else int(args.teacher_train_size)
    plan = quick_plan() if args.quick else Plan(
        list(range(args.seeds)), TextBudget(train_size=size, epochs=args.epochs),
        TeacherBudget(train_size=teacher_size),
    )  # fmt: skip
    budget = plan.budget
    store = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                     asdict(budget))  # fmt: skip
    timings: dict[str, float] = {}

    clock = time.perf_counter()
    splits = task_data(budget, args.data_dir)
    folder = Path(args.cache_dir) if args.cache_dir else Path(args.out) / ".teachers"
    probe = folder / f"minilm-probe-{budget.train_size}-{budget.max_length}.safetensors"
    probe_info = train_probe(teacher_agent("probe", None), splits, probe)
    timings["teacher probe"] = time.perf_counter() - clock
    clock = time.perf_counter()
    t = plan.teacher
    tuned = folder / (f"minilm-finetuned-{t.train_size}-{budget.max_length}-e{t.epochs}-"
                      f"lr{t.lr:g}.safetensors")  # fmt: skip
    tuned_info = finetune_teacher(budget, plan.teacher, tuned, args.data_dir)
    timings["teacher fine-tuning"] = tuned_info["seconds"]
    files = {"probe": str(probe), "fine-tuned": str(tuned)}
    teachers = {
        track: {
            split: agent_accuracy(teacher_agent(track, Path(files[track])), splits[split])
            for split in ("valid", "test")
        }
        for track in TRACKS
    }

    clock = time.perf_counter()
    cache = cache_timing(splits, probe, budget, plan.cache_epochs, plan.cache_examples)
    timings["state cache timing"] = time.perf_counter() - clock

    with Runner(args.workers, args.threads, _init_worker, (args.data_dir,)) as runner:
        tuner = Tuner(runner, store, budget, files, plan.max_widen)
        clock = time.perf_counter()
        chosen = tune(tuner, plan)
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        rows = tuner.runs([chosen[""]["Scratch"]], plan.seeds, "probe", "Scratch")
        rows = [{**row, "track": ""} for row in rows]
        for track in TRACKS:
            td = chosen[track].pop("TD")
            balanced = [replace(chosen[track].pop(name), name=name) for name in BALANCED_TD]
            methods = [*chosen[track].values()]
            methods += [replace(td, name=f"TD k={k}", rounds=k) for k in plan.rounds]
            rows += tuner.runs(methods, plan.seeds, track, f"{track} methods")
            rows += tuner.runs(balanced, plan.seeds, track, f"{track} TD balanced", balance=True)
            chosen[track].update({m.name: m for m in [*methods, *balanced]})
        timings["methods"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return {
        **stamp(args),
        "seeds": plan.seeds,
        "budget": asdict(budget),
        "teacher_budget": asdict(plan.teacher),
        "grid": {
            "lr": list(plan.lrs),
            "weight": list(plan.weights),
            "balanced": list(plan.balanced),
            "rounds": list(plan.rounds),
            "max_widen": plan.max_widen,
        },
        "chosen": {track: {n: m.describe() for n, m in ms.items()} for track, ms in chosen.items()},
        "searches": tuner.searches,
        "probe": probe_info,
        "finetuned": tuned_info,
        "teachers": teachers,
        "sizes": {name: len(split) for name, split in splits.items()},
        "mean_tokens": {name: sum(split.lengths) / len(split) for name, split in splits.items()},
        "cache": cache,
        "rows": rows,
        "tuning_rows": tuner.rows,
        "timings": timings,
        "notes": plan.notes,
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--train-size``, ``--epochs`` and ``--teacher-train-size``: the budget."""
    parser.add_argument(
        "--train-size", default="2000",
        help="the student's training sentences, or 'all' (default: 2000, the CPU subset)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument(
        "--teacher-train-size", default="20000",
        help="the fine-tuned teacher's training sentences, or 'all' (default: 20000)",
    )  # fmt: skip


def check(args: argparse.Namespace) -> None:
    """The budget's values, the text extra and the data, before anything trains."""
    if args.epochs < 1:
        raise BenchmarkError("--epochs must be at least 1")
    for option, value in (("--train-size", args.train_size),
                          ("--teacher-train-size", args.teacher_train_size)):  # fmt: skip
        if value != "all" and not (value.isdigit() and int(value)):
            raise BenchmarkError(f"{option} must be a positive number or 'all', got {value!r}")
    try:
        from agora.data.download import DataError
        from agora.data.sst2 import find_sst2
        from agora.models.transformer import minilm_path

        minilm_path()
        find_sst2(args.data_dir)
    except ImportError as error:
        raise BenchmarkError(str(error)) from None
    except DataError as error:
        raise BenchmarkError(str(error)) from None
    except OSError as error:
        raise BenchmarkError(
            f"SST-2 is not here and could not be downloaded ({error}); set AGORA_DATA_DIR "
            "to a folder holding sst2/, or pass --data-dir"
        ) from None
