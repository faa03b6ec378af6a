"""`python -m benchmarks text-transfer --quick` writes its page."""

from __future__ import annotations

import json

from tests.needs import needs, needs_sst2


@needs_sst2
@needs("text")
def test_bench_text_transfer_quick_writes_its_page(tmp_path):
    from benchmarks.harness import main

    assert main(["text-transfer", "--quick", "--workers", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "text-transfer-quick.json").read_text())
    page = (tmp_path / "text-transfer-quick.md").read_text()
    full = results["teacher"]["sizes"]["transfer"]
    arms = {row["method"] for row in results["rows"] if row["transfer"] == full}
    assert arms == {"Scratch", "Self-training", "LD", "TD", "All labels"}
    assert {row["transfer"] for row in results["rows"] if row["method"] == "LD"} == {0, full}
    assert all(row["steps"] == results["budget"]["steps"] for row in results["rows"])
    store = results["teacher"]["stores"]["transfer"]
    assert store["examples"] == full and store["bytes"] > 0
    assert "| Self-training |" in page and "Lead recovered" in page and "## Marks" in page
    # every run records its teacher's weights, so that a rebuilt teacher's runs stand out
    digest = results["teacher"]["digest"]
    assert len(digest) == 16 and {row["teacher"] for row in results["rows"]} == {digest}
    assert f"the digest `{digest}`" in page and "runs recorded it." in page
    assert "LD with the store / Scratch" in page and (tmp_path / "text-transfer-quick.png").exists()
    # each tuned value's dev accuracy beside its validation score, after the choice
    ld = next(s for s in results["searches"] if s["method"] == "LD" and s["param"] == "weight")
    assert len(ld["dev"]) == len(ld["grid"]) and all(0 <= d <= 1 for d in ld["dev"])
    assert f"({100 * ld['dev'][0]:.1f})" in page and "never used for it" in page
    # where TD's terms pull at its best step: each term's cosine with the task's gradient
    td = next(row for row in results["rows"] if row["method"] == "TD" and row["transfer"])
    alignment, norm = td["pull"]["alignment"], td["pull"]["norm"]
    assert alignment["task[student]"] > 0.999 and norm["task[student]"] == 1.0
    assert -1 <= alignment["interact[student]"] <= 1 and norm["interact[student]"] > 0
    assert "## Where the talk terms pull" in page and "| interact |" in page
    assert "- TD (" in page and "the largest pull on the student is" in page

    # --finished writes the page from the run log alone: every run (and the timing) read back
    args = ["text-transfer", "--quick", "--workers", "1", "--out", str(tmp_path), "--finished"]
    assert main(args) == 0
    again = json.loads((tmp_path / "text-transfer-quick.json").read_text())
    assert again["rows"] and all(row.get("reused") for row in again["rows"])
    assert again["timing"]["reused"]


def test_the_page_counts_the_runs_of_another_teacher_and_those_that_recorded_none():
    from benchmarks.text_transfer.page import _teacher_runs

    def run(seed, **teacher):
        return {"method": "LD", "setting": "w=1", "labels": "", "transfer": 8, "seed": seed,
                **teacher}  # fmt: skip

    rows = [run(0, teacher="a" * 16), run(1, teacher="b" * 16), run(2)]
    r = {"teacher": {"digest": "a" * 16}, "rows": rows, "tuning_rows": rows[:1]}
    line = _teacher_runs(r)  # the tuning run that is also a final run counts once
    assert "1 of the page's 3 runs recorded it" in line and "1 ran before runs recorded" in line
    assert f"**1 recorded another teacher** (`{'b' * 16}`)" in line
    assert _teacher_runs({"teacher": {}, "rows": rows}) == "Its digest was not recorded."


def test_the_page_says_what_the_arms_show_and_judges_the_track_from_read_back_runs():
    from benchmarks.text_transfer.page import _track_mark, _what_this_shows

    def rows(*accuracies):
        return [{"seed": s, "test_accuracy": a} for s, a in enumerate(accuracies)]

    arms = {"Scratch": rows(0.76, 0.77, 0.76), "LD": rows(0.83, 0.84, 0.83),
            "FD": rows(0.76, 0.76, 0.77), "Self-training": rows(0.83, 0.83, 0.84),
            "All labels": rows(0.84, 0.84, 0.84)}  # fmt: skip
    text = "\n".join(_what_this_shows(arms, arms["Scratch"], arms["Self-training"], 88.0,
                                      {"LD": {0: 78.0, 20000: 83.0}},
                                      {"transfer": 13.0, "test": 25.0}))  # fmt: skip
    assert "Which arms move the student: LD (+" in text and "FD (" in text.split("do not")[0]
    # LD and self-training move the student, FD does not: exactly those that read answers
    assert "exactly the arms whose losses read the teacher's answers" in text
    assert "rising at every size between" in text
    assert "The 70 % mark lies above" in text  # all labels: (84 - 76.33) / (88 - 76.33) = 66 %
    runs = [{"method": "LD", "setting": "w=1", "labels": "", "transfer": 1, "seed": s,
             "seconds": 3000.0} for s in range(3)]  # fmt: skip
    r = {"tuning_rows": [], "rows": runs, "workers": 2}
    assert ": missed: the runs' own times add up to" in _track_mark(r, 10.0, reused=3)
    assert "(mark: at most 60 min): met." in _track_mark(r, 3000.0, reused=0)


