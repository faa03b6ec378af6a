"""Speed: agora's training step against a hand-written one and torchdistill, and how it scales.

``python -m benchmarks speed`` writes ``speed.md`` and ``speed.json`` into ``--out`` (default
``docs/results``). Every comparison is measured side by side in one process: blocks of steps
of A and B alternate (their order flips each repeat) and the page reports medians over the
repeats, with the thread count. Peak memory is measured in a fresh process per configuration:
the tensors of one step (torch's memory profiler) and the process's resident set.

The models are the paper's MovieLens recommenders (teacher 300 -> 512 -> 256 -> 1, student a
quarter of it, codecs dense-ReLU-dense with 256 hidden units and 128-d messages), on batches
of 256 real ratings when the data is at hand, random ids otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agora.graph import Graph
from agora.losses import LossBalancer
from agora.models.recommender import student_agent, teacher_agent
from agora.orchestrator import Orchestrator
from agora.protocols.talk import Talk
from agora.train import FitConfig
from benchmarks.harness import Part, grid, run_parts, stamp

Step = Callable[[], None]

# -- models and a batch ----------------------------------------------------------------------


def _meta_and_batch(data_dir: str | None, batch_size: int) -> tuple[Any, Any, Any]:
    from agora.data.movielens import MovieLens, MovieLensMeta

    try:
        ml = MovieLens(data_dir, download=False)
        x, y = ml.splits("Drama")["train"].__getitems__(list(range(batch_size)))
        return ml.meta, x, y
    except Exception:  # no data: the same shapes with random ids
        meta = MovieLensMeta(n_users=943, n_movies=1682, n_words=2405, n_genres=19, title_len=15)
        g = torch.Generator().manual_seed(0)
        x = {
            "user": torch.randint(1, 944, (batch_size,), generator=g),
            "movie": torch.randint(1, 1683, (batch_size,), generator=g),
            "title": torch.randint(0, meta.n_words, (batch_size, 15), generator=g),  # 0 = pad
            "genres": (torch.rand(batch_size, 19, generator=g) < 0.2).float(),
        }
        return meta, x, 1 + 4 * torch.rand(batch_size, generator=g)


def paper_graph(meta: Any, x: Any, rounds: int = 2, tutors: int = 1, weight: float = 0.1) -> Graph:
    """The two-node TD graph (or ``tutors`` frozen teachers, mean aggregation), built."""
    torch.manual_seed(0)
    names = ["teacher"] if tutors == 1 else [f"teacher{i}" for i in range(tutors)]
    teachers = [teacher_agent(meta, name=name) for name in names]
    student = student_agent(meta)
    graph = Graph([*teachers, student], message_dim=128, codec_hidden=256)
    talk = Talk(rounds=rounds, interact_weight=weight)
    weights = dict.fromkeys(("message_consistency", "state_consistency"), weight)
    for teacher in teachers:
        graph.add_edge("student", teacher.name, talk, weights=weights)
    return graph.build(x)


def _optimizer(graph: Graph) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in graph.parameters() if p.requires_grad], lr=1e-3)


def agora_step(graph: Graph, x: Any, y: Tensor) -> Step:
    """One training step of ``graph`` on ``(x, y)`` through agora's
    :class:`~agora.orchestrator.Orchestrator`, with AdamW: a closure to time."""
    step, optimizer = Orchestrator(graph).train(), _optimizer(graph)

    def run() -> None:
        loss = step(x, y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def balanced_step(graph: Graph, x: Any, y: Tensor) -> Step:
    """:func:`agora_step` with the loss balancer as ``FitConfig(balance_losses=True)`` makes
    it: the gradient norms measured every ``FitConfig.balance_every`` steps."""
    step, optimizer = Orchestrator(graph).train(), _optimizer(graph)
    config = FitConfig()
    balancer = LossBalancer(
        graph.backbone_parameters(), config.balance_momentum, config.balance_every
    )

    def run() -> None:
        loss = balancer(step(x, y).losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def hand_written_step(graph: Graph, x: Any, y: Tensor, rounds: int, weight: float) -> Step:
    """The same TD step written out in plain PyTorch on the same modules: no framework."""
    loss, optimizer = hand_written_loss(graph, x, y, rounds, weight), _optimizer(graph)

    def run() -> None:
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return run


def hand_written_loss(
    graph: Graph, x: Any, y: Tensor, rounds: int, weight: float
) -> Callable[[], Tensor]:
    """The hand-written step's forward pass: its loss, as a closure."""
    teacher, student = graph.agents["teacher"], graph.agents["student"]
    d_s_teacher, d_s_student = teacher.codec.s_shape[0], student.codec.s_shape[0]
    E_t, D_t = teacher.codec.encoder, teacher.codec.decoder
    E_s, D_s = student.codec.encoder, student.codec.decoder

    def loss() -> Tensor:
        with torch.no_grad():
            s_t = teacher.lower(x)
            e_t = teacher.upper(s_t)
        s_s = student.lower(x)
        e_s = student.upper(s_s)
        y_s = student.head(e_s)
        state_t, state_s = torch.cat([s_t, e_t], -1), torch.cat([s_s, e_s], -1)
        m_t, m_s = E_t(state_t), E_s(state_s)
        decoded_by_teacher = D_t(m_s)  # used by L_SC and by the first round
        total = F.mse_loss(y_s, y) + weight * F.mse_loss(m_s, m_t)
        total = total + weight * (
            F.mse_loss(D_s(m_t), state_s) + F.mse_loss(decoded_by_teacher, state_t)
        )
        question, state = m_s, state_s
        for i in range(rounds):
            s_t2 = (decoded_by_teacher if i == 0 else D_t(question))[:, :d_s_teacher]
            reply = E_t(torch.cat([s_t2, teacher.upper(s_t2)], -1))
            decoded = D_s(reply)
            total = total + weight * F.mse_loss(decoded, state)
            if i + 1 < rounds:
                s_s2 = decoded[:, :d_s_student]
                state = torch.cat([s_s2, student.upper(s_s2)], -1)
                question = E_s(state)
        return total

    return loss


