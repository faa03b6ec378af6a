"""The orchestrator against a line-by-line transcription of Algorithm 1 (appendix 6.1)."""

import pytest
import torch
import torch.nn.functional as F

from agora import Orchestrator
from tests.helpers import regression_data, two_node

W_INTERACT, W_MC, W_SC = 0.7, 0.3, 0.5


def transcription_of_algorithm_1(graph, x, y, k):
    """Algorithm 1 written out with the agents' raw modules: no agora code on the loss path.

    g is the student, h the teacher. As the text of section 3.3 says, the teacher's reply is
    encoded with E_h (the appendix's line 13 writes E_g). The loop runs k rounds."""
    g, h = graph.agents["student"], graph.agents["teacher"]

    def E(agent, s, e):
        return agent.codec.encoder(torch.cat([s, e], dim=-1))

    def D(agent, m):
        out = agent.codec.decoder(m)
        return out[:, : agent.codec.s_shape[0]], out[:, agent.codec.s_shape[0] :]

    def d(a, b):  # L2 loss on {s; e}
        return F.mse_loss(torch.cat(a, -1), torch.cat(b, -1))

    # 3-6: both models see x; the teacher is frozen
    s_g = g.lower(x)
    e_g = g.upper(s_g)
    y_g = g.head(e_g).squeeze(-1)
    m_g = E(g, s_g, e_g)
    with torch.no_grad():
        s_h = h.lower(x)
        e_h = h.upper(s_h)
    m_h = E(h, s_h, e_h)
    # 9: task + state consistency + message consistency
    L_sc = d((s_g, e_g), D(g, m_h)) + d((s_h, e_h), D(h, m_g))
    L = F.mse_loss(y_g, y) + W_SC * L_sc + W_MC * F.mse_loss(m_g, m_h)
    # 10-19
    for _ in range(k):
        s_h_, _ = D(h, m_g)  # 11: the teacher decodes (e'_h only trains D_h, via L_SC)
        e_h_tilde = h.upper(s_h_)  # 12: and interprets
        m_h = E(h, s_h_, e_h_tilde)  # 13: its reply
        s_g_, e_g_ = D(g, m_h)  # 14: the student decodes
        L = L + W_INTERACT * d((s_g, e_g), (s_g_, e_g_))  # 15
        e_g_tilde = g.upper(s_g_)  # 16
        s_g, e_g = s_g_, e_g_tilde  # 17
        m_g = E(g, s_g, e_g)  # 18
    return L


@pytest.mark.parametrize("k", [0, 1, 3])
def test_loss_and_every_gradient_equal_algorithm_1(k):
    graph = two_node(
        rounds=k,
        interact_weight=W_INTERACT,
        weights={"message_consistency": W_MC, "state_consistency": W_SC},
    )
    x, y = regression_data(16)
    step = Orchestrator(graph)
    params = [p for p in graph.parameters() if p.requires_grad]

    loss = step(x, y).loss
    ours = torch.autograd.grad(loss, params, allow_unused=True)
    reference = transcription_of_algorithm_1(graph, x, y, k)
    theirs = torch.autograd.grad(reference, params, allow_unused=True)

    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-7)
    names = [n for n, p in graph.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, ours, theirs):
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")
    # with k >= 1 the interact loss reaches every trainable parameter
    if k:
        assert all(g is not None for g in ours)


def test_rounds_add_one_interact_term_each():
    x, y = regression_data(8)
    values = {}
    for k in (0, 1, 2, 3):
        out = Orchestrator(two_node(rounds=k))(x, y)
        values[k] = out.losses.terms.get("interact[student]")
    assert values[0] is None
    assert values[1][1] < values[2][1] < values[3][1]  # each round adds a non-negative distance
