"""Agents: splitting a model, freezing, and the keywords an agent takes."""

import pytest
import torch
from torch import nn

from agora import Agent, Edge, GraphError
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
    with pytest.raises(GraphError, match=r"'rounds' is a protocol's setting: Talk\(rounds="):
        Edge("student", "teacher", rounds=2)
    with pytest.raises(
        TypeError,
        match=r"^Agent 'pupil': rounds moved to the learner's talk edges: "
        r"graph.add_edge\('pupil', tutor, Talk\(rounds=2\)\)",
    ):
        mlp_agent("pupil", rounds=2)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_from_model_picks_one_output_of_a_recurrent_part(cell):
    torch.manual_seed(0)
    model = nn.ModuleDict({"rnn": cell(4, 8, batch_first=True), "mix": nn.Linear(8, 8)})
    x = torch.randn(3, 5, 4)
    with pytest.raises(TypeError, match=r"Agent 'r': its lower returned a tuple.*output=0"):
        Agent.from_model("r", model, lower="rnn", upper="mix")(x)
    agent = Agent.from_model("r", model, lower="rnn", upper="mix", output=0)
    out = agent(x)
    assert torch.equal(out.s, model["rnn"](x)[0]) and torch.equal(out.e, model["mix"](out.s))
    assert {id(p) for p in agent.parameters()} == {id(p) for p in model.parameters()}


def test_an_input_of_the_wrong_width_names_the_agent_and_the_shapes():
    graph = small_graph()
    with pytest.raises(
        GraphError, match=r"Agent 'teacher' cannot read this input \(x \[4, 5\] float32\)"
    ):
        graph.build(torch.randn(4, 5))
