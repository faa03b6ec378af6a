"""The frozen-state cache: a frozen agent's round 0 computed once per example, then read back.

``FitConfig(cache_frozen=True)`` trains with a :class:`CachedOrchestrator` over a
:class:`StateCache`: the outputs of a frozen agent in eval mode depend only on its input, so
every epoch after the first reads them instead of running the agent again. With
``FitConfig(teacher_store=True)`` they come from a :class:`~agora.store.TeacherStore` on disk
instead, filled once for every run (the teacher never runs during training).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from agora.agent import Agent, AgentOutput
from agora.graph import Graph
from agora.orchestrator import Orchestrator, StepOutput
from agora.store import TeacherStore


class StateCache:
    """Round-0 outputs ``(y, s, e)`` of frozen agents, stored per example on first sight.

    The outputs of a frozen agent in eval mode depend only on its input, so reading them back
    gives the same tensors as computing them again. Tables are kept per agent and dataset: a
    tutor of several learners with their own data observes row ``i`` of each.

    Token states (an input with an ``attention_mask``) may come padded to a different length
    in each batch: a table keeps the longest length seen, and a read returns the batch's
    length. Real tokens are exactly as computed; padding positions hold zeros or the values of
    an earlier padding, which nothing reads (every distance, pooling and attention is masked).
    Real tokens computed in a batch of another padding can differ from a recomputation by
    float rounding (the matrix shapes differ), not more.

    Args:
        sizes (int or Mapping[str, int]): examples in the training data, or per learner's
            dataset for per-learner data.
    """

    def __init__(self, sizes: int | Mapping[str, int]) -> None:
        self.sizes: dict[str | None, int] = (
            dict(sizes) if isinstance(sizes, Mapping) else {None: sizes}
        )
        self.tables: dict[tuple[str, str | None], dict[str, Tensor]] = {}
        self.filled: dict[tuple[str, str | None], Tensor] = {}
        self.per_token: set[tuple[str, str | None]] = set()

    def lookup(
        self, agent: Agent, x: Any, index: Tensor, dataset: str | None = None
    ) -> AgentOutput:
        """``agent``'s round 0 on rows ``index`` of ``dataset`` (a learner's name, or ``None``
        for shared data), computed and stored unless every row is stored already."""
        name = (agent.name, dataset)
        filled = self.filled.get(name)
        mask = agent.attention_mask(x)
        if filled is not None and bool(filled[index].all()):
            table = self.tables[name]
            tokens = mask.shape[1] if name in self.per_token else None
            return AgentOutput(
                y=table["y"][index] if "y" in table else None,
                s=_tokens(table["s"][index], tokens),
                e=_tokens(table["e"][index], tokens),
                mask=mask,
            )
        with torch.no_grad():
            out = agent.read(x)
        if name not in self.tables and mask is not None and _is_per_token(out.s, mask):
            self.per_token.add(name)  # [B, T, ...] states, padded to each batch's length
        self._store(name, out, index)
        return out

    def _store(self, name: tuple[str, str | None], out: AgentOutput, index: Tensor) -> None:
        parts = {"s": out.s, "e": out.e, **({"y": out.y} if out.y is not None else {})}
        if name not in self.tables:
            size = self.sizes[name[1]]
            self.tables[name] = {k: v.new_zeros((size, *v.shape[1:])) for k, v in parts.items()}
            self.filled[name] = torch.zeros(size, dtype=torch.bool, device=out.s.device)
        table = self.tables[name]
        for key, value in parts.items():
            if name in self.per_token and key != "y":  # [B, T, ...]: T is the batch's padding
                if value.shape[1] > table[key].shape[1]:
                    table[key] = _tokens(table[key], value.shape[1])
                value = _tokens(value, table[key].shape[1])
            if table[key].shape[1:] != value.shape[1:]:
                raise ValueError(
                    f"Agent {name[0]!r}: cache_frozen needs a fixed shape per example, but "
                    f"{key} changed from {list(table[key].shape[1:])} to {list(value.shape[1:])} "
                    f"(give token inputs an attention_mask, or set cache_frozen=False)"
                )
            table[key][index] = value.detach()
        self.filled[name][index] = True


def _is_per_token(s: Tensor, mask: Tensor) -> bool:
    """States ``[B, T, ...]`` that follow the mask's tokens (not pooled ``[B, H]`` ones)."""
    return s.dim() >= 3 and tuple(s.shape[:2]) == tuple(mask.shape)


