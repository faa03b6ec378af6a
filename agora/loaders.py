"""Batches for :func:`~agora.train.fit` and :func:`~agora.train.evaluate`.

Training batches carry each example's index (for the frozen-state cache and the teacher
store) and are shuffled by seed and epoch alone, so a resumed run sees the same batches
(:class:`EpochSampler`); with per-learner data, or a transfer set, each step holds one batch of
every part (:class:`LearnerBatchSampler`). Evaluation goes in order, batching examples of
similar length together (:class:`LengthBatches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import skip_first_batches
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

TRANSFER = "transfer set"
"""The key of the transfer set's part of a step (no agent can be named so: it holds a space)."""


class Indexed(Dataset):
    """Yields ``(example, index)`` so the frozen-state cache knows which rows a batch holds."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.dataset[i], i

    def __getitems__(self, indices: list[int]) -> Any:
        if hasattr(self.dataset, "__getitems__"):
            return _Gathered(self.dataset.__getitems__(indices), indices)
        return [(self.dataset[i], i) for i in indices]


@dataclass
class _Gathered:
    batch: Any
    indices: list[int]


class _IndexedCollate:
    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, items: Any) -> tuple[Any, Tensor]:
        if isinstance(items, _Gathered):
            return self.collate(items.batch), torch.as_tensor(items.indices)
        examples, indices = zip(*items)
        return self.collate(list(examples)), torch.as_tensor(indices)


class EpochSampler(Sampler[int]):
    """A shuffle that depends only on ``(seed, epoch)``, so a resumed run sees the same order.

    With ``lengths`` (and ``batch_size``), consecutive ``batch_size`` examples have similar
    lengths: each run of 50 batches of the shuffle is sorted by length, then the full batches
    are shuffled (a partial one stays last). Batches of text then need little padding.

    Example:
        >>> sampler = EpochSampler(6, seed=0, lengths=[1, 9, 2, 8, 3, 7], batch_size=2)
        >>> order = list(sampler)
        >>> sorted(sorted(order[i : i + 2]) for i in (0, 2, 4))  # lengths 1-2, 8-9, 3-7
        [[0, 2], [1, 3], [4, 5]]
    """

    def __init__(
        self,
        size: int,
        seed: int,
        shuffle: bool = True,
        lengths: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0
        if lengths is not None and (len(lengths) != size or not batch_size):
            raise ValueError(
                f"EpochSampler: lengths must give one length per example ({size}, got "
                f"{len(lengths)}) and batch_size must be set"
            )
        self.lengths = None if lengths is None else torch.as_tensor(lengths)
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch`` next (Accelerate calls it at each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        if self.lengths is None:
            return iter(order.tolist())
        size = self.batch_size * 50  # type: ignore[operator]
        runs = [
            run[torch.sort(self.lengths[run], descending=True, stable=True).indices]
            for run in order.split(size)
        ]
        batches = list(torch.cat(runs).split(self.batch_size))  # type: ignore[arg-type]
        last = [batches.pop()] if len(batches[-1]) < self.batch_size else []
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return iter(torch.cat(shuffled + last).tolist())

    def __len__(self) -> int:
        return self.size


def _unwrap(data: Dataset | DataLoader, batch_size: int) -> tuple[Dataset, Any, int]:
    """``(dataset, collate, batch_size)``: a given DataLoader lends its own."""
    collate = getattr(data, "collate_fn", torch.utils.data.default_collate)
    if isinstance(data, DataLoader):
        collate, batch_size, data = data.collate_fn, data.batch_size or batch_size, data.dataset
    return data, collate, batch_size


def make_loader(
    data: Dataset | DataLoader,
    batch_size: int,
    seed: int,
    shuffle: bool,
    group_by_length: bool = False,
) -> tuple[DataLoader, EpochSampler]:
    """An index-carrying loader with a resumable shuffle; a given DataLoader lends its
    dataset, collate function and batch size. ``group_by_length`` batches examples of similar
    ``data.lengths`` together (see :class:`EpochSampler`)."""
    data, collate, batch_size = _unwrap(data, batch_size)
    lengths = _lengths(data) if group_by_length else None
    sampler = EpochSampler(len(data), seed, shuffle, lengths, batch_size)  # type: ignore[arg-type]
    loader = DataLoader(
        Indexed(data),
        batch_sampler=BatchSampler(sampler, batch_size, drop_last=False),
        collate_fn=_IndexedCollate(collate),
        generator=torch.Generator(),  # keeps DataLoader from drawing on the global RNG
    )
    return loader, sampler


class LearnerBatchSampler(Sampler[dict[Any, list[int]]]):
    """One batch of each part's data per step: per-learner data, a transfer set, or both.

    An epoch is one pass over the data of ``lead`` (the transfer set, when there is one), or
    else of the part with the most batches. A part with fewer starts another pass, reshuffled,
    whenever its data runs out, so it sees its data more than once per epoch and its last pass
    in an epoch may stop part-way (the next epoch starts a fresh pass). Pass ``p`` of a part is
    shuffled as :class:`EpochSampler` shuffles epoch ``p``; a part with as many batches as the
    lead makes pass ``p = epoch``, exactly the batches it would get training alone. The order
    depends only on the seed and the epoch, so a resumed run sees the same batches.

    Args:
        sizes (Mapping[str, int]): examples in each part's dataset (a learner's name, ``None``
            for data every agent sees, :data:`TRANSFER` for the transfer set).
        batch_sizes (Mapping[str, int]): each part's batch size.
        seed (int): seeds every part's shuffle.
        lead (str, optional): the part one epoch passes over once. (default: the longest)
        lengths (Mapping[str, Sequence[int]], optional): a part's example lengths: its batches
            then hold examples of similar length (see :class:`EpochSampler`).

    Example:
        >>> sampler = LearnerBatchSampler({"a": 4, "b": 2}, {"a": 2, "b": 2}, seed=0)
        >>> [sorted(step) for step in sampler], len(sampler)
        ([['a', 'b'], ['a', 'b']], 2)
        >>> len(LearnerBatchSampler({"a": 4, "b": 2}, {"a": 2, "b": 2}, seed=0, lead="b"))
        1
    """

    batch_size = None  # Accelerate's sharding (DDP) then hands out each step's batches whole

    def __init__(
        self,
        sizes: Mapping[Any, int],
        batch_sizes: Mapping[Any, int],
        seed: int,
        lead: Any = None,
        lengths: Mapping[Any, Sequence[int]] | None = None,
    ) -> None:
        lengths = lengths or {}
        self.batch_sizes = dict(batch_sizes)
        self.samplers = {
            name: EpochSampler(size, seed, lengths=lengths.get(name), batch_size=batch_sizes[name])
            for name, size in sizes.items()
        }
        self.batches = {
            name: max(1, math.ceil(size / self.batch_sizes[name])) for name, size in sizes.items()
        }
        self.length = self.batches[lead] if lead is not None else max(self.batches.values())
        self.epoch = 0

    @property
    def sampler(self) -> LearnerBatchSampler:
        return self  # Accelerate's set_epoch reaches a batch sampler's ``.sampler``

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[dict[Any, list[int]]]:
        orders: dict[Any, list[int]] = {}
        for step in range(self.length):
            batch = {}
            for name, sampler in self.samplers.items():
                n, size = self.batches[name], self.batch_sizes[name]
                if step % n == 0:  # a new pass over this part's data
                    sampler.set_epoch(self.epoch * math.ceil(self.length / n) + step // n)
                    orders[name] = list(sampler)
                batch[name] = orders[name][(step % n) * size : (step % n + 1) * size]
            yield batch


class LearnerData(Dataset):
    """Several learners' datasets behind one loader: a batch index is ``{learner: rows}``,
    and a batch ``{learner: (batch, index)}``, each collated by its own dataset's rules.

    Args:
        datasets (Mapping[str, Dataset]): each learner's dataset.
        collates (Mapping[str, Callable]): each learner's collate function.
    """

    def __init__(self, datasets: Mapping[str, Dataset], collates: Mapping[str, Any]) -> None:
        self.datasets = {name: Indexed(data) for name, data in datasets.items()}
        self.collates = {name: _IndexedCollate(collate) for name, collate in collates.items()}

    def __len__(self) -> int:
        return sum(len(data) for data in self.datasets.values())

    def __getitems__(self, batch: Mapping[str, list[int]]) -> dict[str, tuple[Any, Tensor]]:
        return {
            name: self.collates[name](self.datasets[name].__getitems__(rows))
            for name, rows in batch.items()
        }


def _collated(batch: Any) -> Any:
    return batch  # LearnerData collates each learner's batch itself


def make_learner_loader(
    data: Mapping[str, Dataset | DataLoader],
    batch_size: int,
    seed: int,
    group_by_length: bool = False,
) -> tuple[DataLoader, dict[str, int]]:
    """One loader over per-learner data (see :class:`LearnerBatchSampler`), and the size of
    each learner's dataset. A learner given as a DataLoader lends its collate and batch size."""
    if not data:
        raise ValueError("Per-learner training data is empty: give each learner its data")
    return make_parts_loader(dict(data), batch_size, seed, group_by_length=group_by_length)


