"""What a run writes, and where it stands: :class:`RunLog` and :class:`TrainState`.

The run log appends the loss terms and the evaluations to ``metrics.jsonl``, keeps the best
evaluated weights (``checkpoints/best-<N>/``, or in memory without a run folder), writes the
checkpoints a run resumes from (``checkpoints/step-<N>/``) and, at the end, the final
``model/`` (see :mod:`agora.checkpoint`). Both are importable from :mod:`agora.train` too.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agora import checkpoint, folder
from agora.errors import NonFiniteLossError
from agora.evaluation import _fixed, evaluate, improved
from agora.losses import LossBalancer
from agora.orchestrator import StepOutput


@dataclass
class TrainState:
    """Where training stands; saved with every checkpoint (``state/agora.json``)."""

    epoch: int = 0
    batches_in_epoch: int = 0
    step: int = 0
    best: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0

    def patience_spent(self, patience: int | None) -> bool:
        """Early stopping's decision: ``patience`` evaluations in a row without improvement
        (a resumed run reads it back from its checkpoint's counts)."""
        return patience is not None and self.evals_without_improvement >= patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _logged_by(line: str, step: int) -> bool:
    """Whether a ``metrics.jsonl`` line was written at or before ``step`` (a partial line, cut by
    a kill while it was written, was not)."""
    try:
        return json.loads(line)["step"] <= step
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


class RunLog:
    """Everything a run writes: metrics, evaluations, checkpoints and the final model."""

    def __init__(self, out_dir, accelerator, config, graph, run_config, sample, resumable) -> None:
        self.out_dir, self.accelerator, self.config = out_dir, accelerator, config
        self.graph, self.run_config = graph, dict(run_config or {})
        self.sample = sample
        self.resumable = resumable  # agora's own resume state, saved as JSON with each checkpoint
        self.last_checkpoint: Path | None = None
        self.best_metrics: dict[str, float] = {}
        self.frozen_metrics: dict[str, float] | None = None  # frozen agents': they never change
        self.main = accelerator.is_main_process
        self.bar: Any = None  # the progress bar, once fit has made it
        self.shown: dict[str, str] = {}  # the last evaluation, as the bar shows it
        if out_dir is not None and self.main:
            out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None and self.main:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.config.trackers:
            self.accelerator.log(
                {k: v for k, v in record.items() if isinstance(v, float)}, step=record["step"]
            )

    def resumed(self, step: int) -> None:
        """Drop lines a killed run wrote after its last checkpoint (every line, when it died
        before its first: ``step`` 0), so none appear twice."""
        path = self.out_dir / "metrics.jsonl"
        if self.main and path.exists():
            remedy = "remove that line, or start afresh (--overwrite)"
            text = folder.read_text(path, checkpoint.CheckpointError, remedy)
            lines = [line for line in text.splitlines() if _logged_by(line, step)]
            checkpoint._write_text(path, "".join(line + "\n" for line in lines))
        self.last_checkpoint = checkpoint.pointer(self.out_dir, "latest")

    def train(
        self, state: TrainState, out: StepOutput, lr: float, balancer: LossBalancer | None = None
    ) -> None:
        values = {f"train/{k}": v.item() for k, v in out.losses.values().items()}
        if balancer is not None:
            values.update({f"scale/{k}": v for k, v in balancer.scales.items()})
        values.update({name: note.item() for name, note in out.losses.notes.items()})
        self.write(
            {"step": state.step, "epoch": state.epoch, "loss": out.loss.item(), "lr": lr, **values}
        )

    def evaluate(self, state: TrainState, eval_data: Any, metric: str | None) -> bool:
        """Evaluate, remember the best weights; True when early stopping says stop."""
        if eval_data is None or metric is None:
            return False
        metrics = self._metrics(eval_data)
        if metric not in metrics:
            raise KeyError(
                f"FitConfig.metric {metric!r} is not among the metrics {sorted(metrics)}"
            )
        if not math.isfinite(metrics[metric]):
            raise NonFiniteLossError(
                f"The validation metric {metric} is {metrics[metric]} at step {state.step}: a "
                f"non-finite prediction (its metrics: {metrics}); nothing after this evaluation "
                "would be kept"
            )
        self.write(
            {
                "step": state.step,
                "epoch": state.epoch,
                **{f"eval/{k}": v for k, v in metrics.items()},
            }
        )
        if improved(metric, metrics[metric], state.best):
            state.best, state.best_step, state.evals_without_improvement = (
                metrics[metric],
                state.step,
                0,
            )
            self.best_metrics = metrics
            self.save_best(state)
        else:
            state.evals_without_improvement += 1
        self.shown = {metric: f"{metrics[metric]:.4f}", "best": f"{state.best:.4f}"}
        if self.bar is not None:
            self.bar.set_postfix(self.shown)
        return state.patience_spent(self.config.patience)

    def _metrics(self, eval_data: Any) -> dict[str, float]:
        """Every agent's metrics; those of an agent that cannot change (:func:`_fixed`) are
        computed at the first evaluation only."""
        agents = self.graph.agents.values()
        if isinstance(eval_data, Mapping):  # per-learner data: only the learners are evaluated
            return evaluate(self.graph, eval_data, accelerator=self.accelerator)
        if self.frozen_metrics is None:
            metrics = evaluate(self.graph, eval_data, accelerator=self.accelerator)
            frozen = {f"{a.name}/" for a in agents if _fixed(a)}
            self.frozen_metrics = {
                k: v for k, v in metrics.items() if k[: k.index("/") + 1] in frozen
            }
            return metrics
        trainable = [a.name for a in agents if not _fixed(a)]
        return {
            **self.frozen_metrics,
            **evaluate(self.graph, eval_data, accelerator=self.accelerator, agents=trainable),
        }

    def _extra(self, state: TrainState) -> dict[str, Any]:
        return {
            "config": self.run_config,
            "fit": asdict(self.config),
            "state": state.state_dict(),
            "metrics": self.best_metrics,
        }

    def _save_model(self, directory: Path, state: TrainState) -> None:
        checkpoint.save_model(directory, self.graph, self._extra(state), self.sample)

    def save_best(self, state: TrainState) -> None:
        if self.out_dir is None:
            self._best_in_memory = {
                k: v.detach().clone() for k, v in self.graph.state_dict().items()
            }
            return
        self.accelerator.wait_for_everyone()
        if self.main:
            name = f"best-{state.step:08d}"
            directory = self.out_dir / "checkpoints" / name
            if not (directory / "graph.json").exists():  # a resumed run's replay: the same weights
                self._save_model(directory, state)
            checkpoint.set_pointer(self.out_dir, "best", name)
            checkpoint.prune(self.out_dir)

    def checkpoint(self, state: TrainState) -> None:
        """Write ``checkpoints/step-<N>/`` whole (the model, Accelerate's state and the
        digests of its files) under a temporary name, rename it into place, then move
        ``latest``: a folder a pointer names is complete and never rewritten."""
        if self.out_dir is None:
            return
        self.accelerator.wait_for_everyone()
        name = f"step-{state.step:08d}"
        directory = self.out_dir / "checkpoints" / name
        tmp = self.out_dir / "checkpoints" / f".{name}.writing"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash
            self._save_model(tmp, state)
        self.accelerator.wait_for_everyone()
        with checkpoint.disk_space(tmp, final=directory):
            self.accelerator.save_state(str(tmp / "state"))  # optimizer, scheduler, RNG
        self.accelerator.wait_for_everyone()
        if self.main:
            with checkpoint.disk_space(tmp, final=directory):
                checkpoint.write_training_state(tmp, self.resumable)
                checkpoint.seal_state(tmp)
            checkpoint.publish(tmp, directory)
            checkpoint.set_pointer(self.out_dir, "latest", name)
            checkpoint.prune(self.out_dir)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = directory

    def finish(self, state: TrainState) -> dict[str, float]:
        """Restore the best weights (when evaluated) and write the final ``model/``."""
        self.accelerator.wait_for_everyone()
        if self.out_dir is not None and (best := checkpoint.pointer(self.out_dir, "best")):
            checkpoint.load_weights(best, self.graph)
            self.best_metrics = checkpoint.read_document(best).get("metrics", self.best_metrics)
        elif getattr(self, "_best_in_memory", None) is not None:
            self.graph.load_state_dict(self._best_in_memory)
        if self.out_dir is not None and self.main:
            self._save_model(self.out_dir / "model", state)
        return self.best_metrics
