"""Run configs: a YAML file -> a validated :class:`RunConfig` -> a :class:`~agora.graph.Graph`
and its data.

A config is plain data checked against dataclasses when it is loaded, so a typo fails before
anything trains, with the dotted key and the file in the message::

    seed: 0
    graph:
      message_dim: 16
      agents:
        - {name: teacher, factory: agora.models.toy:mlp_agent, kwargs: {d_in: 8, width: 32},
           frozen: true}
        - {name: student, factory: agora.models.toy:mlp_agent, kwargs: {d_in: 8, width: 8}}
      edges:
        - {learner: student, tutor: teacher, protocols: [talk], rounds: 2}
    data: {factory: agora.data.synthetic:regression, kwargs: {n: 512, d_in: 8}}
    fit: {epochs: 2, lr: 3.0e-3}

Classes and functions are named by import path (``"module:function"``) only here, at the
command-line boundary; the library itself takes objects.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import networkx as nx
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from agora.agent import TASKS, Agent
from agora.aggregation import AGGREGATIONS
from agora.codec import CODEC_KINDS
from agora.graph import Edge, Graph, GraphError, agent_from_spec, import_object
from agora.protocols import ALIASES, DISTANCES, LOGIT_DISTANCES, PROTOCOLS
from agora.train import FIT_CHECKS, FitConfig


class ConfigError(ValueError):
    """A config that cannot run; the message names the dotted key (``fit.epochs``) and the file.

    Args:
        message (str): what is wrong and what would be right.
        key (str, optional): the dotted key at fault. (default: ``None``)
        source (str, optional): the file it came from. (default: ``None``)
    """

    def __init__(self, message: str, key: str | None = None, source: str | None = None) -> None:
        self.message, self.key, self.source = message, key, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")

    def within(self, prefix: str | None = None, source: str | None = None) -> ConfigError:
        """The same error, with its key under ``prefix`` and its file set (if not yet)."""
        key = ".".join(part for part in (prefix, self.key) if part) or None
        return ConfigError(self.message, key, self.source or source)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(message, key)


def _require_import(path: str, key: str, what: str) -> Callable[..., Any]:
    """The callable at ``"module:function"``; else a ConfigError saying ``what`` was expected."""
    if ":" not in path and "." not in path:
        raise ConfigError(f"got {path!r}; expected {what}", key)
    try:
        obj = import_object(path)
    except GraphError as error:  # import_object's error for a missing module or name
        raise ConfigError(f"{error}; expected {what}", key) from None
    _require(callable(obj), key, f"{path!r} is a {type(obj).__name__}; expected {what}")
    return obj


# -- the config tree ---------------------------------------------------------------------------


@dataclass
class AgentConfig:
    """One agent: built by ``factory(name=name, **kwargs)``, which returns an :class:`Agent`.

    Args:
        name (str): unique name in the graph.
        factory (str): ``"module:function"`` returning an :class:`~agora.agent.Agent`.
        kwargs (dict): keyword arguments of the factory (plain YAML data, stored in checkpoints
            so that they can rebuild the agent). (default: ``{}``)
        frozen (bool): freeze the backbone (a teacher). (default: ``False``)
        codec_frozen (bool): freeze the codec too. (default: ``False``)
        task (str, optional): ``"regression"`` or ``"classification"``; ``None`` keeps the
            factory's choice. (default: ``None``)
        task_weight (float): weight of the agent's task loss. (default: ``1.0``)
        aggregation (str): ``"mean"``, ``"weights"``, ``"router"`` or an import path of a module
            class; combines the replies of several tutors. (default: ``"mean"``)
        pretrained (str, optional): a safetensors file of backbone weights (keys ``lower.*``,
            ``upper.*``, ``head.*``, as in a run's ``agents/<name>/backbone.safetensors``).
            (default: ``None``)
    """

    name: str
    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    frozen: bool = False
    codec_frozen: bool = False
    task: str | None = None
    task_weight: float = 1.0
    aggregation: str = "mean"
    pretrained: str | None = None

    def __post_init__(self) -> None:
        _require(
            bool(self.name) and not set(self.name) & set("./ "),
            "name",
            f"must be a non-empty name without '.', '/' or spaces, got {self.name!r}",
        )
        _require_import(self.factory, "factory", "an agent factory 'module:function'")
        _require(
            self.task is None or self.task in TASKS,
            "task",
            f"must be one of {list(TASKS)} or null, got {self.task!r}",
        )
        _require(self.task_weight >= 0, "task_weight", f"must be >= 0, got {self.task_weight}")
        if self.aggregation not in AGGREGATIONS:
            _require_import(
                self.aggregation,
                "aggregation",
                f"one of {list(AGGREGATIONS)} or an aggregation class 'module:Class'",
            )


@dataclass
class EdgeConfig:
    """``learner`` learns from ``tutor``; the fields of :class:`~agora.graph.Edge`.

    Args:
        learner (str): a trainable agent.
        tutor (str): the agent it learns from.
        protocols (str or list[str]): ``talk``, ``logit``, ``feature``, ``fitnet``, ``hybrid``.
            (default: ``[talk]``)
        weights (dict[str, float]): loss weights by name; missing ones are 1.0. (default: ``{}``)
        rounds (int): ``k``, the talk rounds. (default: ``1``)
        noise (float): std of noise on the tutor's decoded states. (default: ``0.0``)
        distance (str): ``"l2"`` or ``"cosine"``. (default: ``"l2"``)
        logit_distance (str, optional): ``"mse"`` or ``"kl"``. (default: by the learner's task)
        temperature (float): softening for ``kl``. (default: ``1.0``)
    """

    learner: str
    tutor: str
    protocols: str | list[str] = field(default_factory=lambda: ["talk"])
    weights: dict[str, float] = field(default_factory=dict)
    rounds: int = 1
    noise: float = 0.0
    distance: str = "l2"
    logit_distance: str | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.protocols, str):
            self.protocols = [self.protocols]
        known = sorted([*PROTOCOLS, *ALIASES])
        _require(bool(self.protocols), "protocols", f"must name at least one of {known}")
        for i, protocol in enumerate(self.protocols):
            _require(
                protocol in known,
                f"protocols.{i}",
                f"unknown protocol {protocol!r}; known: {known}",
            )
        _require(self.rounds >= 0, "rounds", f"must be >= 0, got {self.rounds}")
        _require(self.noise >= 0, "noise", f"must be >= 0, got {self.noise}")
        _require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        _require(
            self.distance in DISTANCES,
            "distance",
            f"must be one of {list(DISTANCES)}, got {self.distance!r}",
        )
        _require(
            self.logit_distance is None or self.logit_distance in LOGIT_DISTANCES,
            "logit_distance",
            f"must be one of {list(LOGIT_DISTANCES)} or null, got {self.logit_distance!r}",
        )
        try:  # the weights' names depend on the protocols: Edge knows which belong
            self.to_edge()
        except GraphError as error:
            raise ConfigError(str(error), "weights") from None

    def to_edge(self) -> Edge:
        """The :class:`~agora.graph.Edge` these fields describe (``protocols`` as a tuple)."""
        return Edge(**{**dataclasses.asdict(self), "protocols": tuple(self.protocols)})


@dataclass
class GraphConfig:
    """The agents, their edges and the message space (see :class:`~agora.graph.Graph`).

    Args:
        agents (list[AgentConfig]): at least one, one trainable.
        edges (list[EdgeConfig]): who learns from whom. (default: ``[]``)
        message_dim (int): size of the message space. (default: ``128``)
        codec (str): ``"mlp"``, ``"linear"``, ``"token"``, ``"token-linear"`` or the import
            path of a codec factory. (default: ``"mlp"``)
        codec_hidden (int): hidden width of MLP codecs. (default: ``256``)
        codec_dropout (float): dropout of MLP codecs, in ``[0, 1)``. (default: ``0.1``)
    """

    agents: list[AgentConfig]
    edges: list[EdgeConfig] = field(default_factory=list)
    message_dim: int = 128
    codec: str = "mlp"
    codec_hidden: int = 256
    codec_dropout: float = 0.1

    def __post_init__(self) -> None:
        _require(self.message_dim > 0, "message_dim", f"must be > 0, got {self.message_dim}")
        _require(self.codec_hidden > 0, "codec_hidden", f"must be > 0, got {self.codec_hidden}")
        _require(
            0 <= self.codec_dropout < 1,
            "codec_dropout",
            f"must be in [0, 1), got {self.codec_dropout}",
        )
        if self.codec not in CODEC_KINDS:
            _require_import(
                self.codec,
                "codec",
                f"one of {list(CODEC_KINDS)} or a codec factory 'module:function'",
            )
        _require(bool(self.agents), "agents", "must list at least one agent")
        agents: dict[str, AgentConfig] = {}
        for i, agent in enumerate(self.agents):
            _require(
                agent.name not in agents, f"agents.{i}.name", f"duplicate agent {agent.name!r}"
            )
            agents[agent.name] = agent
        _require(
            not all(a.frozen for a in self.agents),
            "agents",
            f"every agent of {list(agents)} is frozen; unfreeze the student(s)",
        )
        pairs: set[tuple[str, str]] = set()
        for i, edge in enumerate(self.edges):
            for role in ("learner", "tutor"):
                name = getattr(edge, role)
                _require(
                    name in agents,
                    f"edges.{i}.{role}",
                    f"unknown agent {name!r}; agents are {list(agents)}",
                )
            _require(
                edge.learner != edge.tutor,
                f"edges.{i}.tutor",
                f"{edge.learner!r} cannot learn from itself",
            )
            _require(
                not agents[edge.learner].frozen,
                f"edges.{i}.learner",
                f"{edge.learner!r} is frozen; a learner must be trainable",
            )
            _require(
                (edge.learner, edge.tutor) not in pairs,
                f"edges.{i}",
                f"a second edge {edge.learner}->{edge.tutor}; give one edge several protocols",
            )
            pairs.add((edge.learner, edge.tutor))

    def to_nx(self) -> nx.DiGraph:
        """The agents and edges as a ``networkx.DiGraph``, without building any model: nodes
        carry ``frozen``, ``codec_frozen`` and ``task``, edges their :class:`Edge` under ``"edge"``.

        Example:
            >>> g = load_config("tiny").graph.to_nx()
            >>> list(g.edges), g.nodes["teacher"]["frozen"]
            ([('student', 'teacher')], True)
        """
        graph = nx.DiGraph()
        for agent in self.agents:
            graph.add_node(
                agent.name, frozen=agent.frozen, codec_frozen=agent.codec_frozen, task=agent.task
            )
        for edge in self.edges:
            graph.add_edge(edge.learner, edge.tutor, edge=edge.to_edge())
        return graph

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Graph.from_dict <agora.graph.Graph.from_dict>`'s data for this config."""
        agents = []
        for agent in self.agents:
            entry: dict[str, Any] = {
                "name": agent.name,
                "frozen": agent.frozen,
                "codec_frozen": agent.codec_frozen,
                "task_weight": agent.task_weight,
                "aggregation": agent.aggregation,
                "spec": {"factory": agent.factory, "kwargs": copy.deepcopy(agent.kwargs)},
            }
            if agent.task is not None:
                entry["task"] = agent.task
            agents.append(entry)
        return {
            "message_dim": self.message_dim,
            "codec": self.codec,
            "codec_hidden": self.codec_hidden,
            "codec_dropout": self.codec_dropout,
            "agents": agents,
            "edges": [edge.to_edge().to_dict() for edge in self.edges],
        }


@dataclass
class DataConfig:
    """The data: ``factory(**kwargs)`` returns ``{"train": ..., "valid": ..., ["test": ...]}``.

    Args:
        factory (str): ``"module:function"``.
        kwargs (dict): its keyword arguments. (default: ``{}``)
    """

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_import(self.factory, "factory", "a data factory 'module:function'")


@dataclass
class StageConfig:
    """One stage of a staged run (see :class:`~agora.stages.Stage`)::

        stages:
          - {name: assistant, epochs: 3, edges: [assistant->teacher], train: [assistant]}
          - {name: student, epochs: 3, edges: [student->assistant], train: [student]}

    Args:
        name (str): unique; names the stage's folder ``<run>/stages/<name>``.
        epochs (int, optional): the stage's epochs. (default: ``fit.epochs``)
        edges (list[str], optional): the edges active in the stage, ``"learner->tutor"``;
            the others are off. (default: ``null``, every edge as it is)
        train (list[str], optional): the agents that train in the stage; the others are
            frozen. (default: ``null``, every agent as it is)
        metric (str, optional): the metric that picks the stage's best weights. (default:
            the first trainable agent's)
    """

    name: str
    epochs: int | None = None
    edges: list[str] | None = None
    train: list[str] | None = None
    metric: str | None = None

    def __post_init__(self) -> None:
        _require(
            bool(self.name) and not set(self.name) & set("/\\ "),
            "name",
            f"must be a non-empty name without '/' or spaces, got {self.name!r}",
        )
        _require(
            self.epochs is None or self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}"
        )

    def to_stage(self) -> Any:
        """The :class:`~agora.stages.Stage` these fields describe."""
        from agora.stages import Stage

        return Stage(**dataclasses.asdict(self))


def _check_stages(stages: list[StageConfig], graph: GraphConfig) -> None:
    agents = [agent.name for agent in graph.agents]
    edges = [f"{edge.learner}->{edge.tutor}" for edge in graph.edges]
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        _require(stage.name not in seen, f"stages.{i}.name", f"duplicate stage {stage.name!r}")
        seen.add(stage.name)
        for j, edge in enumerate(stage.edges or []):
            _require(
                edge in edges,
                f"stages.{i}.edges.{j}",
                f"unknown edge {edge!r}; the graph's edges are {edges}",
            )
        for j, name in enumerate(stage.train or []):
            _require(
                name in agents,
                f"stages.{i}.train.{j}",
                f"unknown agent {name!r}; agents are {agents}",
            )
        if stage.metric is not None:
            _check_metric(stage.metric, graph.agents, f"stages.{i}.metric")


# (predicate, requirement) per FitConfig field, checked before FitConfig's own checks so that
# the error names the key


def _check_fit_values(values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if name in FIT_CHECKS:
            ok, requirement = FIT_CHECKS[name]
            _require(ok(value), name, f"{requirement}, got {value!r}")


def _check_metric(metric: str | None, agents: list[AgentConfig], key: str = "fit.metric") -> None:
    if metric is not None:
        agent, _, name = metric.partition("/")
        names = [a.name for a in agents]
        _require(
            (agent in names or agent == "mean") and bool(name),
            key,
            f"must be '<agent>/<metric>' with an agent of {names} (e.g. "
            f"'{names[-1]}/rmse'), or 'mean/<metric>' for per-learner data, got {metric!r}",
        )


@dataclass
class RunConfig:
    """One run: the graph, its data and how to fit it.

    Args:
        graph (GraphConfig): the agents and edges.
        data (DataConfig): where the train / valid (/ test) splits come from.
        fit (FitConfig): the training loop's settings. (default: ``FitConfig()``)
        seed (int): seeds the agents' initialisation, and ``fit.seed`` unless the file sets it.
            (default: ``0``)
        stages (list[StageConfig]): train in stages, each switching edges and trainable
            agents (see :class:`StageConfig`); empty trains once. (default: ``[]``)

    Example:
        >>> cfg = load_config("tiny", ["fit.epochs=1", "graph.edges.0.rounds=3"])
        >>> cfg.fit.epochs, cfg.graph.edges[0].rounds, cfg.graph.agents[0].frozen
        (1, 3, True)
    """

    graph: GraphConfig
    data: DataConfig
    fit: FitConfig = field(default_factory=FitConfig)
    seed: int = 0
    stages: list[StageConfig] = field(default_factory=list)
    source: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_metric(self.fit.metric, self.graph.agents)
        _check_stages(self.stages, self.graph)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`config_from_dict` reads back (stored in ``graph.json``)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


# -- loading -----------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if tp in names:
        return names[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        arms = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(arms) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])}s" if args and args[0] in names else "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the type ``tp`` (and converted: int -> float, list -> tuple)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    wrong = ConfigError(f"must be {_describe(tp)}, got {value!r}", key)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise wrong
        for arm in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arm, key)
            except ConfigError:
                continue
        raise wrong
    if origin is Literal:
        if value in args:
            return value
        raise wrong
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise wrong
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise wrong
        value_type = args[1] if args else Any
        return {str(k): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        # PyYAML reads 1e-3 (no dot) as a string: accept what float() reads
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if tp is int and isinstance(value, bool):
        raise wrong
    if isinstance(tp, type) and not isinstance(value, tp):
        raise wrong
    return value


def _build(cls: type, raw: Any, key: str | None) -> Any:
    """An instance of the dataclass ``cls`` from a mapping, every field type-checked."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"must be a mapping with keys {list(fields)}, got {raw!r}", key)
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown key{hint}; {cls.__name__} has {list(fields)}",
                ".".join(p for p in (key, str(name)) if p),
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        sub = ".".join(p for p in (key, name) if p)
        if name in raw:
            values[name] = _convert(raw[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing; {cls.__name__} requires it", sub)
    try:
        if cls is FitConfig:
            _check_fit_values(values)
        return cls(**values)
    except ConfigError as error:
        raise error.within(key) from None
    except (ValueError, TypeError) as error:  # a dataclass's own checks (e.g. FitConfig's)
        raise ConfigError(str(error), key) from None


_KEY = re.compile(r"^[\w-]+(\.[\w-]+)*$")


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], *, source: str | None = None
) -> dict[str, Any]:
    """A copy of ``data`` with ``key.path=value`` overrides applied (values parsed as YAML).

    List items are addressed by index (``graph.edges.0.rounds=3``); missing mappings on the
    path are created, so that an unknown key is reported by validation like any other.

    Example:
        >>> apply_overrides({"fit": {"epochs": 2}, "graph": {"edges": [{"rounds": 1}]}},
        ...                 ["fit.epochs=5", "graph.edges.0.rounds=3", "fit.metric=student/rmse"])
        {'fit': {'epochs': 5, 'metric': 'student/rmse'}, 'graph': {'edges': [{'rounds': 3}]}}
    """
    data = copy.deepcopy(dict(data))
    for text in overrides:
        key, eq, value_text = text.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise ConfigError(
                f"bad override {text!r}: expected key.path=value, e.g. fit.epochs=3 or "
                f"graph.edges.0.rounds=2",
                key or None,
                source,
            )
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"override value {value_text!r} is not YAML: {error}", key, source
            ) from None
        _set(data, key.split("."), value, source)
    return data


def _set(node: Any, parts: list[str], value: Any, source: str | None) -> None:
    for depth, part in enumerate(parts):
        key = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list):
            if not part.isdigit() or int(part) > len(node) or (int(part) == len(node) and not last):
                raise ConfigError(
                    f"cannot override: the list {'.'.join(parts[:depth])} has {len(node)} items",
                    key,
                    source,
                )
            if int(part) == len(node):
                node.append(value)
            elif last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            raise ConfigError(
                f"cannot override: {'.'.join(parts[:depth])} is {node!r}, not a mapping or list",
                key,
                source,
            )


def config_from_dict(
    data: Mapping[str, Any], overrides: Iterable[str] = (), *, source: str | None = None
) -> RunConfig:
    """Validate plain data (a parsed YAML file, or ``graph.json["config"]``) as a RunConfig.

    Args:
        data (Mapping): keys ``seed``, ``graph``, ``data``, ``fit``, ``stages``.
        overrides (iterable of str): ``key.path=value`` strings applied first.
        source (str, optional): the file, for error messages.

    Raises:
        ConfigError: naming the dotted key and the file.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"must be a mapping with keys graph, data, fit, seed, stages; got {data!r}",
            None,
            source,
        )
    data = apply_overrides(data, overrides, source=source)
    if isinstance(data.get("fit", {}), dict) and isinstance(data.get("seed"), int):
        data.setdefault("fit", {}).setdefault("seed", data["seed"])
    try:
        config = _build(RunConfig, data, None)
    except ConfigError as error:
        raise error.within(None, source) from None
    config.source = source
    return config


