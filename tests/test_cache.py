"""The frozen-state cache: the same training, filled once."""

import torch

from agora.train import fit
from tests.helpers import assert_same, clone_weights, fit_data, quick_fit, talk_graph


def test_cache_gives_bit_for_bit_the_same_training():
    train, valid = fit_data()
    runs = {}
    for cache in (True, False):
        g = talk_graph(dropout=0.1, noise=0.1)  # dropout and noise draw from the RNG in both runs
        result = fit(g, train, valid, quick_fit(cache_frozen=cache))
        runs[cache] = (clone_weights(g), result.metrics)
    assert_same(runs[True][0], runs[False][0])
    assert runs[True][1] == runs[False][1]


def test_cache_is_filled_once_and_read_afterwards(monkeypatch):
    train, _ = fit_data()
    g = talk_graph().build(torch.randn(2, 8))
    calls = []
    teacher = g.agents["teacher"]
    original = teacher.forward
    monkeypatch.setattr(teacher, "forward", lambda x: calls.append(len(x)) or original(x))
    fit(g, train, None, quick_fit(epochs=3, cache_frozen=True))
    assert sum(calls) == len(train)  # round 0 of the teacher ran once per example


def test_the_cache_keeps_pooled_states_of_token_inputs_whole():
    """A frozen agent that pools its tokens (s: [B, H]) is cached per example, not cut to T."""
    from agora import Agent
    from agora.cache import StateCache

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(20, 8)

        def forward(self, x):
            return self.embedding(x["input_ids"]).mean(1)  # [B, 8]

    agent = Agent("teacher", Pooled(), torch.nn.Linear(8, 6), frozen=True)
    cache = StateCache(4)
    short = {"input_ids": torch.tensor([[1, 2], [3, 4]]), "attention_mask": torch.ones(2, 2)}
    first = cache.lookup(agent, short, torch.tensor([0, 1]))
    again = cache.lookup(
        agent, {k: torch.cat([v, v], 1) for k, v in short.items()}, torch.tensor([0, 1])
    )
    assert first.s.shape == again.s.shape == (2, 8) and torch.equal(first.s, again.s)
