"""docs/architecture.md draws the package's layers: its arrows are the real imports."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
NODE = re.compile(r'^\s*(\w+)\["([^"<]+)<br/>', re.M)


def diagram() -> tuple[dict[str, list[str]], set[tuple[str, str]]]:
    """The page's layers (node -> the modules its label names) and arrows (solid ones)."""
    text = PAGE.read_text()
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    nodes = {name: [m.strip() for m in label.split("·")] for name, label in NODE.findall(block)}
    arrows = set()
    for line in block.splitlines():
        chain = [part.strip() for part in line.split("-->")]
        if len(chain) > 1 and all(part in nodes for part in chain):
            arrows.update(itertools.pairwise(chain))
    return nodes, arrows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str, nodes: dict[str, list[str]]) -> str | None:
    """The node whose label names ``module`` (``data/download``), its package (``models/``)
    or its top-level module (``graph``); ``None`` for the package's own ``__init__``."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    wanted = ["/".join(parts), f"{parts[0]}/", parts[0]]
    for name in wanted:
        for node, modules in nodes.items():
            if name in modules:
                return node
    raise AssertionError(f"{module} is on no layer of {PAGE.name}'s diagram: add it to a node")


def imports(path: Path) -> set[str]:
    """The agora modules ``path`` imports, at the top or inside a function, leaving out those
    under ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("agora."))
    return found


def real_layers(nodes: dict[str, list[str]]) -> nx.DiGraph:
    """Layer -> layer for every import between two layers' modules."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    modules = {module_name(p) for p in (ROOT / "agora").rglob("*.py")}
    for path in (ROOT / "agora").rglob("*.py"):
        source = layer_of(module_name(path), nodes)
        if source is None:
            continue
        for target in imports(path):
            while target not in modules:  # `from agora.data import x`: the package
                target = target.rpartition(".")[0]
            target_layer = layer_of(target, nodes)
            if target_layer is not None and target_layer != source:
                graph.add_edge(source, target_layer)
    return graph


def test_the_layers_import_only_downwards():
    real = real_layers(diagram()[0])
    assert nx.is_directed_acyclic_graph(real), f"import cycles: {list(nx.simple_cycles(real))}"


def test_every_arrow_is_a_real_import_and_every_import_follows_the_arrows():
    nodes, arrows = diagram()
    real = real_layers(nodes)
    drawn = nx.DiGraph(list(arrows))
    drawn.add_nodes_from(nodes)
    missing = [(a, b) for a, b in real.edges if not nx.has_path(drawn, a, b)]
    assert not missing, f"imports the diagram does not show (draw an arrow): {missing}"
    needless = sorted(set(drawn.edges) - set(nx.transitive_reduction(real).edges))
    assert not needless, f"arrows that are no import, or that a path already shows: {needless}"