def test_a_larger_student_is_stamped_apart_and_read_back_as_another_budget(tmp_path):
    from dataclasses import replace

    from benchmarks.harness import RunStore
    from benchmarks.text_transfer.page import _other_budgets
    from benchmarks.text_transfer.task import Budget, other_budgets, run_stamp

    two = replace(Budget(), steps=626)
    three, fewer = replace(two, student_layers=3), replace(two, epochs=1, steps=313)
    assert "student_layers" not in run_stamp(two, "t")  # lines from before the option match
    assert run_stamp(three, "t")["student_layers"] == 3 and run_stamp(three, "t") != run_stamp(
        two, "t"
    )
    log = tmp_path / "runs.jsonl"

    def row(method: str, seed: int, dev: float) -> dict:
        return {"method": method, "setting": "w=1", "labels": "", "transfer": 20000,
                "seed": seed, "valid_accuracy": 0.9, "test_accuracy": dev, "best_step": 9}  # fmt: skip

    RunStore(log, run_stamp(fewer, "t")).add("a", row("LD", 0, 0.83))  # 2 layers, fewer steps
    three_runs = RunStore(log, run_stamp(three, "t"))  # 3 layers, the same steps
    three_runs.add("b", row("Scratch", 0, 0.80))
    three_runs.add("c", row("LD", 0, 0.86))
    found = other_budgets(RunStore(log, run_stamp(two, "t")), two)
    assert [(o["budget"]["student_layers"], o["budget"]["steps"]) for o in found] == [
        (2, 313),
        (3, 626),
    ]
    # the page says whose runs they are, and each budget's lead is over its own Scratch
    r = {"teacher": {"sizes": {"transfer": 20000}, "accuracy": {"test": 0.88}},
         "budget": {"steps": 626}, "rows": [], "other_budgets": found}  # fmt: skip
    lines = [line for line in _other_budgets(r) if line.startswith("| LD | 3 |")]
    assert len(lines) == 1 and "| 86.00 |" in lines[0] and "| 75 % |" in lines[0]
    assert "2-layer student at 626 steps" in "\n".join(_other_budgets(r))
    # seen from the 3-layer student, the 2-layer runs come after its own other budgets
    back = other_budgets(three_runs, three)
    assert [o["budget"]["student_layers"] for o in back] == [2]


def test_what_this_shows_says_how_the_students_size_moves_the_lead_each_arm_recovers():
    from benchmarks.text_transfer.page import _student_sizes

    def row(method: str, labels: str, dev: float, seed: int = 0) -> dict:
        return {"method": method, "setting": "lr=1", "labels": labels, "transfer": 20000,
                "seed": seed, "valid_accuracy": 0.9, "test_accuracy": dev, "best_step": 9}  # fmt: skip

    # this page: 3 layers, Scratch 80 against a teacher at 88
    here = [row("Scratch", "", 0.80), row("Self-training", "teacher", 0.86),
            row("LD", "", 0.85), row("All labels", "real", 0.87)]  # fmt: skip
    # the 2-layer runs at the same steps read back from the run log (Scratch 76), and a
    # 2-layer budget at other steps, which says nothing about size
    two = [row("Scratch", "", 0.76), row("Scratch", "teacher", 0.82), row("LD", "", 0.81),
           row("Scratch", "real", 0.82)]  # fmt: skip
    r = {"teacher": {"sizes": {"transfer": 20000}, "accuracy": {"test": 0.88}},
         "budget": {"steps": 626, "student_layers": 3}, "rows": here,
         "other_budgets": [{"budget": {"steps": 626, "student_layers": 2}, "rows": two},
                           {"budget": {"steps": 313, "student_layers": 2}, "rows": two[:1]}]}  # fmt: skip
    (line,) = _student_sizes(r)
    assert "with 2 layers, All labels 50 %, Self-training 50 %, LD 42 %" in line
    assert "with 3 layers (this page), All labels 88 %, Self-training 75 %, LD 62 %" in line
    assert _student_sizes({**r, "other_budgets": r["other_budgets"][1:]}) == []


def test_student_layers_outside_2_to_5_are_refused_before_anything_trains():
    import argparse

    import pytest

    from benchmarks.harness import BenchmarkError
    from benchmarks.text_transfer.task import check

    args = argparse.Namespace(epochs=2, transfer_batch_size=64, arms="LD", transfer="20000",
                              student_layers=6, data_dir=None)  # fmt: skip
    with pytest.raises(BenchmarkError, match="--student-layers must be 2 to 5"):
        check(args)


@needs("text")
def test_the_student_gets_the_layers_asked_for():
    from benchmarks.movielens.task import method
    from benchmarks.text.task import build_graph

    graph = build_graph(method("Scratch"), "fine-tuned", None, student_layers=3)
    student = graph.agents["student"]
    assert len(student.lower.layers) == 1 and len(student.upper.layers) == 2
