"""Drawing a graph: edges say their protocols, weights and k; nodes their parts."""

import torch

from agora.analysis.drawing import _caption, _edge_label, draw_graph
from agora.config import build_graph, load_config


def test_a_built_graph_names_each_part_with_its_parameter_count(tmp_path):
    graph = build_graph(load_config("tiny"))
    graph.build(torch.randn(4, 8))
    student = graph.agents["student"]
    caption = _caption(graph.nx.nodes["student"])
    lower = sum(p.numel() for p in student.lower.parameters())
    codec = sum(p.numel() for p in student.codec.parameters())
    assert caption.startswith(f"lower {lower} · upper ") and caption.endswith(
        f"codec {codec / 1e3:.1f}k"
    )
    assert _caption(load_config("tiny").graph.to_nx().nodes["student"]) == "toy:mlp_agent"
    assert _edge_label(graph.edge("student", "teacher")) == "talk, k=2\nmc 0.5, sc 0.5"
    assert draw_graph(graph, tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
