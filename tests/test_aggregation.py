"""How a learner combines several tutors' replies."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from agora import Orchestrator, RouterAggregation, WeightedAggregation
from agora.train import FitConfig, fit
from tests.helpers import dataset, regression_data, tutors_graph, two_node


def quick(**kwargs):
    defaults = {"epochs": 2, "batch_size": 16, "progress": False, "lr": 3e-3, "log_every": 1}
    return FitConfig(**{**defaults, **kwargs})


def test_router_weights_sum_to_one_per_example_and_receive_gradients():
    graph = tutors_graph("router")
    router = graph.learner_module("talk", "student").aggregator
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
    talk = graph.edge("student", "teacher").protocol("talk")
    talk.aggregation = aggregation  # the learner's, on both its talk edges
    graph.add_edge("student", "twin", talk)
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


def test_an_aggregator_of_ones_own_without_last_weights_steps_and_notes_nothing():
    class Average(torch.nn.Module):  # any module with this forward; no Aggregation base
        def forward(self, replies, question, tutors=None):
            return replies.mean(0)

    graph = tutors_graph(aggregation=Average(), tutors=2)  # a module: it is the aggregator
    assert isinstance(graph.learner_module("talk", "student").aggregator, Average)
    x, y = regression_data(8)
    out = Orchestrator(graph)(x, y)
    assert "interact[student]" in out.losses.terms and out.losses.notes == {}
