"""Drawing an agent graph: tutors above their learners, frozen agents hatched, each edge
labelled with its protocols (talk's rounds) and weights, each node with its parts
(their parameter counts) or, for a config not yet built, its factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from agora.graph import Graph


def _layers(graph: nx.DiGraph) -> dict[str, int] | None:
    """Depth of each agent below its tutors (pure tutors 0), or None for a graph with cycles."""
    if not nx.is_directed_acyclic_graph(graph):
        return None
    depth: dict[str, int] = {}
    for node in reversed(list(nx.topological_sort(graph))):  # tutors before their learners
        depth[node] = 1 + max((depth[t] for t in graph.successors(node)), default=-1)
    return depth


def _positions(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    depth = _layers(graph)
    if depth is None:  # peers talk both ways: no top and bottom
        return nx.circular_layout(graph)
    rows: dict[int, list[str]] = {}
    for node in graph.nodes:
        rows.setdefault(depth[node], []).append(node)
    return {
        node: (i - (len(row) - 1) / 2, -1.6 * level)  # rows apart, to leave room for labels
        for level, row in rows.items()
        for i, node in enumerate(row)
    }


def draw_graph(graph: nx.DiGraph | Graph, path: str | Path, *, title: str | None = None) -> Path:
    """Draw an agent graph to an image: tutors above their learners, frozen agents grey and
    hatched, each edge ``learner -> tutor`` labelled with its protocols (what each notes of
    itself: talk's ``k``) and its weights.

    Args:
        graph (nx.DiGraph or Graph): a :class:`~agora.graph.Graph`, or
            :meth:`GraphSpec.to_nx <agora.graph.GraphSpec.to_nx>`'s graph.
        path (str or Path): the image file (its suffix picks the format).
        title (str, optional): a title above the graph.

    Example:
        >>> import tempfile
        >>> from agora.config import load_config
        >>> out = draw_graph(load_config("tiny").graph.to_nx(), tempfile.mkdtemp() + "/g.png")
        >>> out.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    g = graph.nx if isinstance(graph, Graph) else graph
    frozen = {
        n: bool(d["agent"].frozen if "agent" in d else d.get("frozen"))
        for n, d in g.nodes(data=True)
    }
    pos = _positions(g)
    two_way = any(g.has_edge(t, u) for u, t in g.edges)
    curve = {"connectionstyle": "arc3,rad=0.15"} if two_way else {}
    rows = len({round(y, 3) for _, y in pos.values()})
    fig, ax = plt.subplots(figsize=(2.5 + 1.6 * len(g), 1.5 + 2.0 * rows))
    size = 2600
    for is_frozen, color in ((False, "#7fb3e0"), (True, "#d0d0d0")):
        nodes = [n for n in g.nodes if frozen[n] == is_frozen]
        drawn = nx.draw_networkx_nodes(
            g, pos, nodelist=nodes, node_color=color, edgecolors="#333333", node_size=size, ax=ax
        )
        if is_frozen and nodes:
            drawn.set_hatch("//")
    box = {"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    nx.draw_networkx_labels(g, pos, font_size=9, bbox=box, ax=ax)
    for node, (x, y) in pos.items():
        ax.annotate(_caption(g.nodes[node]), (x, y), xytext=(32, 0), textcoords="offset points",
                    ha="left", va="center", fontsize=7, color="#333333")  # fmt: skip
    edges = [(u, t, d["edge"]) for u, t, d in g.edges(data=True)]
    for active, style in ((True, "solid"), (False, "dashed")):
        nx.draw_networkx_edges(
            g,
            pos,
            edgelist=[(u, t) for u, t, e in edges if e.active == active],
            style=style,
            arrowsize=18,
            node_size=size,
            ax=ax,
            **curve,
        )
    labels = {(u, t): _edge_label(e) for u, t, e in edges}
    nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, font_size=8, ax=ax, **curve)
    ax.legend(
        handles=[
            Patch(facecolor="#7fb3e0", edgecolor="#333333", label="trainable"),
            Patch(facecolor="#d0d0d0", edgecolor="#333333", hatch="//", label="frozen"),
            Line2D([], [], color="black", marker=">", label="learner → tutor (learns from)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    if title:
        ax.set_title(title)
    ax.margins(0.25)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _caption(node: dict[str, Any]) -> str:
    """What a node is made of: each part's parameter count for a built agent (``lower 1.2k ·
    upper 528 · head 9``, then its codec's), its factory for a config's."""
    agent = node.get("agent")
    if agent is None:
        factory = node.get("factory") or ""
        return factory.rpartition(".")[2] if factory else ""
    parts = {"lower": agent.lower, "upper": agent.upper, "head": agent.head, "codec": agent.codec}
    counts = [
        f"{name} {_count(sum(p.numel() for p in part.parameters()))}"
        for name, part in parts.items()
        if part is not None
    ]
    return " · ".join(counts[:3]) + ("\n" + counts[3] if len(counts) > 3 else "")


def _edge_label(edge: Any) -> str:
    """``talk, k=2`` over the edge's weights, short: ``mc 0.1, sc 0.1``."""
    short = {"message_consistency": "mc", "state_consistency": "sc"}
    weights = ", ".join(f"{short.get(k, k)} {v:g}" for k, v in edge.weights.items())
    notes = "".join(f", {note}" for p in edge.protocols if (note := p.describe()))
    head = "+".join(edge.names) + notes
    return f"{head}\n{weights}" if weights else head