def make_transfer_loader(
    train_data: Dataset | DataLoader | Mapping[str, Dataset | DataLoader],
    transfer: Dataset | DataLoader,
    batch_size: int,
    transfer_batch_size: int,
    seed: int,
    group_by_length: bool = False,
) -> tuple[DataLoader, dict[Any, int]]:
    """One loader whose every step holds a labelled batch (of each learner, for per-learner
    data) and a batch of the transfer set; an epoch is one pass over the transfer set (see
    :class:`LearnerBatchSampler`). Returns it and the size of each part, keyed by learner
    (``None`` for shared data) and :data:`TRANSFER`."""
    parts: dict[Any, Any] = (
        dict(train_data) if isinstance(train_data, Mapping) else {None: train_data}
    )
    parts[TRANSFER] = transfer
    sizes = {TRANSFER: transfer_batch_size}
    return make_parts_loader(parts, batch_size, seed, sizes, TRANSFER, group_by_length)


def make_parts_loader(
    data: Mapping[Any, Dataset | DataLoader],
    batch_size: int,
    seed: int,
    batch_sizes: Mapping[Any, int] | None = None,
    lead: Any = None,
    group_by_length: bool = False,
) -> tuple[DataLoader, dict[Any, int]]:
    """The loader of :func:`make_learner_loader` and :func:`make_transfer_loader`: a batch of
    every part per step; ``batch_sizes`` overrides ``batch_size`` for some parts."""
    parts = {
        name: _unwrap(part, (batch_sizes or {}).get(name, batch_size))
        for name, part in data.items()
    }
    sizes = {name: len(part[0]) for name, part in parts.items()}  # type: ignore[arg-type]
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        what = "The transfer set" if empty[0] == TRANSFER else f"Learner {empty[0]!r}"
        raise ValueError(f"{what} has no data: its dataset is empty")
    lengths = {name: _lengths(part[0]) for name, part in parts.items()} if group_by_length else None
    loader = DataLoader(
        LearnerData({n: p[0] for n, p in parts.items()}, {n: p[1] for n, p in parts.items()}),
        batch_sampler=LearnerBatchSampler(
            sizes, {n: p[2] for n, p in parts.items()}, seed, lead, lengths
        ),
        collate_fn=_collated,
        generator=torch.Generator(),
    )
    return loader, sizes


