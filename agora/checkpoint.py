"""Checkpoints: one folder per run, one safetensors file per agent and part, written atomically.

A model folder holds::

    graph.json                          agents, edges, run config, versions, file checksums
    agents/<name>/backbone.safetensors  lower, upper and head
    agents/<name>/codec.safetensors     encoder and decoder
    agents/<name>/<protocol>.safetensors  (a protocol's module of the learner's, e.g. talk's
                                           aggregator when it learns weights)
    edges/<learner>--<tutor>/<protocol>.safetensors  (an edge's, e.g. FitNet's regressor)

A run folder holds ``checkpoints/step-<N>/`` (a model folder plus Accelerate's ``state/`` for
resume), the pointer files ``checkpoints/latest`` and ``checkpoints/best``, ``metrics.jsonl``,
and, once training ends, the final model under ``model/``. A folder is written under a
temporary name and renamed into place, and a pointer is replaced atomically, so a crash never
leaves a checkpoint that a pointer names half-written.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from agora.folder import (
    file_sha256,
    read_json,
    read_text,
    umask_mode,
    with_digest,
    written_in_place,
)
from agora.graph import Graph
from agora.trust import UntrustedCodeError, trusting

FORMAT = 3  # 2: graph.json and state.json carry the digest of their own content; 3: a
# learner's talk settings are on its talk edges, its aggregator in agents/<name>/talk
# up to format 2, a file of an agent's held what is now in another: new -> (old, key prefix)
FORMERLY = {"talk": ("aggregator", "aggregator.")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into a graph: names the agent, file and tensor."""


# -- the files of one model -------------------------------------------------------------------


def components(graph: Graph) -> dict[str, nn.Module]:
    """Relative file name (without suffix) -> the module whose weights it holds."""
    files: dict[str, nn.Module] = {}
    for name, agent in graph.agents.items():
        files[f"agents/{name}/backbone"] = nn.ModuleDict(
            {
                k: m
                for k, m in (("lower", agent.lower), ("upper", agent.upper), ("head", agent.head))
                if m is not None
            }
        )
        if agent.codec is not None:
            files[f"agents/{name}/codec"] = agent.codec
    for protocol, learners in graph.learner_modules.items():
        for name, module in learners.items():
            if len(module.state_dict()):
                files[f"agents/{name}/{protocol}"] = module
    for edge in graph.edges:
        for name in edge.names:
            if (module := graph.edge_module(edge, name)) is not None:
                files[f"edges/{edge.learner}--{edge.tutor}/{name}"] = module
    return files


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_model(
    directory: str | os.PathLike,
    graph: Graph,
    extra: Mapping[str, Any] | None = None,
    sample: Any = None,
) -> Path:
    """Write the graph's weights and ``graph.json`` into ``directory`` atomically, and the
    first rows of ``sample`` (a batch) when given (what :func:`load` builds the codecs on).

    The folder is written beside its final place under a temporary name, then renamed; an
    existing folder of that name is replaced only once the new one is complete. ``graph.json``
    holds the checksum of every other file, and its own digest.

    Example:
        >>> import tempfile
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher")
        >>> _ = graph.build(torch.randn(2, 4))
        >>> path = save_model(tempfile.mkdtemp() + "/model", graph)
        >>> sorted(p.name for p in (path / "agents" / "student").iterdir())
        ['backbone.safetensors', 'codec.safetensors']
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_dir(directory)
    try:
        with disk_space(tmp, final=directory):
            checksums = {}
            for relative, module in components(graph).items():
                path = tmp / f"{relative}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                metadata = {"agora": json.dumps({"file": relative, "format": FORMAT})}
                save_file(_tensors(module), str(path), metadata=metadata)
                checksums[f"{relative}.safetensors"] = file_sha256(path)
            if sample is not None:
                save_sample(tmp, sample)
                checksums[SAMPLE] = file_sha256(tmp / SAMPLE)
            document = {
                "format": FORMAT,
                "graph": graph.to_dict(),
                "versions": versions(),
                "files": checksums,
                **(extra or {}),
            }
            write_document(tmp, document)
            _fsync_dir(tmp)
            _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_weights(
    directory: str | os.PathLike, graph: Graph, *, verify: bool = True
) -> dict[str, Any]:
    """Load the weights in ``directory`` into ``graph`` (built); returns ``graph.json``.

    Raises :class:`CheckpointError` naming the file and tensor for a missing, truncated or
    corrupted file, a missing or unexpected tensor, or a shape that does not match."""
    directory = Path(directory)
    document = read_document(directory)
    expected = document.get("files", {})
    for relative, module in components(graph).items():
        relative, prefix = _as_written(relative, document.get("format"))
        path = directory / f"{relative}.safetensors"
        if not path.exists():
            raise CheckpointError(
                f"{path}: missing; the checkpoint does not hold {relative!r} of this graph"
            )
        if verify and relative + ".safetensors" not in expected:
            raise CheckpointError(
                f"{directory / 'graph.json'}: no checksum for {relative}.safetensors, so it "
                "cannot be verified (pass verify=False to load an unverified file)"
            )
        if verify and file_sha256(path) != expected[relative + ".safetensors"]:
            raise CheckpointError(
                f"{path}: checksum mismatch, the file is corrupted or was changed"
            )
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{path}: cannot be read ({error}); it is truncated or corrupted"
            ) from error
        _load_into(module, {prefix + k: v for k, v in tensors.items()}, path)
    return document


def _as_written(relative: str, written: Any) -> tuple[str, str]:
    """The file that holds ``relative`` in a checkpoint of format ``written``, and the
    prefix its tensors' keys lack there."""
    folder, _, name = relative.rpartition("/")
    if written in (1, 2) and folder.startswith("agents/") and name in FORMERLY:
        old, prefix = FORMERLY[name]
        return f"{folder}/{old}", prefix
    return relative, ""