def packaged_configs() -> list[str]:
    """Names of the configs shipped in ``agora/configs/`` (``agora run <name>``)."""
    root = resources.files("agora.configs")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config(path_or_name: str | Path) -> Path:
    """A config file's path: ``path_or_name`` itself, or a packaged config of that name."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = str(path_or_name)
    if re.fullmatch(r"[\w-]+", name):
        packaged = resources.files("agora.configs") / f"{name}.yaml"
        if packaged.is_file():
            return Path(str(packaged))
    raise ConfigError(
        f"no config file {name!r}, and no packaged config of that name; packaged configs: "
        f"{packaged_configs()}",
        source=name,
    )


def load_config(path_or_name: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Load, override and validate a run config from a YAML file or a packaged name.

    Args:
        path_or_name (str or Path): a YAML file, or the name of a packaged config (``"tiny"``
            reads ``agora/configs/tiny.yaml``).
        overrides (iterable of str): ``key.path=value`` strings, values parsed as YAML
            (``fit.epochs=5``, ``graph.edges.0.rounds=3``), applied before validation.

    Raises:
        ConfigError: an unknown key, a wrong type or a bad value, naming the key and file.

    Example:
        >>> cfg = load_config("tiny", ["fit.lr=1e-2"])
        >>> cfg.fit.lr, [a.name for a in cfg.graph.agents]
        (0.01, ['teacher', 'student'])
    """
    path = resolve_config(path_or_name)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read YAML: {error}", source=str(path)) from None
    return config_from_dict(data if data is not None else {}, overrides, source=str(path))


