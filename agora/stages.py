"""Stages: a schedule that switches edges on and off and freezes or unfreezes agents between
phases of training, as in teacher-assistant distillation (teacher -> assistant, then
assistant -> student).

A stage declares the whole state it trains in: which edges are active and which agents
train. :func:`fit_stages` applies each stage in turn and runs :func:`~agora.train.fit` on it,
each stage with a fresh optimizer, its own epochs and its own best-weights selection.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agora import checkpoint
from agora.errors import GraphError
from agora.graph import Graph
from agora.train import Data, FitConfig, FitResult, fit, run_configuration, run_folder

EdgeName = str | tuple[str, str]


@dataclass
class Stage:
    """One phase of a staged run.

    Args:
        name (str): names the stage in errors, logs and its folder ``<out_dir>/stages/<name>``.
        epochs (int, optional): epochs of this stage. (default: ``FitConfig.epochs``)
        steps (int, optional): optimizer steps of this stage, at most (``FitConfig.max_steps``),
            whatever its epochs. (default: ``None``)
        edges (list, optional): the edges active in this stage, as ``"learner->tutor"``
            strings or ``("learner", "tutor")`` pairs; every other edge is switched off.
            ``None`` leaves every edge as it is. (default: ``None``)
        train (list[str], optional): the agents that train in this stage; every other agent
            is frozen. Only the backbone flag changes: a frozen agent's codec still trains
            (unless ``codec_frozen``), as a frozen teacher's does. ``[]`` trains the codecs
            alone (the paper's "train encoders/decoders separately"); a stage in which no
            metric can change keeps its last weights. ``None`` leaves every agent as it is.
            (default: ``None``)
        metric (str, optional): the validation metric that picks the stage's best weights.
            (default: the first trainable agent's, as :func:`~agora.train.fit` chooses)

    In a config, ``stages:`` lists the same fields::

        stages:
          - {name: assistant, epochs: 3, edges: [assistant->teacher], train: [assistant]}
          - {name: student, epochs: 3, edges: [student->assistant], train: [student]}

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("assistant", 4, 8),
        ...                mlp_agent("student", 4, 4)], message_dim=8)
        >>> _ = graph.add_edge("assistant", "teacher")
        >>> _ = graph.add_edge("student", "assistant")
        >>> Stage("student", edges=["student->assistant"], train=["student"]).apply(graph)
        >>> graph, graph.agents["assistant"].frozen
        (Graph(assistant -> teacher [talk, k=1, inactive], student -> assistant [talk, k=1]), True)
    """

    name: str
    epochs: int | None = None
    steps: int | None = None
    edges: list[EdgeName] | None = None
    train: list[str] | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or set(self.name) & set("/\\ ")
            or (self.name in (".", ".."))
        ):
            raise GraphError(
                f"Stage name must be a non-empty name without '/' or spaces: {self.name!r}",
                "name",
            )
        if self.epochs is not None and (isinstance(self.epochs, bool) or self.epochs < 1):
            raise GraphError(
                f"Stage {self.name!r}: epochs must be >= 1, got {self.epochs}", "epochs"
            )

    def edge_names(self) -> list[str] | None:
        """The stage's edges as ``"learner->tutor"`` names (``None``: every edge as it is)."""
        if self.edges is None:
            return None
        return [edge if isinstance(edge, str) else "->".join(edge) for edge in self.edges]

    def check(self, agents: Sequence[str], edges: Sequence[str]) -> None:
        """Every edge and agent the stage names is among ``edges`` and ``agents``.

        Raises:
            GraphError: naming the stage, and the key (``edges.1``, ``train.0``) at fault.
        """
        for j, edge in enumerate(self.edge_names() or []):
            if edge not in edges:
                raise GraphError(
                    f"Stage {self.name!r}: unknown edge {edge!r}; the graph's edges are "
                    f"{list(edges)}",
                    f"edges.{j}",
                )
        for j, name in enumerate(self.train or []):
            if name not in agents:
                raise GraphError(
                    f"Stage {self.name!r}: unknown agent {name!r} in train; agents are "
                    f"{list(agents)}",
                    f"train.{j}",
                )

    def apply(self, graph: Graph) -> None:
        """Set every edge's ``active`` and every agent's ``frozen`` flag to this stage's.

        Nothing else changes: no weights, no codec flags, no edge options. Raises
        :class:`~agora.errors.GraphError` naming the stage for an unknown edge or agent.
        """
        self.check(list(graph.agents), [edge.name for edge in graph.edges])
        edges = self.edge_names()
        if edges is not None:
            for edge in graph.edges:
                edge.active = edge.name in edges
        if self.train is not None:
            for name, agent in graph.agents.items():
                if agent.frozen != (name not in self.train):
                    agent.freeze(name not in self.train)  # codec=None: its codec_frozen stays


def check_stage_names(stages: Sequence[Stage]) -> None:
    """Stage names are unique (they name folders); a :class:`GraphError` names the repeat."""
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage.name in seen:
            raise GraphError(
                f"Stage names must be unique (they name folders): {[stage.name]} repeats",
                f"{i}.name",
            )
        seen.add(stage.name)


