"""A new user's first hour, end to end in a fresh interpreter (tests/scripts/first_hour.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "scripts" / "first_hour.py"
QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"


def test_the_first_hour_answers_did_talking_help_and_has_no_silent_trap(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], check=True, timeout=600)
    report = json.loads((tmp_path / "first_hour.json").read_text())
    comparison = report["comparison"]
    assert comparison["splits"] == ["valid", "test"]
    student, teacher = comparison["agents"]["student"], comparison["agents"]["teacher"]
    assert teacher["role"] == "frozen" and student["role"] == "student"
    difference = student["difference"]["test"]["rmse"]
    assert difference == pytest.approx(
        student["graph"]["test"]["rmse"] - student["alone"]["test"]["rmse"]
    )
    stdout = report["run_stdout"]
    assert "did talking help?" in stdout and f"({difference:+.4f}," in stdout
    # the command line, the loaded run and the graph rebuilt from Python agents agree
    tested = student["graph"]["test"]["rmse"]
    assert report["eval_test"]["student/rmse"] == pytest.approx(tested, abs=1e-5)
    assert report["load"]["student/rmse"] == pytest.approx(tested, abs=1e-5)
    assert report["load_agents"]["student/rmse"] == pytest.approx(tested, abs=1e-5)
    assert "Call it first" in report["optimizer_before_build"]
    # docs/quickstart.md shows this very output
    shown = QUICKSTART.read_text().split("```text\ndid talking help?\n")[1].split("```")[0]
    assert shown in stdout
