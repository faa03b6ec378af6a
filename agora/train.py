"""Training on Hugging Face Accelerate: :func:`fit`, its settings and its loop.

:func:`fit` holds the run folder; :func:`~agora.prepare.prepare` makes what the loop needs
(the accelerator, loaders, optimizer, schedule, frozen-state cache or store, the run log,
resumed); then each batch is one training step (the graph's step, backward, clipping, the
optimizer's step), and after each optimizer step the run log (:mod:`agora.runlog`) writes the
loss terms, evaluates (:mod:`agora.evaluation`) and checkpoints when due. Batching lives in
:mod:`agora.loaders`, the frozen-state cache in :mod:`agora.cache`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.state import PartialState
from tqdm.auto import tqdm

from agora import folder
from agora.errors import FieldError, NonFiniteLossError
from agora.evaluation import Data, default_metric, evaluate, improved, metric_names
from agora.graph import Graph
from agora.loaders import epoch_batches, step_inputs
from agora.orchestrator import StepOutput
from agora.prepare import (
    Training,
    _launched_without_gpu,
    check_eval_data,
    check_not_empty,
    make_scheduler,
    prepare,
)
from agora.runlog import RunLog, TrainState

# this module's names, and those it has always offered that now live in agora.evaluation,
# agora.runlog, agora.prepare and agora.errors: `from agora.train import RunLog` works as ever
__all__ = [
    "FIT_CHECKS",
    "MIXED_PRECISION",
    "OPTIMIZERS",
    "REPORTING",
    "SCHEDULERS",
    "STORE_DTYPES",
    "Data",
    "FitConfig",
    "FitResult",
    "NonFiniteLossError",
    "RunLog",
    "TrainState",
    "check_eval_data",
    "check_finite",
    "check_not_empty",
    "default_metric",
    "evaluate",
    "fit",
    "improved",
    "make_scheduler",
    "metric_names",
    "run_configuration",
    "run_folder",
]

MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("constant", "linear", "cosine")
OPTIMIZERS = ("adamw", "sgd")
STORE_DTYPES = ("fp32", "bf16", "fp16")


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# what each constrained FitConfig field allows
FIT_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _count(v) and v >= 1, "must be an integer >= 1"),
    "lr": (lambda v: _number(v) and v > 0, "must be a finite number > 0"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "must be a finite number >= 0"),
    "batch_size": (lambda v: _count(v) and v >= 1, "must be an integer >= 1"),
    "mixed_precision": (lambda v: v in MIXED_PRECISION, f"must be one of {list(MIXED_PRECISION)}"),
    "grad_accumulation": (lambda v: _count(v) and v >= 1, "must be an integer >= 1"),
    "max_grad_norm": (lambda v: v is None or (_number(v) and v > 0), "must be > 0 or null"),
    "scheduler": (lambda v: v in SCHEDULERS, f"must be one of {list(SCHEDULERS)}"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"must be one of {list(OPTIMIZERS)}"),
    "momentum": (lambda v: _number(v) and 0 <= v < 1, "must be in [0, 1)"),
    "warmup_steps": (lambda v: _count(v) and v >= 0, "must be an integer >= 0"),
    "patience": (lambda v: v is None or (_count(v) and v >= 1), "must be an integer >= 1 or null"),
    "seed": (lambda v: _count(v), "must be an integer"),
    "checkpoint_every": (lambda v: v is None or (_count(v) and v >= 1), "must be >= 1 or null"),
    "eval_every": (lambda v: v is None or (_count(v) and v >= 1), "must be >= 1 or null"),
    "evals_per_epoch": (lambda v: v is None or (_count(v) and v >= 1), "must be >= 1 or null"),
    "max_steps": (lambda v: v is None or (_count(v) and v >= 1), "must be >= 1 or null"),
    "log_every": (lambda v: _count(v) and v >= 1, "must be an integer >= 1"),
    "balance_momentum": (lambda v: _number(v) and 0 <= v < 1, "must be in [0, 1)"),
    "balance_every": (lambda v: _count(v) and v >= 1, "must be an integer >= 1"),
    "transfer_batch_size": (lambda v: v is None or (_count(v) and v >= 1), "must be >= 1 or null"),
    "store_dtype": (lambda v: v in STORE_DTYPES, f"must be one of {list(STORE_DTYPES)}"),
}


@dataclass
class FitConfig:
    """How :func:`fit` trains. Every field has a default; see the configuration reference.

    Args:
        epochs: passes over the training data.
        lr: the learning rate.
        weight_decay: decoupled weight decay (AdamW's; SGD's L2 penalty).
        optimizer: ``"adamw"``, or ``"sgd"`` with ``momentum`` (the ViT paper's fine-tuning).
        momentum: SGD's momentum.
        batch_size: examples per step and process (for data given as a ``Dataset``).
        transfer_batch_size: transfer-set examples per step and process, beside the labelled
            batch (``None``: ``batch_size``).
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (Accelerate's autocast).
        grad_accumulation: batches per optimizer step.
        max_grad_norm: clip the global gradient norm to this; ``None`` does not clip.
        scheduler: ``"constant"``, ``"linear"`` or ``"cosine"`` decay after ``warmup_steps``.
        patience: stop after this many evaluations without improving ``metric``; ``None``
            trains every epoch. Either way the best evaluated weights are kept.
        metric: the validation metric that picks the best weights, e.g. ``"student/rmse"``;
            by default the first trainable agent's (RMSE is minimised, accuracy maximised).
        seed: seeds weights, data order, dropout and noise.
        cache_frozen: reuse frozen agents' round-0 outputs across epochs. Only valid when a
            frozen agent sees identical examples each epoch (no augmentation).
        teacher_store: read frozen agents' round-0 outputs from a
            :class:`~agora.store.TeacherStore` on disk, filled at the start when missing and
            shared by every later run on the same teacher and data (in place of
            ``cache_frozen``'s memory); not for augmented data.
        store_dtype: what the store holds: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` for half
            the disk.
        store_dir: the stores' folder (``None``: ``$AGORA_CACHE_DIR/store``).
        group_by_length: batch training examples of similar length (a dataset with a
            ``lengths`` attribute, such as text): less padding, the same examples per epoch.
        checkpoint_every: also checkpoint every this many optimizer steps (``None``: at the end
            of each epoch only).
        eval_every: evaluate every this many optimizer steps as well as at each epoch's end.
        evals_per_epoch: evaluate this many times per epoch, evenly spaced, the last at its
            end (``patience`` counts these evaluations): a model that peaks within an epoch is
            caught near its best.
        max_steps: stop after this many optimizer steps, even within an epoch (then
            evaluate and checkpoint); ``None``: run every epoch.
        log_every: write the loss terms to ``metrics.jsonl`` every this many steps.
        balance_losses: rescale each distillation term so that its gradient on its learner's
            backbone is its weight times the task term's (:class:`~agora.losses.LossBalancer`):
            a weight of 1 is "as strong as the task"; the scales are logged as ``scale/<term>``.
        balance_momentum: the momentum of the balancer's running gradient norms.
        balance_every: measure the gradient norms every this many batches (one extra backward
            pass per loss term each time).
        trackers: Accelerate trackers to log to as well, e.g. ``["tensorboard"]``.
        progress: show a progress bar (main process only).
        cpu: train on the CPU even when an accelerator is present.
        find_unused_parameters: DDP option; needed when some trainable parameter gets no
            gradient in a step (e.g. codecs on a logit-only edge).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    batch_size: int = 256
    mixed_precision: str = "no"
    grad_accumulation: int = 1
    max_grad_norm: float | None = None
    scheduler: str = "constant"
    warmup_steps: int = 0
    patience: int | None = None
    metric: str | None = None
    seed: int = 0
    cache_frozen: bool = True
    teacher_store: bool = False
    store_dtype: str = "fp32"
    store_dir: str | None = None
    transfer_batch_size: int | None = None
    group_by_length: bool = False
    checkpoint_every: int | None = None
    eval_every: int | None = None
    evals_per_epoch: int | None = None
    max_steps: int | None = None
    log_every: int = 50
    balance_losses: bool = False
    balance_momentum: float = 0.9
    balance_every: int = 10
    trackers: list[str] = field(default_factory=list)
    progress: bool = True
    cpu: bool = False
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        for name, (ok, requirement) in FIT_CHECKS.items():
            value = getattr(self, name)
            if not ok(value):
                raise FieldError(f"{requirement}, got {value!r}", name, "FitConfig")


@dataclass
class FitResult:
    """What :func:`fit` returns: the best validation ``metrics`` and where the run lives."""

    metrics: dict[str, float]
    out_dir: Path | None
    best_step: int | None
    steps: int
    seconds: float
    epoch_seconds: list[float] = field(default_factory=list)
    """Seconds of each epoch run here, from its first step to its last: the end-of-epoch
    evaluation is not counted, ``eval_every`` evaluations and ``checkpoint_every`` saves inside
    the epoch are; a resumed epoch counts from the resume."""
    scales: dict[str, float] = field(default_factory=dict)
    """The loss balancer's last scale of each term it rescales (empty without
    ``balance_losses``)."""


# -- the loop --------------------------------------------------------------------------------


def fit(
    graph: Graph,
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None = None,
    config: FitConfig | None = None,
    *,
    transfer: Data | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    run_config: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train every trainable part of ``graph`` on Accelerate; keep the best validation weights.

    With ``out_dir``, the run writes ``metrics.jsonl``, checkpoints and the final ``model/``
    (see :mod:`agora.checkpoint`), under the folder's rules (:mod:`agora.folder`): a folder
    holding an unfinished run of the same configuration is resumed; one holding a finished
    run, or a run of another configuration, is refused (:class:`~agora.folder.RunFolderError`)
    unless ``resume=False``, which starts afresh and removes what the old run wrote. One run
    writes a folder at a time (a lock).

    ``train_data`` is one dataset that every agent sees, or per-learner data
    ``{learner: dataset}``: each step then holds a batch of every learner's data (an epoch is
    one pass over the largest; see :class:`~agora.loaders.LearnerBatchSampler`) and each
    learner with its tutors observes its own batch (see :class:`~agora.orchestrator.Orchestrator`).
    ``eval_data`` may be given per learner likewise; the default metric is then the
    learners' mean, ``mean/rmse``.

    ``transfer`` is a transfer set: examples whose labels, if any, are not read. Each step
    then holds a labelled batch and a batch of ``transfer_batch_size`` transfer examples, and
    an epoch is one pass over the transfer set (the labelled data is reshuffled and passed
    again as often as it runs out). The task loss counts the labelled examples only; every
    distillation term is its mean over both, ``(n_l * L_l + n_t * L_t) / (n_l + n_t)``. With
    per-learner data, every learner's group hears its tutors on the same transfer batch. A
    labelled set may serve as its own transfer set.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> from agora import Talk
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True),
        ...                mlp_agent("student", 4, 8)], message_dim=8)
        >>> _ = graph.add_edge("student", "teacher", Talk(rounds=2))
        >>> data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64))
        >>> result = fit(graph, data, data, FitConfig(epochs=2, batch_size=16, progress=False))
        >>> sorted(result.metrics)
        ['student/loss', 'student/rmse', 'teacher/loss', 'teacher/rmse']
    """
    config = config or FitConfig()
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is None:
        return _fit(graph, train_data, eval_data, config, None, run_config, transfer)
    configuration = run_configuration(graph, config, run_config, transfer)
    with run_folder(out_dir, configuration, config, overwrite=not resume):
        return _fit(graph, train_data, eval_data, config, out_dir, run_config, transfer)


@contextmanager
def run_folder(
    out_dir: Path, configuration: Mapping[str, Any], config: FitConfig, *, overwrite: bool
) -> Iterator[None]:
    """Hold ``out_dir`` for a run (:func:`agora.folder.writing`) from the main process; every
    process starts once it is claimed. A refusal says ``resume=False``, fit's way to start
    afresh."""
    state = PartialState(cpu=config.cpu or _launched_without_gpu())
    try:
        with folder.writing(
            out_dir, configuration, overwrite=overwrite, main=state.is_main_process
        ):
            state.wait_for_everyone()
            yield
    except folder.RunFolderError as error:
        raise error.advising("resume=False") from None


# FitConfig fields that change how a run reports, or where it reads from, not what it trains
REPORTING = ("progress", "trackers", "log_every", "store_dir")


def run_configuration(
    graph: Graph,
    config: FitConfig,
    run_config: Mapping[str, Any] | None = None,
    transfer: Data | None = None,
) -> dict[str, Any]:
    """What a run folder records as the run's configuration (:mod:`agora.folder`): the
    graph's spec, the training fields of ``config``, the rest of ``run_config`` (its data,
    seed...; not its threads, which change how fast it runs, not what it is) and the transfer
    set's size and digest (another transfer set: another run)."""
    from agora.store import dataset_digest

    training = {k: v for k, v in asdict(config).items() if k not in REPORTING}
    rest = {k: v for k, v in (run_config or {}).items() if k not in ("fit", "graph", "threads")}
    configuration = {"graph": graph.to_dict(), "fit": training, **({"run": rest} if rest else {})}
    if transfer is not None:
        size = len(getattr(transfer, "dataset", transfer))
        configuration["transfer"] = {"examples": size, "digest": dataset_digest(transfer)}
    return configuration


def _fit(
    graph: Graph,
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None,
    config: FitConfig,
    out_dir: Path | None,
    run_config: Mapping[str, Any] | None,
    transfer: Data | None = None,
) -> FitResult:
    started = time.perf_counter()
    training = prepare(graph, train_data, eval_data, config, out_dir, run_config, transfer)
    epoch_seconds = _train(training)
    metrics = training.log.finish(training.state)
    training.accelerator.end_training()
    seconds = time.perf_counter() - started
    state, balancer = training.state, training.balancer
    scales = dict(balancer.scales) if balancer is not None else {}
    return FitResult(metrics, out_dir, state.best_step, state.step, seconds, epoch_seconds, scales)


def _train(training: Training) -> list[float]:
    """The loop: every epoch left, each batch a :func:`_train_step`; evaluate and checkpoint at
    each epoch's end. Returns the seconds of each epoch it finished."""
    config, state, log = training.config, training.state, training.log
    bar = tqdm(
        total=training.total_steps,
        initial=state.step,
        disable=not (config.progress and training.accelerator.is_local_main_process),
    )
    log.bar = bar  # each evaluation shows its metric, and the best so far, on the bar
    # a run resumed after its last step, or after early stopping said stop, trains no more
    stop = config.max_steps is not None and state.step >= config.max_steps
    stop = stop or state.patience_spent(config.patience)
    epoch_seconds: list[float] = []
    for epoch in range(state.epoch, config.epochs if not stop else state.epoch):
        batches = epoch_batches(training.loader, training.shuffle, epoch, state.batches_in_epoch)
        epoch_started = time.perf_counter()
        for item in batches:
            out = _train_step(training, item)
            state.batches_in_epoch += 1
            if not training.accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            stop = _after_step(training, out, bar)
            if stop:
                break
        else:
            epoch_seconds.append(time.perf_counter() - epoch_started)
            state.epoch, state.batches_in_epoch = epoch + 1, 0
            stop = log.evaluate(state, training.eval_data, training.metric)
            log.checkpoint(state)
        if stop or (config.max_steps is not None and state.step >= config.max_steps):
            break
    bar.close()
    return epoch_seconds


def _train_step(training: Training, item: Any) -> StepOutput:
    """One batch: the graph's step, the backward (of the balanced terms, with
    ``balance_losses``), clipping and the optimizer's step. Under ``grad_accumulation``,
    Accelerate holds the optimizer's step until the last batch of the group."""
    accelerator, step_fn, balancer = training.accelerator, training.step_fn, training.balancer
    optimizer, max_grad_norm = training.optimizer, training.config.max_grad_norm
    with accelerator.accumulate(step_fn):
        out = step_fn(**step_inputs(item))
        check_finite(out, training.state.step, training.log)
        accelerator.backward(balancer(out.losses) if balancer else out.loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(training.params, max_grad_norm)
        optimizer.step()
        training.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return out


def _after_step(training: Training, out: StepOutput, bar: Any) -> bool:
    """After an optimizer step: log the loss terms, evaluate and checkpoint when due, the last
    step (``max_steps``) included; an epoch's end is :func:`_train`'s. True: stop training."""
    config, state, log = training.config, training.state, training.log
    eval_data, metric, per_epoch = training.eval_data, training.metric, len(training.loader)
    stop = False
    if state.step % config.log_every == 0:
        bar.set_postfix({"loss": f"{out.loss.item():.4f}", **log.shown})
        log.train(state, out, training.scheduler.get_last_lr()[0], training.balancer)
    evaluated = False
    mid_epoch = training.within and state.batches_in_epoch % training.within == 0
    if (config.eval_every and state.step % config.eval_every == 0) or (
        mid_epoch and state.batches_in_epoch < per_epoch  # the epoch's end evaluates
    ):
        stop, evaluated = log.evaluate(state, eval_data, metric) or stop, True
    periodic = config.checkpoint_every and state.step % config.checkpoint_every == 0
    if periodic and state.batches_in_epoch < per_epoch:  # else the epoch's end does it
        log.checkpoint(state)
    done = config.max_steps is not None and state.step >= config.max_steps
    if done and state.batches_in_epoch < per_epoch:  # else the epoch's end does it
        if not evaluated:
            log.evaluate(state, eval_data, metric)
        log.checkpoint(state)
        stop = True
    return stop


def check_finite(out: StepOutput, step: int, log: RunLog) -> None:
    """Raise :class:`NonFiniteLossError` naming the non-finite terms and the last checkpoint."""
    if torch.isfinite(out.loss.detach()).item():
        return
    bad = [name for name, value in out.losses.values().items() if not torch.isfinite(value).all()]
    where = log.last_checkpoint or "none written yet"
    raise NonFiniteLossError(
        f"Step {step}: loss is not finite; non-finite terms: {bad or ['total']}. "
        f"Training stopped; last good checkpoint: {where}"
    )
