"""The packaged `paper-movielens` config, run as a user runs it: `agora run paper-movielens
--genre War`. Tests that train need ``AGORA_DATA_DIR`` (a folder holding ``ml-100k/``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from agora.cli import main
from agora.config import load_config
from agora.edge import Edge
from agora.models.recommender import teacher_file

DATA_DIR = os.environ.get("AGORA_DATA_DIR", "")
HAVE_DATA = bool(DATA_DIR) and (Path(DATA_DIR) / "ml-100k" / "u.data").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason="MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/ "
    "(e.g. AGORA_DATA_DIR=../shared/data) to run this test",
)

# one epoch of student and teacher training keeps a run under ten seconds
SHORT = [
    "fit.epochs=1",
    "fit.lr=1e-2",
    "fit.progress=false",
    "graph.agents.0.kwargs.teacher_epochs=1",
]


def agora(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agora.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """`agora run paper-movielens --genre War` in a fresh interpreter, teacher cache empty."""
    if not HAVE_DATA:
        pytest.skip("MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/")
    tmp = tmp_path_factory.mktemp("paper")
    run_dir, cache = tmp / "run", tmp / "cache"
    done = agora(
        "run", "paper-movielens", "--genre", "War", "--out", str(run_dir), *SHORT,
        f"graph.agents.0.kwargs.cache_dir={cache}", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run_dir, cache, done


def test_paper_run_trains_the_student_of_the_pretrained_teacher_on_one_genre(paper_run):
    run_dir, cache, done = paper_run
    assert "student/rmse" in done.stdout and done.stdout.rstrip().endswith(f"run: {run_dir}")
    document = json.loads((run_dir / "model" / "graph.json").read_text())
    agents = {a["name"]: a for a in document["graph"]["agents"]}
    assert list(agents) == ["teacher", "student"]
    assert agents["teacher"]["frozen"] and not agents["student"]["frozen"]
    assert agents["teacher"]["factory"] == "agora.models.recommender:paper_teacher"
    assert document["config"]["data"]["kwargs"]["genre"] == "War"
    [edge] = document["graph"]["edges"]
    packaged = load_config("paper-movielens").graph
    [configured] = packaged.edges  # the packaged talk edge
    assert (edge["learner"], edge["tutor"]) == ("student", "teacher")
    assert edge["weights"] == configured.weights
    assert Edge(**edge).protocols == configured.protocols  # its talk rounds and weight
    assert agents["student"]["kwargs"]["dropout"] == packaged.agents[1].kwargs["dropout"]
    # pre-trained into the given cache, said so, and frozen: the run kept its weights
    teacher = teacher_file(0, cache, "epochs1")
    assert f"pre-training the MovieLens teacher (seed 0, at most 1 epoch) into {teacher}" in (
        done.stderr
    )
    pretrained = load_file(str(teacher))
    trained = load_file(str(run_dir / "model" / "agents" / "teacher" / "backbone.safetensors"))
    assert pretrained.keys() == trained.keys()
    assert all(pretrained[k].equal(trained[k]) for k in pretrained)


def test_eval_of_a_paper_run_prints_the_students_test_rmse(paper_run, capsys):
    run_dir, _, _ = paper_run
    assert main(["eval", str(run_dir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.5 < metrics["student/rmse"] < 2.5 and 0.5 < metrics["teacher/rmse"] < 2.5


def test_a_second_run_reuses_the_teacher_and_trains_the_same_student(paper_run, tmp_path, capsys):
    run_dir, cache, _ = paper_run
    first = json.loads((run_dir / "model" / "graph.json").read_text())["metrics"]
    argv = ["run", "paper-movielens", "--genre", "war", "--out", str(tmp_path / "again"), *SHORT]
    assert main([*argv, f"graph.agents.0.kwargs.cache_dir={cache}"]) == 0
    assert "pre-training" not in capsys.readouterr().err
    again = json.loads((tmp_path / "again" / "model" / "graph.json").read_text())["metrics"]
    # pre-training in the first run left the random state of the agents built after it alone
    assert again == pytest.approx(first, rel=1e-4)


def test_the_student_trains_as_the_benchmark_chose():
    """The packaged student's dropout, rounds and weights are what `python -m benchmarks
    movielens` chose on validation (docs/results/movielens.json)."""
    results = Path(__file__).resolve().parents[2] / "docs" / "results" / "movielens.json"
    td = json.loads(results.read_text())["chosen_params"]["TD"]
    config = load_config("paper-movielens")
    student, [edge] = config.graph.agents[1], config.graph.edges
    weights = dict(td["weights"])
    assert student.kwargs["dropout"] == td["dropout"] == 0.3
    talk = edge.protocol("talk")
    assert (talk.rounds, talk.interact_weight) == (td["rounds"], weights.pop("interact"))
    assert (list(edge.names), edge.weights) == (td["protocols"], weights)
    assert config.fit.lr == td["lr"]


@needs_data
def test_an_unknown_genre_lists_the_genres_before_any_pretraining(tmp_path, capsys):
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as caught:
        main(
            ["run", "paper-movielens", "--genre", "Nope", "--out", str(tmp_path / "run"),
             f"graph.agents.0.kwargs.cache_dir={cache}"]
        )  # fmt: skip
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("agora: error: ") and "paper-movielens.yaml" in err
    assert "'Nope'" in err and all(name in err for name in ("Drama", "War", "Film-Noir"))
    assert not cache.exists() and not (tmp_path / "run").exists()


def test_genre_is_an_option_only_of_configs_that_offer_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["run", "tiny", "--genre", "War", "--out", str(tmp_path / "run")])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "tiny.yaml" in err and "unknown option --genre; this config offers: none" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["run", "paper-movielens", "--gnre", "War", "--out", str(tmp_path / "run")])
    assert "offers: --genre (= data.kwargs.genre, graph.agents.1.kwargs.genre)" in (
        capsys.readouterr().err
    )


def test_missing_data_is_an_error_naming_agora_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as caught:
        main(["run", "paper-movielens", "--genre", "War", "--out", str(tmp_path / "run")])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("agora: error: ") and "AGORA_DATA_DIR" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
