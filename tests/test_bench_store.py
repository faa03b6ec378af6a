"""The MovieLens benchmark keeps every finished run, so a stopped benchmark resumes."""

from pathlib import Path

from agora.bench.movielens import Budget, Method, RunStore, _run_all


class FakeRunner:
    def __init__(self):
        self.ran = []

    def imap(self, fn, tasks, label):
        for genre, method, seed, _teacher, _budget in tasks:
            self.ran.append((genre, method.name, seed))
            yield {"genre": genre, "method": method.name, "setting": method.describe(),
                   "seed": seed, "valid_rmse": 1.0, "test_rmse": 1.0}  # fmt: skip


def teacher(seed: int) -> Path:
    return Path(f"/nowhere/teacher-seed{seed}.safetensors")


def test_finished_runs_are_kept_and_reused_across_a_restart(tmp_path):
    path, budget = tmp_path / "runs.jsonl", Budget()
    td = Method("TD", ("talk",), weight=0.1, rounds=2)
    first = FakeRunner()
    rows = _run_all(
        first, [td], ["Drama", "War"], [0, 1], teacher, budget, "x", RunStore(path, budget)
    )
    assert len(first.ran) == 4 and len(rows) == 4
    assert len(path.read_text().splitlines()) == 4  # written as each run ended

    again = FakeRunner()  # a restart: a new store reads the file back
    variant = Method("TD k=2", ("talk",), weight=0.1, rounds=2)  # same training, another name
    rows = _run_all(again, [variant], ["Drama", "War"], [0, 1, 2], teacher, budget, "x",
                    RunStore(path, budget))  # fmt: skip
    assert again.ran == [("Drama", "TD k=2", 2), ("War", "TD k=2", 2)]
    reused = [r for r in rows if r.get("reused")]
    assert len(reused) == 4 and {r["method"] for r in rows} == {"TD k=2"}


def test_runs_of_another_budget_are_not_reused(tmp_path):
    path = tmp_path / "runs.jsonl"
    scratch = Method("Scratch")
    _run_all(
        FakeRunner(), [scratch], ["War"], [0], teacher, Budget(), "x", RunStore(path, Budget())
    )
    runner = FakeRunner()
    other = Budget(epochs=1)
    _run_all(runner, [scratch], ["War"], [0], teacher, other, "x", RunStore(path, other))
    assert runner.ran == [("War", "Scratch", 0)]


def test_a_line_cut_short_by_a_kill_is_skipped_with_a_warning(tmp_path):
    import pytest

    path, budget = tmp_path / "runs.jsonl", Budget()
    td = Method("TD", ("talk",), weight=0.1, rounds=2)
    _run_all(
        FakeRunner(), [td], ["Drama", "War"], [0], teacher, budget, "x", RunStore(path, budget)
    )
    with path.open("a") as file:
        file.write('{"key": "[\\"Romance\\", [\\"talk\\"]')  # a run killed while writing its line
    with pytest.warns(UserWarning, match="unreadable line"):
        store = RunStore(path, budget)
    assert len(store.rows) == 2  # the two whole lines
