"""The teacher store: a frozen agent's round-0 outputs for a dataset, computed once, on disk.

A frozen agent in eval mode says the same about an example every time it sees it, so its
``y, s, e`` for a whole dataset can be computed once and read back by every run, seed and
process that uses the same agent on the same data. :func:`fill` writes them as safetensors
shards in a folder of the store's root (``$AGORA_CACHE_DIR/store``, by default
``~/.cache/agora/store``) named by a key of the agent's weights, the dataset's inputs and the
dtype::

    <root>/<agent>-<key>/store.json                 # what it holds, each shard's sha256
    <root>/<agent>-<key>/shard-00000.safetensors    # rows 0..4095: y [n, C], s, e, lengths

Per-token states (``[B, T, H]`` with an attention mask) are packed: each shard holds the real
tokens of its rows one after the other (``[tokens, H]``) and each row's count (``lengths``), so
no padding is stored. :class:`TeacherStore` memory-maps the shards (a store larger than memory
works) and gathers a batch's rows, padded to the batch's own mask.

A store is written under a private name and renamed into place whole, so a killed fill leaves
nothing a later run reads, and two processes filling the same key both end with one complete
store. Every shard's sha256 is checked the first time a process opens it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from agora.agent import Agent, AgentOutput
from agora.data.download import cache_dir
from agora.folder import file_sha256

VERSION = 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ROWS_PER_SHARD = 4096
MANIFEST = "store.json"
# safetensors' names of the dtypes a store holds, and how numpy maps their bytes
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64}
_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


class StoreError(ValueError):
    """A store that cannot be used: corrupt, of another key, or not matching the batch."""


def default_root() -> Path:
    """Where stores live: ``$AGORA_CACHE_DIR/store`` (default ``~/.cache/agora/store``)."""
    return cache_dir() / "store"


# -- keys ------------------------------------------------------------------------------------


def _hash_tensors(digest: Any, value: Any) -> None:
    """Feed a tensor, or a mapping or sequence of them, into ``digest``."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().contiguous()
        digest.update(f"{value.dtype}{list(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif isinstance(value, Mapping):
        for key in sorted(value):
            digest.update(str(key).encode())
            _hash_tensors(digest, value[key])
    elif isinstance(value, (tuple, list)):
        for item in value:
            _hash_tensors(digest, item)
    else:
        digest.update(repr(value).encode())


def agent_digest(agent: Agent) -> str:
    """sha256 of what decides an agent's round 0: its class and its backbone's tensors."""
    digest = hashlib.sha256(f"{type(agent).__module__}.{type(agent).__qualname__}".encode())
    for role in ("lower", "upper", "head"):
        part = getattr(agent, role)
        if part is not None:
            digest.update(role.encode())
            _hash_tensors(digest, part.state_dict())
    return digest.hexdigest()


def _parts(data: Dataset | DataLoader) -> tuple[Dataset, Any]:
    from agora.loaders import _unwrap

    dataset, collate, _ = _unwrap(data, 1)
    return dataset, collate


def rows(data: Dataset | DataLoader, indices: Sequence[int]) -> Any:
    """The inputs ``x`` of the examples at ``indices``, collated as the dataset collates."""
    from agora.loaders import transfer_inputs

    dataset, collate = _parts(data)
    indices = list(indices)
    if hasattr(dataset, "__getitems__"):
        batch = collate(dataset.__getitems__(indices))
    else:
        batch = collate([dataset[i] for i in indices])
    return transfer_inputs(batch)


def dataset_digest(data: Dataset | DataLoader, chunk: int = 512) -> str:
    """sha256 of a dataset's inputs (labels are not part of it), in order, in chunks of
    ``chunk`` examples: two datasets with the same inputs share a store."""
    dataset, _ = _parts(data)
    size = len(dataset)  # type: ignore[arg-type]
    digest = hashlib.sha256(f"{size}".encode())
    for start in range(0, size, chunk):
        _hash_tensors(digest, rows(data, range(start, min(start + chunk, size))))
    return digest.hexdigest()


def store_key(agent: str, dataset: str, dtype: str = "fp32") -> str:
    """The key of a store from its agent's and dataset's digests (:func:`agent_digest`,
    :func:`dataset_digest`) and its dtype: a new teacher, dataset or dtype is a new key."""
    if dtype not in DTYPES:
        raise StoreError(f"store dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return hashlib.sha256(f"{VERSION}|{agent}|{dataset}|{dtype}".encode()).hexdigest()[:32]


# -- reading ---------------------------------------------------------------------------------


# shards this process has checked, by (path, size, mtime): a run that opens a store many times
# (a benchmark, a notebook) reads each shard whole once
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _verified(path: Path, expected: str) -> None:
    """Raise :class:`StoreError` naming ``path`` unless its sha256 is ``expected``."""
    try:
        stat = path.stat()
    except OSError as error:
        raise StoreError(f"{path}: missing from its store ({error}); fill it again") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(key) != expected:
        if file_sha256(path) != expected:
            raise StoreError(
                f"{path}: checksum mismatch, the shard is corrupt; delete its folder "
                f"{path.parent} and fill the store again (agora cache CONFIG)"
            )
        _VERIFIED[key] = expected
    return None


def _memmaps(path: Path) -> tuple[dict[str, np.memmap], dict[str, torch.dtype]]:
    """Each tensor of a safetensors file, memory-mapped (nothing is read until used), and
    its torch dtype (a bf16 tensor is mapped as uint16)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    maps = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == start:
            maps[name] = np.zeros(shape, dtype=_NUMPY[info["dtype"]])
            continue
        maps[name] = np.memmap(
            path, dtype=_NUMPY[info["dtype"]], mode="r", offset=8 + size + start, shape=shape
        )
    return maps, {name: _TORCH[info["dtype"]] for name, info in header.items()}


@dataclass
class _Shard:
    first: int  # the dataset row of its first row
    tensors: dict[str, np.memmap]
    offsets: dict[str, np.ndarray]  # a packed key's first token of each row, and the end
    dtypes: dict[str, torch.dtype]


class TeacherStore:
    """A filled store, memory-mapped: :meth:`lookup` gives rows of the agent's round 0.

    Open one with :meth:`open` (``None`` when the key has no store yet) or :func:`fill`.

    Args:
        path (Path): the store's folder.
        manifest (dict): its ``store.json``.
    """

    def __init__(self, path: Path, manifest: Mapping[str, Any]) -> None:
        self.path, self.manifest = path, dict(manifest)
        self.examples: int = manifest["examples"]
        self.packed: list[str] = list(manifest["packed"])
        self.rows_per_shard: int = manifest["rows_per_shard"]
        self.shards: list[_Shard] = []
        for entry in manifest["shards"]:
            file = path / entry["file"]
            _verified(file, entry["sha256"])
            try:
                tensors, dtypes = _memmaps(file)
            except (OSError, ValueError, KeyError) as error:
                raise StoreError(f"{file}: unreadable ({error}); fill the store again") from None
            lengths = np.asarray(tensors["lengths"]) if "lengths" in tensors else None
            offsets = {}
            if self.packed and lengths is not None:
                ends = np.cumsum(lengths)
                offsets = {key: np.concatenate([[0], ends]) for key in self.packed}
            self.shards.append(_Shard(entry["rows"][0], tensors, offsets, dtypes))

    @classmethod
    def open(cls, path: str | os.PathLike, key: str | None = None) -> TeacherStore | None:
        """The store in ``path``, verified; ``None`` when nothing is there yet.

        Raises:
            StoreError: naming the file, for a manifest that cannot be read, a store of
                another key, or a shard whose checksum differs.
        """
        path = Path(path)
        manifest_file = path / MANIFEST
        if not manifest_file.exists():
            return None
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            if manifest.get("version") != VERSION:
                raise ValueError(f"version {manifest.get('version')!r}, not {VERSION}")
        except (OSError, ValueError) as error:
            raise StoreError(
                f"{manifest_file}: unreadable ({error}); delete {path} and fill it again"
            ) from None
        if key is not None and manifest.get("key") != key:
            raise StoreError(
                f"{manifest_file}: holds the store of key {manifest.get('key')!r}, not {key!r}; "
                f"delete {path} and fill it again"
            )
        return cls(path, manifest)

    @property
    def bytes(self) -> int:
        """The store's size on disk."""
        return sum(entry["bytes"] for entry in self.manifest["shards"])

    def lookup(self, index: Tensor, mask: Tensor | None = None) -> AgentOutput:
        """The agent's round 0 on rows ``index`` of its dataset, as ``float32`` tensors on
        ``index``'s device; per-token states are padded to ``mask`` (the batch's own)."""
        device = index.device
        order = index.tolist()
        if any(not 0 <= row < self.examples for row in order):
            raise StoreError(
                f"{self.path}: rows {[r for r in order if not 0 <= r < self.examples][:5]} are "
                f"outside the store's {self.examples} examples: the dataset is not the store's"
            )
        parts: dict[str, Tensor] = {}
        for name in self.manifest["keys"]:
            if name in self.packed:
                parts[name] = self._tokens(name, order, mask)
            else:
                parts[name] = self._rows(name, order)
        out = {k: v.to(device=device, dtype=torch.float32) for k, v in parts.items()}
        return AgentOutput(y=out.get("y"), s=out["s"], e=out["e"], mask=mask)

    def read(self, name: str, index: Tensor) -> Tensor:
        """One stored output that is not per token (``"y"``, or pooled ``s`` / ``e``) at rows
        ``index``, as stored (its dtype)."""
        if name not in self.manifest["keys"] or name in self.packed:
            raise StoreError(
                f"{self.path}: no per-example {name!r}; it holds {self.manifest['keys']} "
                f"({self.packed} per token)"
            )
        return self._rows(name, index.tolist())

    def _locate(self, row: int) -> tuple[_Shard, int]:
        shard = self.shards[row // self.rows_per_shard]
        return shard, row - shard.first

    def _rows(self, name: str, order: list[int]) -> Tensor:
        where = np.asarray(order)
        shards = where // self.rows_per_shard
        first = self.shards[int(shards[0])]
        out = torch.empty((len(order), *first.tensors[name].shape[1:]), dtype=first.dtypes[name])
        for number in np.unique(shards):
            shard, picked = self.shards[int(number)], np.flatnonzero(shards == number)
            local = where[picked] - shard.first
            out[torch.from_numpy(picked)] = _tensor(shard.tensors[name][local], shard.dtypes[name])
        return out

    def _tokens(self, name: str, order: list[int], mask: Tensor | None) -> Tensor:
        if mask is None:
            raise StoreError(f"{self.path}: {name} is stored per token, but the batch has no mask")
        real = mask.bool().cpu()  # [B, T]
        pieces = []
        for i, row in enumerate(order):
            shard, local = self._locate(row)
            start, end = shard.offsets[name][local], shard.offsets[name][local + 1]
            if end - start != int(real[i].sum()):
                raise StoreError(
                    f"{self.path}: row {row} has {end - start} tokens in the store but "
                    f"{int(real[i].sum())} in the batch: the dataset is not the store's"
                )
            pieces.append(_tensor(shard.tensors[name][start:end], shard.dtypes[name]))
        tokens = torch.cat(pieces)  # [real tokens, H]
        padded = tokens.new_zeros((*real.shape, *tokens.shape[1:]))  # [B, T, H]
        padded[real] = tokens
        return padded


def _tensor(array: np.ndarray, dtype: torch.dtype) -> Tensor:
    tensor = torch.from_numpy(np.array(array))  # a copy: the memory map stays read-only
    return tensor.view(dtype) if dtype == torch.bfloat16 else tensor


# -- filling ---------------------------------------------------------------------------------


def store_path(root: str | os.PathLike, agent: Agent, key: str) -> Path:
    """The folder of ``agent``'s store of ``key`` under ``root``."""
    return Path(root) / f"{agent.name}-{key}"


def fill(
    agent: Agent,
    data: Dataset | DataLoader,
    root: str | os.PathLike | None = None,
    *,
    dtype: str = "fp32",
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TeacherStore:
    """``agent``'s store for ``data``: opened if it exists, else computed and written.

    The agent runs in eval mode without gradients over the dataset in order, a shard of
    :data:`ROWS_PER_SHARD` rows at a time (batched by length within a shard when the dataset
    has ``lengths``). The store is written under a private name, then renamed into place.

    Args:
        agent (Agent): a frozen agent.
        data (Dataset or DataLoader): the examples, labelled or not (labels are not read).
        root (str or Path, optional): the stores' folder. (default: :func:`default_root`)
        dtype (str): ``"fp32"``, or ``"bf16"`` / ``"fp16"`` for half the disk.
        batch_size (int): examples per forward pass while filling.
        device (torch.device or str, optional): where the agent runs (default: where it is).
        progress (bool): show a progress bar.

    Example:
        >>> import tempfile
        >>> from agora.models.toy import mlp_agent
        >>> teacher = mlp_agent("teacher", 4, 8, frozen=True)
        >>> data = torch.utils.data.TensorDataset(torch.randn(10, 4))
        >>> store = fill(teacher, data, tempfile.mkdtemp(), progress=False)
        >>> store.examples, tuple(store.lookup(torch.tensor([3, 1])).s.shape)
        (10, (2, 8))
    """
    root = Path(root) if root is not None else default_root()
    digests = {"agent_digest": agent_digest(agent), "dataset_digest": dataset_digest(data)}
    key = store_key(digests["agent_digest"], digests["dataset_digest"], dtype)
    target = store_path(root, agent, key)
    existing = TeacherStore.open(target, key)
    if existing is not None:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root)
    started = time.perf_counter()
    tmp = root / f".{target.name}~{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:8]}"
    try:
        manifest = _write(agent, data, tmp, dtype, batch_size, device, progress)
        manifest.update(key=key, **digests)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        _write_json(tmp / MANIFEST, manifest)
        try:
            os.rename(tmp, target)  # atomic; fails when another process has put one there
        except OSError:
            if not (target / MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    store = TeacherStore.open(target, key)
    assert store is not None
    return store


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _remove_abandoned(root: Path) -> None:
    """Remove the private folders of fills on this host whose process is gone (killed)."""
    host = socket.gethostname()
    for folder in root.glob(".*~*"):
        parts = folder.name.split("~")
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def _batches(data: Dataset, first: int, end: int, batch_size: int) -> Iterator[list[int]]:
    """Rows ``first..end-1`` in batches, by length when the dataset has ``lengths``."""
    rows = list(range(first, end))
    lengths = getattr(data, "lengths", None)
    if lengths is not None:
        rows.sort(key=lambda row: lengths[row])
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


@torch.no_grad()
def _write(
    agent: Agent,
    data: Dataset | DataLoader,
    folder: Path,
    dtype: str,
    batch_size: int,
    device: Any,
    progress: bool,
) -> dict[str, Any]:
    from agora.cache import _is_per_token
    from agora.loaders import to_device

    dataset, _ = _parts(data)
    examples = len(dataset)  # type: ignore[arg-type]
    folder.mkdir(parents=True)
    if device is not None:
        agent.to(device)  # where training will run it (a run prepares the graph there anyway)
    device = next(agent.parameters()).device
    was_training = agent.training
    agent.eval()
    shards, keys, packed = [], None, None
    bar = tqdm(total=examples, desc=f"store {agent.name}", unit="ex", disable=not progress)
    try:
        for number, first in enumerate(range(0, examples, ROWS_PER_SHARD)):
            end = min(first + ROWS_PER_SHARD, examples)
            by_row: dict[str, list[Tensor]] = {}
            lengths = torch.zeros(end - first, dtype=torch.int64)
            for batch in _batches(dataset, first, end, batch_size):
                x = to_device(rows(data, batch), device)
                out = agent.read(x)  # an input it cannot read is named
                mask = agent.attention_mask(x)
                parts = {"y": out.y, "s": out.s, "e": out.e}
                parts = {k: v for k, v in parts.items() if v is not None}
                if packed is None:
                    keys = list(parts)
                    packed = [
                        k for k in ("s", "e") if mask is not None and _is_per_token(parts[k], mask)
                    ]
                real = mask.bool().cpu() if packed else None
                for name, value in parts.items():
                    value = value.to(DTYPES[dtype]).cpu()
                    for i, row in enumerate(batch):
                        item = value[i][real[i]] if name in packed else value[i : i + 1]
                        by_row.setdefault(name, [None] * (end - first))[row - first] = item
                if packed:
                    lengths[[row - first for row in batch]] = real.sum(1)
                bar.update(len(batch))
            tensors = {name: torch.cat(items).contiguous() for name, items in by_row.items()}
            if packed:
                tensors["lengths"] = lengths
            file = folder / f"shard-{number:05d}.safetensors"
            save_file(tensors, str(file), metadata={"rows": f"{first}:{end}"})
            shards.append(
                {"file": file.name, "rows": [first, end], "sha256": file_sha256(file),
                 "bytes": file.stat().st_size}
            )  # fmt: skip
    finally:
        bar.close()
        agent.train(was_training)
    return {
        "version": VERSION, "agent": agent.name, "dtype": dtype, "examples": examples,
        "keys": keys or [], "packed": packed or [], "rows_per_shard": ROWS_PER_SHARD,
        "shards": shards,
    }  # fmt: skip