def _tokens(states: Tensor, length: int | None) -> Tensor:
    """``states [B, T, ...]`` cut or zero-padded to ``length`` tokens (``None``: unchanged)."""
    if length is None or states.shape[1] == length:
        return states
    if states.shape[1] > length:
        return states[:, :length]
    padding = states.new_zeros((states.shape[0], length - states.shape[1], *states.shape[2:]))
    return torch.cat([states, padding], dim=1)


class CachedOrchestrator(Orchestrator):
    """An :class:`~agora.orchestrator.Orchestrator` that reads frozen agents' round 0 from a
    :class:`~agora.store.TeacherStore` or a :class:`StateCache` when the batch carries example
    indices: ``index`` is a tensor of rows of the shared data, or rows by dataset (a learner's
    name, ``None`` for shared data, :data:`~agora.loaders.TRANSFER` for the transfer set).

    Args:
        graph (Graph): the graph.
        cache (StateCache, optional): frozen agents' outputs kept in memory.
        stores (Mapping, optional): ``{(agent, dataset): TeacherStore}``; a store serves its
            agent on its dataset in place of the cache.
    """

    def __init__(
        self,
        graph: Graph,
        cache: StateCache | None = None,
        stores: Mapping[tuple[str, str | None], TeacherStore] | None = None,
    ) -> None:
        super().__init__(graph)
        self.cache = cache
        self.stores = dict(stores or {})
        self._index: Tensor | Mapping[str | None, Tensor] | None = None
        self._dataset: str | None = None

    def forward(
        self,
        x: Any = None,
        y: Any = None,
        index: Tensor | Mapping[str | None, Tensor] | None = None,
        *,
        batches: Mapping[str, Any] | None = None,
        transfer: Any = None,
    ) -> StepOutput:
        self._index = index if self.training else None
        try:
            return super().forward(x, y, batches=batches, transfer=transfer)
        finally:
            self._index, self._dataset = None, None

    def round_zero(
        self, x: Any, learner: str | None = None, transfer: bool = False
    ) -> dict[str, AgentOutput]:
        from agora.loaders import TRANSFER

        # the rows are rows of the transfer set, of the learner's own data, or of shared data
        self._dataset = TRANSFER if transfer else learner
        return super().round_zero(x, learner, transfer)

    def observe(self, agent: Agent, x: Any, message: bool = True) -> AgentOutput:
        index = self._index
        if isinstance(index, Mapping):
            index = index[self._dataset]
        store = self.stores.get((agent.name, self._dataset))
        if index is None or not agent.frozen or (self.cache is None and store is None):
            return super().observe(agent, x, message)
        if store is not None:
            out = store.lookup(index, agent.attention_mask(x))
        else:
            out = self.cache.lookup(agent, x, index, self._dataset)
        if message:
            out.m = agent.codec.encode(out.s, out.e)
        return out


def observers(graph: Graph, dataset: str | None) -> list[str]:
    """The frozen agents whose round 0 on ``dataset`` a step can read back: every agent on an
    edge for shared data or the transfer set, a learner's own group (itself and its tutors)
    for its per-learner data; frozen with no trainable parameter in its backbone (one shared
    with a trainable agent would change its outputs)."""
    edges = [e for e in graph.edges if dataset not in graph.agents or e.learner == dataset]
    names = dict.fromkeys(name for e in edges for name in (e.learner, e.tutor))
    return [
        name
        for name in names
        if graph.agents[name].frozen
        and not any(p.requires_grad for p in graph.agents[name].backbone_parameters())
    ]


def open_stores(
    graph: Graph,
    datasets: Mapping[str | None, Any],
    root: Any = None,
    dtype: str = "fp32",
    *,
    device: Any = None,
    progress: bool = True,
) -> dict[tuple[str, str | None], TeacherStore]:
    """Every frozen agent's store for each dataset it observes (:func:`observers`), filled
    where missing (:func:`agora.store.fill`); ``datasets`` by the key their rows carry (a
    learner's name, ``None`` for shared data, :data:`~agora.loaders.TRANSFER`)."""
    from agora.store import fill

    return {
        (name, key): fill(
            graph.agents[name], data, root, dtype=dtype, device=device, progress=progress
        )
        for key, data in datasets.items()
        for name in observers(graph, key)
    }