def _load_into(module: nn.Module, tensors: Mapping[str, Tensor], path: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not match the graph: missing tensors {missing[:5]}, "
            f"unexpected tensors {unexpected[:5]}"
        )
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {list(value.shape)} in the checkpoint but "
                f"{list(own[key].shape)} in the graph"
            )
    module.load_state_dict(tensors)


REWRITE = (
    "restore the folder from a copy, or use another checkpoint of the run (checkpoints/), or "
    "train again"
)


def read_document(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``graph.json`` of a model folder, verified against the digest it carries (one of
    format 1, by an older agora, carries none); one of format 1 or 2 is read as this agora
    writes it (:func:`~agora.protocols.talk.move_learner_settings`).

    Raises:
        CheckpointError: naming the file when it is missing, not UTF-8, not JSON, of an unknown
            format, or changed since it was written (a 1-bit change of a data seed included).
    """
    path = Path(directory) / "graph.json"
    if not path.exists():
        raise CheckpointError(f"{path}: missing; {directory} is not an agora model folder")
    document = read_json(path, CheckpointError, REWRITE)
    if not isinstance(document, dict) or not isinstance(document.get("graph"), dict):
        raise CheckpointError(
            f"{path}: not an agora graph.json (it holds {type(document).__name__} "
            f"{str(document)[:60]}; expected an object with a 'graph' section)"
        )
    written = document.get("format")
    if written not in (1, 2, FORMAT) or (written != 1 and "digest" not in document):
        raise CheckpointError(
            f"{path}: format {written!r} with{'out' * ('digest' not in document)} a digest is "
            f"not one this agora reads (1, or 2 to {FORMAT} with a digest): it was written by a "
            f"newer agora, or it is corrupted; {REWRITE}"
        )
    return _upgraded(document) if written != FORMAT else document


def _upgraded(document: dict[str, Any]) -> dict[str, Any]:
    """A ``graph.json`` of format 1 or 2, whose agents held their talk settings, as this agora
    reads it: those settings on their talk edges, in its graph and its run config."""
    from agora.protocols.talk import move_learner_settings

    document = {**document, "graph": move_learner_settings(document["graph"])}
    config = document.get("config")
    if isinstance(config, dict) and isinstance(config.get("graph"), dict):
        document["config"] = {**config, "graph": move_learner_settings(config["graph"])}
    return document


def write_document(directory: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write ``document`` as the ``graph.json`` of a model folder (atomically), in this
    agora's format, with the digest of its content that :func:`read_document` checks."""
    document = with_digest({**document, "format": FORMAT})
    _write_text(Path(directory) / "graph.json", json.dumps(document, indent=2))


def versions() -> dict[str, str]:
    """The versions of agora and torch, stored in ``graph.json``."""
    import agora

    return {"agora": agora.__version__, "torch": torch.__version__}


# -- pointers and run folders -----------------------------------------------------------------


def set_pointer(run_dir: str | os.PathLike, name: str, target: str) -> None:
    """Point ``checkpoints/<name>`` at ``checkpoints/<target>`` (an atomic replace)."""
    path = Path(run_dir) / "checkpoints" / name
    with disk_space(path):
        _write_text(path, target + "\n")


def pointer(run_dir: str | os.PathLike, name: str) -> Path | None:
    """The checkpoint folder ``checkpoints/<name>`` points at; ``None`` when there is no
    pointer.

    Raises:
        CheckpointError: the pointer names a folder that is missing or incomplete (the
            message names the last complete checkpoint).
    """
    path = Path(run_dir) / "checkpoints" / name
    if not path.exists():
        return None
    remedy = "write the name of a complete checkpoint (step-<N>) into it, or --overwrite"
    target = Path(run_dir) / "checkpoints" / read_text(path, CheckpointError, remedy).strip()
    if (target / "graph.json").exists():
        return target
    complete = sorted(p.name for p in path.parent.glob("step-*") if (p / "graph.json").exists())
    last = (
        f"the last complete checkpoint is {complete[-1]}"
        if complete
        else "no checkpoint is complete"
    )
    raise CheckpointError(
        f"{path} names {target.name}, which is missing or incomplete; {last}. Point {path} at "
        "a complete one, or start afresh (--overwrite)"
    )


def publish(tmp: Path, directory: Path) -> None:
    """Rename a fully written checkpoint into place. A folder already there is a leftover no
    pointer names (a crash between writing it and moving the pointer); it is replaced."""
    _fsync_dir(tmp)
    _replace_dir(tmp, directory)


STATE_DIGESTS = "state.json"
TRAINING_STATE = "agora.json"  # in state/: agora's own resume state, JSON (never a pickle)


def write_training_state(directory: Path, parts: Mapping[str, Any]) -> None:
    """Write agora's own resume state into ``directory/state/agora.json``: each part's
    ``state_dict()`` (the step counters and early stopping, the loss balancer's means)."""
    state = {name: part.state_dict() for name, part in parts.items()}
    _write_text(directory / "state" / TRAINING_STATE, json.dumps(state, indent=2))


def read_training_state(directory: Path, parts: Mapping[str, Any]) -> None:
    """Load :func:`write_training_state`'s file of checkpoint ``directory`` into ``parts``.

    Raises:
        CheckpointError: naming the file when it is missing (an older agora pickled this
            state), lacks a part, or holds a part its reader refuses.
    """
    path = directory / "state" / TRAINING_STATE
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (an older agora kept this state in a pickle, which is not read); "
            "start afresh with --overwrite (resume=False)"
        )
    state = read_json(path, CheckpointError, "start afresh with --overwrite (resume=False)")
    for name, part in parts.items():
        if name not in state:
            raise CheckpointError(f"{path}: holds no {name!r} state; it was saved by another run")
        try:
            part.load_state_dict(state[name])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: its {name!r} state does not load: {error}") from None


