"""The ``agora`` command: run a packaged config end to end, evaluate the run, draw a graph."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from agora.cli import main
from agora.config import load_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`agora run tiny` in a fresh interpreter, as a user runs it."""
    cwd = tmp_path_factory.mktemp("cli")
    done = subprocess.run(
        [sys.executable, "-m", "agora.cli", "run", "tiny", "--out", "runs/tiny", "fit.epochs=1"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return cwd / "runs" / "tiny", done.stdout


def test_run_writes_a_run_folder_with_graph_json_and_safetensors(tiny_run):
    run_dir, stdout = tiny_run
    assert "student/rmse" in stdout and stdout.rstrip().endswith("run: runs/tiny")
    model = run_dir / "model"
    for agent in ("teacher", "student"):
        for part in ("backbone", "codec"):
            assert (model / "agents" / agent / f"{part}.safetensors").stat().st_size > 0
    document = json.loads((model / "graph.json").read_text())
    assert document["config"] == json.loads(
        json.dumps(load_config("tiny", ["fit.epochs=1"]).to_dict())
    )
    assert [a["factory"] for a in document["graph"]["agents"]] == ["agora.models.toy:mlp_agent"] * 2


def test_eval_reproduces_the_best_validation_metrics(tiny_run, capsys):
    run_dir, _ = tiny_run
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    stored = json.loads((run_dir / "model" / "graph.json").read_text())["metrics"]
    assert metrics.keys() == stored.keys() and "student/rmse" in metrics
    for name, value in stored.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5)


def test_eval_of_a_missing_split_or_folder_is_an_error(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    with pytest.raises(SystemExit) as caught:
        main(["eval", str(run_dir), "--split", "test", "data.kwargs.test_fraction=0"])
    assert caught.value.code == 2
    assert "the data has no 'test' split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path)])
    assert "no graph.json" in capsys.readouterr().err


def test_eval_of_nan_labels_names_the_split_and_prints_no_invalid_json(tiny_run, capsys):
    run_dir, _ = tiny_run
    with pytest.raises(SystemExit) as caught:
        main(["eval", str(run_dir), "data.kwargs.noise=.nan"])  # every label NaN
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.search(r"the valid split: evaluate: (\d+) of \1 targets of agent '\w+' are NaN",
                     captured.err)  # fmt: skip


def test_graph_draws_a_png_without_training(tmp_path, capsys):
    out = tmp_path / "pics" / "x.png"
    assert main(["graph", "tiny", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert capsys.readouterr().out.strip() == f"graph: {out}"


def test_a_config_error_prints_one_line_and_exits_2(tmp_path, capsys):
    # the override follows an option: it must still be applied (and here, rejected)
    with pytest.raises(SystemExit) as caught:
        main(["run", "tiny", "--out", str(tmp_path / "run"), "fit.epochs=0"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("agora: error: ") and err.count("\n") == 1
    assert "tiny.yaml: fit.epochs: must be an integer >= 1" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv",
    [["graph", "tiny", "--bogus"], ["graph", "tiny", "fit.epochs"], ["graph", "nowhere.yaml"]],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_gradients_prints_each_terms_pull_over_the_task(capsys):
    assert main(["gradients", "tiny", "--batch-size", "32"]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[:3] == [
        "each term's pull on the agent's backbone, over its task term's (weights as given):",
        "student:",
        "  task[student]                           1.00e+00",
    ]
    pulls = {line.split()[0]: float(line.split()[1]) for line in plain[2:]}
    assert set(pulls) == {
        "task[student]", "interact[student]",
        "message_consistency[student->teacher]", "state_consistency[student->teacher]",
    }  # fmt: skip
    tenfold_weight = "graph.edges.0.protocols.0.talk.interact_weight=5"  # tiny's is 0.5
    assert main(["gradients", "tiny", "--batch-size", "32", tenfold_weight]) == 0
    tenfold = capsys.readouterr().out.splitlines()
    assert float(tenfold[-1].split()[1]) == pytest.approx(10 * pulls["interact[student]"], rel=1e-3)
    assert main(["gradients", "tiny", "--balance"]) == 0
    assert "(balanced weights)" in capsys.readouterr().out
