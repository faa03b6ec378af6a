"""mkdocs hooks: pages written by other work join the nav once they exist.

- ``Results: results/`` in mkdocs.yml's nav becomes every ``docs/results/*.md`` (written by
  ``python -m benchmarks``), each under its own first heading, in name order; no pages, no section.
  A smoke test's page (``<name>-quick.md``, from ``--quick --out docs/results``) is never
  listed: it is not a result (mkdocs.yml's ``exclude_docs`` keeps it out of the site too).
- An :data:`OPTIONAL` page stays in the nav only while its file exists, so that
  ``mkdocs build --strict`` passes before it is written.
- Formulas are rendered when the site is built, so that they show without a network:
  ``pymdownx.arithmatex`` marks them (``$x$``, ``$$...$$``, and the docstrings' math through
  ``griffe_rst.py``), and :func:`on_page_content` turns each into MathML (``latex2mathml``, in the
  docs extra), which browsers draw themselves: no script, no font to fetch. A formula it cannot
  render fails the build, naming the page and the command.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

OPTIONAL = {"graphs.md"}  # docs/graphs.md is written separately
RESULTS = "results/"
QUICK = "-quick"  # python -m benchmarks NAME --quick writes NAME-quick.md: a smoke test


def on_config(config: Any) -> Any:
    config["nav"] = _nav(config["nav"], Path(config["docs_dir"]))
    return config


def _nav(items: list[Any], docs: Path) -> list[Any]:
    out: list[Any] = []
    for item in items:
        title, value = next(iter(item.items())) if isinstance(item, dict) else (None, item)
        if value == RESULTS:
            pages = (docs / "results").glob("*.md")
            value = sorted(f"results/{p.name}" for p in pages if not p.stem.endswith(QUICK))
        elif isinstance(value, list):
            value = _nav(value, docs)
        elif value in OPTIONAL and not (docs / value).is_file():
            continue
        if value != []:
            out.append({title: value} if title is not None else value)
    return out


# what pymdownx.arithmatex (generic) writes: <span class="arithmatex">\(x\)</span>, and
# <div class="arithmatex">\[x\]</div> for a block
ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\[(\[](?P<tex>.*?)\\[)\]]\s*</(?P=tag)>', re.S
)
LEFT_OVER = re.compile(r"\\[A-Za-z]+")  # a command latex2mathml passed through unrendered


def on_page_content(page_html: str, page: Any, **kwargs: Any) -> str:
    """Every formula of the page as MathML, rendered here rather than by a script."""
    return ARITHMATEX.sub(lambda found: mathml(found, str(page.file.src_uri)), page_html)


def mathml(found: re.Match[str], where: str) -> str:
    """One arithmatex formula as MathML; an error names the page and the formula."""
    from mkdocs.exceptions import PluginError

    try:
        from latex2mathml.converter import convert
    except ImportError:
        raise PluginError(
            f"{where}: formulas are rendered by latex2mathml: pip install -e '.[docs]'"
        ) from None
    tex = html.unescape(found["tex"]).strip()
    display = "block" if found["tag"] == "div" else "inline"
    try:
        rendered = convert(tex, display=display)
    except Exception as error:  # latex2mathml's own errors name no formula
        raise PluginError(f"{where}: cannot render the formula {tex!r}: {error!r}") from None
    unknown = LEFT_OVER.findall(re.sub(r"<[^>]+>", "", rendered))
    if unknown:
        raise PluginError(f"{where}: the formula {tex!r} uses {unknown}, which MathML lacks here")
    return rendered
