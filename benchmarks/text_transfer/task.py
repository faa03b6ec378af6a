"""SST-2 with a transfer set: the fine-tuned MiniLM teacher teaches the 2-layer student on
unlabelled sentences as well as on its 2,000 labelled ones.

The teacher, the student, the labelled, validation and test sentences are the fine-tuned
track's of ``python -m benchmarks text`` (:mod:`benchmarks.text.task`). The **transfer set** is
sentences of SST-2's train.tsv that neither the student's labelled or validation sentences nor
the teacher's own training sentences hold (:func:`agora.data.sst2.sst2_transfer`); the
teacher's outputs on it come from the teacher store, filled once before any run.

Every run takes the same number of steps: ``epochs`` passes over the whole transfer set, a
labelled and a transfer batch a step (an arm that trains on labels alone takes as many
sentences a step). Arms: Scratch (labels only), **self-training** (the teacher's hard labels on
the transfer set, as labels), LD, FD, FitNet, Hybrid, TD (k tuned over 0..3), TD and LD on one
edge, and **all labels** (the transfer set's real labels: the ceiling a perfect teacher would
approach). Weights and learning rates are searched on validation with seed 0 (grids widened
past an edge choice), the step by the best of ``evals`` validation scores; then every arm runs
every seed, and LD and TD run on smaller transfer sets, seed 0, for the figure.

``python -m benchmarks text-transfer [--quick]`` writes ``text-transfer.md``, ``.json``,
``.png`` and ``-runs.jsonl`` (finished runs, so a stopped benchmark resumes) into ``--out``;
``--student-layers 3`` gives the student a third layer, ``--transfer all`` every remaining
sentence (their runs are stamped apart in the run log).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from agora.folder import written_in_place
from agora.store import fill
from agora.train import FitConfig, evaluate, fit
from benchmarks.harness import BenchmarkError, Runner, RunStore, run_all, stamp, widening_search
from benchmarks.movielens.task import Method, method
from benchmarks.text.task import (
    STUDENT_LAYERS,
    TeacherBudget,
    TextBudget,
    agent_accuracy,
    build_graph,
    finetune_teacher,
    teacher_agent,
)
from benchmarks.text.task import (
    check as text_check,
)

ARMS = ("Scratch", "Self-training", "LD", "FD", "FitNet", "Hybrid", "TD", "TD + LD", "All labels")
LABELS = {"Self-training": "teacher", "All labels": "real"}  # arms that train on labels alone
GRIDS: dict[str, tuple[float, ...]] = {  # first grids; a choice on an edge widens by 3
    "lr": (1e-4, 3e-4),
    "LD": (0.3, 1.0, 3.0),
    "temperature": (1.0, 3.0),  # LD's, searched after its weight and learning rate
    "FD": (0.03, 0.1),
    "FitNet": (0.03, 0.1),
    "Hybrid": (0.1, 0.3, 1.0),
    "TD": (0.03, 0.1, 0.3),
    "TD + LD": (0.01, 0.03, 0.1),
}
ROUNDS = (0, 1, 2, 3)
MAX_WIDEN = 1
FIGURE = ("Scratch", "LD", "TD")  # the arms drawn against the transfer set's size
DIGEST = 16  # hex digits of the teacher's digest (agora.store.agent_digest) a run records


@dataclass
class Budget:
    """The data and training budget of every run (the CPU budget by default)."""

    train_size: int = 2000
    valid_size: int = 1000
    max_length: int = 64
    test_size: int | None = None
    teacher_train_size: int = 10000
    transfer_size: int | None = 20000  # None: every remaining sentence
    figure_sizes: tuple[int, ...] = (0, 2000, 5000)
    epochs: int = 2  # passes over the whole transfer set: every run's steps
    batch_size: int = 32  # labelled sentences a step
    transfer_batch_size: int = 64  # transfer sentences a step
    evals: int = 4  # validation scores an epoch, evenly spaced; the run keeps its best
    steps: int = 0  # set from the transfer set's size: epochs * its batches
    timing_sentences: int = 4000
    timing_repeats: int = 3
    student_layers: int = STUDENT_LAYERS  # the student's layers, split after its first

    def text(self) -> TextBudget:
        return TextBudget(self.train_size, self.valid_size, self.max_length, self.epochs,
                          self.batch_size, self.test_size)  # fmt: skip


def quick_budget() -> Budget:
    """A smoke test: tiny slices, one epoch."""
    return Budget(
        train_size=64, valid_size=32, max_length=16, test_size=32, teacher_train_size=128,
        transfer_size=256, figure_sizes=(0,), epochs=1, batch_size=16, transfer_batch_size=32,
        evals=2, timing_sentences=64, timing_repeats=1,
    )  # fmt: skip


# -- the data, in each worker --------------------------------------------------------------------


_CONTEXT: dict[str, Any] = {}  # each worker's: the teacher file, the store folder, the data


def _init_worker(data_dir: str | None, teacher_file: str, store_dir: str, pseudo: str,
                 digest: str) -> None:  # fmt: skip
    _CONTEXT.update(data_dir=data_dir, teacher=teacher_file, store=store_dir, pseudo=pseudo,
                    digest=digest)  # fmt: skip


def task_data(budget: Budget, data_dir: str | None) -> dict[str, Any]:
    """The labelled, validation, test and transfer sentences."""
    from agora.data.sst2 import sst2_task, sst2_transfer

    splits = sst2_task(budget.train_size, budget.valid_size, budget.max_length,
                       budget.test_size, data_dir)  # fmt: skip
    splits["transfer"] = sst2_transfer(budget.transfer_size, budget.teacher_train_size,
                                       budget.valid_size, budget.max_length, data_dir)  # fmt: skip
    return splits


def _data(budget: Budget) -> dict[str, Any]:
    fields = ("train_size", "valid_size", "max_length", "test_size", "teacher_train_size",
              "transfer_size")  # fmt: skip
    key = json.dumps([getattr(budget, name) for name in fields])
    if key not in _CONTEXT:
        _CONTEXT[key] = task_data(budget, _CONTEXT.get("data_dir"))
    return _CONTEXT[key]


def _union(splits: dict[str, Any], size: int, labels: str, pseudo: torch.Tensor) -> Any:
    """The labelled sentences and the first ``size`` transfer sentences, labelled by the
    teacher (``"teacher"``) or by SST-2 (``"real"``)."""
    from agora.data.sst2 import TextDataset

    train, transfer = splits["train"], splits["transfer"]
    extra = transfer.labels[:size] if labels == "real" else pseudo[:size]
    return TextDataset(train.ids + transfer.ids[:size], torch.cat([train.labels, extra]),
                       train.pad_id)  # fmt: skip


# -- one run -------------------------------------------------------------------------------------


# one run: (method, labels: "" | "teacher" | "real", transfer sentences, seed, budget)
Task = tuple[Method, str, int, int, Budget]


def config(budget: Budget, lr: float, seed: int, store: str | None, batches: int,
           union: bool) -> FitConfig:  # fmt: skip
    """Every run's FitConfig: ``budget.steps`` steps whatever an epoch holds (``batches``),
    ``budget.evals`` evaluations an epoch of the transfer set; an arm on labels alone takes a labelled and a transfer
    batch's worth of sentences a step."""
    batch = budget.batch_size + (budget.transfer_batch_size if union else 0)
    return FitConfig(
        epochs=-(-budget.steps // batches), max_steps=budget.steps, batch_size=batch,
        transfer_batch_size=budget.transfer_batch_size, lr=lr, seed=seed,
        metric="student/accuracy", group_by_length=True,
        eval_every=-(-budget.steps // (budget.evals * budget.epochs)), teacher_store=store is not None,
        store_dir=store, progress=False, log_every=10**9,
    )  # fmt: skip


def train_student(task: Task) -> dict[str, Any]:
    """One student: validation and dev accuracy at its best validation score."""
    arm, labels, size, seed, budget = task
    started = time.perf_counter()
    splits = _data(budget)
    torch.manual_seed(seed)
    graph = build_graph(arm, "fine-tuned", Path(_CONTEXT["teacher"]), budget.student_layers)
    if labels:
        pseudo = load_file(_CONTEXT["pseudo"])["labels"]
        train, transfer = _union(splits, size, labels, pseudo), None
        batches = -(-len(train) // (budget.batch_size + budget.transfer_batch_size))
    else:
        train = splits["train"]
        transfer = splits["transfer"].subset(range(size)) if size else None
        batches = -(
            -(size or len(train)) // (budget.transfer_batch_size if size else budget.batch_size)
        )
    fit_config = config(budget, arm.lr, seed, _CONTEXT["store"], batches, bool(labels))
    result = fit(graph, train, splits["valid"], fit_config, transfer=transfer)
    test = evaluate(graph, splits["test"], batch_size=128, agents=["student"])
    talks = "talk" in arm.protocols and not labels  # where its terms pull, at the best step
    return {
        "method": arm.name, "setting": arm.describe(), "labels": labels, "transfer": size,
        "seed": seed, "valid_accuracy": result.metrics["student/accuracy"],
        "test_accuracy": test["student/accuracy"], "best_step": result.best_step,
        "steps": result.steps, "epoch_seconds": result.epoch_seconds,
        "seconds": time.perf_counter() - started, "teacher": _CONTEXT["digest"],
        **({"pull": pull(graph, train, transfer, budget)} if talks else {}),
    }  # fmt: skip


PULL_BATCHES = 4


def pull(graph: Any, train: Any, transfer: Any, budget: Budget) -> dict[str, dict[str, float]]:
    """Where the student's loss terms pull at its best step (the weights ``fit`` kept): each
    term's gradient on the student's backbone, its cosine with the task term's (``alignment``)
    and its norm over the task term's (``norm``), means over the first ``PULL_BATCHES``
    labelled batches, each beside a transfer batch as in training
    (:mod:`agora.analysis.gradients`)."""
    from agora.analysis.gradients import relative, term_alignment, term_gradients

    torch.manual_seed(0)
    found: dict[str, dict[str, list[float]]] = {"alignment": {}, "norm": {}}
    for i in range(PULL_BATCHES):
        x, y = train.__getitems__(range(i * budget.batch_size, (i + 1) * budget.batch_size))
        heard = None
        if transfer is not None:
            rows = range(i * budget.transfer_batch_size, (i + 1) * budget.transfer_batch_size)
            heard = transfer.__getitems__(rows)[0]
        measured = {
            "alignment": term_alignment(graph, x, y, transfer=heard)["student"],
            "norm": relative(term_gradients(graph, x, y, transfer=heard))["student"],
        }
        for kind, terms in measured.items():
            for term, value in terms.items():
                found[kind].setdefault(term, []).append(value)
    return {kind: {term: statistics.fmean(v) for term, v in terms.items()}
            for kind, terms in found.items()}  # fmt: skip


def _key(task: Task) -> str:
    arm, labels, size, seed, _ = task
    return json.dumps([list(arm.protocols), arm.describe(), labels, size, seed])


class Tuner:
    """Runs arms (reading finished runs back from the store) and searches a setting on
    validation with seed 0 on the tuning transfer subset."""

    def __init__(self, runner: Runner, store: RunStore, budget: Budget, max_widen: int,
                 finished: bool = False) -> None:  # fmt: skip
        self.runner, self.store, self.budget, self.max_widen = runner, store, budget, max_widen
        self.finished = finished  # read finished runs back, run nothing new
        self.searches: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.queue: list[Task] = []  # runs the plan needs later: they fill idle workers

    def later(self, arms: Sequence[tuple[Method, str]], seeds: Sequence[int], size: int,
              first: bool = False) -> None:  # fmt: skip
        """Runs the plan will need whatever comes next (an arm's other seeds, once it is
        chosen): a search that leaves a worker idle runs one of them beside its own; ``first``
        puts them before those queued earlier."""
        tasks = [(arm, labels, size, seed, self.budget) for seed in seeds for arm, labels in arms]
        self.queue = [*tasks, *self.queue] if first else [*self.queue, *tasks]

    def runs(self, arms: Sequence[tuple[Method, str]], seeds: Sequence[int],
             size: int | Sequence[int], label: str) -> list[dict[str, Any]]:  # fmt: skip
        """Every arm with every seed on ``size`` transfer sentences (or each of several
        sizes, all in one batch so that no worker waits for another size's longest run)."""
        sizes = [size] if isinstance(size, int) else list(size)
        tasks = [(arm, labels, n, seed, self.budget)
                 for n in sizes for seed in seeds for arm, labels in arms]  # fmt: skip
        if self.finished:
            tasks = [task for task in tasks if self.store.get(_key(task)) is not None]
        todo = {_key(t) for t in tasks if self.store.get(_key(t)) is None}
        spare = -len(todo) % self.runner.workers
        fillers = [t for t in self.queue if self.store.get(_key(t)) is None
                   and _key(t) not in todo][:spare]  # fmt: skip
        rows = run_all(
            self.runner, train_student, tasks + fillers, self.store, _key,
            label + "".join(f" (and {t[0].describe()}, seed {t[3]})" for t in fillers),
            cost=lambda t: (1 + 2 * t[0].rounds) * (1 + len(t[0].protocols)),
        )[: len(tasks)]  # fmt: skip
        # a run found under its key may have been a search's: it takes the arm's name
        return [{**row, "method": task[0].name} for task, row in zip(tasks, rows)]

    def search(self, name: str, make: Callable[[float], Method], values: Sequence[float],
               param: str, labels: str = "") -> Method:  # fmt: skip
        """The best of ``make(v)`` by validation accuracy, seed 0, the grid widened by 3 past
        an edge choice (``max_widen`` times at most; ``rounds`` does not widen)."""
        size = self.budget.transfer_size
        dev: dict[float, float] = {}  # for the page only: read after the choice, never for it

        def score(todo: list[float]) -> list[float]:
            rows = self.runs([(make(v), labels) for v in todo], [0], size, f"{name}: {param}")
            self.rows += rows
            found = {row["setting"]: row for row in rows}
            ran = {v: found[make(v).describe()] for v in todo if make(v).describe() in found}
            dev.update({v: row["test_accuracy"] for v, row in ran.items()})
            return [ran[v]["valid_accuracy"] if v in ran else -1.0 for v in todo]  # -1: not run

        def beyond(v: float, up: bool) -> float | None:
            further = v * 3 if up else v / 3
            ran = self.store.get(_key((make(further), labels, size, 0, self.budget)))
            return None if self.finished and ran is None else further  # --finished: what ran

        widen = 0 if param == "rounds" else self.max_widen
        values, scores, best, edge = widening_search(values, score, beyond, widen, max)
        if any(scores[v] < 0 for v in values):  # with --finished, some values have not run
            edge = None
        self.searches.append({
            "method": name, "param": param, "grid": values,
            "scores": [scores[v] for v in values], "dev": [dev.get(v) for v in values],
            "chosen": best,
            "on_edge": edge if edge is None or param != "rounds" else False,
            "setting": make(best).describe(),
        })  # fmt: skip
        return make(best)


def tune_and_run(tuner: Tuner, plan: Plan, full: int) -> tuple[dict[str, Any], list[dict]]:
    """Each arm of ``plan.arms`` tuned on validation (seed 0; LD's weight, learning rate, then
    its temperature), then run with every seed on the
    whole transfer set, in three groups so that a stopped benchmark has whole answers first:
    the labels and LD (Scratch, self-training, LD, all labels), then TD, then FD, FitNet,
    Hybrid and TD + LD (each distillation arm at LD's learning rate)."""
    chosen: dict[str, tuple[Method, str]] = {}
    rows: list[dict] = []

    def final(names: Sequence[str]) -> None:
        arms = [chosen[name] for name in names if name in chosen]
        rows.extend(tuner.runs(arms, plan.seeds, full, f"arms: {', '.join(names)}"))

    lrs, grids, others = plan.lrs, plan.grids, plan.seeds[1:]
    # the two searches on labels alone share their first grid's runs
    tuner.runs([(method("Scratch", lr=v), labels) for v in lrs for labels in ("", "teacher")],
               [0], full, "Scratch and self-training: lr")  # fmt: skip
    scratch = tuner.search("Scratch", lambda v: method("Scratch", lr=v), lrs, "lr")
    chosen["Scratch"] = (scratch, "")
    tuner.later([chosen["Scratch"]], others, full)
    selfish = tuner.search("Self-training", lambda v: method("Scratch", lr=v), lrs, "lr",
                           labels="teacher")  # fmt: skip
    chosen["Self-training"] = (replace(selfish, name="Self-training"), "teacher")
    chosen["All labels"] = (replace(selfish, name="All labels"), "real")
    tuner.later([chosen["Self-training"]], others, full)
    tuner.later([chosen["All labels"]], plan.seeds, full)
    ld = tuner.search("LD", lambda v: method("LD", v, lr=scratch.lr), grids["LD"], "weight")
    # most likely LD's final setting (its learning rate is searched next): its other seeds
    # take the idle workers first, and are wasted only if another learning rate wins
    tuner.later([(ld, "")], others, full, first=True)
    ld = tuner.search("LD", lambda v: ld.set("lr", v), lrs, "lr")
    ld = tuner.search("LD", lambda v: ld.set("temperature", v), grids["temperature"],
                      "temperature")  # fmt: skip
    chosen["LD"] = (ld, "")
    final(["Scratch", "Self-training", "LD", "All labels"])
    if "TD" not in plan.arms:
        return chosen, rows
    td = tuner.search("TD", lambda v: method("TD", v, lr=ld.lr, rounds=1), grids["TD"], "weight")
    td = tuner.search("TD", lambda v: td.set("rounds", int(v)), plan.rounds, "rounds")
    chosen["TD"] = (td, "")
    final(["TD"])
    for name in [n for n in ("FD", "FitNet", "Hybrid") if n in plan.arms]:
        found = tuner.search(name, lambda v, n=name: method(n, v, lr=ld.lr), grids[name], "weight")
        chosen[name] = (found, "")
        tuner.later([chosen[name]], others, full)  # the next search's idle worker runs them

    def both(v: float) -> Method:
        talk = [(w, v) for w, _ in td.weights]
        return Method("TD + LD", ("talk", "logit"), (*talk, ("logit", ld.weight("logit"))),
                      rounds=td.rounds, lr=ld.lr, temperature=ld.temperature)  # fmt: skip

    if "TD + LD" in plan.arms:
        chosen["TD + LD"] = (tuner.search("TD + LD", both, grids["TD + LD"], "weight"), "")
    final(["FD", "FitNet", "Hybrid", "TD + LD"])
    return chosen, rows


# -- the teacher, its store, and the store's cost ---------------------------------------------


def prepare_teacher(budget: Budget, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Fine-tune the teacher (or read it back), fill its stores on the labelled and transfer
    sentences, and keep its hard labels on the transfer set for self-training."""
    teacher_budget = TeacherBudget(train_size=budget.teacher_train_size)
    if args.quick:
        teacher_budget = TeacherBudget(train_size=budget.teacher_train_size, epochs=1,
                                       evals_per_epoch=1)  # fmt: skip
    t = teacher_budget
    file = folder / (f"minilm-finetuned-{t.train_size}-{budget.max_length}-e{t.epochs}-"
                     f"lr{t.lr:g}.safetensors")  # fmt: skip
    clock = time.perf_counter()
    info = finetune_teacher(budget.text(), teacher_budget, file, args.data_dir)
    info["read_back"] = time.perf_counter() - clock < 0.5 * info["seconds"]
    splits = task_data(budget, args.data_dir)
    teacher = teacher_agent("fine-tuned", file)
    store_dir = folder / "store"
    stores = {}
    for name in ("train", "transfer"):
        clock = time.perf_counter()
        store = fill(teacher, splits[name], store_dir, batch_size=128)
        stores[name] = {
            "examples": store.examples, "bytes": store.bytes, "path": str(store.path),
            "fill_seconds": store.manifest["seconds"],
            "filled_now": time.perf_counter() - clock > 0.5 * store.manifest["seconds"],
            "tokens": sum(splits[name].lengths),
        }  # fmt: skip
        if name == "transfer":
            rows = torch.arange(store.examples)
            logits = torch.cat([store.read("y", part) for part in rows.split(4096)])
    # what every run records of its teacher (the file's name can outlive a rebuilt teacher):
    # the digest of its weights, which filling the store has computed
    digest = store.manifest["agent_digest"][:DIGEST]
    pseudo = folder / f"pseudo-{Path(stores['transfer']['path']).name}.safetensors"
    with written_in_place(pseudo) as tmp:
        save_file({"labels": logits.argmax(-1).contiguous()}, str(tmp))
    transfer = splits["transfer"]
    accuracy = {
        split: agent_accuracy(teacher, splits[split]) for split in ("valid", "test")
    }  # fmt: skip
    accuracy["transfer_agreement"] = float((logits.argmax(-1) == transfer.labels).float().mean())
    return {
        "file": str(file), "digest": digest, "info": info, "stores": stores, "pseudo": str(pseudo),
        "store_dir": str(store_dir), "accuracy": accuracy,
        "sizes": {name: len(split) for name, split in splits.items()},
        "mean_tokens": {name: sum(s.lengths) / len(s) for name, s in splits.items()},
    }  # fmt: skip


def store_timing(budget: Budget, teacher: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Seconds per epoch, side by side in this process, of LD reading the store and of Scratch
    over as many sentences: ``timing_sentences`` transfer sentences at ``transfer_batch_size``
    beside labelled batches, against the student alone on the same number of labelled
    sentences a step (``batch_size + transfer_batch_size``). Also LD with the teacher run live
    (no store, no cache), once."""
    splits = task_data(budget, data_dir)
    size = min(budget.timing_sentences, len(splits["transfer"]))
    transfer = splits["transfer"].subset(range(size))
    steps = -(-size // budget.transfer_batch_size)
    per_step = budget.batch_size + budget.transfer_batch_size
    union = _union(splits, steps * per_step - len(splits["train"]), "real", None)
    file, store = Path(teacher["file"]), teacher["store_dir"]
    ld = method("LD", 1.0, lr=1e-4)

    def epoch(arm: Method, with_store: bool, labels: bool) -> float:
        torch.manual_seed(0)
        graph = build_graph(arm, "fine-tuned", file, budget.student_layers)
        cfg = config(replace(budget, steps=steps, evals=1), arm.lr, 0,
                     store if with_store else None, steps, labels)  # fmt: skip
        cfg = replace(cfg, cache_frozen=False, eval_every=None)
        data, extra = (union, None) if labels else (splits["train"], transfer)
        return fit(graph, data, None, cfg, transfer=extra).epoch_seconds[0]

    times: dict[str, list[float]] = {"LD, store": [], "Scratch": []}
    for _ in range(budget.timing_repeats):  # interleaved, so that a busy moment hits both
        times["LD, store"].append(epoch(ld, True, False))
        times["Scratch"].append(epoch(method("Scratch", lr=1e-4), False, True))
    times["LD, teacher live"] = [epoch(ld, False, False)]
    ratios = [a / b for a, b in zip(times["LD, store"], times["Scratch"])]
    return {"sentences": size, "steps": steps, "sentences_per_step": per_step,
            "seconds": times, "ratios": ratios, "ratio": statistics.median(ratios)}  # fmt: skip


# -- the benchmark -------------------------------------------------------------------------------


@dataclass
class Plan:
    seeds: list[int]
    budget: Budget
    lrs: Sequence[float] = GRIDS["lr"]
    grids: dict[str, Sequence[float]] = field(default_factory=lambda: dict(GRIDS))
    rounds: Sequence[int] = ROUNDS
    max_widen: int = MAX_WIDEN
    arms: Sequence[str] = ARMS
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The teacher and its store, the store's timing, the tuning, every arm, the figure."""
    torch.set_num_threads(args.workers * args.threads)
    started = time.perf_counter()
    if args.quick:
        quick = replace(quick_budget(), student_layers=args.student_layers)
        plan = Plan([0], quick, lrs=GRIDS["lr"][:1], rounds=(1,), max_widen=0,
                    arms=("Scratch", "Self-training", "LD", "TD", "All labels"),
                    notes=["--quick: tiny slices, 1 seed, 5 arms: a smoke test, not a result"])  # fmt: skip
        plan.grids = {name: values[:1] for name, values in GRIDS.items()}
    else:
        size = None if args.transfer == "all" else int(args.transfer)
        budget = Budget(transfer_size=size, epochs=args.epochs,
                        transfer_batch_size=args.transfer_batch_size,
                        student_layers=args.student_layers)  # fmt: skip
        plan = Plan(list(range(args.seeds)), budget, arms=_arms(args.arms))
    budget = plan.budget
    folder = Path(args.cache_dir) if args.cache_dir else Path(args.out) / ".teachers"
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    teacher = prepare_teacher(budget, args, folder)
    timings["teacher and its stores"] = time.perf_counter() - clock
    full = teacher["sizes"]["transfer"]
    budget = plan.budget = replace(
        budget, transfer_size=full, steps=budget.epochs * -(-full // budget.transfer_batch_size)
    )
    runs = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                    run_stamp(budget, Path(teacher["file"]).name))  # fmt: skip
    clock = time.perf_counter()
    timing = runs.get("store timing")  # measured once, like every run, and read back after
    if timing is None:
        timing = store_timing(budget, teacher, args.data_dir)
        runs.add("store timing", timing)
    timings["store timing"] = time.perf_counter() - clock
    initargs = (args.data_dir, teacher["file"], teacher["store_dir"], teacher["pseudo"],
                teacher["digest"])  # fmt: skip
    with Runner(args.workers, args.threads, _init_worker, initargs) as runner:
        tuner = Tuner(runner, runs, budget, plan.max_widen, args.finished)
        clock = time.perf_counter()
        chosen, rows = tune_and_run(tuner, plan, full)
        timings["arms (tuning, then every seed)"] = time.perf_counter() - clock
        clock = time.perf_counter()
        figure = [chosen[n] for n in FIGURE if n != "Scratch" and n in chosen]  # Scratch reads none
        sizes = [size for size in budget.figure_sizes if size < full]
        if sizes:
            rows += tuner.runs(
                figure, [0], sizes, f"figure: {', '.join(map(str, sizes))} sentences"
            )
        timings["figure"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    return {
        "other_budgets": other_budgets(runs, budget),
        **stamp(args), "seeds": plan.seeds, "budget": asdict(budget),
        "grid": {"lr": list(plan.lrs), **{k: list(v) for k, v in plan.grids.items()},
                 "rounds": list(plan.rounds), "max_widen": plan.max_widen},
        "chosen": {name: arm.describe() for name, (arm, _) in chosen.items()},
        "searches": tuner.searches, "teacher": teacher, "timing": timing, "rows": rows,
        "tuning_rows": tuner.rows, "timings": timings, "notes": plan.notes,
    }  # fmt: skip


def run_stamp(budget: Budget, teacher: str) -> dict[str, Any]:
    """What a run log's lines are stamped with: the budget and the teacher's file; the
    student's layers only when they are not the default 2 (so that the lines written before
    ``--student-layers`` existed still match)."""
    stamp = {**asdict(budget), "teacher": teacher}
    if budget.student_layers == STUDENT_LAYERS:
        del stamp["student_layers"]
    return stamp


def other_budgets(runs: RunStore, budget: Budget) -> list[dict[str, Any]]:
    """The runs an earlier invocation finished on the same data with another budget (other
    ``--epochs``, or another ``--student-layers``), from the run log: what fewer or more steps,
    or a smaller or larger student, gave each arm on the whole transfer set. Each budget keeps
    its student's layers, so that its runs are never read as this student's."""
    varied = ("epochs", "steps", "evals", "student_layers")
    same = {k: v for k, v in runs.stamp.items() if k not in varied}
    found = []
    for text, rows in runs.others.items():
        stamp = json.loads(text)
        if not isinstance(stamp, dict):
            continue
        stamp.setdefault("student_layers", STUDENT_LAYERS)  # a line from before the option
        if {k: stamp.get(k) for k in same} != same:
            continue
        arms = [row for row in rows.values() if isinstance(row, dict) and "method" in row]
        if arms:
            found.append({"budget": stamp, "rows": arms})
    here = budget.student_layers
    return sorted(found, key=lambda other: (other["budget"]["student_layers"] != here,
                                            other["budget"]["student_layers"],
                                            other["budget"]["steps"]))  # fmt: skip


def _arms(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ARMS]
    if unknown:
        raise BenchmarkError(f"--arms: unknown {unknown}; the arms are {list(ARMS)}")
    return names


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--transfer``, ``--epochs``, ``--transfer-batch-size``, ``--student-layers``,
    ``--arms``, ``--finished``."""
    parser.add_argument(
        "--finished", action="store_true",
        help="write the page from the runs an earlier invocation finished (its run log); "
        "train nothing new: a stopped benchmark's page, its missing runs marked",
    )  # fmt: skip
    parser.add_argument(
        "--arms", default=",".join(ARMS),
        help="the arms to run, comma-separated (Scratch, self-training, LD and all labels "
        "always run; TD needs them): default all",
    )  # fmt: skip
    parser.add_argument(
        "--transfer", default="20000",
        help="transfer sentences, or 'all' (every remaining one: a GPU's budget); default 20000",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2,
                        help="passes over the transfer set (default: 2)")  # fmt: skip
    parser.add_argument("--transfer-batch-size", type=int, default=64,
                        help="transfer sentences a step, beside 32 labelled (default: 64)")  # fmt: skip
    parser.add_argument(
        "--student-layers", type=int, default=STUDENT_LAYERS,
        help="the student's layers, 2 to 5, split after its first (default: 2)",
    )  # fmt: skip


def check(args: argparse.Namespace) -> None:
    """The budget's values, the text extra and the data, before anything trains."""
    if args.epochs < 1 or args.transfer_batch_size < 1:
        raise BenchmarkError("--epochs and --transfer-batch-size must be at least 1")
    if not 2 <= args.student_layers <= 5:
        raise BenchmarkError(
            f"--student-layers must be 2 to 5 (the teacher has 6), got {args.student_layers}"
        )
    _arms(args.arms)
    if args.transfer != "all" and not (args.transfer.isdigit() and int(args.transfer)):
        raise BenchmarkError(
            f"--transfer must be a positive number or 'all', got {args.transfer!r}"
        )
    text_check(argparse.Namespace(epochs=1, train_size="2000", teacher_train_size="10000",
                                  data_dir=args.data_dir))  # fmt: skip
