"""Did talking help? The students alone, trained like the graph, and the comparison."""

import json

import pytest
import torch

from agora import Graph, Talk, alone, compare, fit, load
from agora.baseline import comparison_lines, paired_interval, verdict
from agora.config import load_config
from agora.run import run_config
from tests.helpers import (
    assert_same,
    clone_weights,
    fit_data,
    mlp_agent,
    quick_fit,
    talk_graph,
)


def test_alone_is_the_same_students_without_edges_and_leaves_the_graph_untouched():
    graph = talk_graph()
    graph.build(fit_data()[0][:8][0])
    before = clone_weights(graph)
    solo = alone(graph)
    assert solo.edges == [] and solo.edge_modules.keys() == set()
    assert len(graph.edges) == 1 and clone_weights(graph).keys() == before.keys()
    shared = {k: v for k, v in before.items() if k in solo.state_dict()}
    assert shared.keys() == {k for k in before if not k.startswith("edge_modules")}
    assert_same(shared, {k: v for k, v in solo.state_dict().items() if k in shared})
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(graph.parameters(), solo.parameters()))


@pytest.mark.parametrize("aggregation", ["weights", "router"])
def test_a_learner_that_weighs_several_tutors_trains_alone_after_the_graph(tmp_path, aggregation):
    # issue 23: the copy kept 'weights' and fit(out_dir=...) failed with advice about tutors
    train, valid = fit_data()
    torch.manual_seed(0)
    teachers = [mlp_agent(name, 8, 16, frozen=True) for name in ("t1", "t2")]
    graph = Graph([*teachers, mlp_agent("student", 8, 8)], message_dim=8)
    graph.add_edge("student", "t1", Talk(aggregation=aggregation))
    graph.add_edge("student", "t2", Talk(aggregation=aggregation))
    graph.build(train[:8][0])
    fit(graph, train, valid, quick_fit(epochs=1), out_dir=tmp_path / "graph")
    solo = alone(graph)
    assert solo.learner_modules.keys() == set()  # no tutor: nothing to weigh
    assert graph.learner_module("talk", "student").tutors == ("t1", "t2")  # the graph's is kept
    fit(solo, train, valid, quick_fit(epochs=1), out_dir=tmp_path / "alone")
    assert load(tmp_path / "alone", agents=dict(solo.agents)).edges == []


def test_the_student_alone_trains_exactly_as_a_graph_of_the_student_by_itself():
    train, valid = fit_data()
    graph = talk_graph()
    graph.build(train[:8][0])
    solo = alone(graph)
    torch.manual_seed(0)
    by_itself = Graph([talk_graph().agents["student"]], message_dim=8, codec_dropout=0.1)
    by_itself.build(train[:8][0])
    by_itself.load_state_dict(
        {k: v for k, v in solo.state_dict().items() if k.startswith("agents.student")}
    )
    a = fit(solo, train, valid, quick_fit())
    b = fit(by_itself, train, valid, quick_fit())
    assert a.metrics["student/rmse"] == pytest.approx(b.metrics["student/rmse"], abs=1e-6)


def test_compare_pairs_each_student_with_itself_alone():
    train, valid = fit_data()
    graph = talk_graph()
    graph.build(train[:8][0])
    solo = alone(graph)
    fit(graph, train, valid, quick_fit(epochs=1))
    result = compare(graph, solo, valid, test=train)
    assert result["splits"] == ["valid", "test"]
    student = result["agents"]["student"]
    assert student["role"] == "student"
    for split in ("valid", "test"):
        ours, theirs = student["graph"][split]["rmse"], student["alone"][split]["rmse"]
        assert theirs != ours  # training changed the graph's student, not the lone one
        assert student["difference"][split]["rmse"] == pytest.approx(ours - theirs)
        low, high = student["interval"][split]["rmse"]
        assert low <= ours - theirs <= high
        assert student["verdict"][split]["rmse"] == verdict("rmse", low, high)
    assert result["bootstrap"] == {"resamples": 2000, "level": 0.95, "seed": 0, "over": "examples"}
    assert (
        result["agents"]["teacher"]["role"] == "frozen"
        and "alone" not in result["agents"]["teacher"]
    )
    lines = comparison_lines(result)
    assert any(line.startswith("valid rmse  student: alone") for line in lines)
    assert any("teacher (frozen)" in line for line in lines)


def test_comparison_lines_give_the_interval_and_its_verdict():
    entry = {"role": "student", "graph": {"valid": {}}, "alone": {"valid": {}}}
    entry["graph"]["valid"] = {"rmse": 0.9, "accuracy": 0.7}
    entry["alone"]["valid"] = {"rmse": 1.0, "accuracy": 0.8}
    entry["interval"] = {"valid": {"rmse": [-0.15, -0.05], "accuracy": [-0.2, 0.01]}}
    entry["verdict"] = {"valid": {"rmse": "better", "accuracy": "within noise"}}
    lines = comparison_lines({"splits": ["valid"], "agents": {"s": entry}})
    assert lines[0].endswith("(-0.1000, 95% [-0.1500, -0.0500]: better)")
    assert lines[1].endswith("(-0.1000, 95% [-0.2000, +0.0100]: within noise)")


def test_a_verdict_needs_an_interval_clear_of_zero():
    # issue 23: "-0.0009, better" from one seed, while validation said +0.0004
    g = torch.Generator().manual_seed(0)
    alone_errors = torch.rand(2000, generator=g).double()  # squared errors, one per example
    noise = 0.05 * torch.randn(2000, generator=g).double()
    same = paired_interval(alone_errors, alone_errors, "rmse")
    assert same == (0.0, 0.0) and verdict("rmse", *same) == "within noise"
    low, high = paired_interval((alone_errors + noise).abs(), alone_errors, "rmse")
    assert low < 0 < high and verdict("rmse", low, high) == "within noise"
    low, high = paired_interval(alone_errors * 0.9, alone_errors, "rmse")
    assert high < 0 and verdict("rmse", low, high) == "better"
    right = (torch.rand(2000, generator=g) < 0.7).double()
    assert verdict("accuracy", *paired_interval(right * 0, right, "accuracy")) == "worse"
    with pytest.raises(ValueError, match="the same examples"):
        paired_interval(alone_errors, alone_errors[:10], "rmse")


def test_run_config_with_a_baseline_writes_the_comparison(tmp_path):
    config = load_config("tiny", ["fit.epochs=1"])
    results = run_config(config, tmp_path / "run", baseline=True)
    assert set(results) == {"", "alone"}
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    student = comparison["agents"]["student"]
    assert student["alone"]["valid"]["rmse"] == pytest.approx(
        results["alone"].metrics["student/rmse"], abs=1e-6
    )
    assert set(student["interval"]) == set(student["verdict"]) == {"valid", "test"}
    assert (tmp_path / "run" / "alone" / "model" / "graph.json").is_file()
    staged = load_config("tiny", ["stages=[{name: a, epochs: 1}]"])
    with pytest.raises(Exception, match="baseline"):
        run_config(staged, tmp_path / "staged", baseline=True)
