"""What :func:`~agora.train.fit` makes before its loop, in the order it makes them.

:func:`prepare` starts Accelerate and seeds every generator, checks the data, makes the
training loader (one dataset, per-learner data, or labelled data with a transfer set), builds
the graph on the first batch, chooses the validation metric, opens the frozen agents' cache or
store, makes the optimizer and the learning-rate schedule and hands them to
``accelerator.prepare``, then makes the loss balancer and the :class:`~agora.runlog.RunLog`
and resumes from the run folder's last checkpoint. It returns them together, as a
:class:`Training`. The order is part of the result: the graph's weights are drawn after the
seed, and a checkpoint's state is loaded into parts that already exist.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

from agora import checkpoint
from agora.cache import CachedOrchestrator, StateCache, open_stores
from agora.errors import FieldError, GraphError
from agora.evaluation import Data, _unchanging, default_metric, metric_names
from agora.graph import Graph
from agora.loaders import (
    eval_loader,
    first_x,
    make_learner_loader,
    make_loader,
    make_transfer_loader,
)
from agora.losses import LossBalancer
from agora.orchestrator import check_learner_data
from agora.runlog import RunLog, TrainState

if TYPE_CHECKING:
    from agora.train import FitConfig


@dataclass
class Training:
    """Everything :func:`~agora.train.fit`'s loop works with, as :func:`prepare` made it; the
    step, the optimizer, the scheduler and the loaders as ``accelerator.prepare`` returned
    them."""

    config: FitConfig
    accelerator: Accelerator
    step_fn: Any  # the graph's step, a CachedOrchestrator (wrapped for DDP)
    params: list[torch.nn.Parameter]  # what the optimizer steps and clipping clips
    optimizer: Any
    scheduler: Any
    loader: Any
    shuffle: Any  # the sampler whose epoch fixes an epoch's order (loaders.epoch_batches)
    eval_data: Any
    metric: str | None  # picks the best weights; None: nothing it measures can change
    balancer: LossBalancer | None
    state: TrainState
    log: RunLog
    total_steps: int
    within: int  # batches between evaluations within an epoch (evals_per_epoch); 0: none


def prepare(
    graph: Graph,
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None,
    config: FitConfig,
    out_dir: Path | None,
    run_config: Mapping[str, Any] | None,
    transfer: Data | None = None,
) -> Training:
    """Everything :func:`~agora.train.fit`'s loop needs, made in this order (the module's
    docstring says why the order matters); a run folder's last checkpoint, if any, is loaded."""
    accelerator = _make_accelerator(config, out_dir)
    set_seed(config.seed)
    _check_data(graph, train_data, eval_data, transfer)
    loader, shuffle, examples = _train_loader(train_data, config, transfer)
    sample = first_x(loader)
    if not graph.built:
        graph.build(sample)
    metric = _choose_metric(graph, eval_data, config)
    step_fn = _graph_step(graph, train_data, config, accelerator, examples, transfer)
    params = [p for p in graph.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, config)
    total_steps = config.epochs * math.ceil(len(loader) / config.grad_accumulation)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    within = math.ceil(len(loader) / config.evals_per_epoch) if config.evals_per_epoch else 0
    scheduler = make_scheduler(optimizer, config, total_steps)
    step_fn, optimizer, loader, scheduler = accelerator.prepare(
        step_fn, optimizer, loader, scheduler
    )
    eval_data = _eval_loaders(accelerator, eval_data)
    state = TrainState()
    balancer = _make_balancer(graph, config, accelerator)
    log = _open_log(graph, config, accelerator, out_dir, run_config, sample, state, balancer)
    return Training(
        config=config, accelerator=accelerator, step_fn=step_fn, params=params,
        optimizer=optimizer, scheduler=scheduler, loader=loader, shuffle=shuffle,
        eval_data=eval_data, metric=metric, balancer=balancer, state=state, log=log,
        total_steps=total_steps, within=within,
    )  # fmt: skip


