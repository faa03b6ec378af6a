"""N-way graphs: multi-teacher aggregation, multi-student data and peers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from agora import Graph, GraphError, Orchestrator, RouterAggregation, WeightedAggregation
from agora.loaders import EpochSampler, LearnerBatchSampler
from agora.models.toy import mlp_agent
from agora.train import FitConfig, evaluate, fit
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
    graph.add_agent(mlp_agent("student", 6, 8, aggregation=aggregation, **student))
    for name in names:
        graph.agents["student"].rounds = 2
        graph.add_edge("student", name)
    return graph.build(torch.randn(4, 6))


# -- aggregation ------------------------------------------------------------------------------


def test_router_weights_sum_to_one_per_example_and_receive_gradients():
    graph = tutors_graph("router")
    router = graph.agents["student"].aggregator
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
    student.aggregation = aggregation
    graph.add_edge("student", "twin")
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
    graph.add_agent(mlp_agent("student", 6, 8, aggregation="mean"))
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


# -- multi-student ----------------------------------------------------------------------------


def students_graph(codec_frozen=True, cache=True):
    """One frozen teacher, two students of different widths, each on its own edge."""
    torch.manual_seed(0)
    graph = Graph(
        [
            mlp_agent("teacher", 8, 32, frozen=True, codec_frozen=codec_frozen),
            mlp_agent("s1", 8, 8),
            mlp_agent("s2", 8, 12),
        ],
        message_dim=8,
        codec_dropout=0.0,
    )
    graph.agents["s1"].rounds = 2
    graph.add_edge("s1", "teacher", ("talk", "logit"))
    graph.agents["s2"].rounds = 1
    graph.add_edge("s2", "teacher", "talk")
    return graph.build(torch.randn(2, 8))


def test_each_learner_and_its_tutors_observe_the_learners_own_batch():
    graph = students_graph()
    (x1, y1), (x2, y2) = regression_data(8, d_in=8, seed=1), regression_data(6, d_in=8, seed=2)
    out = Orchestrator(graph)(batches={"s1": (x1, y1), "s2": (x2, y2)})
    teacher = graph.agents["teacher"]
    assert torch.equal(out.groups["s1"]["teacher"].s, teacher(x1).s)
    assert torch.equal(out.groups["s2"]["teacher"].s, teacher(x2).s)
    assert set(out.groups["s1"]) == {"s1", "teacher"}  # s2 is not in s1's group
    y_s1 = graph.agents["s1"](x1).y
    torch.testing.assert_close(out.losses.terms["task[s1]"][1], F.mse_loss(y_s1.squeeze(-1), y1))
    torch.testing.assert_close(
        out.losses.terms["logit[s1->teacher]"][1], F.mse_loss(y_s1, teacher(x1).y)
    )
    assert out.outputs["s2"].y.shape == (6, 1)  # batch sizes are free per learner


def test_multi_student_equals_separate_two_node_runs_when_the_tutors_codec_is_frozen():
    graph = students_graph(codec_frozen=True)
    start = {name: copy.deepcopy(agent) for name, agent in graph.agents.items()}
    data = {"s1": dataset(96, 1), "s2": dataset(96, 2)}  # equal sizes: no pass restarts
    fit(graph, data, None, quick())  # the frozen-state cache on: keyed on (agent, dataset)
    for student, (protocols, rounds) in {"s1": (("talk", "logit"), 2), "s2": ("talk", 1)}.items():
        alone = Graph([copy.deepcopy(start["teacher"]), copy.deepcopy(start[student])],
                      message_dim=8, codec_dropout=0.0)  # fmt: skip
        alone.agents[student].rounds = rounds
        alone.add_edge(student, "teacher", protocols)
        fit(alone.build(torch.randn(2, 8)), data[student], None, quick())
        # With the tutor's codec frozen nothing is shared: each student's parameters get
        # gradients from its own terms only, in the same order, and AdamW steps each parameter
        # on its own, so the weights agree exactly here (measured: 0.0). The tolerance, 1e-6,
        # only forgives summation order on another BLAS; a real coupling is far larger: with
        # the codec trainable (shared by both students) they differ by 1.6e-2 after 12 steps.
        for key, value in alone.agents[student].state_dict().items():
            torch.testing.assert_close(
                graph.agents[student].state_dict()[key], value, rtol=0, atol=1e-6
            )


def test_multi_student_with_a_shared_codec_is_not_separate_runs():
    graph = students_graph(codec_frozen=False)
    before = copy.deepcopy(graph.agents["teacher"].codec.state_dict())
    fit(graph, {"s1": dataset(32, 1), "s2": dataset(32, 2)}, None, quick(epochs=1))
    after = graph.agents["teacher"].codec.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained by both


def test_a_learner_without_data_is_an_error_naming_it():
    graph = students_graph()
    x, y = regression_data(4, d_in=8)
    with pytest.raises(
        GraphError, match=r"Learner 's2' has no data: batches holds data for \['s1'\]"
    ):
        Orchestrator(graph)(batches={"s1": (x, y)})
    with pytest.raises(GraphError, match=r"Learner 's2' has no data: train_data holds"):
        fit(graph, {"s1": dataset(16, 1)}, None, quick())
    with pytest.raises(GraphError, match=r"'ghost', which is not an agent"):
        fit(graph, {"s1": dataset(16, 1), "s2": dataset(16, 2), "ghost": dataset(16, 3)})
    with pytest.raises(GraphError, match=r"'teacher', which is frozen"):
        Orchestrator(graph)(batches={"s1": (x, y), "s2": (x, y), "teacher": (x, y)})
    with pytest.raises(GraphError, match=r"Learner 's2' has no eval data"):
        fit(graph, {"s1": dataset(16, 1), "s2": dataset(16, 2)}, {"s1": dataset(8, 3)}, quick())


def test_an_epoch_is_the_longest_learner_and_shorter_ones_restart_reshuffled():
    sampler = LearnerBatchSampler({"long": 10, "short": 4}, {"long": 2, "short": 2}, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        steps = list(sampler)
        assert len(steps) == len(sampler) == 5
        reference = EpochSampler(10, 3)
        reference.set_epoch(epoch)  # the longest makes one pass: as if it trained alone
        assert [i for step in steps for i in step["long"]] == list(reference)
        short = [step["short"] for step in steps]
        for p, rows in enumerate([short[0] + short[1], short[2] + short[3], short[4]]):
            reference = EpochSampler(4, 3)
            reference.set_epoch(3 * epoch + p)  # three passes (the last partial) per epoch
            assert rows == list(reference)[: len(rows)]


def test_per_learner_cache_and_evaluation():
    data = {"s1": dataset(48, 1), "s2": dataset(80, 2)}  # unequal: s1 restarts within epochs
    valid = {"s1": dataset(16, 3), "s2": dataset(16, 4)}
    runs = {}
    for cache in (True, False):
        graph = students_graph(codec_frozen=False)
        result = fit(graph, data, valid, quick(cache_frozen=cache))
        runs[cache] = (graph.state_dict(), result.metrics)
    for key, value in runs[True][0].items():
        assert torch.equal(value, runs[False][0][key]), key  # reading back == recomputing
    metrics = runs[True][1]
    assert set(metrics) == {"s1/rmse", "s1/loss", "s2/rmse", "s2/loss", "mean/rmse"}
    assert metrics["mean/rmse"] == pytest.approx((metrics["s1/rmse"] + metrics["s2/rmse"]) / 2)


class FailingDataset(TensorDataset):
    """Raises on the ``fail_at``-th batch it is asked for: a crash in the middle of an epoch."""

    def __init__(self, *tensors, fail_at=None):
        super().__init__(*tensors)
        self.fail_at, self.calls = fail_at, 0

    def __getitems__(self, indices):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("crash (simulated)")
        return [self[i] for i in indices]


def test_per_learner_training_resumes_exactly_after_a_crash(tmp_path):
    def data(fail_at=None):
        short, long = dataset(40, 1), dataset(72, 2)
        return {"s1": FailingDataset(*short.tensors, fail_at=fail_at), "s2": long}

    config = quick(epochs=2, checkpoint_every=3)
    reference = students_graph(codec_frozen=False)
    fit(reference, data(), None, config)
    with pytest.raises(RuntimeError, match="simulated"):  # 5 steps an epoch: dies in epoch 2
        fit(students_graph(codec_frozen=False), data(fail_at=9), None, config, out_dir=tmp_path)
    resumed = students_graph(codec_frozen=False)
    fit(resumed, data(), None, config, out_dir=tmp_path)
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


# -- peers ------------------------------------------------------------------------------------


def peers_graph():
    torch.manual_seed(0)
    graph = Graph([mlp_agent("a", 6, 8), mlp_agent("b", 6, 12)], message_dim=8, codec_dropout=0.0)
    graph.agents["a"].rounds = 1
    graph.add_edge("a", "b", ("talk", "logit"))
    graph.agents["b"].rounds = 1
    graph.add_edge("b", "a", ("talk", "logit"))
    return graph.build(torch.randn(4, 6))


def test_peers_with_one_batch_each_equal_peers_on_shared_data():
    graph = peers_graph()
    x, y = regression_data(16)
    shared = Orchestrator(graph)(x, y).losses.terms
    apart = Orchestrator(graph)(batches={"a": (x, y), "b": (x, y)}).losses.terms
    assert set(apart) == set(shared)
    for name, (_, value) in shared.items():
        assert torch.equal(apart[name][1], value), name


def test_peers_learn_each_on_its_own_data():
    graph = peers_graph()
    data = {"a": dataset(64, 1, d_in=6), "b": dataset(64, 2, d_in=6)}
    before = evaluate(graph, data)
    result = fit(graph, data, data, quick(epochs=4, lr=1e-2))
    assert (
        result.metrics["a/rmse"] < before["a/rmse"] and result.metrics["b/rmse"] < before["b/rmse"]
    )
    out = Orchestrator(graph)(batches={name: d.tensors for name, d in data.items()})
    torch.testing.assert_close(  # a's task loss is on a's data, b's on b's
        out.losses.terms["task[b]"][1],
        F.mse_loss(graph.agents["b"](data["b"].tensors[0]).y.squeeze(-1), data["b"].tensors[1]),
    )
    assert {"interact[a]", "interact[b]", "logit[a->b]", "logit[b->a]"} <= set(out.losses.terms)


def test_the_graphs_page_runs_as_written(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "graphs.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    monkeypatch.chdir(tmp_path)  # the stages example writes runs/chain
    exec(compile("\n".join(blocks), str(page), "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert "mean/rmse" in printed and "'assistant':" in printed
