"""Small agents for tests: MLPs on random data, and a token model with a padding mask."""

from __future__ import annotations

import torch
from einops import reduce
from torch import Tensor, nn

from agora import Agent, Graph


def mlp_agent(name: str, d_in: int = 6, width: int = 16, out: int = 1, **kwargs) -> Agent:
    """lower: x -> s [B, width]; upper: s -> e [B, width // 2]; head: e -> y [B, out]."""
    lower = nn.Sequential(nn.Linear(d_in, width), nn.ReLU())
    upper = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU())
    kwargs.setdefault("task", "regression")
    return Agent(name, lower, upper, nn.Linear(width // 2, out), **kwargs)


def two_node(
    rounds: int = 1,
    protocols: str | tuple[str, ...] = "talk",
    codec: str = "mlp",
    dropout: float = 0.0,
    seed: int = 0,
    **edge,
) -> Graph:
    """A frozen teacher and a student; ``weights`` may hold the student's ``interact`` weight
    beside the edge's own."""
    torch.manual_seed(seed)
    weights = dict(edge.pop("weights", {}))
    interact = weights.pop("interact", 1.0)
    teacher = mlp_agent("teacher", width=32, frozen=True)
    student = mlp_agent("student", width=8, rounds=rounds, interact_weight=interact)
    graph = Graph([teacher, student], message_dim=12, codec=codec, codec_dropout=dropout)
    graph.add_edge("student", "teacher", protocols, weights=weights, **edge)
    return graph.build(torch.randn(4, 6))


def regression_data(n: int = 64, d_in: int = 6, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    y = (x[:, :3].sum(-1) + 0.1 * torch.randn(n, generator=g)).sin()
    return x, y


class TokenAgent(Agent):
    """A token model: states [B, T, d]; the head pools real tokens only."""

    def predict(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        weights = mask.unsqueeze(-1).to(e.dtype)
        pooled = reduce(e * weights, "b t d -> b d", "sum") / weights.sum(1).clamp_min(1)
        return self.head(pooled)


class Embed(nn.Module):
    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.embedding(x["input_ids"])


def token_agent(name: str, dim: int, classes: int = 3, **kwargs) -> TokenAgent:
    upper = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())  # position-wise, like a masked encoder
    kwargs.setdefault("task", "classification")
    return TokenAgent(name, Embed(20, dim), upper, nn.Linear(dim, classes), **kwargs)
