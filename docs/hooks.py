"""mkdocs hooks: pages written by other work join the nav once they exist.

- ``Results: results/`` in mkdocs.yml's nav becomes every ``docs/results/*.md`` (written by
  ``python -m benchmarks``), each under its own first heading, in name order; no pages, no section.
  A smoke test's page (``<name>-quick.md``, from ``--quick --out docs/results``) is never
  listed: it is not a result (mkdocs.yml's ``exclude_docs`` keeps it out of the site too).
- An :data:`OPTIONAL` page stays in the nav only while its file exists, so that
  ``mkdocs build --strict`` passes before it is written.
"""

from __future__ import annotations

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
