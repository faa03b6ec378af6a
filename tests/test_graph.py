"""The graph: what it refuses (naming the agent or edge), and its data form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agora import (
    Agent,
    AgentSpec,
    Edge,
    Graph,
    GraphError,
    GraphSpec,
    Orchestrator,
    Talk,
    make_codec,
)
from agora.protocols.logit import Logit
from tests.helpers import mlp_agent, regression_data, small_graph, tutors_graph, two_node


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda g: g.add_edge("student", "ghost"), "unknown tutor 'ghost'"),
        (lambda g: g.add_edge("nobody", "teacher"), "unknown learner 'nobody'"),
        (lambda g: g.add_edge("student", "student"), "student->student.*self-loop"),
        (lambda g: g.add_agent(mlp_agent("student")), "Duplicate agent name 'student'"),
        (
            lambda g: g.add_edge("student", "teacher", "gossip"),
            "student->teacher: unknown protocol 'gossip'",
        ),
        (
            lambda g: g.add_edge("student", "teacher", weights={"state_consistency": -1}),
            "student->teacher: weight 'state_consistency' must be finite and >= 0",
        ),
        (
            lambda g: g.add_edge("student", "teacher", weights={"interact": 1}),
            r"student->teacher: .*'interact' is a protocol's setting: Talk\(interact_weight=",
        ),
        (
            lambda g: g.add_edge("student", "teacher", weights={"logit": "high"}),
            "student->teacher: weights .'logit'. do not belong",
        ),
        (
            lambda g: g.add_edge("student", "teacher", "logit", weights={"logit": "high"}),
            "student->teacher: weight 'logit' must be a number, got 'high'",
        ),
        (
            lambda g: g.add_edge("student", "teacher", weights={"w1": 1}),
            r"student->teacher: weights \['w1'\] do not belong",
        ),
        (
            lambda g: g.add_edge("student", "teacher", rounds=2),
            r"student->teacher: not an edge's option: 'rounds' is a protocol's setting: "
            r"Talk\(rounds=...\)",
        ),
        (
            lambda g: g.add_edge("student", "teacher", Talk(rounds=-1)),
            r"Talk.rounds: must be an integer in \[0, 64\]",
        ),
        (
            lambda g: g.add_edge("student", "teacher", Talk(interact_weight=float("nan"))),
            "Talk.interact_weight: must be finite",
        ),
        (
            lambda g: g.add_edge("teacher", "student").__class__ and g.build(torch.randn(2, 6)),
            "teacher->student: learner 'teacher' is frozen",
        ),
    ],
)
def test_graph_errors_name_the_agent_or_edge(build, match):
    with pytest.raises(GraphError, match=match):
        build(small_graph())


def test_no_trainable_agent():
    graph = Graph([mlp_agent("a", frozen=True), mlp_agent("b", frozen=True)], message_dim=8)
    with pytest.raises(GraphError, match=r"No trainable agent.*\['a', 'b'\]"):
        graph.build(torch.randn(2, 6))


def test_codec_message_dimension_mismatch():
    graph = small_graph()
    graph.agents["student"].codec = make_codec("mlp", (16,), (8,), message_dim=5)
    graph.add_edge("student", "teacher")
    with pytest.raises(GraphError, match=r"Agent 'student': codec message dimension 5 .* 8"):
        graph.build(torch.randn(2, 6))


def test_codec_that_does_not_fit_the_agents_states():
    graph = small_graph()
    graph.agents["student"].codec = make_codec("mlp", (10,), (8,), message_dim=8)
    graph.add_edge("student", "teacher")
    with pytest.raises(GraphError, match=r"Agent 'student': codec expects s \[10\]"):
        graph.build(torch.randn(2, 6))


def test_task_without_head():
    agent = Agent("student", nn.Linear(6, 4), nn.Linear(4, 4), task="regression")
    graph = Graph([mlp_agent("teacher", frozen=True), agent], message_dim=8)
    with pytest.raises(GraphError, match="Agent 'student' has task='regression' but no head"):
        graph.build(torch.randn(2, 6))


def test_logit_without_head():
    teacher = Agent("teacher", nn.Linear(6, 4), nn.Linear(4, 4), frozen=True)
    graph = Graph([teacher, mlp_agent("student")], message_dim=8)
    graph.add_edge("student", "teacher", "logit")
    with pytest.raises(
        GraphError, match="student->teacher: protocol 'logit' needs a head on 'teacher'"
    ):
        graph.build(torch.randn(2, 6))


def test_unbuilt_graph_asks_for_build():
    graph = small_graph()
    graph.add_edge("student", "teacher")
    with pytest.raises(GraphError, match=r"graph.build"):
        Orchestrator(graph)(*regression_data(4))


def test_graph_round_trips_through_a_plain_dict():
    graph = two_node(rounds=3, protocols=("talk", "logit"), noise=0.1, interact_weight=0.2)
    data = graph.to_dict()
    agents = {"teacher": mlp_agent("teacher", width=32), "student": mlp_agent("student", width=8)}
    again = Graph.from_dict(data, agents)
    assert again.to_dict() == data
    assert again.agents["teacher"].frozen
    edge = again.edge("student", "teacher")
    assert edge.protocol("talk") == Talk(rounds=3, interact_weight=0.2) and edge.noise == 0.1


def test_an_agent_given_a_learner_setting_says_where_it_moved():
    for make in (lambda: mlp_agent("pupil", rounds=2), lambda: AgentSpec("pupil", rounds=2)):
        with pytest.raises((TypeError, GraphError)) as caught:
            make()
        assert str(caught.value).startswith(
            "Agent 'pupil': rounds moved to the learner's talk edges: graph.add_edge("
        )
        assert "Talk(rounds=" in str(caught.value) and "\n" not in str(caught.value)


def test_a_learners_talk_edges_carry_the_same_settings():
    graph = Graph([mlp_agent("t1", frozen=True), mlp_agent("t2", frozen=True), mlp_agent("s")],
                  message_dim=8)  # fmt: skip
    graph.add_edge("s", "t1", Talk(rounds=2))
    graph.add_edge("s", "t2", "talk")
    with pytest.raises(
        GraphError,
        match=r"Agent 's': its talk edges disagree \(s->t1 has Talk\(rounds=2\), s->t2 has "
        r"Talk\(\)\); .* give each of its talk edges the same Talk",
    ):
        graph.build(torch.randn(2, 6))
    with pytest.raises(GraphError, match="its talk edges disagree") as caught:
        graph.spec()  # a GraphSpec refuses it too, keyed by the learner's first talk edge
    assert caught.value.key == "edges.0.protocols"


def test_talk_settings_changed_after_building_ask_for_a_build():
    graph = two_node(rounds=1)
    graph.edge("student", "teacher").protocol("talk").rounds = 3
    with pytest.raises(GraphError, match="talk settings changed since the graph was built"):
        Orchestrator(graph)(*regression_data(4))
    graph.build(torch.randn(4, 6))
    assert graph.learner_module("talk", "student").rounds == 3
    out = Orchestrator(graph)(*regression_data(4))
    assert out.losses.terms["interact[student]"][1] > 0


def test_from_dict_without_agent_or_spec_says_what_to_pass():
    with pytest.raises(GraphError, match=r"Agent 'teacher': no agent given and no factory"):
        Graph.from_dict(two_node().to_dict(), {})


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
    graph.add_agent(mlp_agent("student", 6, 8))
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


# -- the data form, checked before any model is built -----------------------------------------


@pytest.mark.parametrize(
    ("edges", "key", "words"),
    [
        ([Edge("student", "ghost")], "edges.0.tutor", "unknown tutor 'ghost'"),
        ([Edge("teacher", "student")], "edges.0.learner", "learner 'teacher' is frozen"),
        ([Edge("student", "student")], "edges.0", "self-loop"),
        ([Edge("student", "teacher"), Edge("student", "teacher")], "edges.1", "exists already"),
    ],
)
def test_a_graph_spec_names_the_key_of_a_structural_fault(edges, key, words):
    agents = [AgentSpec("teacher", frozen=True, codec_frozen=True), AgentSpec("student")]
    with pytest.raises(GraphError, match=words) as caught:
        GraphSpec(agents, edges)
    assert caught.value.key == key


def test_a_spec_holds_a_frozen_learner_whose_codec_trains_as_a_stage_leaves_it():
    # a stage may freeze a learner's backbone and train its codec alone: a checkpoint's
    # graph.json holds that state; a config is held to the strict rule (tests/test_config.py)
    GraphSpec([AgentSpec("teacher", frozen=True), AgentSpec("student", frozen=True)],
              [Edge("student", "teacher")])  # fmt: skip
    with pytest.raises(GraphError, match="every agent") as caught:
        GraphSpec([AgentSpec(name, frozen=True, codec_frozen=True) for name in ("t", "s")])
    assert caught.value.key == "agents"


def test_a_graph_round_trips_through_its_spec():
    graph = two_node(rounds=2, protocols=("talk", "logit"), weights={"logit": 0.3})
    spec = graph.spec()
    assert spec.edges[0].protocols == (Talk(rounds=2), Logit())
    assert spec.edges[0].weights["logit"] == 0.3
    again = Graph.from_spec(spec, {"teacher": mlp_agent("teacher", width=32),
                                   "student": mlp_agent("student", width=8)})  # fmt: skip
    assert again.to_dict() == graph.to_dict() and again.agents["teacher"].frozen


def test_a_codec_too_large_for_memory_is_a_graph_error_naming_the_agent(monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate"
        )

    monkeypatch.setattr("agora.graph.make_codec", no_memory)
    with pytest.raises(GraphError, match=r"Agent 'teacher': its codec \('mlp'.*does not fit"):
        small_graph().build(torch.randn(2, 6))
