"""What agora reads from a data set: a ``torch.utils.data.Dataset`` and a few optional
attributes, written down once here.

:func:`~agora.train.fit`, :func:`~agora.train.evaluate` and the analyses take any
``Dataset`` (or ``DataLoader``) of ``(x, y)`` examples. A data set may also offer:

- ``__getitems__(indices) -> batch``: a whole batch at once (one gather per field), which
  ``collate_fn`` then passes through;
- ``collate_fn``: how examples (or such a batch) become a batch; default
  ``torch.utils.data.default_collate``;
- ``lengths``: one length per example, for ``FitConfig(group_by_length=True)``;
- ``group_names``: the name of each column of a multi-hot group feature (MovieLens' genres),
  for analyses by group (``agora cka --groups genre``).

A data *factory* (a config's ``data.factory``) returns ``{"train": ..., "valid": ...}`` and
optionally ``"test"``, each such a data set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TaskData(Protocol):
    """The part of a data set every loader needs: a length and examples ``(x, y)``.

    Example:
        >>> import torch
        >>> isinstance(torch.utils.data.TensorDataset(torch.zeros(2, 3), torch.zeros(2)), TaskData)
        True
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class BatchedData(TaskData, Protocol):
    """A data set that gathers whole batches, with the ``collate_fn`` that passes them on."""

    collate_fn: Callable[[Any], Any]

    def __getitems__(self, indices: Sequence[int]) -> Any: ...


class LengthData(TaskData, Protocol):
    """A data set whose examples have lengths (``group_by_length`` batches similar ones)."""

    lengths: Sequence[int]


class GroupedData(TaskData, Protocol):
    """A data set whose ``x["genres"]``-like multi-hot columns have names."""

    group_names: Sequence[str]
