"""The harness every benchmark shares: the command line, the run store and resuming."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.harness import RunStore, benchmarks, cell, main, run_all
from tests.benchmarks.helpers import benchmark


class FakeRunner:
    def __init__(self):
        self.ran = []

    def imap(self, fn, tasks, label):
        for task in tasks:
            self.ran.append(task)
            yield {"task": task}


def test_every_benchmark_folder_is_found():
    assert set(benchmarks()) == {
        "gradients",
        "graphs",
        "movielens",
        "speed",
        "text",
        "text-transfer",
        "vision",
    }


def test_finished_runs_are_kept_and_reused_across_a_restart(tmp_path):
    path = tmp_path / "runs.jsonl"
    first = FakeRunner()
    rows = run_all(first, None, ["a", "b", "a"], RunStore(path, {"epochs": 8}), str, "x")
    assert first.ran == ["a", "b"] and rows == [{"task": "a"}, {"task": "b"}, {"task": "a"}]
    again = FakeRunner()  # a new process: only what the file holds
    rows = run_all(again, None, ["a", "b", "c"], RunStore(path, {"epochs": 8}), str, "x")
    assert again.ran == ["c"]
    assert rows == [{"task": "a", "reused": True}, {"task": "b", "reused": True}, {"task": "c"}]


def test_runs_of_another_stamp_are_not_reused(tmp_path):
    path = tmp_path / "runs.jsonl"
    run_all(FakeRunner(), None, ["a"], RunStore(path, {"epochs": 8}), str, "x")
    other = FakeRunner()
    run_all(other, None, ["a"], RunStore(path, {"epochs": 1}), str, "x")
    assert other.ran == ["a"]


def test_the_costliest_runs_start_first(tmp_path):
    runner = FakeRunner()
    run_all(runner, None, ["s", "lll", "mm"], RunStore(None, {}), str, "x", cost=len)
    assert runner.ran == ["lll", "mm", "s"]


def test_a_line_cut_short_by_a_kill_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "runs.jsonl"
    RunStore(path, {}).add("a", {"x": 1})
    with path.open("a") as file:
        file.write('{"key": "b", "sta')  # a kill while writing
    with pytest.warns(UserWarning, match="unreadable line"):
        store = RunStore(path, {})
    assert store.get("a") == {"x": 1, "reused": True} and store.get("b") is None


def test_report_only_without_results_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["movielens", "--report-only", "--out", str(tmp_path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks: error: ") and str(tmp_path / "movielens.json") in err
    assert not list(tmp_path.iterdir())


def test_bad_pool_arguments_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["gradients", "--seeds", "0", "--out", str(tmp_path)])
    assert caught.value.code == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_data_is_an_error_naming_agora_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGORA_DATA_DIR", str(tmp_path / "nowhere"))
    for name in ("movielens", "graphs", "gradients"):
        with pytest.raises(SystemExit) as caught:
            main([name, "--quick", "--out", str(tmp_path / "results")])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("benchmarks: error: ") and "AGORA_DATA_DIR" in err, name
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_an_unknown_benchmark_is_a_usage_error():
    done = benchmark("nope", timeout=120)
    assert done.returncode == 2 and "movielens" in done.stderr


def test_quick_results_have_names_of_their_own(tmp_path):
    from benchmarks.harness import make_parser, stem

    quick = make_parser().parse_args(["speed", "--quick", "--out", str(tmp_path)])
    full = make_parser().parse_args(["speed", "--out", str(tmp_path)])
    assert (stem(quick), stem(full)) == ("speed-quick", "speed")


def test_a_smoke_test_never_writes_into_the_sites_results_unless_told(tmp_path, monkeypatch):
    # issue 23: `vision --quick` wrote into docs/results, and the site listed it as a result
    from benchmarks.harness import make_parser, out_dir

    def out(*argv: str) -> Path:
        return out_dir(make_parser().parse_args(["speed", *argv]))

    assert out() == Path("docs/results") and out("--quick") == Path("runs/quick")
    assert out("--quick", "--out", str(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("benchmarks.speed.BENCHMARK.run", lambda args: {"quick": args.quick})
    written = []
    monkeypatch.setattr("benchmarks.speed.BENCHMARK.write", lambda r, o, s: written.append((o, s)))
    assert main(["speed", "--quick"]) == 0
    assert written == [(Path("runs/quick"), "speed-quick")]
    assert (tmp_path / "runs" / "quick" / "speed-quick.json").is_file()
    assert not (tmp_path / "docs").exists()


def test_a_cell_is_mean_and_standard_error():
    assert cell([1.0, 3.0]) == "2.0000 ± 1.0000" and cell([]) == "–"


def test_a_page_written_from_the_run_log_does_not_claim_its_runs_just_ran():
    from benchmarks.harness import header

    ran = "\n".join(header("T", {"command": "python -m benchmarks text-transfer", "date": "d"}))
    read = "\n".join(header("T", {"command": "python -m benchmarks text-transfer --finished",
                                  "date": "d"}))  # fmt: skip
    assert "- Date: d (when this page was written, right after the runs)" in ran
    assert "nothing trained" in read and "right after the runs" not in read