def _lengths(data: Dataset) -> Sequence[int]:
    lengths = getattr(data, "lengths", None)
    if lengths is None:
        raise ValueError(
            f"group_by_length needs a dataset with a `lengths` attribute (one length per "
            f"example); {type(data).__name__} has none"
        )
    return lengths


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(x, y)`` of a batch given as a pair or a mapping with ``"x"`` and ``"y"``."""
    if isinstance(batch, Mapping):
        return batch["x"], batch.get("y")
    x, y = batch
    return x, y


def transfer_inputs(batch: Any) -> Any:
    """The inputs of a transfer batch: ``x`` of a pair ``(x, y)`` or of a one-tensor tuple, of
    a mapping with ``"x"``, or the batch itself (a tensor, or a mapping of token tensors); any
    label is dropped."""
    if isinstance(batch, Mapping):
        return batch["x"] if "x" in batch else batch
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def step_inputs(item: Any) -> dict[str, Any]:
    """The orchestrator's arguments for one item of a training loader: ``x, y, index`` for
    shared data, ``batches, index`` (by learner) for per-learner data, and ``transfer`` (with
    its rows under ``index[TRANSFER]``) when a transfer set is mixed in."""
    if not isinstance(item, Mapping):
        batch, index = item
        x, y = split_batch(batch)
        return {"x": x, "y": y, "index": index}
    # LearnerData: {learner or None: (batch, index), [TRANSFER: (batch, index)]}
    parts = dict(item)
    inputs: dict[str, Any] = {"index": {name: index for name, (_, index) in parts.items()}}
    if TRANSFER in parts:
        inputs["transfer"] = transfer_inputs(parts.pop(TRANSFER)[0])
    if None in parts:  # shared labelled data
        inputs["x"], inputs["y"] = split_batch(parts[None][0])
    else:
        inputs["batches"] = {name: split_batch(batch) for name, (batch, _) in parts.items()}
    return inputs


def epoch_batches(loader: DataLoader, shuffle: Any, epoch: int, skip: int = 0) -> DataLoader:
    """The (prepared) loader for ``epoch``, its first ``skip`` batches skipped on resume.

    The epoch is set on the loader (Accelerate passes it on) and on agora's own sampler
    ``shuffle`` directly: under DDP a loader made by ``skip_first_batches`` does not pass it
    on, and a resumed process would replay epoch 0's order."""
    batches = skip_first_batches(loader, skip) if skip else loader
    batches.set_epoch(epoch)
    shuffle.set_epoch(epoch)
    return batches


