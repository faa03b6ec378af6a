"""The toy MLP agent: its split into lower / upper / head, its sizes, and what it refuses."""

import pytest
import torch
from torch import nn

from agora.models.toy import mlp_agent


@pytest.mark.parametrize("depth", [1, 3])
def test_states_have_the_documented_widths_and_upper_has_depth_layers(depth):
    torch.manual_seed(0)
    agent = mlp_agent("student", d_in=5, width=12, depth=depth, out=3)
    out = agent(torch.randn(4, 5))
    assert out.s.shape == (4, 12) and out.e.shape == (4, 6) and out.y.shape == (4, 3)
    linears = [m for m in agent.upper if isinstance(m, nn.Linear)]
    widths = [(m.in_features, m.out_features) for m in linears]
    assert widths == [(12, 12)] * (depth - 1) + [(12, 6)]
    assert (out.s >= 0).all() and (out.e >= 0).all()  # each part ends in a ReLU


def test_an_odd_width_rounds_e_down():
    out = mlp_agent("a", d_in=2, width=5)(torch.randn(3, 2))
    assert out.s.shape == (3, 5) and out.e.shape == (3, 2)


def test_the_task_and_agent_options_reach_the_agent():
    agent = mlp_agent("teacher", d_in=4, width=8, out=2, task="classification", frozen=True)
    assert agent.name == "teacher" and agent.task == "classification" and agent.frozen
    assert not any(p.requires_grad for p in agent.backbone_parameters())
    assert mlp_agent("student", d_in=4, width=8).task == "regression"  # the default
    assert mlp_agent("probe", d_in=4, width=8, task=None).task is None


@pytest.mark.parametrize(
    "sizes", [{"d_in": 0}, {"width": 1}, {"depth": 0}, {"out": 0}], ids=lambda s: next(iter(s))
)
def test_a_size_too_small_is_refused_naming_the_agent_and_every_size(sizes):
    arguments = {"d_in": 4, "width": 8, "depth": 1, "out": 1, **sizes}
    refused = pytest.raises(ValueError, match=r"^mlp_agent 'tiny': need d_in >= 1, width >= 2")
    with refused as caught:
        mlp_agent("tiny", **arguments)
    given = ", ".join(f"{key}={value}" for key, value in arguments.items())
    assert str(caught.value).endswith(f"got {given}")
