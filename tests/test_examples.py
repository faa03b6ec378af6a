"""Every script in examples/ runs on a slice of MovieLens 100K (``--limit``), in-process."""

from __future__ import annotations

import math
import os
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA_DIR = os.environ.get("AGORA_DATA_DIR", "")
HAVE_DATA = bool(DATA_DIR) and (Path(DATA_DIR) / "ml-100k" / "u.data").is_file()
SLICE = ["--limit", "300", "--epochs", "1"]

# script -> (extra arguments, metrics it must report)
CASES = {
    "two_node.py": (["--teacher-epochs", "1"], ["student/rmse", "teacher/rmse"]),
    "multi_teacher.py": (["--teacher-epochs", "1"], ["student/rmse", "drama_teacher/rmse"]),
    "multi_student.py": (
        ["--teacher-epochs", "1", "--genres", "War", "Western"],
        ["war/rmse", "western/rmse", "mean/rmse"],
    ),
    "peers.py": ([], ["action/rmse", "adventure/rmse"]),
    "chain.py": (["--teacher-epochs", "1"], ["student/rmse", "assistant/rmse"]),
}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.skipif(
    not HAVE_DATA,
    reason="MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/ "
    "(e.g. AGORA_DATA_DIR=../shared/data) to run the examples",
)
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs_on_a_slice(script, capsys):
    extra, expected = CASES[script]
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    metrics = main([*SLICE, *extra])
    for name in expected:
        assert math.isfinite(metrics[name]), name
    assert "RMSE" in capsys.readouterr().out
