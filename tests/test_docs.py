"""The documentation site: its Python examples run as written, and its build helpers work."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.needs import needs

DOCS = Path(__file__).resolve().parent.parent / "docs"

# pages whose ```python blocks run top to bottom in one namespace (```py blocks are excerpts)
RUNNABLE = [
    "quickstart.md",
    "howto/split-a-model.md",
    "howto/multi-teacher.md",
    "howto/multi-student.md",
    "howto/gradients.md",
    "howto/your-own-model.md",
    "howto/unlabelled.md",
]

RUNNABLE += [pytest.param("howto/text-models.md", marks=needs("text"))]


@pytest.mark.parametrize("page", RUNNABLE)
def test_python_examples_run(page, tmp_path, monkeypatch, capsys):
    path = DOCS / page
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    assert blocks, f"{page} has no ```python block"
    monkeypatch.chdir(tmp_path)  # examples may write runs/...
    namespace: dict = {"__name__": "__docs__"}
    exec(compile("\n".join(blocks), str(path), "exec"), namespace)
    assert capsys.readouterr().out  # each page prints what it shows


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_house_docstrings_become_markdown():
    pytest.importorskip("griffe", reason="the docs extra: pip install -e '.[docs]'")
    rst = _module("griffe_rst")
    text = (
        "Runs a :class:`~agora.graph.Graph`, see :meth:`Graph.build <agora.graph.Graph.build>`.\n"
        "\n"
        ".. math::\n"
        "    m = E(s, e) \\\\\n"
        "    (s', e') = D(m)\n"
        "\n"
        "It holds :math:`k` rounds of :data:`SOMETHING`::\n"
        "\n"
        "    code\n"
        "\n"
        "Example:\n"
        "    >>> 1\n"
    )
    out = rst.convert(text)
    assert '<autoref identifier="agora.graph.Graph" optional><code>Graph</code></autoref>' in out
    assert '<autoref identifier="agora.graph.Graph.build" optional>' in out
    assert "$$\n\\begin{array}{c}\nm = E(s, e) \\\\\n(s', e') = D(m)\n\\end{array}\n$$" in out
    assert "$k$ rounds of `SOMETHING`:\n" in out  # unresolved: plain code, no link
    assert "\nExamples:\n    >>> 1" in out and ".. math" not in out


def test_formulas_are_rendered_when_the_site_is_built_and_need_no_network():
    # issue 23: MathJax came from a CDN, and 14 pages showed raw TeX offline
    pytest.importorskip("latex2mathml", reason="the docs extra: pip install -e '.[docs]'")
    from mkdocs.exceptions import PluginError

    hooks = _module("hooks")
    page = SimpleNamespace(file=SimpleNamespace(src_uri="concepts.md"))
    html = (
        '<p>A question <span class="arithmatex">\\(m = E(s, e)\\)</span> and a reply:</p>\n'
        '<div class="arithmatex">\\[r = \\tfrac{1}{n}\\sum_i r_i\\]</div>'
    )
    out = hooks.on_page_content(html, page)
    assert "arithmatex" not in out and "\\" not in out
    assert out.count("<math ") == 2 and out.count('display="block"') == 1
    assert "&#x02211;" in out  # the sum, drawn by the browser from MathML
    with pytest.raises(PluginError, match=r"concepts\.md: the formula '\\\\nosuch\{x\}' uses"):
        hooks.on_page_content('<span class="arithmatex">\\(\\nosuch{x}\\)</span>', page)
    config = (DOCS.parent / "mkdocs.yml").read_text()
    assert not re.search(r"^\s*- https?://", config, re.M)  # no script or style from a server


def test_optional_pages_and_results_join_the_nav(tmp_path):
    hooks = _module("hooks")
    (tmp_path / "results").mkdir()
    nav = [{"Home": "index.md"}, {"Graphs": "graphs.md"}, {"Results": "results/"}]
    assert hooks.on_config({"nav": nav, "docs_dir": str(tmp_path)})["nav"] == [{"Home": "index.md"}]
    for name in ("speed.md", "movielens.md", "movielens.csv", "vision-quick.md"):
        (tmp_path / "results" / name).write_text("# x\n")
    (tmp_path / "graphs.md").write_text("# Graphs\n")
    assert hooks.on_config({"nav": nav, "docs_dir": str(tmp_path)})["nav"] == [
        {"Home": "index.md"},
        {"Graphs": "graphs.md"},
        {"Results": ["results/movielens.md", "results/speed.md"]},
    ]  # a smoke test's page (NAME-quick.md) is never listed as a result


def test_the_graphs_page_runs_as_written(tmp_path, monkeypatch, capsys):
    page = DOCS / "graphs.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    monkeypatch.chdir(tmp_path)  # the stages example writes runs/chain
    exec(compile("\n".join(blocks), str(page), "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert "mean/rmse" in printed and "'assistant':" in printed