# -- timing ----------------------------------------------------------------------------------


def per_step(step: Step, steps: int) -> float:
    """Mean seconds per call of ``step`` over ``steps`` calls in a row."""
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def paired(a: Step, b: Step, repeats: int, steps: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per step of ``a`` and ``b``, in alternating blocks."""
    for _ in range(warmup):
        a()
        b()
    times_a, times_b, ratios = [], [], []
    for r in range(repeats):
        first, second = (a, b) if r % 2 == 0 else (b, a)
        t_first, t_second = per_step(first, steps), per_step(second, steps)
        t_a, t_b = (t_first, t_second) if r % 2 == 0 else (t_second, t_first)
        times_a.append(t_a)
        times_b.append(t_b)
        ratios.append(t_a / t_b)
    return {
        "a_ms": 1000 * statistics.median(times_a),
        "b_ms": 1000 * statistics.median(times_b),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def series(make: Callable[[int], Step], values: list[int], repeats: int, steps: int) -> list[dict]:
    """Median step time for each value, the values interleaved within each repeat."""
    steps_by_value = {v: make(v) for v in values}
    for step in steps_by_value.values():
        step()
    times: dict[int, list[float]] = {v: [] for v in values}
    for _ in range(repeats):
        for v in values:
            times[v].append(per_step(steps_by_value[v], steps))
    return [{"value": v, "ms": 1000 * statistics.median(times[v])} for v in values]


def linear_fit(points: list[dict]) -> dict[str, float]:
    """Least squares ``ms = a + b * value`` and the largest relative deviation from it."""
    xs = [p["value"] for p in points]
    ys = [p["ms"] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    worst = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys))
    return {"intercept_ms": a, "slope_ms": b, "max_relative_deviation": worst}


# -- the frozen-teacher cache on a real epoch ------------------------------------------------


def cache_epochs(data_dir: str | None, repeats: int, genre: str = "Drama") -> dict[str, Any] | None:
    """Seconds per epoch of the two-node TD run on a genre, with and without the state cache."""
    from agora.data.movielens import MovieLens
    from agora.train import fit

    try:
        ml = MovieLens(data_dir, download=False)
    except Exception:  # no data: nothing to measure
        return None
    train = ml.splits(genre)["train"]
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for r in range(repeats):
        for cache in (True, False) if r % 2 == 0 else (False, True):
            torch.manual_seed(0)
            student = student_agent(ml.meta)
            graph = Graph([teacher_agent(ml.meta), student], message_dim=128)
            graph.add_edge("student", "teacher", Talk(rounds=2))
            config = FitConfig(epochs=2, cache_frozen=cache, progress=False, log_every=10**9)
            started = time.perf_counter()
            fit(graph, train, None, config)
            seconds[cache].append((time.perf_counter() - started) / 2)
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    return {
        "genre": genre, "examples": len(train), "with_cache_s": on, "without_cache_s": off,
        "ratio": on / off,
    }  # fmt: skip


# -- torchdistill -----------------------------------------------------------------------------


def torchdistill_comparison(meta: Any, x: Any, y: Tensor, repeats: int, steps: int) -> dict | None:
    """LD with agora vs torchdistill's KDLoss on the same teacher, student and batch.

    Ratings as 5 classes so that Hinton's KL applies: ``CE + T^2 KL`` in agora,
    ``0.5 CE + 0.5 T^2 KL`` in torchdistill (the same work)."""
    try:
        from torchdistill.losses.mid_level import KDLoss
    except ImportError:
        return None
    ForwardHookManager = _forward_hook_manager()

    torch.manual_seed(0)
    teacher, student = teacher_agent(meta), student_agent(meta)
    for agent in (teacher, student):
        agent.head = torch.nn.Linear(agent.head.linear.in_features, 5)
        agent.task = "classification"
    teacher.freeze()
    labels = (y.round().long() - 1).clamp(0, 4)
    temperature = 4.0
    graph = Graph([teacher, student], message_dim=128)
    graph.add_edge("student", "teacher", "logit", temperature=temperature, weights={"logit": 1.0})
    graph.build(x)
    ours = agora_step(graph, x, labels)

    t_model = torch.nn.Sequential(
        copy.deepcopy(teacher.lower), copy.deepcopy(teacher.upper), copy.deepcopy(teacher.head)
    ).eval()
    s_model = torch.nn.Sequential(
        copy.deepcopy(student.lower), copy.deepcopy(student.upper), copy.deepcopy(student.head)
    )
    t_hooks, s_hooks = (
        ForwardHookManager(torch.device("cpu")),
        ForwardHookManager(torch.device("cpu")),
    )
    t_hooks.add_hook(t_model, "2", requires_input=False, requires_output=True)
    s_hooks.add_hook(s_model, "2", requires_input=False, requires_output=True)
    criterion = KDLoss("2", "output", "2", "output", temperature=temperature, alpha=0.5, beta=0.5)
    optimizer = torch.optim.AdamW(s_model.parameters(), lr=1e-3)

    def theirs() -> None:
        with torch.no_grad():
            t_model(x)
        s_model(x)
        loss = criterion(s_hooks.pop_io_dict(), t_hooks.pop_io_dict(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    result = paired(ours, theirs, repeats, steps)
    batch = labels.shape[0]
    import torchdistill

    return {
        **result,
        "agora_samples_per_s": batch / result["a_ms"] * 1000,
        "torchdistill_samples_per_s": batch / result["b_ms"] * 1000,
        "torchdistill": torchdistill.__version__,
    }


def _forward_hook_manager() -> type:
    """torchdistill's ForwardHookManager. ``torchdistill.core``'s ``__init__`` imports its model
    zoo and so torchvision, which PyPI ships built for CUDA torch only; the hook manager needs
    neither, so when that import fails its own file is loaded alone."""
    try:
        from torchdistill.core.forward_hook import ForwardHookManager

        return ForwardHookManager
    except (ImportError, RuntimeError):
        import importlib.util
        import sys
        import types

        import torchdistill

        folder = Path(torchdistill.__file__).parent / "core"
        package = types.ModuleType("torchdistill.core")
        package.__path__ = [str(folder)]
        sys.modules["torchdistill.core"] = package
        spec = importlib.util.spec_from_file_location(
            "torchdistill.core.forward_hook", folder / "forward_hook.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module.ForwardHookManager


# -- peak memory, one configuration per fresh process ----------------------------------------


def step_peak_mib(step: Callable[[], None]) -> float:
    """Peak MiB of tensors alive during one call of ``step``, as torch's memory profiler
    records them on the CPU (parameters, gradients, optimizer state, activations and
    temporaries alike): what a GPU's ``max_memory_allocated`` would report, minus the
    allocator's caching."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots, not CPU
        path = Path(tmp, "timeline.raw.json")
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return max((sum(s) for s in sizes), default=0) / 2**20


def _peak_rss_of(config: dict[str, Any]) -> dict[str, float]:
    """Run ``config`` in this (fresh) process: the peak of one step's tensors (after 3 warm-up
    steps, so optimizer state exists) and the process's peak resident set, in MiB."""
    torch.set_num_threads(config["threads"])
    meta, x, y = _meta_and_batch(config["data_dir"], config["batch_size"])
    graph = paper_graph(meta, x, rounds=config["rounds"], tutors=config["tutors"])
    if config["kind"] == "hand":
        step = hand_written_step(graph, x, y, config["rounds"], 0.1)
    else:
        step = agora_step(graph, x, y)
    for _ in range(3):
        step()
    tensors = step_peak_mib(step)
    return {
        "step_peak_mib": tensors,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def peak_memory(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each config with its ``step_peak_mib`` and ``peak_rss_mib``, measured one at a time,
    each in a fresh spawned process so that no peak includes another's."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        peaks = pool.map(_peak_rss_of, configs, chunksize=1)
    return [{**c, **p} for c, p in zip(configs, peaks)]


# -- the benchmark ---------------------------------------------------------------------------


def td_vs_hand(meta: Any, x: Any, y: Tensor, repeats: int, steps: int) -> dict[str, float]:
    """agora's TD step (k = 2) against the hand-written one on a copy of the same graph."""
    graph = paper_graph(meta, x, rounds=2)
    twin = copy.deepcopy(graph)
    hand = hand_written_step(twin, x, y, rounds=2, weight=0.1)
    return paired(agora_step(graph, x, y), hand, repeats, steps)


def step_phases(meta: Any, x: Any, y: Tensor, steps: int) -> dict[str, dict[str, float]]:
    """Median ms of each phase of a TD step (k = 2), agora's and the hand-written one's on a
    copy of the same graph, their steps alternating: the forward pass with the losses, the
    backward pass, the optimizer's step."""
    graph = paper_graph(meta, x, rounds=2)
    twin = copy.deepcopy(graph)
    step = Orchestrator(graph).train()
    losses = {"agora": lambda: step(x, y).loss,
              "hand-written": hand_written_loss(twin, x, y, rounds=2, weight=0.1)}  # fmt: skip
    optimizers = {"agora": _optimizer(graph), "hand-written": _optimizer(twin)}
    times: dict[str, dict[str, list[float]]] = {
        name: {"forward": [], "backward": [], "optimizer": []} for name in losses
    }
    for i in range(3 + steps):  # 3 warm-up steps each
        for name in sorted(losses, reverse=i % 2 == 1):
            started = time.perf_counter()
            loss = losses[name]()
            forward = time.perf_counter()
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            backward = time.perf_counter()
            optimizers[name].step()
            if i >= 3:
                phases = times[name]
                phases["forward"].append(forward - started)
                phases["backward"].append(backward - forward)
                phases["optimizer"].append(time.perf_counter() - backward)
    return {
        name: {phase: 1000 * statistics.median(values) for phase, values in phases.items()}
        for name, phases in times.items()
    }


def forward_profile(meta: Any, x: Any, y: Tensor, steps: int) -> dict[str, float]:
    """ms per step of agora's forward pass (k = 2, the losses included) by whose code
    cProfile finds the time in (self time): torch's operators, torch's Python (``nn.Module``
    calls, functional wrappers), the models' Python (``agora/models``) and agora's own
    Python (everything else of the package). cProfile adds its own cost to every Python
    call, so the Python shares are upper bounds."""
    import cProfile
    import pstats

    step = Orchestrator(paper_graph(meta, x, rounds=2)).train()
    for _ in range(3):
        step(x, y)
    profiler = cProfile.Profile()
    with torch.no_grad():  # the forward pass alone, as the step runs it
        profiler.enable()
        for _ in range(steps):
            step(x, y)
        profiler.disable()
    by_kind: dict[str, float] = {}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (file, _, _), (_, _, self_time, _, _) in stats.items():
        kind = _code_kind(file)
        by_kind[kind] = by_kind.get(kind, 0.0) + 1000 * self_time / steps
    return by_kind


def _code_kind(file: str) -> str:
    path = Path(file).as_posix()
    if file == "~":  # a built-in: torch's operators (and a few of Python's own)
        return "operators"
    if "/agora/models/" in path or "/benchmarks/" in path:
        return "models' Python"
    if "/agora/" in path:
        return "agora's Python"
    if "/torch/" in path:
        return "torch's Python"
    return "other Python"


def balancer_cost(meta: Any, x: Any, y: Tensor, repeats: int, steps: int) -> dict[str, float]:
    """The TD step (k = 2) with the loss balancer against the step without it."""
    plain = paper_graph(meta, x, rounds=2)
    balanced = balanced_step(copy.deepcopy(plain), x, y)
    return {
        **paired(balanced, agora_step(plain, x, y), repeats, steps),
        "every": FitConfig().balance_every,
    }


def rounds_series(
    meta: Any, x: Any, y: Tensor, values: list[int], repeats: int, steps: int
) -> list[dict]:
    """Step time for each number of rounds k in ``values`` (one tutor)."""
    return series(
        lambda k: agora_step(paper_graph(meta, x, rounds=k), x, y), values, repeats, steps
    )


def tutors_series(
    meta: Any, x: Any, y: Tensor, values: list[int], repeats: int, steps: int
) -> list[dict]:
    """Step time for each number of tutors in ``values`` (k = 2, mean aggregation)."""
    return series(
        lambda n: agora_step(paper_graph(meta, x, tutors=n), x, y), values, repeats, steps
    )


def _step_cost(rounds: int = 2, tutors: int = 1) -> float:
    """A TD step's expected time relative to the two-node step at k = 2, which the progress
    lines' estimate weighs the parts by: ``(1 + tutors) (2 + rounds) / 8``, within 15% of
    the page's series."""
    return (1 + tutors) * (2 + rounds) / 8


def _memory_part(config: dict[str, Any]) -> Part:
    name = (
        f"peak memory: {config['kind']} step, k = {config['rounds']}, "
        f"{config['tutors']} tutor{'s' if config['tutors'] > 1 else ''}, in a fresh process"
    )
    cost = 100 + 4 * _step_cost(config["rounds"], config["tutors"])  # starting it, 4 steps
    return Part(name, lambda: peak_memory([config])[0], cost)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything, one part after another with a progress line on stderr: step times
    against a hand-written step and torchdistill, scaling with rounds and tutors, the state
    cache, peak memory; and the wall times, each part's and the whole command's."""
    threads = args.threads
    torch.set_num_threads(threads)
    repeats, steps = (2, 1) if args.quick else (15, 10)
    batch_size = 256
    meta, x, y = _meta_and_batch(args.data_dir, batch_size)
    results: dict[str, Any] = {
        **stamp(args, threads=threads),
        "batch_size": batch_size,
        "repeats": repeats,
        "steps_per_block": steps,
    }
    rounds_values = [0, 2] if args.quick else [0, 1, 2, 3, 4]
    tutor_counts = [1, 2] if args.quick else [1, 2, 3, 4, 6, 8]
    cache_repeats, genre = (1, "War") if args.quick else (3, "Drama")
    epoch = {"Drama": 125, "War": 30}[genre]  # steps: 31,853 and 7,578 ratings, 256 a step
    memory = [
        {"kind": kind, "rounds": k, "tutors": n, "threads": threads, "data_dir": args.data_dir,
         "batch_size": batch_size}
        for kind, k, n in ([("agora", 2, 1), ("hand", 2, 1)] if args.quick else
                           [("agora", 2, 1), ("hand", 2, 1), ("agora", 0, 1), ("agora", 1, 1),
                            ("agora", 4, 1), ("agora", 2, 2), ("agora", 2, 4), ("agora", 2, 8)])
    ]  # fmt: skip
    pair, once = 2 * (3 + repeats * steps), 1 + repeats * steps
    parts = [  # costs in k = 2 steps, warm-up included
        Part(
            "TD step: agora vs hand-written (k = 2)",
            lambda: td_vs_hand(meta, x, y, repeats, steps),
            pair,
        ),
        Part(
            "TD step: where the time goes (phases side by side, then a profile)",
            lambda: {
                "phases": step_phases(meta, x, y, repeats * steps),
                "profile": forward_profile(meta, x, y, repeats * steps),
            },
            pair + once,
        ),
        Part(
            "TD step: loss balancer on vs off (k = 2)",
            lambda: balancer_cost(meta, x, y, repeats, steps),
            pair,
        ),
        Part(
            f"step time vs rounds k = {grid(rounds_values)}",
            lambda: rounds_series(meta, x, y, rounds_values, repeats, steps),
            once * sum(_step_cost(rounds=k) for k in rounds_values),
        ),
        Part(
            f"step time vs tutors = {grid(tutor_counts)} (k = 2)",
            lambda: tutors_series(meta, x, y, tutor_counts, repeats, steps),
            once * sum(_step_cost(tutors=n) for n in tutor_counts),
        ),
        Part(
            "LD step: agora vs torchdistill",
            lambda: torchdistill_comparison(meta, x, y, repeats, steps),
            pair / 3,
        ),
        Part(
            f"state cache on vs off: {cache_repeats} x 2 runs of 2 epochs on {genre}",
            lambda: cache_epochs(args.data_dir, cache_repeats, genre),
            cache_repeats * 2 * 2 * epoch,
        ),
        *(_memory_part(config) for config in memory),
    ]
    done, seconds = run_parts("speed", parts, started=args.started)
    td, where, balancer, rounds, tutors, ld, cache, *peaks = done
    return {
        **results,
        "td_vs_hand": td,
        "where": where,
        "balancer": balancer,
        "rounds": rounds,
        "rounds_fit": linear_fit(rounds),
        "tutors": tutors,
        "tutors_fit": linear_fit(tutors),
        "torchdistill": ld,
        "cache": cache,
        "memory": peaks,
        "timings": seconds,  # each part's, and the total from the command's start
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (the measurements' torch threads) and ``--data-dir``."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--data-dir", help="folder holding ml-100k/ (default: AGORA_DATA_DIR)")
