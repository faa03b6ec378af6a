"""TD's protocol: gradients, frozen tutors, rounds, noise and masks."""

import torch

from agora import (
    Graph,
    Orchestrator,
    Talk,
)
from tests.helpers import (
    mlp_agent,
    one_way_terms,
    regression_data,
    token_agent,
    train_steps,
    two_node,
)


def token_graph(rounds=2):
    torch.manual_seed(0)
    graph = Graph(
        [token_agent("teacher", 16, frozen=True), token_agent("student", 8)],
        message_dim=6,
        codec="token",
        codec_dropout=0.0,
    )
    graph.add_edge("student", "teacher", (Talk(rounds=rounds), "logit", "fitnet"))
    ids = torch.randint(1, 20, (3, 5))
    return graph.build({"input_ids": ids, "attention_mask": torch.ones(3, 5)})


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
    train_steps(graph, x, y, steps=5)
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
    train_steps(graph, *regression_data(32), steps=3)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_mean_over_identical_tutors_is_the_two_node_result():
    import copy

    x, y = regression_data(8)
    graph = two_node(rounds=2)
    reference = Orchestrator(graph)(x, y).losses.terms["interact[student]"][1]
    twin = copy.deepcopy(graph.agents["teacher"])
    twin.name = "twin"
    graph.add_agent(twin)
    graph.add_edge("student", "twin", Talk(rounds=2))  # the learner's settings, on each edge
    graph.build(x)
    interact = Orchestrator(graph)(x, y).losses.terms["interact[student]"][1]
    assert torch.equal(interact, reference)  # (r + r) / 2 == r exactly


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
