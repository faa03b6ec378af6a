"""A config, run: build its data and graph, fit it (stage by stage if it has stages).

What ``agora run``, ``agora eval`` and ``agora cka`` do, as functions::

    config = load_config("tiny", ["fit.epochs=1"])
    results = run_config(config, "runs/tiny")      # {"": FitResult} or {stage: FitResult}
    graph = agora.load("runs/tiny")
    valid = stored_split(stored_config("runs/tiny"), "valid")
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from agora.baseline import alone, compare
from agora.config import ConfigError, RunConfig, build_data, build_graph, config_from_dict
from agora.errors import GraphError
from agora.folder import RunFolderError
from agora.train import FitResult
from agora.trust import trusting


def sample_batch(data: Any, rows: int = 8) -> Any:
    """The inputs ``x`` of a first small batch of a Dataset or DataLoader (to build codecs);
    for per-learner data (``{learner: data}``), of the first learner's."""
    from agora.loaders import eval_loader, split_batch

    if isinstance(data, Mapping):
        data = next(iter(data.values()))
    x, _ = split_batch(next(iter(eval_loader(data, batch_size=rows))))
    return x


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """PyTorch's CPU threads set to ``count`` for the block, then restored (``None``: left as
    they are): a config's ``threads``."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_config(
    config: RunConfig,
    out_dir: str | os.PathLike,
    *,
    baseline: bool | None = None,
    overwrite: bool = False,
) -> dict[str, FitResult]:
    """Build the config's data and graph and fit it into ``out_dir``.

    The data is built first, so that a wrong genre or a missing file fails before an agent
    factory pre-trains anything. Returns ``{"": result}``, or each stage's result by name.

    With ``baseline`` (default: the config's ``baseline``), the same students also train alone
    (:func:`alone`: same seed, data, budget and early stopping) into ``out_dir/alone``, and
    ``out_dir/comparison.json`` compares them (:func:`compare`); its result is under
    ``"alone"``.

    ``out_dir`` follows the run folder's rules (:mod:`agora.folder`): an unfinished run of the
    same config resumes, anything else is refused unless ``overwrite``.

    Raises:
        ConfigError: naming the key and the file, for anything the config gets wrong.
        RunFolderError: ``out_dir`` holds a finished run or another config's, or another run
            is writing it.
    """
    with threads(config.threads):
        return _run(config, out_dir, baseline, overwrite)


def _run(
    config: RunConfig, out_dir: str | os.PathLike, baseline: bool | None, overwrite: bool
) -> dict[str, FitResult]:
    from agora.stages import fit_stages
    from agora.train import fit

    baseline = config.baseline if baseline is None else baseline
    stages = list(config.stages)
    if baseline and stages:
        raise ConfigError(
            "a baseline (the students alone) is for configs without stages",
            "baseline",
            config.source,
        )
    data = build_data(config)
    graph = build_graph(config)
    try:
        graph.build(sample_batch(data["train"]))
        if stages:
            from agora.stages import check_stages

            check_stages(graph, stages)
    except GraphError as error:
        raise ConfigError(str(error), "stages" if stages else "graph", config.source) from None
    out_dir = Path(out_dir)
    common = {
        "run_config": config.to_dict(), "resume": not overwrite, "transfer": data.get("transfer")
    }  # fmt: skip
    try:  # a refused folder says how run_config starts afresh
        if stages:
            return fit_stages(graph, stages, data["train"], data["valid"], config.fit,
                              out_dir=out_dir, **common)  # fmt: skip
        solo = alone(graph) if baseline else None  # before training: the same initial students
        results = {"": fit(graph, data["train"], data["valid"], config.fit, out_dir=out_dir,
                           **common)}  # fmt: skip
        if solo is not None:
            results["alone"] = fit(solo, data["train"], data["valid"], config.fit,
                                   out_dir=out_dir / "alone", **common)  # fmt: skip
    except RunFolderError as error:
        raise error.advising("overwrite=True") from None
    if solo is not None:
        test = data.get("test")
        comparison = compare(graph, solo, data["valid"], test)
        (out_dir / "comparison.json").write_text(json.dumps(comparison, indent=2))
    return results


def fill_stores(
    config: RunConfig, *, dtype: str | None = None, root: str | None = None, progress: bool = True
) -> dict[tuple[str, str], Any]:
    """Fill the teacher stores a run of ``config`` reads (:mod:`agora.store`): every frozen
    agent's round 0 on the training data and on the transfer set, where missing.

    Returns ``{(agent, dataset): store}`` with dataset ``"train"``, a learner's name (its own
    training data) or ``"transfer"``.
    """
    with threads(config.threads):
        return _fill_stores(config, dtype, root, progress)


def _fill_stores(
    config: RunConfig, dtype: str | None, root: str | None, progress: bool
) -> dict[tuple[str, str], Any]:
    from agora.cache import open_stores
    from agora.loaders import TRANSFER

    data = build_data(config)
    graph = build_graph(config)
    try:
        graph.build(sample_batch(data["train"]))
    except GraphError as error:
        raise ConfigError(str(error), "graph", config.source) from None
    train = data["train"]
    datasets: dict[str | None, Any] = dict(train) if isinstance(train, Mapping) else {None: train}
    if "transfer" in data:
        datasets[TRANSFER] = data["transfer"]
    stores = open_stores(
        graph, datasets, root or config.fit.store_dir, dtype or config.fit.store_dtype,
        progress=progress,
    )  # fmt: skip
    names = {None: "train", TRANSFER: "transfer"}
    return {(agent, names.get(key, key)): store for (agent, key), store in stores.items()}


def option_overrides(config: RunConfig, options: Sequence[tuple[str, str]]) -> list[str]:
    """``key=value`` overrides for a config's command-line options (``--genre War`` ->
    ``data.kwargs.genre="War"``, as :attr:`RunConfig.options` declares).

    Raises:
        ConfigError: an option the config does not offer, listing those it does.
    """
    overrides = []
    for name, value in options:
        if name not in config.options:
            offered = ", ".join(f"--{n} (= {_keys(k)})" for n, k in config.options.items())
            raise ConfigError(
                f"unknown option --{name}; this config offers: {offered or 'none'}",
                "options",
                config.source,
            )
        keys = config.options[name]
        # JSON is YAML: the value stays a string even when it reads as YAML (`--genre null`)
        overrides += [
            f"{key}={json.dumps(value)}" for key in ([keys] if isinstance(keys, str) else keys)
        ]
    return overrides


def _keys(keys: str | list[str]) -> str:
    return keys if isinstance(keys, str) else ", ".join(keys)


def stored_config(
    run_dir: str | os.PathLike, overrides: Sequence[str] = (), *, trust_code: bool = False
) -> RunConfig:
    """The run config a run stored in its ``graph.json`` (under ``"config"``); code it names
    that is not agora's own (a factory, a codec, a protocol) needs ``trust_code``, and is
    refused before it is imported otherwise (see :func:`agora.checkpoint.load`)."""
    from agora.checkpoint import model_dir, read_document

    directory = model_dir(run_dir)
    source = str(directory / "graph.json")
    document = read_document(directory)
    data = document.get("config")
    if not data:
        raise ConfigError(
            "no run config under 'config'; it was not written by `agora run`, so rebuild its "
            "data in Python and call agora.train.evaluate",
            source=source,
        )
    with trusting(trust_code):
        return config_from_dict(data, overrides, source=source)


def stored_split(config: RunConfig, split: str) -> Any:
    """One split of the data a run config describes (built afresh from its factory)."""
    data = build_data(config)
    if split not in data:
        raise ConfigError(
            f"the data has no {split!r} split; it has {sorted(data)}",
            "data.factory",
            config.source,
        )
    return data[split]
