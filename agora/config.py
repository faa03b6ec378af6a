"""Run configs: a YAML file -> a validated :class:`RunConfig` -> a :class:`~agora.graph.Graph`
and its data.

A config is plain data loaded straight into the dataclasses that run it
(:class:`~agora.graph.GraphSpec`, :class:`~agora.edge.Edge`, :class:`~agora.train.FitConfig`,
:class:`~agora.stages.Stage`), every field type-checked, so a typo fails before anything
trains, with the dotted key and the file in the message::

    seed: 0
    graph:
      message_dim: 16
      agents:
        - {name: teacher, factory: agora.models.toy:mlp_agent, kwargs: {d_in: 8, width: 32},
           frozen: true}
        - {name: student, factory: agora.models.toy:mlp_agent, kwargs: {d_in: 8, width: 8}}
      edges:
        - {learner: student, tutor: teacher, protocols: [{talk: {rounds: 2}}]}
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import torch
import yaml
from torch.utils.data import Dataset

from agora.errors import FieldError, GraphError
from agora.graph import Graph, GraphSpec, check_trains, import_object
from agora.stages import Stage, check_stage_names
from agora.train import FitConfig


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


# -- the config tree: the runtime dataclasses themselves, plus the data and the run ------------


@dataclass
class TransferConfig:
    """A transfer set: ``factory(**kwargs)`` returns a dataset whose labels, if any, are not
    read (:func:`agora.train.fit`'s ``transfer``).

    Args:
        factory (str): ``"module:function"``.
        kwargs (dict): its keyword arguments. (default: ``{}``)
    """

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not callable(import_object(self.factory, "factory")):
            raise GraphError(
                f"{self.factory!r} is not callable; expected a data factory", "factory"
            )


@dataclass
class DataConfig(TransferConfig):
    """The data: ``factory(**kwargs)`` returns ``{"train": ..., "valid": ..., ["test": ...]}``,
    and optionally a transfer set of unlabelled examples::

        data:
          factory: agora.data.synthetic:regression
          kwargs: {n: 640}
          transfer: {factory: agora.data.synthetic:unlabelled, kwargs: {n: 2048}}

    Args:
        factory (str): ``"module:function"``.
        kwargs (dict): its keyword arguments. (default: ``{}``)
        transfer (TransferConfig, optional): the transfer set's factory and keyword
            arguments. (default: ``None``)
    """

    transfer: TransferConfig | None = None


@dataclass
class RunConfig:
    """One run: the graph, its data and how to fit it.

    Every section loads straight into the type that runs it: ``graph`` into a
    :class:`~agora.graph.GraphSpec` (each agent an :class:`~agora.graph.AgentSpec`, each edge
    an :class:`~agora.edge.Edge`), ``fit`` into a :class:`~agora.train.FitConfig`, each stage
    into a :class:`~agora.stages.Stage`.

    Args:
        graph (GraphSpec): the agents, edges and message space.
        data (DataConfig): where the train / valid (/ test) splits come from.
        fit (FitConfig): the training loop's settings. (default: ``FitConfig()``)
        seed (int): seeds the agents' initialisation, and ``fit.seed`` unless the file sets it.
            (default: ``0``)
        stages (list[Stage]): train in stages, each switching edges and trainable agents;
            empty trains once. (default: ``[]``)
        baseline (bool): also train the students alone and write ``comparison.json`` (what
            ``agora run --baseline`` asks for). (default: ``false``)
        options (dict[str, str or list[str]]): command-line options the config offers, each
            naming the key (or keys) it sets: ``{genre: data.kwargs.genre}`` makes ``agora run
            CONFIG --genre War`` mean ``data.kwargs.genre=War``. (default: ``{}``)
        threads (int): the CPU threads PyTorch uses for the whole run (its data, factories,
            training and evaluation); ``null`` keeps PyTorch's default, one per core. Small
            models on a few cores run fastest on one thread, which also keeps them from
            stalling while another process is busy. (default: ``null``)

    Example:
        >>> cfg = load_config("tiny", ["fit.epochs=1", "graph.edges.0.protocols.0.talk.rounds=3"])
        >>> cfg.fit.epochs, cfg.graph.edges[0].protocols, cfg.graph.agents[0].frozen
        (1, (Talk(rounds=3, interact_weight=0.5),), True)
    """

    graph: GraphSpec
    data: DataConfig
    fit: FitConfig = field(default_factory=FitConfig)
    seed: int = 0
    stages: list[Stage] = field(default_factory=list)
    baseline: bool = False
    options: dict[str, str | list[str]] = field(default_factory=dict)
    threads: int | None = None
    source: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:  # the graph as configured trains (stages may then freeze some of it)
            check_trains(self.graph.agents, self.graph.edges)
        except GraphError as error:
            raise error.under("graph") from None
        for i, agent in enumerate(self.graph.agents):
            if agent.factory is None:
                raise GraphError(
                    "missing; a config makes every agent with its factory",
                    f"graph.agents.{i}.factory",
                )
        agents = [agent.name for agent in self.graph.agents]
        _check_metric(self.fit.metric, agents, "fit.metric")
        try:
            check_stage_names(self.stages)
        except GraphError as error:
            raise error.under("stages") from None
        edges = [edge.name for edge in self.graph.edges]
        for i, stage in enumerate(self.stages):
            try:
                stage.check(agents, edges)
            except GraphError as error:
                raise error.under(f"stages.{i}") from None
            _check_metric(stage.metric, agents, f"stages.{i}.metric")
        for name, keys in self.options.items():
            keys = [keys] if isinstance(keys, str) else keys
            if not re.fullmatch(r"[a-z][\w-]*", name) or not all(_KEY.match(k) for k in keys):
                raise GraphError(
                    f"an option is a lower-case name and dotted keys, got {name!r}: {keys!r}",
                    f"options.{name}",
                )
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise GraphError(f"must be a number of threads >= 1, or null, got {self.threads!r}",
                             "threads")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`config_from_dict` reads back (stored in ``graph.json``)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        data["graph"] = self.graph.to_dict()
        return data


def _check_metric(metric: str | None, agents: list[str], key: str) -> None:
    if metric is not None:
        agent, _, name = metric.partition("/")
        if not ((agent in agents or agent == "mean") and name):
            raise GraphError(
                f"must be '<agent>/<metric>' with an agent of {agents} (e.g. "
                f"'{agents[-1]}/rmse'), or 'mean/<metric>' for per-learner data, got {metric!r}",
                key,
            )


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
        if name in getattr(cls, "moved_keys", {}):  # a key an older agora read here
            raise ConfigError(cls.moved_keys[name], ".".join(p for p in (key, str(name)) if p))
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
        return cls(**values)
    except ConfigError as error:
        raise error.within(key) from None
    except FieldError as error:  # the type's own checks name the field at fault
        raise ConfigError(error.message, ".".join(p for p in (key, error.key) if p)) from None
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error), key) from None


_KEY = re.compile(r"^[\w-]+(\.[\w-]+)*$")


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], *, source: str | None = None
) -> dict[str, Any]:
    """A copy of ``data`` with ``key.path=value`` overrides applied (values parsed as YAML).

    List items are addressed by index (``graph.agents.1.frozen=true``); missing mappings on the
    path are created, so that an unknown key is reported by validation like any other.

    Example:
        >>> apply_overrides({"fit": {"epochs": 2}, "graph": {"edges": [{"noise": 0.0}]}},
        ...                 ["fit.epochs=5", "graph.edges.0.noise=0.1", "fit.metric=student/rmse"])
        {'fit': {'epochs': 5, 'metric': 'student/rmse'}, 'graph': {'edges': [{'noise': 0.1}]}}
    """
    data = copy.deepcopy(dict(data))
    for text in overrides:
        key, eq, value_text = text.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise ConfigError(
                f"bad override {text!r}: expected key.path=value, e.g. fit.epochs=3 or "
                f"graph.edges.0.noise=0.1",
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
            (``fit.epochs=5``, ``graph.edges.0.protocols.0.talk.rounds=3``), applied before
            validation.

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
    try:
        return Graph.from_spec(config.graph)
    except GraphError as error:  # its key is the spec's: under the config's "graph"
        key = f"graph.{error.key}" if error.key else "graph"
        raise ConfigError(error.message, key, config.source) from None


def _call_factory(config: RunConfig, data: TransferConfig, key: str) -> Any:
    """``data.factory(**data.kwargs)``, its errors naming ``key`` and the config file."""
    factory = import_object(data.factory, f"{key}.factory")
    try:
        return factory(**data.kwargs)
    except TypeError as error:  # most often a keyword the factory does not take
        raise ConfigError(f"{data.factory}: {error}", f"{key}.kwargs", config.source) from None
    except ValueError as error:  # e.g. a bad value, or data that is not where it should be
        raise ConfigError(f"{data.factory}: {error}", key, config.source) from None


def build_data(config: RunConfig) -> dict[str, Dataset]:
    """The config's data splits: ``{"train": ..., "valid": ..., ["test": ...]}``, and
    ``"transfer"`` when the config has a transfer set (``data.transfer``).

    Example:
        >>> splits = build_data(load_config("tiny"))
        >>> sorted(splits), len(splits["train"]) > len(splits["valid"])
        (['test', 'train', 'valid'], True)
        >>> len(build_data(load_config("tiny-transfer"))["transfer"])
        2048
    """
    splits = _call_factory(config, config.data, "data")
    if not isinstance(splits, Mapping) or not {"train", "valid"} <= set(splits):
        got = sorted(splits) if isinstance(splits, Mapping) else type(splits).__name__
        raise ConfigError(
            f"{config.data.factory} returned {got}; expected a mapping with 'train' and 'valid' "
            f"(and optionally 'test')",
            "data.factory",
            config.source,
        )
    splits = dict(splits)
    if config.data.transfer is not None:
        transfer = _call_factory(config, config.data.transfer, "data.transfer")
        if not hasattr(transfer, "__getitem__") or not hasattr(transfer, "__len__"):
            raise ConfigError(
                f"{config.data.transfer.factory} returned {type(transfer).__name__}; expected a "
                "dataset (the transfer set)",
                "data.transfer.factory",
                config.source,
            )
        splits["transfer"] = transfer
    return splits