def seal_state(directory: Path) -> None:
    """Write ``state.json``: the sha256 of every file of the checkpoint's ``state/``, and the
    digest of that list itself (so a changed byte in it is told apart from a changed file)."""
    state = directory / "state"
    digests = {
        str(path.relative_to(state)): file_sha256(path)
        for path in sorted(state.rglob("*"))
        if path.is_file()
    }
    _write_text(directory / STATE_DIGESTS, json.dumps(with_digest({"files": digests}), indent=2))


def verify_state(directory: Path) -> None:
    """Check every file of a checkpoint's ``state/`` against ``state.json`` before resuming.

    Raises:
        CheckpointError: naming the missing, extra or changed file (or a missing list).
    """
    listing = directory / STATE_DIGESTS
    if not listing.is_file():
        raise CheckpointError(
            f"{listing}: missing; the state of {directory.name} cannot be verified, so it is not "
            "resumed (start afresh with --overwrite)"
        )
    remedy = "resume from another checkpoint (point checkpoints/latest at it), or --overwrite"
    document = read_json(listing, CheckpointError, remedy)
    if not isinstance(document, dict):
        raise CheckpointError(f"{listing}: not a list of digests; {remedy}")
    # an older agora wrote the digests alone, without their own
    digests = document.get("files") if {"files", "digest"} & set(document) else document
    if not isinstance(digests, dict):
        raise CheckpointError(f"{listing}: its 'files' is not a list of digests; {remedy}")
    state = directory / "state"
    present = {str(p.relative_to(state)) for p in state.rglob("*") if p.is_file()}
    for name, digest in digests.items():
        path = state / name
        if name not in present:
            raise CheckpointError(f"{path}: missing; {directory.name} cannot resume exactly")
        if file_sha256(path) != digest:
            raise CheckpointError(
                f"{path}: checksum mismatch (the file changed since it was written)"
            )
    if extra := sorted(present - set(digests)):
        raise CheckpointError(f"{state}: files that were not written with it: {extra}")


