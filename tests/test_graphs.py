"""N-way graphs: multi-teacher aggregation, multi-student data and peers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils.data import TensorDataset

from agora import Graph, GraphError, Orchestrator, RouterAggregation, WeightedAggregation
from agora.models.toy import mlp_agent
from agora.train import FitConfig, fit
from tests.helpers import regression_data, two_node


def quick(**kwargs):
    defaults = {"epochs": 2, "batch_size": 16, "progress": False, "lr": 3e-3, "log_every": 1}
    return FitConfig(**{**defaults, **kwargs})


def dataset(n, seed, d_in=8):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen)
    return TensorDataset(x, (x[:, :4].sum(-1) + seed).sin())


def tutors_graph(aggregation="router", tutors=3, **student):
    """``tutors`` frozen tutors of different widths, one student that talks to each."""
    torch.manual_seed(0)
    names = [f"t{i}" for i in range(1, tutors + 1)]
    graph = Graph(
        [mlp_agent(name, 6, 16 + 8 * i, frozen=True) for i, name in enumerate(names)],
        message_dim=12,
        codec_dropout=0.0,
    )
    graph.add_agent(mlp_agent("student", 6, 8, **student), aggregation=aggregation)
    for name in names:
        graph.add_edge("student", name, rounds=2)
    return graph.build(torch.randn(4, 6))


# -- aggregation ------------------------------------------------------------------------------


def test_router_weights_sum_to_one_per_example_and_receive_gradients():
    graph = tutors_graph("router")
    router = graph.aggregators["student"]
    assert isinstance(router, RouterAggregation)
    x, y = regression_data(16)
    out = Orchestrator(graph)(x, y)
    weights = router.last_weights
    assert weights.shape == (16, 3)  # one weight per example and tutor
    torch.testing.assert_close(weights.sum(-1), torch.ones(16))
    assert not torch.allclose(weights, weights[:1].expand_as(weights))  # per example, not global
    out.loss.backward()
    assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0
    assert router.gate.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("aggregation", ["mean", "weights", "router"])
def test_one_active_tutor_gives_the_two_node_result_exactly(aggregation):
    x, y = regression_data(8)
    reference = Orchestrator(two_node(rounds=2))(x, y).losses.terms
    graph = two_node(rounds=2)  # the same weights, seed for seed
    twin = copy.deepcopy(graph.agents["teacher"])
    twin.name = "twin"
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)  # a different tutor: only switching its edge off can match the reference
    student = graph.agents["student"]
    graph.add_agent(twin)
    graph._aggregation["student"] = aggregation
    graph.add_edge("student", "twin", rounds=2)
    graph.build(x)
    graph.edge("student", "twin").active = False
    terms = Orchestrator(graph)(x, y).losses.terms
    assert list(terms) == list(reference)
    for name, (weight, value) in reference.items():
        assert terms[name][0] == weight and torch.equal(terms[name][1], value), name
    assert student is graph.agents["student"]


def test_a_subset_of_tutors_shares_out_the_weight_of_the_others():
    weights = WeightedAggregation(3)
    with torch.no_grad():
        weights.logits.copy_(torch.tensor([0.5, 2.0, -1.0]))
    replies = torch.randn(2, 4, 5)  # tutors 0 and 2 replied
    reply = weights(replies, torch.zeros(4, 5), tutors=[0, 2])
    expected = torch.tensor([0.5, -1.0]).softmax(0)
    torch.testing.assert_close(weights.last_weights, expected)
    torch.testing.assert_close(reply, expected[0] * replies[0] + expected[1] * replies[1])


def test_logged_aggregation_weights_name_the_tutors(tmp_path):
    graph = tutors_graph("weights", tutors=2)
    fit(graph, *(dataset(64, 1, d_in=6),) * 2, quick(epochs=1), out_dir=tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "aggregation/student/t1" in line]
    assert logged and all(not any(k.endswith("/0") for k in line) for line in lines)
    for line in logged:
        assert line["aggregation/student/t1"] + line["aggregation/student/t2"] == pytest.approx(1)


@pytest.mark.parametrize("aggregation", ["weights", "router"])
def test_a_weighing_aggregation_needs_two_tutors(aggregation):
    with pytest.raises(
        GraphError,
        match=rf"Agent 'student': aggregation '{aggregation}' .* talks to 1 \(\['t1'\]\)",
    ):
        tutors_graph(aggregation, tutors=1)


def test_tutors_that_reply_in_another_message_space_are_named():
    from agora import make_codec

    torch.manual_seed(0)
    graph = Graph([mlp_agent("t1", 6, 16, frozen=True), mlp_agent("t2", 6, 16, frozen=True)],
                  message_dim=12)  # fmt: skip
    graph.add_agent(mlp_agent("student", 6, 8), aggregation="mean")
    graph.add_edge("student", "t1")
    graph.add_edge("student", "t2")
    graph.agents["t2"].codec = make_codec("token", (16,), (8,), 12)  # per-token replies
    with pytest.raises(
        GraphError,
        match=r"Agent 'student' and its tutors speak different message spaces "
        r"\(student \[B, 12\], t1 \[B, 12\], t2 \[B, T, 12\]\)",
    ):
        graph.build(torch.randn(4, 6))
    graph.agents["t2"].codec = make_codec("mlp", (16,), (8,), 5)  # replies of another size
    with pytest.raises(GraphError, match=r"Agent 't2': codec message dimension 5 .* 12"):
        graph.build(torch.randn(4, 6))
