"""The text experiment: all-MiniLM-L6-v2 (frozen) teaches a 2-layer student SST-2.

The counterpart of the paper's ViT experiment (appendix 6.2): a pre-trained foundation model
without a head for the downstream labels teaches a student of the same architecture with
fewer layers, initialised from its embeddings and first layers. Messages are per token
(``[B, T, m_dim]``), and padding never enters a loss.

Methods: Scratch (the student alone), LD, FD, FitNet, Hybrid and TD with 0, 1 and 2 rounds.
LD and Hybrid need the teacher's predictions: they come from a **linear probe** trained on
the downstream train split on top of the frozen teacher's mean-pooled last layer
(:func:`train_probe`), which is also the page's reference row. The student's learning rate
is chosen with Scratch, then each distillation weight (TD's with k = 1), all on validation
with seed 0, before any test number is read.

``python -m benchmarks text [--quick]`` writes ``text.md``, ``text.json`` and
``text-runs.jsonl`` (finished runs, so a stopped benchmark resumes) into ``--out`` (default
``docs/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from agora.graph import Graph
from agora.loaders import eval_loader
from agora.train import FitConfig, evaluate, fit
from benchmarks.harness import BenchmarkError, Runner, RunStore, run_all, stamp
from benchmarks.movielens.task import Method, method

TEACHER_LOWER = 3  # the teacher's split: embeddings + 3 layers | 3 layers
STUDENT_LAYERS, STUDENT_LOWER = 2, 1  # the student's: embeddings + 1 layer | 1 layer
MESSAGE_DIM, CODEC_HIDDEN = 256, 256

METHODS = ("Scratch", "LD", "FD", "FitNet", "Hybrid", "TD")
PROTOCOLS = {"Scratch": (), "LD": ("logit",), "FD": ("feature",), "FitNet": ("fitnet",),
             "Hybrid": ("hybrid",), "TD": ("talk",)}  # fmt: skip
LRS = (1e-4, 3e-4)  # the student's learning rate, chosen with Scratch
WEIGHTS = (0.1, 1.0)  # each distillation weight; TD's with k = 1
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
    train_x, train_y = pooled_features(teacher, splits["train"])
    valid_x, valid_y = pooled_features(teacher, splits["valid"])
    best: tuple[float, float, dict[str, torch.Tensor]] | None = None
    for decay in decays:
        torch.manual_seed(0)
        linear = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
        optimizer = torch.optim.LBFGS(
            linear.parameters(), max_iter=500, line_search_fn="strong_wolfe"
        )

        def closure(linear=linear, optimizer=optimizer, decay=decay) -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(train_x), train_y) + decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            accuracy = (linear(valid_x).argmax(-1) == valid_y).float().mean().item()
        if best is None or accuracy > best[0]:
            best = (
                accuracy,
                decay,
                {k: v.detach().clone() for k, v in linear.state_dict().items()},
            )
    assert best is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({f"linear.{k}": v for k, v in best[2].items()}, str(tmp))
    os.replace(tmp, path)
    return {"valid_accuracy": best[0], "decay": best[1]}


# -- one run ---------------------------------------------------------------------------------


def build_graph(method: Method, probe: Path | None) -> Graph:
    """Frozen MiniLM teacher (with its probe) and the 2-layer student, on token messages."""
    from agora.models.transformer import minilm_student, minilm_teacher

    teacher = minilm_teacher(lower_layers=TEACHER_LOWER, probe=probe)
    student = minilm_student(
        num_layers=STUDENT_LAYERS, lower_layers=STUDENT_LOWER, **method.learner()
    )
    graph = Graph(
        [teacher, student], message_dim=MESSAGE_DIM, codec="token", codec_hidden=CODEC_HIDDEN
    )
    if method.protocols:
        graph.add_edge("student", "teacher", method.protocols, **method.edge())
    return graph


def train_student(
    splits: dict[str, Any],
    method: Method,
    seed: int,
    probe: Path | None,
    budget: TextBudget,
    cache: bool = True,
) -> dict[str, Any]:
    """One student: validation and test accuracy at the best validation epoch."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    logits = {"logit", "hybrid"} & set(method.protocols)  # only these read the probe's predictions
    graph = build_graph(method, probe if logits else None)
    config = FitConfig(
        epochs=budget.epochs, batch_size=budget.batch_size, lr=method.lr, seed=seed,
        metric="student/accuracy", group_by_length=True, cache_frozen=cache,
        progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    test = evaluate(graph, splits["test"], batch_size=128)
    return {
        "method": method.name,
        "setting": method.describe(),
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


def _init_worker(data_dir: str | None) -> None:
    global _DATA_DIR
    _DATA_DIR = data_dir


def _splits(budget: TextBudget) -> dict[str, Any]:
    key = json.dumps(asdict(budget))
    if key not in _SPLITS:
        _SPLITS[key] = task_data(budget, _DATA_DIR)
    return _SPLITS[key]


def _run_task(task: tuple[Method, int, str | None, TextBudget]) -> dict[str, Any]:
    method, seed, probe, budget = task
    return train_student(_splits(budget), method, seed, Path(probe) if probe else None, budget)


def _key(task: tuple[Method, int, str | None, TextBudget]) -> str:
    return json.dumps([list(task[0].protocols), task[0].describe(), task[1]])


def _run_all(runner, methods, seeds, probe, budget, label, store: RunStore) -> list[dict]:
    """Every (method, seed); a finished run (same key) is read back instead of rerun."""
    tasks = [(method, seed, str(probe), budget) for seed in seeds for method in methods]
    rows = run_all(
        runner, _run_task, tasks, store, _key, label,
        cost=lambda t: (1 + t[0].rounds) * (1 + len(t[0].protocols)),
    )  # fmt: skip
    return [{**row, "method": task[0].name} for task, row in zip(tasks, rows)]


def _best(methods: Sequence[Method], rows: list[dict]) -> Method:
    """The method of best validation accuracy with seed 0 (the first of equals)."""
    scores = {
        (row["method"], row["setting"]): row["valid_accuracy"] for row in rows if row["seed"] == 0
    }
    return max(methods, key=lambda m: scores[(m.name, m.describe())])


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Plan:
    seeds: list[int]
    budget: TextBudget
    lrs: Sequence[float] = LRS
    weights: Sequence[float] = WEIGHTS
    rounds: Sequence[int] = ROUNDS
    cache_epochs: int = 2
    cache_examples: int = 1000
    notes: list[str] = field(default_factory=list)


def quick_plan() -> Plan:
    """A smoke test: tiny slices, one seed, one epoch, one grid point."""
    budget = TextBudget(train_size=64, valid_size=32, max_length=16, epochs=1, test_size=32)
    return Plan(
        seeds=[0], budget=budget, lrs=LRS[:1], weights=WEIGHTS[:1], rounds=(0, 1),
        cache_epochs=1, cache_examples=32,
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
        row = train_student(timed, td, 0, probe, replace(budget, epochs=epochs), cache=cache)
        seconds["with_cache" if cache else "without_cache"] = row["epoch_seconds"]
    return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark: the probe, the cache timing, the tuning and every method.

    ``--train-size`` (``all``: all of train.tsv but validation) and ``--epochs`` set the
    budget; the defaults are the CPU subset."""
    from agora.models.transformer import minilm_teacher

    # the probe and the cache timing run here, before the workers start: on every core
    torch.set_num_threads(args.workers * args.threads)
    started = time.perf_counter()
    train_size = None if args.train_size == "all" else int(args.train_size)
    budget = TextBudget(train_size=train_size, epochs=args.epochs)
    plan = quick_plan() if args.quick else Plan(list(range(args.seeds)), budget)
    budget = plan.budget
    store = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                     asdict(budget))  # fmt: skip
    timings: dict[str, float] = {}

    clock = time.perf_counter()
    splits = task_data(budget, args.data_dir)
    probes = Path(args.cache_dir) if args.cache_dir else Path(args.out) / ".teachers"
    probe = probes / f"minilm-probe-{budget.train_size}-{budget.max_length}.safetensors"
    teacher = minilm_teacher(lower_layers=TEACHER_LOWER)
    probe_info = train_probe(teacher, splits, probe)
    reference = agent_accuracy(
        minilm_teacher(lower_layers=TEACHER_LOWER, probe=probe), splits["test"]
    )
    timings["teacher probe"] = time.perf_counter() - clock

    clock = time.perf_counter()
    cache = cache_timing(splits, probe, budget, plan.cache_epochs, plan.cache_examples)
    timings["state cache timing"] = time.perf_counter() - clock

    with Runner(args.workers, args.threads, _init_worker, (args.data_dir,)) as runner:
        clock = time.perf_counter()
        scratch = [method("Scratch", lr=lr) for lr in plan.lrs]
        tuning = _run_all(runner, scratch, [0], probe, budget, "tuning lr", store)
        lr = _best(scratch, tuning).lr
        candidates = {
            name: [method(name, w, lr=lr, rounds=1 if name == "TD" else 0) for w in plan.weights]
            for name in METHODS[1:]
        }
        everything = [m for ms in candidates.values() for m in ms]
        tuning += _run_all(runner, everything, [0], probe, budget, "tuning weights", store)
        chosen = {"Scratch": _best(scratch, tuning)}
        chosen.update({name: _best(ms, tuning) for name, ms in candidates.items()})
        timings["tuning (validation, seed 0)"] = time.perf_counter() - clock

        clock = time.perf_counter()
        td = chosen.pop("TD")
        main = [*chosen.values()]
        main += [replace(td, name=f"TD k={k}", rounds=k) for k in plan.rounds]
        rows = _run_all(runner, main, plan.seeds, probe, budget, "methods", store)
        timings["methods"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return {
        **stamp(args),
        "seeds": plan.seeds,
        "budget": asdict(budget),
        "grid": {"lr": list(plan.lrs), "weight": list(plan.weights), "rounds": list(plan.rounds)},
        "chosen": {m.name: m.describe() for m in main},
        "probe": probe_info,
        "teacher_test_accuracy": reference,
        "sizes": {name: len(split) for name, split in splits.items()},
        "mean_tokens": {name: sum(split.lengths) / len(split) for name, split in splits.items()},
        "cache": cache,
        "rows": rows,
        "tuning_rows": tuning,
        "timings": timings,
        "notes": plan.notes,
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--train-size`` and ``--epochs``: the data and training budget."""
    parser.add_argument(
        "--train-size", default="2000",
        help="training sentences, or 'all' (default: 2000, the CPU subset)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")


def check(args: argparse.Namespace) -> None:
    """The budget's values, the text extra and the data, before anything trains."""
    if args.epochs < 1:
        raise BenchmarkError("--epochs must be at least 1")
    if args.train_size != "all" and not (args.train_size.isdigit() and int(args.train_size)):
        raise BenchmarkError(
            f"--train-size must be a positive number or 'all', got {args.train_size!r}"
        )
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
