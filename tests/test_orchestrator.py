"""One step over N agents: several tutors, several students on their own data, peers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from agora import (
    Graph,
    GraphError,
    Orchestrator,
    Talk,
    WeightedAggregation,
)
from agora.loaders import EpochSampler, LearnerBatchSampler
from agora.train import FitConfig, evaluate, fit
from tests.helpers import dataset, mlp_agent, regression_data, train_steps


def test_three_agents_two_tutors_one_learner_loss_goes_down():
    torch.manual_seed(0)
    graph = Graph(
        [mlp_agent("t1", width=32, frozen=True), mlp_agent("t2", width=24, frozen=True)],
        message_dim=12,
    )
    graph.add_agent(mlp_agent("student", width=8))
    talk = Talk(rounds=2, aggregation="weights")
    graph.add_edge("student", "t1", talk)
    graph.add_edge("student", "t2", talk)
    graph.build(torch.randn(4, 6))
    aggregator = graph.learner_module("talk", "student").aggregator
    assert isinstance(aggregator, WeightedAggregation)
    history = train_steps(graph, *regression_data(64), steps=40)
    assert history[-1] < 0.5 * history[0]
    weights = aggregator.last_weights
    assert weights.shape == (2,) and torch.isclose(weights.sum(), torch.tensor(1.0))


def test_peers_learn_from_each_other_and_loss_goes_down():
    torch.manual_seed(0)
    graph = Graph([mlp_agent("a", width=8), mlp_agent("b", width=12)], message_dim=8)
    graph.add_edge("a", "b", ("talk", "logit"))
    graph.add_edge("b", "a", ("talk", "logit"))
    graph.build(torch.randn(4, 6))
    x, y = regression_data(64)
    out = Orchestrator(graph)(x, y)
    assert {
        "task[a]",
        "task[b]",
        "interact[a]",
        "interact[b]",
        "logit[a->b]",
        "logit[b->a]",
    } <= set(out.losses.terms)
    history = train_steps(graph, x, y, steps=40)
    assert history[-1] < 0.5 * history[0]


def quick(**kwargs):
    defaults = {"epochs": 2, "batch_size": 16, "progress": False, "lr": 3e-3, "log_every": 1}
    return FitConfig(**{**defaults, **kwargs})


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
    graph.add_edge("s1", "teacher", (Talk(rounds=2), "logit"))
    graph.add_edge("s2", "teacher", Talk(rounds=1))
    return graph.build(torch.randn(2, 8))


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


def peers_graph():
    torch.manual_seed(0)
    graph = Graph([mlp_agent("a", 6, 8), mlp_agent("b", 6, 12)], message_dim=8, codec_dropout=0.0)
    graph.add_edge("a", "b", (Talk(rounds=1), "logit"))
    graph.add_edge("b", "a", (Talk(rounds=1), "logit"))
    return graph.build(torch.randn(4, 6))


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
    for student, protocols in {"s1": (Talk(rounds=2), "logit"), "s2": Talk(rounds=1)}.items():
        alone = Graph([copy.deepcopy(start["teacher"]), copy.deepcopy(start[student])],
                      message_dim=8, codec_dropout=0.0)  # fmt: skip
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


def test_an_input_of_the_wrong_width_given_to_the_orchestrator_names_the_agent_and_shapes():
    from tests.helpers import two_node

    step = Orchestrator(two_node())  # built for x [B, 6]
    with pytest.raises(
        GraphError,
        match=r"^Agent '(teacher|student)' cannot read this input \(x \[4, 5\] float32\): mat1 and "
        r"mat2 shapes cannot be multiplied .* Does the data have the width",
    ):
        step(torch.randn(4, 5), torch.randn(4))
