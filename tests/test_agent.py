"""Agents: splitting a model, freezing, and the keywords an agent takes."""

import pytest
import torch
from torch import nn

from agora import (
    Agent,
    GraphError,
)
from tests.helpers import mlp_agent, small_graph


def test_from_model_shares_parameters_and_reproduces_forward():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    agent = Agent.from_model("m", model, lower=["0", "1"], upper=["2", "3"], head="4")
    x = torch.randn(3, 6)
    out = agent(x)
    assert torch.equal(out.y, model(x))
    assert out.s.shape == (3, 8) and out.e.shape == (3, 4)
    assert {id(p) for p in agent.parameters()} == {id(p) for p in model.parameters()}


def test_from_model_names_a_missing_submodule():
    with pytest.raises(ValueError, match="'encoder' is not a submodule of Sequential"):
        Agent.from_model("m", nn.Sequential(nn.Linear(2, 2)), lower="encoder", upper="0")


def test_frozen_backbone_stays_in_eval_mode():
    agent = mlp_agent("t", frozen=True)
    agent.lower.append(nn.Dropout(0.5))
    agent.train()
    assert not agent.lower.training and not agent.upper.training
    x = torch.randn(4, 6)
    assert torch.equal(agent(x).s, agent(x).s)  # no dropout noise
    assert all(not p.requires_grad for p in agent.backbone_parameters())


def test_a_misplaced_keyword_says_where_it_belongs():
    with pytest.raises(
        TypeError, match=r"'message_dim' is the graph's: Graph\(agents, message_dim="
    ):
        mlp_agent("pupil", message_dim=4)
    with pytest.raises(
        GraphError, match=r"'message_dim' is the graph's: Graph\(agents, message_dim"
    ):
        small_graph().add_edge("student", "teacher", message_dim=4)
