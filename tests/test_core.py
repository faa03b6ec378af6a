"""Agents, codecs, protocols, graph validation and the orchestrator on small models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agora import (
    Agent,
    Graph,
    GraphError,
    Orchestrator,
    WeightedAggregation,
    distance,
    logit_distance,
    make_codec,
)
from tests.helpers import mlp_agent, regression_data, token_agent, two_node


def train(graph, x, y, steps=30, lr=1e-2):
    step = Orchestrator(graph).train()
    optimizer = torch.optim.Adam([p for p in graph.parameters() if p.requires_grad], lr=lr)
    history = []
    for _ in range(steps):
        loss = step(x, y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history


# -- agents -----------------------------------------------------------------------------------


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


# -- training behaviour -----------------------------------------------------------------------


def test_gradients_reach_learner_backbone_and_all_four_codec_modules():
    graph = two_node(rounds=2)
    x, y = regression_data(16)
    Orchestrator(graph)(x, y).loss.backward()
    student, teacher = graph.agents["student"], graph.agents["teacher"]
    for module in (student.lower, student.upper, student.head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    for codec in (student.codec, teacher.codec):
        for part in (codec.encoder, codec.decoder):
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert all(p.grad is None for p in teacher.backbone_parameters())


def test_interact_gradient_flows_through_the_frozen_tutors_upper_layers():
    graph = two_node(rounds=1, weights={"message_consistency": 0, "state_consistency": 0})
    graph.agents["student"].task_weight = 0.0
    x, y = regression_data(16)
    out = Orchestrator(graph)(x, y)
    assert list(out.losses.terms) == ["interact[student]"]
    out.loss.backward()
    # the teacher's encoder only enters the interact loss through upper_h(D_h(m_g)):
    teacher_encoder = graph.agents["teacher"].codec.encoder
    assert all(p.grad.abs().sum() > 0 for p in teacher_encoder.parameters())
    # and the teacher's decoder only through the reply it interprets
    assert all(p.grad.abs().sum() > 0 for p in graph.agents["teacher"].codec.decoder.parameters())


def test_frozen_tutor_never_changes_while_its_codec_does():
    graph = two_node(rounds=2)
    teacher = graph.agents["teacher"]
    backbone = {k: v.clone() for k, v in teacher.state_dict().items() if not k.startswith("codec")}
    codec = {k: v.clone() for k, v in teacher.codec.state_dict().items()}
    x, y = regression_data(32)
    train(graph, x, y, steps=5)
    for key, value in teacher.state_dict().items():
        if key in backbone:
            assert torch.equal(value, backbone[key]), key  # bitwise
    assert any(not torch.equal(v, codec[k]) for k, v in teacher.codec.state_dict().items())


def test_codec_frozen_keeps_the_codec_too():
    torch.manual_seed(0)
    teacher = mlp_agent("teacher", width=32, frozen=True, codec_frozen=True)
    graph = Graph([teacher, mlp_agent("student", width=8)], message_dim=12)
    graph.add_edge("student", "teacher")
    graph.build(torch.randn(4, 6))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train(graph, *regression_data(32), steps=3)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_three_agents_two_tutors_one_learner_loss_goes_down():
    torch.manual_seed(0)
    graph = Graph(
        [mlp_agent("t1", width=32, frozen=True), mlp_agent("t2", width=24, frozen=True)],
        message_dim=12,
    )
    graph.add_agent(mlp_agent("student", width=8, rounds=2, aggregation="weights"))
    graph.add_edge("student", "t1")
    graph.add_edge("student", "t2")
    graph.build(torch.randn(4, 6))
    assert isinstance(graph.agents["student"].aggregator, WeightedAggregation)
    history = train(graph, *regression_data(64), steps=40)
    assert history[-1] < 0.5 * history[0]
    weights = graph.agents["student"].aggregator.last_weights
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
    history = train(graph, x, y, steps=40)
    assert history[-1] < 0.5 * history[0]


def test_mean_over_identical_tutors_is_the_two_node_result():
    import copy

    x, y = regression_data(8)
    graph = two_node(rounds=2)
    reference = Orchestrator(graph)(x, y).losses.terms["interact[student]"][1]
    twin = copy.deepcopy(graph.agents["teacher"])
    twin.name = "twin"
    graph.add_agent(twin)
    graph.add_edge("student", "twin")
    graph.build(x)
    interact = Orchestrator(graph)(x, y).losses.terms["interact[student]"][1]
    assert torch.equal(interact, reference)  # (r + r) / 2 == r exactly


# -- protocols against their textbook formulas ------------------------------------------------


def test_distances_match_their_formulas():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(distance(a, b), ((a - b) ** 2).sum(1).div(7).mean())
    cosine = 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert torch.allclose(distance(a, b, "cosine"), cosine.mean())
    split = distance((a[:, :3], a[:, 3:]), (b[:, :3], b[:, 3:]))
    assert torch.allclose(split, distance(a, b))


def test_logit_distances_match_hinton_and_mse():
    student, teacher, T = torch.randn(4, 5), torch.randn(4, 5), 3.0
    p_t = torch.softmax(teacher / T, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / T, -1))).sum(-1).mean() * T * T
    assert torch.allclose(logit_distance(student, teacher, "kl", T), kl, atol=1e-6)
    assert torch.allclose(
        logit_distance(student, teacher, "mse"), ((student - teacher) ** 2).mean()
    )


def one_way_terms(protocol, **edge):
    graph = two_node(protocols=protocol, **edge)
    x, y = regression_data(8)
    out = Orchestrator(graph)(x, y)
    return graph, out, x


def test_logit_protocol_is_label_distillation():
    graph, out, x = one_way_terms("logit", weights={"logit": 0.5})
    y_s, y_t = graph.agents["student"](x).y, graph.agents["teacher"](x).y
    assert torch.allclose(out.losses.terms["logit[student->teacher]"][1], F.mse_loss(y_s, y_t))
    assert out.losses.terms["logit[student->teacher]"][0] == 0.5


def test_feature_protocol_is_distance_in_message_space():
    graph, out, x = one_way_terms("feature")
    s, t = graph.agents["student"], graph.agents["teacher"]
    so, to = s(x), t(x)
    m_s = s.codec.encoder(torch.cat([so.s, so.e], -1))
    m_t = t.codec.encoder(torch.cat([to.s, to.e], -1))
    assert torch.allclose(out.losses.terms["feature[student->teacher]"][1], F.mse_loss(m_s, m_t))


def test_fitnet_protocol_decodes_the_tutors_raw_states():
    graph, out, x = one_way_terms("fitnet")
    s, t = graph.agents["student"], graph.agents["teacher"]
    so, to = s(x), t(x)
    regressor = graph.edge_module(graph.edge("student", "teacher"), "fitnet")
    decoded = s.codec.decoder(regressor(torch.cat([to.s, to.e], -1)))
    expected = F.mse_loss(decoded, torch.cat([so.s, so.e], -1))
    assert torch.allclose(out.losses.terms["fitnet[student->teacher]"][1], expected)


def test_hybrid_is_logit_plus_feature():
    _, hybrid, _ = one_way_terms("hybrid")
    assert set(hybrid.losses.terms) == {
        "task[student]",
        "logit[student->teacher]",
        "feature[student->teacher]",
    }


def test_an_edge_combines_talk_and_logit():
    _, out, _ = one_way_terms(("talk", "logit"), rounds=1)
    assert {"interact[student]", "logit[student->teacher]"} <= set(out.losses.terms)


def test_noise_only_in_training():
    graph = two_node(rounds=1, noise=0.5)
    x, y = regression_data(8)
    step = Orchestrator(graph)
    step.eval()
    assert torch.equal(step(x, y).loss, step(x, y).loss)
    step.train()
    assert not torch.equal(step(x, y).loss, step(x, y).loss)


# -- validation -------------------------------------------------------------------------------


def small_graph(**teacher_kwargs):
    teacher_kwargs.setdefault("frozen", True)
    return Graph([mlp_agent("teacher", **teacher_kwargs), mlp_agent("student")], message_dim=8)


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
            r"student->teacher: 'interact' is the learner's setting.*interact_weight",
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
            r"student->teacher: not an edge's option: 'rounds' is the learner's: "
            r"Agent\('student', ..., rounds=...\)",
        ),
        (
            lambda g: g.add_agent(mlp_agent("pupil", rounds=-1)),
            "'pupil': rounds must be an integer >= 0",
        ),
        (
            lambda g: g.add_agent(mlp_agent("pupil", interact_weight=float("nan"))),
            "'pupil': interact_weight must be finite",
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


def test_a_misplaced_keyword_says_where_it_belongs():
    with pytest.raises(
        TypeError, match=r"'message_dim' is the graph's: Graph\(agents, message_dim="
    ):
        mlp_agent("pupil", message_dim=4)
    with pytest.raises(
        GraphError, match=r"'message_dim' is the graph's: Graph\(agents, message_dim"
    ):
        small_graph().add_edge("student", "teacher", message_dim=4)


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


# -- serialisation ----------------------------------------------------------------------------


def test_graph_round_trips_through_a_plain_dict():
    graph = two_node(rounds=3, protocols=("talk", "logit"), noise=0.1, weights={"interact": 0.2})
    data = graph.to_dict()
    agents = {"teacher": mlp_agent("teacher", width=32), "student": mlp_agent("student", width=8)}
    again = Graph.from_dict(data, agents)
    assert again.to_dict() == data
    assert again.agents["teacher"].frozen
    assert (again.agents["student"].rounds, again.agents["student"].interact_weight) == (3, 0.2)
    assert again.edge("student", "teacher").noise == 0.1


def test_from_dict_without_agent_or_spec_says_what_to_pass():
    with pytest.raises(GraphError, match=r"Agent 'teacher': no agent given and no factory"):
        Graph.from_dict(two_node().to_dict(), {})


# -- token codecs -----------------------------------------------------------------------------


def test_token_codec_round_trips_shapes():
    codec = make_codec("token", (16,), (16,), message_dim=8)
    s, e = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    m = codec.encode(s, e)
    s2, e2 = codec.decode(m)
    assert m.shape == (2, 5, 8) and s2.shape == s.shape and e2.shape == e.shape


def test_masked_distance_ignores_padding():
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    expected = torch.cat([((a - b) ** 2)[0, :3], ((a - b) ** 2)[1, :2]]).mean()
    assert torch.allclose(distance(a, b, mask=mask), expected)
    b2 = b.clone()
    b2[~mask] = 100.0
    assert torch.equal(distance(a, b2, mask=mask), distance(a, b, mask=mask))


def token_graph(rounds=2):
    torch.manual_seed(0)
    graph = Graph(
        [token_agent("teacher", 16, frozen=True), token_agent("student", 8, rounds=rounds)],
        message_dim=6,
        codec="token",
        codec_dropout=0.0,
    )
    graph.add_edge("student", "teacher", ("talk", "logit", "fitnet"))
    ids = torch.randint(1, 20, (3, 5))
    return graph.build({"input_ids": ids, "attention_mask": torch.ones(3, 5)})


def test_extra_padding_never_changes_a_loss():
    graph = token_graph()
    step = Orchestrator(graph)
    ids = torch.randint(1, 20, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    y = torch.tensor([0, 2, 1])
    short = step({"input_ids": ids * mask, "attention_mask": mask}, y)
    # three more padding tokens, holding junk ids
    long_ids = torch.cat([ids * mask, torch.randint(1, 20, (3, 3))], 1)
    long_mask = torch.cat([mask, torch.zeros(3, 3, dtype=mask.dtype)], 1)
    long = step({"input_ids": long_ids, "attention_mask": long_mask}, y)
    assert short.outputs["student"].m.shape == (3, 5, 6)
    for name, (_, value) in short.losses.terms.items():
        torch.testing.assert_close(long.losses.terms[name][1], value, msg=name)