def _make_accelerator(config: FitConfig, out_dir: Path | None) -> Accelerator:
    """A fresh :class:`~accelerate.Accelerator` for this run's precision, accumulation,
    device and trackers."""
    # Accelerate keeps its settings in a process-wide singleton; a second fit() in the same
    # process (a benchmark, a notebook) may ask for another precision, so start it afresh.
    # The process group (PartialState) stays, so this is safe under DDP too.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accumulation,
        cpu=config.cpu or _launched_without_gpu(),
        rng_types=[],
        log_with=config.trackers or None,
        project_dir=str(out_dir) if out_dir else None,
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)
        ],
    )
    if config.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        warnings.warn(
            "mixed_precision='fp16' needs a GPU; on the CPU this run trains in fp32 "
            "(bf16 works on CPUs)",
            stacklevel=4,  # at fit (_make_accelerator, prepare, _fit, fit), as ever
        )
    return accelerator


def _check_data(
    graph: Graph,
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None,
    transfer: Data | None,
) -> None:
    """No data set is empty, and per-learner data names the graph's learners."""
    check_not_empty(train_data, "train_data")
    check_not_empty(eval_data, "eval_data")
    check_not_empty(transfer, "transfer")
    if isinstance(train_data, Mapping):
        check_learner_data(graph, train_data, "train_data")


def _train_loader(
    train_data: Data | Mapping[str, Data], config: FitConfig, transfer: Data | None
) -> tuple[Any, Any, int]:
    """The training loader, the sampler that orders each epoch, and how many examples the
    frozen agents' cache must hold."""
    if transfer is not None:
        loader, examples = make_transfer_loader(
            train_data, transfer, config.batch_size,
            config.transfer_batch_size or config.batch_size, config.seed, config.group_by_length,
        )  # fmt: skip
        shuffle = loader.batch_sampler
    elif isinstance(train_data, Mapping):
        loader, examples = make_learner_loader(
            train_data, config.batch_size, config.seed, config.group_by_length
        )
        shuffle = loader.batch_sampler
    else:
        loader, shuffle = make_loader(
            train_data, config.batch_size, config.seed, True, config.group_by_length
        )
        examples = len(shuffle)
    return loader, shuffle, examples


def _choose_metric(graph: Graph, eval_data: Any, config: FitConfig) -> str | None:
    """The validation metric that picks the best weights: ``config.metric``, checked, or the
    default; ``None`` when nothing it measures can change."""
    learners = check_eval_data(graph, eval_data)
    names = metric_names(graph, learners)
    if config.metric is not None and eval_data is not None and config.metric not in names:
        raise FieldError(
            f"FitConfig.metric {config.metric!r} is not among this graph's metrics {names}",
            "metric",
        )
    metric = config.metric or default_metric(graph, learners)
    if metric is not None and _unchanging(graph, metric):
        metric = None  # nothing it measures can change (a stage training codecs alone): keep the last weights
    return metric


def _graph_step(
    graph: Graph,
    train_data: Any,
    config: FitConfig,
    accelerator: Accelerator,
    examples: int,
    transfer: Data | None,
) -> CachedOrchestrator:
    """The graph's training step, reading the frozen agents' round 0 from the memory cache
    (``cache_frozen``) or the stores on disk (``teacher_store``) unless the data is augmented."""
    augmented = _augmented(train_data) or (transfer is not None and _augmented(transfer))
    cache = StateCache(examples) if config.cache_frozen and not augmented else None
    stores = {}
    if config.teacher_store and not augmented:
        datasets = _datasets(train_data, transfer)
        with accelerator.main_process_first():  # the main process fills, the others open
            stores = open_stores(
                graph, datasets, config.store_dir, config.store_dtype, device=accelerator.device,
                progress=config.progress and accelerator.is_local_main_process,
            )  # fmt: skip
    return CachedOrchestrator(graph, cache, stores)