def check_rng_state(directory: Path, process_index: int) -> None:
    """Check that Accelerate can restore this process's random number generators from
    checkpoint ``directory`` (it skips a state it cannot load, and the run would go on with
    other random numbers: other dropout masks, other shuffles).

    Raises:
        CheckpointError: naming the file when it is missing, or holds no state Accelerate's
            loader reads and Python, NumPy and torch accept.
    """
    import random

    import numpy as np
    from accelerate.utils import load as accelerate_load

    path = directory / "state" / f"random_states_{process_index}.pkl"
    remedy = "resume from another checkpoint (point checkpoints/latest at it), or --overwrite"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing, so process {process_index} cannot resume its random numbers (a "
            f"checkpoint holds one per process that saved it: resume with as many); {remedy}"
        )
    try:
        states = accelerate_load(path)
        random.Random().setstate(states["random_state"])
        np.random.RandomState().set_state(states["numpy_random_seed"])
        torch.Generator().set_state(states["torch_manual_seed"])
        if torch.cuda.is_available() and "torch_cuda_manual_seed" not in states:
            raise KeyError("no CUDA generator state: it was saved without a GPU")
    except Exception as error:  # what Accelerate's own loading would skip in silence
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path}: Accelerate cannot restore the random numbers it holds ({first}); the run "
            f"would go on with other ones and differ from the run it continues; {remedy}"
        ) from None


def load_state(accelerator: Any, directory: Path) -> None:
    """Restore Accelerate's state (optimizer, scheduler, random numbers) from checkpoint
    ``directory``: every file verified against ``state.json`` first, and this process's
    random-number state checked (:func:`check_rng_state`).

    Raises:
        CheckpointError: naming the file that changed, is missing, is refused by torch's
            weights-only loader (a pickle that would run code) or cannot be read; or the
            checkpoint, when the graph's modules changed shape since it was saved.
    """
    verify_state(directory)
    check_rng_state(directory, accelerator.process_index)
    try:
        accelerator.load_state(str(directory / "state"))
    except Exception as error:
        if (refused := _unloadable(directory / "state")) is not None:
            raise refused from None
        if not isinstance(error, RuntimeError):
            raise
        first = str(error).strip().splitlines()[0]  # the graph's modules changed shape
        raise CheckpointError(
            f"{directory}: its state does not fit this graph ({first}); the model changed since "
            "it was saved: start afresh (--overwrite, resume=False) or restore the model"
        ) from None


def _unloadable(state: Path) -> CheckpointError | None:
    """The error for the first file of ``state/`` that its loader refuses, if any."""
    from accelerate.utils import load as accelerate_load

    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".bin", ".pkl", ".pt"):
                accelerate_load(path, map_location="cpu")
        except pickle.UnpicklingError as error:
            if "weights only" not in str(error).lower():
                return CheckpointError(f"{path}: cannot be loaded ({_first(error)}); {_OTHER}")
            return CheckpointError(
                f"{path}: refused: it holds Python objects that torch's weights-only loader will "
                "not run, so it is not a file agora or Accelerate wrote; do not resume from it: "
                "start afresh (--overwrite), or resume from a checkpoint you trust"
            )
        except Exception as error:
            return CheckpointError(
                f"{path}: cannot be loaded ({_first(error)}): it is truncated or corrupted; {_OTHER}"
            )
    return None


_OTHER = "resume from another checkpoint (point checkpoints/latest at it), or --overwrite"


