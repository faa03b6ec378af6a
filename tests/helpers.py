"""Small agents for tests: MLPs on random data, and a token model with a padding mask."""

from __future__ import annotations

import torch
from einops import reduce
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from agora import Agent, Graph, Orchestrator, Talk
from agora.train import FitConfig


def mlp_agent(name: str, d_in: int = 6, width: int = 16, out: int = 1, **kwargs) -> Agent:
    """lower: x -> s [B, width]; upper: s -> e [B, width // 2]; head: e -> y [B, out]."""
    lower = nn.Sequential(nn.Linear(d_in, width), nn.ReLU())
    upper = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU())
    kwargs.setdefault("task", "regression")
    return Agent(name, lower, upper, nn.Linear(width // 2, out), **kwargs)


def talking(protocols, **settings):
    """``protocols`` with ``"talk"`` made ``Talk(**settings)``."""
    protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
    return tuple(Talk(**settings) if p == "talk" else p for p in protocols)


def two_node(
    rounds: int = 1,
    protocols: str | tuple[str, ...] = "talk",
    codec: str = "mlp",
    dropout: float = 0.0,
    seed: int = 0,
    interact_weight: float = 1.0,
    **edge,
) -> Graph:
    """A frozen teacher and a student; its talk (if ``protocols`` has it) runs ``rounds``
    with ``interact_weight``."""
    torch.manual_seed(seed)
    teacher = mlp_agent("teacher", width=32, frozen=True)
    student = mlp_agent("student", width=8)
    graph = Graph([teacher, student], message_dim=12, codec=codec, codec_dropout=dropout)
    talk = talking(protocols, rounds=rounds, interact_weight=interact_weight)
    graph.add_edge("student", "teacher", talk, **edge)
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


# -- a small talk graph for fit(): cache, checkpoints, resume, DDP ---------------------------


def talk_graph(dropout=0.1, noise=0.1, width=8):
    """A frozen teacher and a student on 8 inputs, talking (k = 2) and matching logits."""
    torch.manual_seed(0)
    g = Graph(
        [mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("student", 8, width)],
        message_dim=8,
        codec_dropout=dropout,
    )
    g.add_edge("student", "teacher", (Talk(rounds=2), "logit"), noise=noise)
    return g


def fit_data(n=256, seed=1):
    """Train and valid splits (3:1) of 8 inputs and a smooth target."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    y = x[:, :4].sum(-1).sin()
    cut = n * 3 // 4
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


def clone_weights(g):
    return {k: v.clone() for k, v in g.state_dict().items()}


def quick_fit(**kwargs):
    """A short FitConfig: 3 epochs of batches of 64, every step logged."""
    kwargs.setdefault("epochs", 3)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("lr", 3e-3)
    kwargs.setdefault("log_every", 1)
    return FitConfig(**kwargs)


def assert_same(a, b, **tolerance):
    assert a.keys() == b.keys()
    for key in a:
        if tolerance:
            torch.testing.assert_close(
                a[key], b[key], msg=lambda m, k=key: f"{k}: {m}", **tolerance
            )
        else:
            assert torch.equal(a[key], b[key]), key


# -- small graphs and training loops shared by several test files ------------------------


def train_steps(graph, x, y, steps=30, lr=1e-2):
    """``steps`` Adam steps of the whole graph on one batch; the loss of each."""
    step = Orchestrator(graph).train()
    optimizer = torch.optim.Adam([p for p in graph.parameters() if p.requires_grad], lr=lr)
    history = []
    for _ in range(steps):
        loss = step(x, y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history


def one_way_terms(protocol, **edge):
    """The two-node graph with ``protocol`` on its edge, and one step's output on 8 examples."""
    graph = two_node(protocols=protocol, **edge)
    x, y = regression_data(8)
    out = Orchestrator(graph)(x, y)
    return graph, out, x


def small_graph(**teacher_kwargs):
    teacher_kwargs.setdefault("frozen", True)
    return Graph([mlp_agent("teacher", **teacher_kwargs), mlp_agent("student")], message_dim=8)


def tutors_graph(aggregation="router", tutors=3, **student):
    """``tutors`` frozen tutors of different widths, one student that talks to each."""
    torch.manual_seed(0)
    names = [f"t{i}" for i in range(1, tutors + 1)]
    graph = Graph(
        [mlp_agent(name, 6, 16 + 8 * i, frozen=True) for i, name in enumerate(names)],
        message_dim=12,
        codec_dropout=0.0,
    )
    graph.add_agent(mlp_agent("student", 6, 8, **student))
    talk = Talk(rounds=2, aggregation=aggregation)
    for name in names:
        graph.add_edge("student", name, talk)
    return graph.build(torch.randn(4, 6))


def dataset(n, seed, d_in=8):
    """``n`` examples of ``d_in`` inputs; ``seed`` shifts the target (a task of its own)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen)
    return TensorDataset(x, (x[:, :4].sum(-1) + seed).sin())


def crash_at_step(monkeypatch, step, run):
    """Call ``run()``, made to stop (as a crash would) when training reaches ``step``; every
    checkpoint written before stays, and the run folder is left unfinished."""
    import pytest

    import agora.train

    check = agora.train.check_finite

    def crash(out, at, log):
        if at == step:
            raise KeyboardInterrupt
        check(out, at, log)

    monkeypatch.setattr(agora.train, "check_finite", crash)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(agora.train, "check_finite", check)