def _make_optimizer(params: list[torch.nn.Parameter], config: FitConfig) -> torch.optim.Optimizer:
    """SGD with momentum, or AdamW (fused where every parameter allows it)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)  # fmt: skip
    # the fused kernel: one pass over every tensor (on a CPU it is 5x faster than the loop
    # over tensors, whose cost a large embedding table dominates)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                             fused=fused or None)  # fmt: skip


def _eval_loaders(accelerator: Accelerator, eval_data: Any) -> Any:
    """The validation data (each learner's, for per-learner data) as prepared loaders."""
    if isinstance(eval_data, Mapping):
        return {k: accelerator.prepare(eval_loader(v)) for k, v in eval_data.items()}
    if eval_data is not None:
        return accelerator.prepare(eval_loader(eval_data))
    return None


def _make_balancer(
    graph: Graph, config: FitConfig, accelerator: Accelerator
) -> LossBalancer | None:
    """The loss balancer, with ``balance_losses``."""
    if not config.balance_losses:
        return None
    several = accelerator.num_processes > 1  # then every process scales alike
    return LossBalancer(
        graph.backbone_parameters(), config.balance_momentum, config.balance_every,
        reduce=(lambda t: accelerator.reduce(t, "mean")) if several else None,
    )  # fmt: skip


def _open_log(
    graph: Graph,
    config: FitConfig,
    accelerator: Accelerator,
    out_dir: Path | None,
    run_config: Mapping[str, Any] | None,
    sample: Any,
    state: TrainState,
    balancer: LossBalancer | None,
) -> RunLog:
    """The run log; in a run folder holding a checkpoint, the run resumed from it (weights,
    optimizer, scheduler, RNG, ``state`` and the balancer's norms), its later lines dropped."""
    resumable = {"train": state, **({"balancer": balancer} if balancer is not None else {})}
    log = RunLog(out_dir, accelerator, config, graph, run_config, sample, resumable)
    if out_dir is not None and (latest := checkpoint.pointer(out_dir, "latest")):
        checkpoint.load_state(accelerator, latest)
        checkpoint.read_training_state(latest, resumable)
    if out_dir is not None:
        log.resumed(state.step)
    if config.trackers:
        accelerator.init_trackers("agora", config=_flat(asdict(config)))
    return log


def _datasets(train_data: Any, transfer: Any) -> dict[str | None, Any]:
    """The datasets a step's rows come from, by the key their indices carry: a learner's
    name, ``None`` for shared data, :data:`~agora.loaders.TRANSFER`."""
    from agora.loaders import TRANSFER

    datasets = dict(train_data) if isinstance(train_data, Mapping) else {None: train_data}
    return {**datasets, **({TRANSFER: transfer} if transfer is not None else {})}


def _augmented(data: Any) -> bool:
    """True (with a warning) when the training data draws a random view of each example on
    every read (``dataset.augmented``): a frozen agent's cached states would be of another
    view, so the cache is off."""
    parts = data.values() if isinstance(data, Mapping) else [data]
    parts = [getattr(p, "dataset", p) for p in parts]  # a DataLoader's dataset
    if any(getattr(p, "augmented", False) for p in parts):
        warnings.warn(
            "The training data is augmented (a random view on every read), so the frozen "
            "agents' state cache is off: cached states would be of another view",
            stacklevel=5,  # at fit (_augmented, _graph_step, prepare, _fit, fit), as ever
        )
        return True
    return False


def check_not_empty(data: Any, name: str) -> None:
    """A dataset (or each learner's) with no example is an error naming it."""
    parts = data.items() if isinstance(data, Mapping) else [(None, data)]
    for key, part in parts:
        if part is not None and hasattr(part, "__len__") and len(part) == 0:
            where = f"{name}[{key!r}]" if key is not None else name
            raise ValueError(f"fit: {where} is empty: there is nothing to train or evaluate on")


def check_eval_data(graph: Graph, eval_data: Any) -> list[str] | None:
    """Per-learner eval data names agents with a task and a head, and every trainable one;
    returns the names, or ``None`` for shared (or no) eval data."""
    if not isinstance(eval_data, Mapping):
        return None
    for name in eval_data:
        agent = graph.agents[name] if name in graph.agents else None
        if agent is None or agent.task is None or agent.head is None:
            raise GraphError(
                f"eval_data holds data for {name!r}, which is not an agent with a task and a "
                f"head; agents with tasks are "
                f"{[a.name for a in graph.agents.values() if a.task and a.head is not None]}"
            )
    for agent in graph.agents.values():
        if agent.trainable and agent.task is not None and agent.name not in eval_data:
            raise GraphError(
                f"Learner {agent.name!r} has no eval data: eval_data holds data for "
                f"{sorted(eval_data)}; give every trainable agent with a task its own"
            )
    return list(eval_data)


def _launched_without_gpu() -> bool:
    """Several processes (``accelerate launch --multi_gpu`` or ``torchrun``) on a machine
    without a GPU: Accelerate then needs ``cpu=True`` to choose DDP over gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def make_scheduler(optimizer: torch.optim.Optimizer, config: FitConfig, total_steps: int):
    """A ``LambdaLR``: linear warm-up, then constant, linear or cosine decay."""
    warmup = config.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if config.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _flat(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in d.items()}