# -- building ----------------------------------------------------------------------------------


def load_backbone(agent: Agent, path: str | Path, *, key: str = "pretrained") -> None:
    """Load backbone weights (``lower.*``, ``upper.*``, ``head.*``) from a safetensors file.

    Raises:
        ConfigError: naming ``key`` and the file for a missing file or tensors that do not fit.
    """
    parts = nn.ModuleDict(
        {role: m for role in ("lower", "upper", "head") if (m := getattr(agent, role)) is not None}
    )
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise ConfigError(f"cannot read safetensors file {str(path)!r}: {error}", key) from None
    own = parts.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    shapes = [k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape]
    if missing or unexpected or shapes:
        raise ConfigError(
            f"{str(path)!r} does not fit agent {agent.name!r}: missing tensors {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {sorted(shapes)[:5]}",
            key,
        )
    parts.load_state_dict(tensors)


def build_graph(config: RunConfig) -> Graph:
    """The config's graph, unbuilt: agents made by their factories (seeded by ``config.seed``),
    pretrained backbones loaded, edges added. Call ``graph.build(sample)`` to make the codecs.

    Each agent keeps ``agent.spec = {"factory": ..., "kwargs": ...}`` so that a checkpoint can
    rebuild it.

    Raises:
        ConfigError: a factory that fails or returns something else than an Agent, or a
            pretrained file that does not fit, naming the key and the config file.

    Example:
        >>> graph = build_graph(load_config("tiny"))
        >>> graph
        Graph(student -> teacher [talk, k=2])
        >>> graph.agents["teacher"].frozen, graph.agents["student"].spec["kwargs"]["width"]
        (True, 8)
    """
    torch.manual_seed(config.seed)
    data = config.graph.to_dict()
    agents = {}
    for i, (entry, agent_config) in enumerate(zip(data["agents"], config.graph.agents)):
        key = f"graph.agents.{i}"
        try:
            agent = agent_from_spec(entry["name"], entry["spec"])
        except GraphError as error:  # the factory cannot be imported or returns no Agent
            raise ConfigError(str(error), f"{key}.factory", config.source) from None
        except (TypeError, ValueError) as error:  # a keyword or value the factory rejects
            raise ConfigError(
                f"{agent_config.factory}: {error}", f"{key}.kwargs", config.source
            ) from None
        if agent_config.pretrained is not None:
            try:
                load_backbone(agent, agent_config.pretrained, key=f"{key}.pretrained")
            except ConfigError as error:
                raise error.within(None, config.source) from None
        agents[agent.name] = agent
    try:
        return Graph.from_dict(data, agents)
    except (GraphError, ValueError) as error:
        raise ConfigError(str(error), "graph", config.source) from None


def build_data(config: RunConfig) -> dict[str, Dataset]:
    """The config's data splits: ``{"train": ..., "valid": ..., ["test": ...]}``.

    Example:
        >>> splits = build_data(load_config("tiny"))
        >>> sorted(splits), len(splits["train"]) > len(splits["valid"])
        (['train', 'valid'], True)
    """
    factory = import_object(config.data.factory)
    try:
        splits = factory(**config.data.kwargs)
    except TypeError as error:  # most often a keyword the factory does not take
        raise ConfigError(f"{config.data.factory}: {error}", "data.kwargs", config.source) from None
    except ValueError as error:  # e.g. a bad value, or data that is not where it should be
        raise ConfigError(f"{config.data.factory}: {error}", "data", config.source) from None
    if not isinstance(splits, Mapping) or not {"train", "valid"} <= set(splits):
        got = sorted(splits) if isinstance(splits, Mapping) else type(splits).__name__
        raise ConfigError(
            f"{config.data.factory} returned {got}; expected a mapping with 'train' and 'valid' "
            f"(and optionally 'test')",
            "data.factory",
            config.source,
        )
    return dict(splits)