def _first(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def disk_space(directory: Path, *, final: Path | None = None) -> Iterator[None]:
    """Within the block, a full disk while writing under ``directory`` (``OSError`` ENOSPC,
    torch's ``inline_container.cc`` write failure, safetensors' ``StorageFull``) is a
    :class:`CheckpointError` naming the file that was being written (as it is named under
    ``final``, when ``directory`` is a temporary folder to be renamed to it) and the space left.
    """
    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as error:
        if not _disk_full(error):
            raise
        files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
        path = max(files, key=lambda p: p.stat().st_mtime_ns, default=directory)
        if final is not None and path.is_relative_to(directory):
            path = final / path.relative_to(directory)
        raise CheckpointError(
            f"{path}: could not be written ({_first(error)}); {_free(directory)} free on its "
            "disk, so most likely it filled up: free some space (or write the run elsewhere, "
            "--out) and run again (a run resumes from its last complete checkpoint)"
        ) from None


def _disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "inline_container.cc" in text or "StorageFull" in text or "No space left" in text


def _free(path: Path) -> str:
    """The space left on the disk holding ``path`` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    free, units = float(shutil.disk_usage(path).free), ["bytes", "KiB", "MiB", "GiB", "TiB"]
    while free >= 1024 and len(units) > 1:
        free, units = free / 1024, units[1:]
    return f"{free:.0f} bytes" if units[0] == "bytes" else f"{free:.1f} {units[0]}"


def prune(run_dir: str | os.PathLike) -> None:
    """Remove checkpoints no pointer names, and temporary folders left by a crash."""
    folder = Path(run_dir) / "checkpoints"
    keep = {p.name for p in (pointer(run_dir, "latest"), pointer(run_dir, "best")) if p}
    for child in folder.iterdir():
        if child.is_dir() and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


def model_dir(path: str | os.PathLike) -> Path:
    """The model folder a path means: itself, its ``model/``, or its best or latest checkpoint."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "graph.json").exists():
            return candidate
    for name in ("best", "latest"):
        if (candidate := pointer(path, name)) is not None:
            return candidate
    raise CheckpointError(f"{path}: no graph.json here, in model/, or in a checkpoint")


def load(
    path: str | os.PathLike,
    *,
    agents: Mapping[str, Any] | None = None,
    trust_code: bool = False,
) -> Graph:
    """Rebuild a trained graph from a run or model folder.

    Agents are built from the specs stored in ``graph.json`` (or taken from ``agents``), the
    graph is built on the sample batch stored with it, and the weights are loaded and verified.

    A run folder is data, but its ``graph.json`` names the code that makes its agents (and
    their codecs, aggregations and protocols): without ``trust_code=True``, only agora's own
    constructors are imported (:mod:`agora.trust`); anything else is refused before it is
    imported. Agents given in ``agents`` are not made, so their factories are not imported.
    """
    directory = model_dir(path)
    document = read_document(directory)
    with trusting(trust_code):
        try:
            return _rebuild(directory, document, agents)
        except UntrustedCodeError as error:
            key = f"{error.key}: " if error.key else ""
            raise CheckpointError(f"{directory / 'graph.json'}: {key}{error}") from None


def _rebuild(directory: Path, document: Mapping[str, Any], agents: Any) -> Graph:
    graph = Graph.from_dict(document["graph"], agents)
    sample_file = directory / SAMPLE
    if not sample_file.exists():
        raise CheckpointError(
            f"{sample_file}: missing; it records the input shapes the codecs were built for"
        )
    expected = document.get("files", {}).get(SAMPLE)  # an older agora did not list it
    if expected is not None and file_sha256(sample_file) != expected:
        raise CheckpointError(
            f"{sample_file}: checksum mismatch, the file is corrupted or was changed"
        )
    try:
        sample = unflatten_sample(load_file(str(sample_file)))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{sample_file}: unreadable ({error})") from None
    graph.build(sample)
    load_weights(directory, graph)
    return graph


# -- a sample batch, kept to rebuild codecs of the right size ---------------------------------


def flatten_sample(x: Any, prefix: str = "x") -> dict[str, Tensor]:
    """A batch (tensor or nested mapping of tensors) as flat safetensors entries."""
    if isinstance(x, Tensor):
        return {prefix: x.detach().to("cpu").contiguous()}
    if isinstance(x, Mapping):
        out: dict[str, Tensor] = {}
        for key, value in x.items():
            out.update(flatten_sample(value, f"{prefix}.{key}"))
        return out
    raise CheckpointError(
        f"Cannot store a sample batch of type {type(x).__name__}; use tensors or dicts of them"
    )


def unflatten_sample(tensors: Mapping[str, Tensor]) -> Any:
    """The inverse of :func:`flatten_sample`."""
    if list(tensors) == ["x"]:
        return tensors["x"]
    root: dict[str, Any] = {}
    for key, value in tensors.items():
        node = root
        *parents, leaf = key.split(".")[1:]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return root


SAMPLE = "sample.safetensors"


def save_sample(directory: str | os.PathLike, x: Any, rows: int = 2) -> None:
    """Keep the first ``rows`` of a batch beside a model: the shapes its codecs fit (better:
    :func:`save_model`'s ``sample``, which lists its checksum in ``graph.json``)."""
    x = _slice(x, rows)
    save_file(flatten_sample(x), str(Path(directory) / SAMPLE))


def _slice(x: Any, rows: int) -> Any:
    if isinstance(x, Tensor):
        return x[:rows]
    return {k: _slice(v, rows) for k, v in x.items()}


# -- atomic file system helpers ---------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    with written_in_place(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def private_dir(directory: Path) -> Path:
    """A temporary folder beside ``directory`` (to be renamed into its place), with the
    permissions a plain ``mkdir`` would give it (``mkdtemp`` makes 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    os.chmod(tmp, umask_mode(0o777))
    return tmp


def _fsync_dir(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
