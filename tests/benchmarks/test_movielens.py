"""The MovieLens benchmark: `python -m benchmarks movielens --quick` run as a user runs it (needs
``AGORA_DATA_DIR``), and what it records about the data."""

from __future__ import annotations

import json

import torch

from agora.data.movielens import MovieLensMeta, RatingsDataset
from benchmarks.harness import main
from benchmarks.movielens.task import DataView, seen_in_training
from tests.benchmarks.helpers import benchmark, needs_data

# (user, movie) pairs of two genres' splits
RATINGS = {
    "A": {"train": [(1, 10), (3, 10)], "test": [(1, 10), (2, 10), (4, 30)]},
    "B": {"train": [(2, 20), (2, 20)], "test": []},
}


class TwoGenres:
    """A MovieLens of :data:`RATINGS`: what :class:`DataView` reads."""

    meta = MovieLensMeta(n_users=4, n_movies=30, n_words=1, n_genres=2, title_len=1)

    def splits(self, genre=None):
        genres = [genre] if genre else list(RATINGS)
        return {split: self.dataset([p for g in genres for p in RATINGS[g].get(split, [])])
                for split in ("train", "valid", "test")}  # fmt: skip

    def dataset(self, pairs):
        user, movie = (torch.tensor([p[i] for p in pairs], dtype=torch.long) for i in (0, 1))
        return RatingsDataset(user, movie, torch.full((len(pairs),), 4.0),
                              torch.arange(len(pairs)), torch.zeros(31, 1, dtype=torch.long),
                              torch.zeros(31, 2))  # fmt: skip


def test_seen_in_training_counts_test_ratings_by_what_teacher_and_student_saw():
    seen = seen_in_training(DataView(TwoGenres()), ["A"])
    # user 1 both saw; user 2 only the teacher (in B); user 4 and movie 30 neither
    assert seen == {"A": {
        "test": 3, "user_teacher": 2, "user_student": 1, "movie_teacher": 2,
        "movie_student": 2, "teacher_only": 1,
        "user_ratings_teacher": 1 + 2, "user_ratings_student": 1 + 0,
    }}  # fmt: skip


@needs_data
def test_quick_run_writes_the_results_page(tmp_path, capsys):
    """The CI smoke test of the whole benchmark: about a minute on two cores."""
    out = tmp_path / "results"
    done = benchmark("movielens", "--quick", "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"results: {out / 'movielens-quick.md'}")
    for suffix in ("json", "md", "csv", "png"):
        assert (out / f"movielens-quick.{suffix}").stat().st_size > 0, suffix
    results = json.loads((out / "movielens-quick.json").read_text())
    assert results["command"] == f"python -m benchmarks movielens --quick --out {out} --workers 2"
    assert results["quick"] and {row["method"] for row in results["rows"]} >= {"Scratch", "TD"}
    page = (out / "movielens-quick.md").read_text()
    assert "smoke test, not a result" in page

    # --report-only rewrites the page from movielens-quick.json, without training
    (out / "movielens-quick.md").unlink()
    assert main(["movielens", "--quick", "--report-only", "--out", str(out)]) == 0
    assert (out / "movielens-quick.md").read_text() == page
    assert capsys.readouterr().out.strip() == f"results: {out / 'movielens-quick.md'}"