def check_stages(graph: Graph, stages: Sequence[Stage]) -> None:
    """Check every stage before any trains: unique names, known edges and agents, and (for a
    built graph) a valid graph in each stage. The graph's flags are left as they were.

    Raises:
        GraphError: naming the stage and what is wrong in it.
    """
    if not stages:
        raise GraphError("No stages given: pass at least one Stage")
    check_stage_names(stages)
    active = {edge.name: edge.active for edge in graph.edges}
    frozen = {name: agent.frozen for name, agent in graph.agents.items()}
    try:
        for stage in stages:
            stage.apply(graph)
            if graph.built:
                validate_stage(graph, stage)
    finally:
        for edge in graph.edges:
            edge.active = active[edge.name]
        for name, agent in graph.agents.items():
            if agent.frozen != frozen[name]:
                agent.freeze(frozen[name])


def validate_stage(graph: Graph, stage: Stage) -> None:
    """:meth:`Graph.validate <agora.graph.Graph.validate>`, its error naming the stage."""
    try:
        graph.validate(codec_learners=True)  # a stage may train a frozen learner's codec alone
    except GraphError as error:
        raise GraphError(f"Stage {stage.name!r}: {error}") from None


def fit_stages(
    graph: Graph,
    stages: Sequence[Stage],
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None = None,
    config: FitConfig | None = None,
    *,
    transfer: Data | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    run_config: Mapping[str, Any] | None = None,
) -> dict[str, FitResult]:
    """Train ``graph`` stage by stage: apply a :class:`Stage`, :func:`~agora.train.fit` it.

    Each stage trains with ``config`` (its own ``epochs`` and ``metric`` when it sets them),
    a fresh optimizer, and ends with its best validation weights, which the next stage starts
    from. Per-learner ``train_data`` (``{learner: data}``) is handed to each stage for the
    agents that train in it, and a ``transfer`` set to every stage. With ``out_dir``, stage ``s`` runs in
    ``<out_dir>/stages/<s>/`` and the final graph is copied to ``<out_dir>/model/`` (what
    :func:`agora.load` reads). ``out_dir`` itself follows the run folder's rules
    (:mod:`agora.folder`), its configuration being the graph's spec, ``config``, the stages and
    ``run_config``: calling again resumes an unfinished run (finished stages are loaded, not
    rerun); a finished run, or a run of another configuration, is refused unless
    ``resume=False``.

    Returns:
        dict[str, FitResult]: each stage's result, by stage name.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("assistant", 4, 8),
        ...                mlp_agent("student", 4, 4)], message_dim=8)
        >>> _ = graph.add_edge("assistant", "teacher")
        >>> _ = graph.add_edge("student", "assistant")
        >>> stages = [Stage("assistant", edges=[("assistant", "teacher")], train=["assistant"]),
        ...           Stage("student", edges=[("student", "assistant")], train=["student"])]
        >>> import torch
        >>> data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32))
        >>> config = FitConfig(epochs=1, batch_size=16, progress=False)
        >>> results = fit_stages(graph, stages, data, data, config)
        >>> list(results), graph
        (['assistant', 'student'], Graph(assistant -> teacher [talk, k=1, inactive], student -> assistant [talk, k=1]))
    """
    config = config or FitConfig()
    out_dir = Path(out_dir) if out_dir is not None else None
    check_stages(graph, stages)
    if out_dir is None:
        return _fit_stages(
            graph, stages, train_data, eval_data, config, None, resume, run_config, transfer
        )
    configuration = {
        **run_configuration(graph, config, run_config, transfer),
        "stages": [asdict(stage) for stage in stages],
    }
    with run_folder(out_dir, configuration, config, overwrite=not resume):
        return _fit_stages(
            graph, stages, train_data, eval_data, config, out_dir, resume, run_config, transfer
        )


def _fit_stages(
    graph: Graph,
    stages: Sequence[Stage],
    train_data: Data | Mapping[str, Data],
    eval_data: Data | Mapping[str, Data] | None,
    config: FitConfig,
    out_dir: Path | None,
    resume: bool,
    run_config: Mapping[str, Any] | None,
    transfer: Data | None = None,
) -> dict[str, FitResult]:
    results: dict[str, FitResult] = {}
    for stage in stages:
        stage.apply(graph)
        if graph.built:
            validate_stage(graph, stage)
        stage_dir = out_dir / "stages" / stage.name if out_dir is not None else None
        done = stage_dir / "model" if stage_dir is not None else None
        if resume and done is not None and (done / "graph.json").exists():
            document = checkpoint.load_weights(done, graph)
            state = document.get("state", {})
            results[stage.name] = FitResult(
                document.get("metrics", {}), stage_dir, state.get("best_step"),
                state.get("step", 0), 0.0,
            )  # fmt: skip
            continue
        stage_config = replace(
            config,
            epochs=stage.epochs or (10**6 if stage.steps else config.epochs),
            max_steps=stage.steps,
            metric=stage.metric,
        )
        results[stage.name] = fit(
            graph, _trainees(graph, train_data), eval_data, stage_config, transfer=transfer,
            out_dir=stage_dir, resume=resume, run_config=run_config,
        )  # fmt: skip
    if out_dir is not None:
        _copy_model(out_dir / "stages" / stages[-1].name / "model", out_dir / "model")
    return results


def _trainees(graph: Graph, data: Any) -> Any:
    """Per-learner data narrowed to the agents that train in the current stage."""
    if not isinstance(data, Mapping):
        return data
    agents = graph.agents
    return {name: d for name, d in data.items() if name not in agents or agents[name].trainable}


def _copy_model(source: Path, target: Path) -> None:
    """Copy a model folder into place atomically (a copy, then a rename)."""
    tmp = checkpoint.private_dir(target)
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        checkpoint._replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
