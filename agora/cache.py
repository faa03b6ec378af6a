"""The frozen-state cache: a frozen agent's round 0 computed once per example, then read back.

``FitConfig(cache_frozen=True)`` trains with a :class:`CachedOrchestrator` over a
:class:`StateCache`: the outputs of a frozen agent in eval mode depend only on its input, so
every epoch after the first reads them instead of running the agent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from agora.agent import Agent, AgentOutput
from agora.graph import Graph
from agora.orchestrator import Orchestrator, StepOutput


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
    :class:`StateCache` when the batch carries example indices (per learner, for per-learner
    batches)."""

    def __init__(self, graph: Graph, cache: StateCache | None = None) -> None:
        super().__init__(graph)
        self.cache = cache
        self._index: Tensor | Mapping[str, Tensor] | None = None
        self._dataset: str | None = None

    def forward(
        self,
        x: Any = None,
        y: Any = None,
        index: Tensor | Mapping[str, Tensor] | None = None,
        *,
        batches: Mapping[str, Any] | None = None,
    ) -> StepOutput:
        self._index = index if self.training else None
        try:
            return super().forward(x, y, batches=batches)
        finally:
            self._index, self._dataset = None, None

    def round_zero(self, x: Any, learner: str | None = None) -> dict[str, AgentOutput]:
        self._dataset = learner  # per-learner batches: the rows are rows of its dataset
        return super().round_zero(x, learner)

    def observe(self, agent: Agent, x: Any, message: bool = True) -> AgentOutput:
        index = self._index
        if isinstance(index, Mapping):
            index = index[self._dataset]
        if self.cache is None or index is None or not agent.frozen:
            return super().observe(agent, x, message)
        out = self.cache.lookup(agent, x, index, self._dataset)
        if message:
            out.m = agent.codec.encode(out.s, out.e)
        return out