def first_x(loader: DataLoader) -> Any:
    """The inputs of a loader's first batch (the first learner's, for per-learner data)."""
    inputs = step_inputs(next(iter(loader)))
    return next(iter(inputs["batches"].values()))[0] if "batches" in inputs else inputs["x"]


class LengthBatches(Sampler[list[int]]):
    """Batches of examples of similar length, shortest first: evaluation pads little.

    Example:
        >>> list(LengthBatches([5, 1, 3, 2], batch_size=2))
        [[1, 3], [2, 0]]
    """

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        order = torch.argsort(torch.as_tensor(lengths), stable=True).tolist()
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.batch_size, self.drop_last = batch_size, False  # read by Accelerate's sharding

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def eval_loader(data: Dataset | DataLoader, batch_size: int = 1024) -> DataLoader:
    """``data`` as a DataLoader in order (by length, for a dataset with ``lengths``); a
    dataset's own ``collate_fn`` is used."""
    if isinstance(data, DataLoader):
        return data
    collate = getattr(data, "collate_fn", torch.utils.data.default_collate)
    if getattr(data, "lengths", None) is not None:
        batches = LengthBatches(data.lengths, batch_size)  # type: ignore[attr-defined]
        return DataLoader(data, batch_sampler=batches, collate_fn=collate)
    return DataLoader(data, batch_size=batch_size, collate_fn=collate)


def to_device(x: Any, device: torch.device) -> Any:
    """``x`` (a tensor, or a mapping of them, nested) on ``device``; anything else as it is."""
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x
