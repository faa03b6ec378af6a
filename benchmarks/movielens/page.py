"""Results pages of the benchmarks: every number on them is computed here from a run's results.

:func:`write` turns the ``results`` of :func:`benchmarks.movielens.task.run` into
``movielens.md`` (the paper's Tables 1, 3, 5, 7 and 8, ours beside the paper's, and what they
show in words), ``movielens.csv`` (one line per student run) and ``movielens.png`` (relative
improvement over Scratch).

Relative improvement of a method over Scratch on one genre, in percent::

    I = 100 * (RMSE_scratch - RMSE_method) / RMSE_scratch      # RMSE: mean test RMSE over seeds

Table 1's columns average ``I`` over genres by rank: Dense = Genre 1, Sparse = Genres 5-8,
Avg = Genres 1-8 (:data:`COLUMNS`). The paper's genres are unnamed "Genre 1..8", ranked dense
to sparse as ours are, so ours and the paper's correspond by rank only.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import duration, header, mean_se, table

BASELINES = ("LD", "FD", "FitNet", "Hybrid")
DISTILLED = (*BASELINES, "TD")
MAIN = ("Scratch", *DISTILLED)  # the main table's methods; every other method is an ablation
ROUNDS = (0, 1, 2, 3)  # Table 5's round counts
COLUMNS = {"Dense": (1,), "Sparse": (5, 6, 7, 8), "Avg": (1, 2, 3, 4, 5, 6, 7, 8)}


def _paper_row(text: str) -> tuple[tuple[float, float], ...]:
    """``"1.0102 ± 0.0003  1.0884 ± 0.0004 ..."`` -> ``((1.0102, 0.0003), (1.0884, ...``."""
    pairs = re.findall(r"([\d.]+)\s*±\s*([\d.]+)", text)
    if len(pairs) != 8:
        raise ValueError(f"a paper row needs 8 'mean ± se' cells, got {len(pairs)}: {text!r}")
    return tuple((float(m), float(se)) for m, se in pairs)


# The paper's MovieLens numbers, transcribed: Table 1 and 2 are relative improvements over
# Scratch in percent (ML(Dense), ML(Sparse) and Avg. over its five tasks, ViT included);
# Tables 3, 5, 7 and 8 are test RMSE "mean ± standard error" for Genre 1..8 (appendix 6.5).
PAPER: dict[str, dict[str, Any]] = {
    "table1": {  # method: (ML(Dense), ML(Sparse), Avg. over 5 tasks incl. CIFAR and ImageNet)
        "LD": (0.16, 1.49, 0.83),
        "FD": (0.29, 2.68, 0.66),
        "FitNet": (0.81, 2.19, 0.93),
        "Hybrid": (0.93, 2.91, 1.50),
        "TD": (1.34, 3.39, 2.54),
    },
    "table2": {  # rounds: (ML(Dense), ML(Sparse))
        "No Interaction": (0.81, 2.02),
        "1 iteration": (1.31, 3.08),
        ">1 iterations": (1.34, 3.30),
    },
    "table3": {
        "Scratch": _paper_row("""
            1.0102 ± 0.0003  1.0884 ± 0.0004  1.0555 ± 0.0000  1.0502 ± 0.0000
            1.1609 ± 0.0000  1.1160 ± 0.0000  1.0038 ± 0.0000  1.0937 ± 0.0000"""),
        "Teacher": _paper_row("""
            1.0120 ± 0.0000  1.0854 ± 0.0000  1.0563 ± 0.0000  1.0689 ± 0.0000
            1.1501 ± 0.0000  1.1090 ± 0.0000  1.0193 ± 0.0000  1.0660 ± 0.0000"""),
        "LD": _paper_row("""
            1.0083 ± 0.0000  1.1029 ± 0.0000  1.0601 ± 0.0000  1.0826 ± 0.0000
            1.1964 ± 0.0000  1.1415 ± 0.0000  1.0088 ± 0.0000  1.0602 ± 0.0000"""),
        "FD": _paper_row("""
            1.0075 ± 0.0009  1.0997 ± 0.0030  1.0537 ± 0.0007  1.0791 ± 0.0005
            1.1929 ± 0.0013  1.1269 ± 0.0029  1.0024 ± 0.0000  1.0527 ± 0.0036"""),
        "FitNet": _paper_row("""
            1.0018 ± 0.0000  1.1018 ± 0.0000  1.0534 ± 0.0000  1.0849 ± 0.0000
            1.1873 ± 0.0000  1.1260 ± 0.0000  1.0032 ± 0.0000  1.0605 ± 0.0000"""),
        "Hybrid": _paper_row("""
            1.0015 ± 0.0008  1.0955 ± 0.0013  1.0517 ± 0.0012  1.0737 ± 0.0014
            1.1843 ± 0.0008  1.1215 ± 0.0028  1.0076 ± 0.0009  1.0499 ± 0.0014"""),
        "TD": _paper_row("""
            0.9965 ± 0.0001  1.0908 ± 0.0002  1.0475 ± 0.0001  1.0761 ± 0.0002
            1.1656 ± 0.0010  1.1050 ± 0.0000  1.0022 ± 0.0000  1.0485 ± 0.0013"""),
    },
    "table5": {
        "No Interactions": _paper_row("""
            1.0018 ± 0.0002  1.1016 ± 0.0002  1.0475 ± 0.0001  1.0767 ± 0.0000
            1.1864 ± 0.0014  1.1249 ± 0.0000  1.0022 ± 0.0000  1.0656 ± 0.0000"""),
        "1 iteration": _paper_row("""
            0.9971 ± 0.0003  1.0908 ± 0.0002  1.0502 ± 0.0007  1.0783 ± 0.0002
            1.1667 ± 0.0008  1.1134 ± 0.0008  1.0033 ± 0.0002  1.0496 ± 0.0026"""),
        "2 to 3 iterations": _paper_row("""
            0.9965 ± 0.0001  1.0921 ± 0.0005  1.0508 ± 0.0002  1.0761 ± 0.0002
            1.1663 ± 0.0016  1.1050 ± 0.0000  1.0039 ± 0.0004  1.0495 ± 0.0004"""),
    },
    "table7": {
        "No L_MC": _paper_row("""
            0.9965 ± 0.0001  1.0908 ± 0.0003  1.0481 ± 0.0010  1.0767 ± 0.0003
            1.1683 ± 0.0007  1.1104 ± 0.0007  1.0035 ± 0.0000  1.0485 ± 0.0013"""),
        "No L_SC": _paper_row("""
            0.9968 ± 0.0003  1.0916 ± 0.0004  1.0501 ± 0.0002  1.0763 ± 0.0002
            1.1658 ± 0.0012  1.1058 ± 0.0002  1.0034 ± 0.0001  1.0494 ± 0.0004"""),
        "TD": _paper_row("""
            0.9965 ± 0.0001  1.0908 ± 0.0002  1.0475 ± 0.0001  1.0761 ± 0.0002
            1.1656 ± 0.0010  1.1050 ± 0.0000  1.0022 ± 0.0000  1.0485 ± 0.0013"""),
    },
    "table8": {
        "Add Noise": _paper_row("""
            0.9966 ± 0.0001  1.0910 ± 0.0002  1.0511 ± 0.0003  1.0762 ± 0.0003
            1.1663 ± 0.0009  1.1052 ± 0.0001  1.0033 ± 0.0001  1.0487 ± 0.0014"""),
        "No Noise": _paper_row("""
            0.9966 ± 0.0002  1.0912 ± 0.0004  1.0475 ± 0.0001  1.0766 ± 0.0002
            1.1668 ± 0.0015  1.1051 ± 0.0002  1.0026 ± 0.0003  1.0504 ± 0.0012"""),
        "Train E, D separately": _paper_row("""
            1.0008 ± 0.0002  1.1066 ± 0.0001  1.0475 ± 0.0001  1.0812 ± 0.0000
            1.1782 ± 0.0002  1.1165 ± 0.0002  1.0022 ± 0.0000  1.0603 ± 0.0002"""),
        "Train together": _paper_row("""
            0.9965 ± 0.0001  1.0908 ± 0.0002  1.0508 ± 0.0002  1.0761 ± 0.0002
            1.1656 ± 0.0010  1.1050 ± 0.0000  1.0061 ± 0.0001  1.0485 ± 0.0013"""),
    },
}


# -- statistics ------------------------------------------------------------------------------


def relative_improvement(scratch: float, rmse: float) -> float:
    """Percent by which ``rmse`` is below Scratch's: ``100 * (scratch - rmse) / scratch``.

    >>> round(relative_improvement(1.0, 0.99), 6)
    1.0
    """
    return 100.0 * (scratch - rmse) / scratch


def aggregate(by_rank: dict[int, float]) -> dict[str, float | None]:
    """Table 1's columns from per-genre values keyed by genre rank: the mean over each column's
    ranks that are present (``None`` when none is).

    >>> aggregate({1: 1.0, 5: 2.0, 8: 4.0})
    {'Dense': 1.0, 'Sparse': 3.0, 'Avg': 2.3333333333333335}
    """
    columns = {}
    for column, ranks in COLUMNS.items():
        values = [by_rank[r] for r in ranks if r in by_rank]
        columns[column] = statistics.fmean(values) if values else None
    return columns


# -- the runs, indexed -----------------------------------------------------------------------


@dataclass
class Runs:
    """Test RMSE per ``(method, genre)`` and seed; the frozen teacher is method ``"Teacher"``."""

    rmse: dict[tuple[str, str], dict[int, float]]
    genres: list[str]  # densest first
    rank: dict[str, int]  # genre -> 1-based rank among all genres ("Genre i")
    tuned_rounds: int | None  # the k of the tuned TD, whose rows are method "TD"

    @classmethod
    def from_results(cls, results: dict[str, Any]) -> Runs:
        """Index a :func:`~agora.bench.movielens.run` results dict; genres sorted by their rank
        in ``genre_ranking``, the teacher's RMSE per seed taken from the Scratch rows.

        Example:
            >>> row = {"method": "Scratch", "genre": "War", "seed": 0, "test_rmse": 1.0,
            ...        "teacher_test_rmse": 0.9}
            >>> runs = Runs.from_results({"genres": ["War"], "rows": [row]})
            >>> runs.mean("Scratch", "War"), runs.seeds("Teacher", "War"), runs.ran("TD")
            (1.0, {0: 0.9}, False)
        """
        order = [name for name, _ in results.get("genre_ranking", [])]
        genres = list(results["genres"])
        rank = {g: order.index(g) + 1 if g in order else i + 1 for i, g in enumerate(genres)}
        rmse: dict[tuple[str, str], dict[int, float]] = {}
        for row in results["rows"]:
            rmse.setdefault((row["method"], row["genre"]), {})[row["seed"]] = row["test_rmse"]
        for row in results["rows"]:  # the teacher is the same for every method: take Scratch's
            teacher = rmse.setdefault(("Teacher", row["genre"]), {})
            if row["method"] == "Scratch" or row["seed"] not in teacher:
                teacher[row["seed"]] = row["teacher_test_rmse"]
        genres.sort(key=rank.__getitem__)
        return cls(rmse, genres, rank, _tuned_rounds(results))

    def seeds(self, method: str, genre: str) -> dict[int, float]:
        """Test RMSE by seed of ``method`` on ``genre``; empty if it did not run."""
        return self.rmse.get((method, genre), {})

    def ran(self, method: str) -> bool:
        """Whether ``method`` has a result on any genre."""
        return any(self.seeds(method, g) for g in self.genres)

    def mean(self, method: str, genre: str) -> float | None:
        """Mean test RMSE over seeds of ``method`` on ``genre``, or ``None`` if it did not run."""
        values = list(self.seeds(method, genre).values())
        return statistics.fmean(values) if values else None

    def rounds_method(self, k: int) -> str:
        """The method whose rows hold TD with ``k`` rounds: the tuned TD's own k is ``"TD"``."""
        return "TD" if k == self.tuned_rounds else f"TD k={k}"

    def improvement(self, method: str, genre: str) -> float | None:
        """``I`` of the mean RMSEs over seeds."""
        scratch, rmse = self.mean("Scratch", genre), self.mean(method, genre)
        return None if scratch is None or rmse is None else relative_improvement(scratch, rmse)

    def seed_improvements(self, method: str, genre: str) -> dict[int, float]:
        """``I`` per seed, paired with Scratch's run of the same seed."""
        scratch, rmse = self.seeds("Scratch", genre), self.seeds(method, genre)
        return {s: relative_improvement(scratch[s], rmse[s]) for s in scratch if s in rmse}

    def columns(self, method: str) -> dict[str, tuple[float, float | None] | None]:
        """Table 1's Dense, Sparse and Avg for ``method``: value and SE over seeds."""
        by_rank = {self.rank[g]: self.improvement(method, g) for g in self.genres}
        values = aggregate({r: v for r, v in by_rank.items() if v is not None})
        per_seed = self.seed_columns(method).values()
        out: dict[str, tuple[float, float | None] | None] = {}
        for column, value in values.items():
            spread = [c[column] for c in per_seed if c[column] is not None]
            out[column] = None if value is None else (value, _se(spread))
        return out

    def seed_columns(self, method: str) -> dict[int, dict[str, float | None]]:
        """Table 1's columns seed by seed, for the seeds that ran every genre."""
        per_genre = {g: self.seed_improvements(method, g) for g in self.genres}
        seeds = set.intersection(*(set(p) for p in per_genre.values())) if per_genre else set()
        return {
            s: aggregate({self.rank[g]: p[s] for g, p in per_genre.items()}) for s in sorted(seeds)
        }


def _se(values: Sequence[float]) -> float | None:
    return mean_se(values)[1] if values else None


def _tuned_rounds(results: dict[str, Any]) -> int | None:
    settings = [results.get("chosen", {}).get("TD", "")]
    settings += [r["setting"] for r in results["rows"] if r["method"] == "TD"]
    for setting in settings:
        if match := re.search(r"\bk=(\d+)", setting):
            return int(match.group(1))
    return None


# -- formatting ------------------------------------------------------------------------------


def _rmse_cell(values: Sequence[float], bold: bool = False) -> str:
    if not values:
        return "not run"
    mean, se = mean_se(values)
    text = f"{mean:.4f}" if se is None else f"{mean:.4f} ± {se:.4f}"
    return f"**{text}**" if bold else text


def _percent(value: float | None, se: float | None = None, bold: bool = False) -> str:
    if value is None:
        return "n/a"
    text = _signed(value) if se is None else f"{_signed(value)} ± {se:.2f}"
    return f"**{text}**" if bold else text


def _signed(value: float) -> str:
    """``+1.23``; a value that rounds to zero prints ``+0.00``, never ``-0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _genre_label(runs: Runs, genre: str) -> str:
    return f"Genre {runs.rank[genre]} ({genre})"


def _genre_list(runs: Runs, ranks: Sequence[int]) -> str:
    names = [_genre_label(runs, g) for g in runs.genres if runs.rank[g] in ranks]
    return ", ".join(names) or "none run"


# -- the page: header, protocol, settings ----------------------------------------------------


def _header(results: dict[str, Any]) -> list[str]:
    return header(
        "MovieLens 100K: Talking-model Distillation against the paper", results, _run_lines(results)
    )


def _run_lines(results: dict[str, Any]) -> list[str]:
    """How many runs were read back from the run log, and how many teachers from the cache."""
    lines = [] if results.get("timings") else ["- Wall time: not recorded"]
    runs = _unique_runs(results)
    reused = [r for r in runs if r.get("reused")]
    if reused:
        total = sum(r.get("seconds", 0.0) for r in runs)
        workers = results.get("workers") or 1
        lines.append(
            f"- {len(reused)} of {len(runs)} runs were finished by an earlier invocation and "
            f"read back from the run log, so the wall times above count only the others; every "
            f"run's own training time, summed: {duration(total)} (about {duration(total / workers)} "
            f"on {workers} workers)"
        )
    cached = len(results.get("seeds", [])) - len(results.get("teachers", []))
    if cached > 0:
        lines.append(f"- {cached} teacher(s) were loaded from the cache, not pre-trained here")
    return lines


def _unique_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every student run once: seed 0 of a chosen setting is one run, listed in the tuning and
    in the tables (under the table's name)."""
    runs = {
        (r.get("genre"), r["method"].split(" ")[0], r["setting"], r["seed"]): r
        for r in (*results.get("tuning_rows", []), *results.get("rows", []))
    }
    return list(runs.values())


def _recipe(recipe: dict[str, Any]) -> str:
    return (
        f"AdamW at lr {recipe.get('lr', 0):g}, batch {recipe.get('batch_size', '?')}, "
        f"{recipe.get('evals_per_epoch', '?')} evaluations per epoch, early stopping after "
        f"{recipe.get('patience', '?')} without improvement, at most "
        f"{_plural(recipe.get('epochs', 0), 'epoch')}"
    )


def _protocol(results: dict[str, Any]) -> list[str]:
    budget = results.get("budget", {})
    seeds = results.get("seeds", [])
    student, teacher = budget.get("student", {}), budget.get("teacher", {})
    alone, codecs = results.get("separately", ["?", "?"])
    return [
        "## Protocol",
        "",
        "Ratings are split by time: the latest 10% are test, the latest 10% of the rest are "
        "validation, and each genre task keeps its movies' ratings inside the same boundaries. "
        "About 90% of validation and test ratings come from users absent from training: every "
        "model embeds ids with small uniform rows (±0.05) and reads a trained out-of-vocabulary "
        "row for a user, movie or word outside its own training data "
        "(`agora.models.recommender.RecommenderConfig`).",
        "",
        f"For each seed a teacher (300 → 512 → 256 → 1) is pre-trained on every genre's training "
        f"ratings ({_recipe(teacher)}): early stopping on the latest tenth of its own training "
        "ratings chooses the number of steps, then it trains afresh on all of them for that many "
        "steps, so that neither the students' validation nor their test period shapes it. It is "
        "then frozen and shared by every genre and method. Each student (75 → 128 → 64 "
        f"→ 1) trains on one genre ({_recipe(student)}) and is scored by its test RMSE at the "
        "evaluation of best validation RMSE.",
        "",
        "Every setting is chosen by mean validation RMSE over the genres with seed 0, before any "
        "test number is read: Scratch's learning rate and dropout (which every method then "
        "uses), each baseline's weight, TD's one shared weight, then each of its three weights "
        "on its own, then its rounds. A choice on the edge of its grid widens the grid (weights "
        "and learning rates ×3 or ÷3, dropout ±0.1, rounds ±1). Table 8's *separately* trains "
        f"the student alone for {alone} steps, then only the codecs for {codecs} steps (the "
        "paper's counts), then everything together.",
        "",
        "Numbers are the mean ± standard error (sample std, ddof=1, over √n) over "
        f"{_plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}); with one seed only the "
        "mean is shown. The paper's genres are unnamed and ranked dense to sparse like ours (by "
        "test ratings): our Genre i and the paper's Genre i correspond by rank only.",
        "",
    ]


def _settings(results: dict[str, Any]) -> list[str]:
    rows = []
    for search in results.get("searches", []):
        cells = [f"**{v:g}**" if v == search["chosen"] else f"{v:g}" for v in search["grid"]]
        scores = ", ".join(f"{s:.4f}" for s in search["scores"])
        edge = " (on the edge: the widening stopped)" if search["on_edge"] else ""
        rows.append((search["method"], search["param"], ", ".join(cells) + edge, scores))
    chosen = results.get("chosen", {})
    return [
        "## Chosen settings (validation, seed 0)",
        "",
        "Each search in order: the grid as finally searched, the choice in bold, and the mean "
        "validation RMSE of each value over the genres:",
        "",
        *table(("Method", "Parameter", "Grid (choice in bold)", "Validation RMSE"), rows),
        "",
        *table(("Method", "Chosen"), [(m, f"`{chosen[m]}`") for m in MAIN if m in chosen]),
        "",
    ]


# -- the tables ------------------------------------------------------------------------------


def _improvement_cells(runs: Runs, methods: Sequence[str]) -> dict[str, list[str]]:
    """Each method's Dense, Sparse and Avg cells; bold: the best per column."""
    ours = {m: runs.columns(m) for m in methods}
    best = {c: max((v[c][0] for v in ours.values() if v[c]), default=None) for c in COLUMNS}
    return {
        m: [
            _percent(*v[c], bold=_level(v[c][0], best[c], 2)) if v[c] else "not run"
            for c in COLUMNS
        ]
        for m, v in ours.items()
    }


def _paper_columns(runs: Runs, method: str) -> list[float | None]:
    """Our Dense, Sparse and Avg applied to the paper's Table 3, over the ranks we ran."""
    table, ranks = PAPER["table3"], {runs.rank[g] for g in runs.genres}
    by_rank = {
        rank: relative_improvement(scratch[0], rmse[0])
        for rank, (scratch, rmse) in enumerate(zip(table["Scratch"], table[method]), 1)
        if rank in ranks
    }
    return list(aggregate(by_rank).values())


def _table1(runs: Runs) -> list[str]:
    header = ("Method", "Dense", "Sparse", "Avg", "paper T1: Dense", "paper T1: Sparse",
              "paper T3: Dense", "paper T3: Sparse", "paper T3: Avg")  # fmt: skip
    cells = _improvement_cells(runs, DISTILLED)
    rows = [("Scratch", *["baseline"] * 8)]
    for method in DISTILLED:
        paper = [*PAPER["table1"][method][:2], *_paper_columns(runs, method)]
        rows.append((method, *cells[method], *map(_percent, paper)))
    return [
        "## Table 1: relative improvement over Scratch (%)",
        "",
        *table(header, rows),
        "",
        "Per genre, `I = 100 · (RMSE_Scratch − RMSE_method) / RMSE_Scratch` with each RMSE the "
        "mean test RMSE over seeds. **Dense** is `I` on Genre 1; **Sparse** the mean of `I` over "
        "Genres 5–8; **Avg** the mean of `I` over Genres 1–8 (each genre weighs the same). "
        "The ± is the standard error over seeds of the same quantity computed per seed, each seed "
        "paired with Scratch's run of that seed. Here: Dense = "
        f"{_genre_list(runs, COLUMNS['Dense'])}; Sparse = {_genre_list(runs, COLUMNS['Sparse'])}; "
        f"Avg = the {len(runs.genres)} genre(s) run. Bold: the best method per column in ours.",
        "",
        "*paper T1* columns are the paper's Table 1 ML(Dense) and ML(Sparse); its Avg. (over "
        "five tasks, image classification included) is not comparable and is left out. The paper "
        "does not define ML(Sparse) exactly, and its value is not the mean of `I` over its Table "
        "3's Genres 5–8. *paper T3* columns apply our definitions to the paper's Table 3 means, "
        "over the genre ranks we ran: the like-for-like comparison.",
        "",
    ]


def _rmsetable(
    runs: Runs,
    ours: Sequence[tuple[str, str]],
    paper: Sequence[tuple[str, tuple[tuple[float, float], ...]]],
    bold: Sequence[str],
) -> list[str]:
    """Rows ``(label, method)`` of ours, then ``(label, paper row)``; one column per genre."""
    header = ("Method", *(_genre_label(runs, g) for g in runs.genres))
    best = {
        g: min((m for m in (runs.mean(b, g) for b in bold) if m is not None), default=None)
        for g in runs.genres
    }
    rows = []
    for label, method in ours:
        cells = [
            _rmse_cell(
                list(runs.seeds(method, g).values()),
                bold=method in bold and _level(runs.mean(method, g), best[g], 4),
            )
            for g in runs.genres
        ]
        rows.append((label, *cells))
    for label, values in paper:
        cells = [
            _paper_cell(values[runs.rank[g] - 1]) if runs.rank[g] <= 8 else "—" for g in runs.genres
        ]
        rows.append((f"*paper: {label}*", *cells))
    missing = [label for label, method in ours if not runs.ran(method)]
    note = [f"Not run: {', '.join(missing)}.", ""] if missing else []
    return [*table(header, rows), "", *note]


def _paper_cell(value: tuple[float, float]) -> str:
    return f"{value[0]:.4f} ± {value[1]:.4f}"


def _table3(runs: Runs) -> list[str]:
    labels = {"Scratch": "Train from Scratch", "Teacher": "Teacher (frozen, no fine-tuning)"}
    ours = [(labels.get(m, m), m) for m in ("Scratch", "Teacher", *DISTILLED)]
    paper = [(labels.get(m, m), PAPER["table3"][m]) for m in ("Scratch", "Teacher", *DISTILLED)]
    return [
        "## Table 3: test RMSE per genre (lower is better)",
        "",
        *_rmsetable(runs, ours, paper, bold=MAIN),
        "Bold: the best trained method per genre in ours (Scratch included, Teacher not).",
        "",
    ]


def _table5(runs: Runs) -> list[str]:
    names = {0: "No interactions (k=0)", 1: "1 round (k=1)"}
    ours = []
    for k in ROUNDS:
        tuned = ", tuned TD" if k == runs.tuned_rounds else ""
        ours.append((names.get(k, f"{k} rounds (k={k})") + tuned, runs.rounds_method(k)))
    return [
        "## Table 5: rounds of interactive communication (test RMSE)",
        "",
        *_rmsetable(runs, ours, list(PAPER["table5"].items()), bold=[m for _, m in ours]),
        "k=0 keeps the codecs and the consistency losses but drops `L_interact`. The paper "
        "reports one row for 2 to 3 rounds; we run k=2 and k=3 separately.",
        "",
        *_rounds_improvement(runs, ours),
    ]


def _rounds_improvement(runs: Runs, ours: Sequence[tuple[str, str]]) -> list[str]:
    """Table 5 as relative improvement over Scratch, beside the paper's Table 2."""
    paper = [PAPER["table2"][name] for name in
             ("No Interaction", "1 iteration", ">1 iterations", ">1 iterations")]  # fmt: skip
    cells = _improvement_cells(runs, [m for _, m in ours])
    rows = [(label, *cells[m], *map(_percent, p)) for (label, m), p in zip(ours, paper)]
    header = ("Rounds", "Dense", "Sparse", "Avg", "paper T2: Dense", "paper T2: Sparse")
    return [
        "Relative improvement over Scratch (%), defined as in Table 1, with the paper's Table 2 "
        '(its ">1 iterations" row beside both k=2 and k=3):',
        "",
        *table(header, rows),
        "",
    ]


def _table7(runs: Runs) -> list[str]:
    ours = [("No L_MC", "TD no MC"), ("No L_SC", "TD no SC"), ("TD", "TD")]
    return [
        "## Table 7: consistency losses (test RMSE)",
        "",
        *_rmsetable(runs, ours, list(PAPER["table7"].items()), bold=[m for _, m in ours]),
    ]


def _table8(runs: Runs, results: dict[str, Any]) -> list[str]:
    std = _noise(results)
    ours = [("Add noise" + (f" (std {std})" if std else ""), "TD noise"), ("No noise (TD)", "TD"),
            ("Train E, D separately", "TD separately"), ("Train together (TD)", "TD")]  # fmt: skip
    return [
        "## Table 8: noise before the teacher interprets; codecs trained separately (test RMSE)",
        "",
        *_rmsetable(runs, ours, list(PAPER["table8"].items()), bold=[m for _, m in ours]),
    ]


def _noise(results: dict[str, Any]) -> str | None:
    for row in results["rows"]:
        if row["method"] == "TD noise" and (m := re.search(r"noise=([\d.e-]+)", row["setting"])):
            return m.group(1)
    return None


# -- the summary -----------------------------------------------------------------------------


def _summary(runs: Runs, results: dict[str, Any]) -> list[str]:
    ours = {m: runs.columns(m) for m in DISTILLED if runs.ran(m)}
    lines = ["## Summary", ""]
    for column in COLUMNS:
        scored = {m: c[column][0] for m, c in ours.items() if c[column]}
        if not scored:
            lines.append(f"- {column}: no genre of this column was run.")
            continue
        best = max(scored, key=scored.__getitem__)
        verdict = "" if scored[best] > 0 else " (no distillation method beats Scratch here)"
        lines.append(f"- {column}: the best method is {best} ({_signed(scored[best])}%){verdict}.")
    lines.append("")
    if "TD" in ours:
        lines += [_versus(runs, ours, b) for b in BASELINES if b in ours] + [""]
        lines += [_versus_teacher(runs), ""]
    lines += [*_ablation_summary(runs), "", *_tuning_cost(results)]
    return lines


def _level(a: float | None, b: float | None, digits: int) -> bool:
    """Whether ``a`` and ``b`` are equal at the precision the page prints them."""
    return a is not None and b is not None and round(a - b, digits) == 0


def _verdict(td: float, other: float, better: str, worse: str, level: str) -> str:
    return level if _level(td, other, 2) else better if td > other else worse


def _versus(runs: Runs, ours: dict[str, Any], baseline: str) -> str:
    clauses = []
    for column, where in (
        ("Dense", "the dense genre"),
        ("Sparse", "the sparse genres"),
        ("Avg", "all genres on average"),
    ):
        td, other = ours["TD"][column], ours[baseline][column]
        if td is None or other is None:
            continue
        verb = _verdict(td[0], other[0], "beats", "does not beat", "is level with")
        gap = _paired_gap(runs, baseline, column)
        clauses.append(
            f"TD {verb} {baseline} on {where}: {_signed(td[0])}% vs {_signed(other[0])}% "
            f"({_signed(td[0] - other[0])} points{gap})."
        )
    return "- " + " ".join(clauses)


def _paired_gap(runs: Runs, baseline: str, column: str) -> str:
    """``, ± SE`` of TD's lead over ``baseline`` seed by seed, and whether it exceeds 2 SE."""
    per_seed = []
    td, other = runs.seed_columns("TD"), runs.seed_columns(baseline)
    for seed in sorted(set(td) & set(other)):
        if td[seed][column] is not None and other[seed][column] is not None:
            per_seed.append(td[seed][column] - other[seed][column])
    if len(per_seed) < 2:
        return ""
    mean, se = mean_se(per_seed)
    within = "within" if abs(mean) <= 2 * se else "beyond"
    return f", ± {se:.2f} over seeds: {within} 2 SE"


def _versus_teacher(runs: Runs) -> str:
    wins = []
    for method in ("Teacher", "Scratch"):
        pairs = [(runs.mean("TD", g), runs.mean(method, g)) for g in runs.genres]
        pairs = [(td, other) for td, other in pairs if td is not None and other is not None]
        wins.append(
            f"{sum(td < other for td, other in pairs)} of {len(pairs)} genres than "
            f"{'the frozen teacher' if method == 'Teacher' else 'Scratch'}"
        )
    return f"- TD has a lower mean test RMSE on {wins[0]}, and on {wins[1]}."


def _ablation_summary(runs: Runs) -> list[str]:
    lines = []
    rounds = {
        k: runs.columns(runs.rounds_method(k))["Avg"]
        for k in ROUNDS
        if runs.ran(runs.rounds_method(k))
    }
    if rounds:
        best = max(rounds, key=lambda k: rounds[k][0])
        shown = ", ".join(f"k={k}: {_signed(v[0])}%" for k, v in rounds.items())
        lines.append(f"- Rounds (Avg improvement over Scratch): {shown}; the best is k={best}.")
    for method, what in (
        ("TD no MC", "Dropping L_MC"),
        ("TD no SC", "Dropping L_SC"),
        ("TD noise", "Adding noise"),
    ):
        if not runs.ran(method) or not runs.ran("TD"):
            lines.append(f"- {what}: not run.")
            continue
        variant, td = runs.columns(method)["Avg"][0], runs.columns("TD")["Avg"][0]
        verb = _verdict(variant, td, "helps", "does not help", "makes no difference")
        lines.append(
            f"- {what} {verb} on average: {_signed(variant)}% vs TD's "
            f"{_signed(td)}% (Avg improvement over Scratch)."
        )
    return lines


def _tuning_cost(results: dict[str, Any]) -> list[str]:
    rows = results.get("tuning_rows", [])
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    wall = next((s for phase, s in results.get("timings", {}).items() if "tuning" in phase), None)
    wall_text = f", {duration(wall)} of wall time" if wall is not None else ""
    if rows and all(r.get("reused") for r in rows):
        wall_text = ", run by an earlier invocation of the benchmark"
    return [
        f"Tuning cost: {len(rows)} runs (seed 0, every grid point on every genre), "
        f"{duration(seconds)} of run time summed over workers{wall_text}. Settings were chosen "
        "by validation RMSE only; the test RMSE these runs also compute is not read.",
        "",
    ]


def _where_time_goes(results: dict[str, Any]) -> list[str]:
    """Run time (summed over workers) and milliseconds per optimizer step, by method."""
    totals: dict[str, list[float]] = {}
    runs = _unique_runs(results)
    for row in runs:
        entry = totals.setdefault(row["method"], [0.0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += row.get("seconds", 0.0)
        entry[2] += row.get("steps", 0)
    if not totals:
        return []
    all_seconds = sum(v[1] for v in totals.values()) or 1.0
    rows = [
        [method, f"{int(n)}", duration(seconds), f"{100 * seconds / all_seconds:.0f}%",
         f"{1000 * seconds / steps:.1f}" if steps else "n/a"]
        for method, (n, seconds, steps) in sorted(totals.items(), key=lambda kv: -kv[1][1])
    ]  # fmt: skip
    return [
        "## Where the time goes",
        "",
        f"Every student run (tuning, main table and ablations) by method; run time is summed over "
        f"the {results.get('workers', '?')} worker processes of {results.get('threads', '?')} "
        "thread(s) each, and ms / step includes data, evaluation and early-stopping bookkeeping.",
        "",
        *table(["Method", "Runs", "Run time", "Share", "ms / step"], rows),
        "",
        *_busy(results, runs, all_seconds),
    ]


def _busy(results: dict[str, Any], runs: list[dict[str, Any]], seconds: float) -> list[str]:
    """How much of the wall time the workers spent training (when every run ran now): near
    100% means the benchmark is bound by its runs' own compute, not by idle workers."""
    wall, workers = results.get("timings", {}).get("total"), results.get("workers")
    if not wall or not workers or any(row.get("reused") for row in runs):
        return []
    busy = seconds / (workers * wall)
    return [
        f"The runs add up to {duration(seconds)}: on {workers} workers, **{100 * busy:.0f}%** "
        f"of the benchmark's {duration(wall)} of wall time (the rest: teacher pre-training, "
        "data loading, and workers waiting at the end of a grid): the benchmark is "
        f"{'bound by its runs' if busy >= 0.9 else 'partly idle'}, which take at least "
        f"{duration(seconds / workers)} on {workers} workers whatever the scheduling.",
        "",
    ]


# -- new users, and the marks ------------------------------------------------------------------


def _paired(runs: Runs, method: str, reference: str, genre: str) -> list[float]:
    """``method``'s test RMSE minus ``reference``'s on ``genre``, seed by seed."""
    ours, theirs = runs.seeds(method, genre), runs.seeds(reference, genre)
    return [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]


def _beats(runs: Runs, method: str, reference: str, genre: str) -> bool:
    """Lower test RMSE than ``reference`` paired by seed, by more than 2 standard errors."""
    diffs = _paired(runs, method, reference, genre)
    if len(diffs) < 2:
        return False
    mean, se = mean_se(diffs)
    return mean < -2 * se


def _before_after(runs: Runs) -> list[str]:
    if not runs.ran("Scratch before"):
        return []
    rows = [
        (_genre_label(runs, g),
         _rmse_cell(list(runs.seeds("Scratch before", g).values())),
         _rmse_cell(list(runs.seeds("Scratch", g).values())),
         _rmse_cell(list(runs.seeds("Teacher", g).values())))
        for g in runs.genres
    ]  # fmt: skip
    return [
        "## New users: the student before and after",
        "",
        "*Before*: the student as every earlier version of this page trained it: `nn.Embedding`'s "
        "N(0, 1) rows (an unseen user reads a large random row), no OOV row, no dropout, one "
        "evaluation per epoch, patience 2, at most 8 epochs. *After*: the recipe above. Test "
        "RMSE, mean ± standard error over seeds:",
        "",
        *table(("Genre", "Scratch before", "Scratch after", "Frozen teacher after"), rows),
        "",
    ]


def _marks(runs: Runs, results: dict[str, Any]) -> list[str]:
    """Each target the benchmark is held to, with its measured value."""
    genres, lines = runs.genres, ["## The marks", ""]
    first = next((g for g in genres if runs.rank[g] == 1), None)
    if first is not None and runs.ran("Scratch"):
        value = runs.mean("Scratch", first)
        lines.append(f"- Scratch on Genre 1 ({first}): test RMSE **{value:.4f}** (mark ≤ 1.01; "
                     f"the paper's 1.0102): {'met' if value <= 1.01 else 'missed'}.")  # fmt: skip
    spread = {g: _se(list(runs.seeds("Scratch", g).values())) for g in genres}
    spread = {g: se for g, se in spread.items() if se is not None}
    if spread:
        worst = max(spread, key=spread.__getitem__)
        lines.append(f"- Scratch's standard error over seeds: at most **{spread[worst]:.4f}** "
                     f"({worst}; mark ≤ 0.004 on every genre): "
                     f"{'met' if spread[worst] <= 0.004 else 'missed'}.")  # fmt: skip
    teacher = [g for g in genres if (runs.mean("Teacher", g) or 9) < (runs.mean("Scratch", g) or 0)]
    sparse = [g for g in genres if runs.rank[g] in COLUMNS["Sparse"]]
    lines.append(f"- The frozen teacher has a lower mean test RMSE than Scratch on **{len(teacher)} "
                 f"of {len(genres)}** genres ({', '.join(teacher) or 'none'}; the paper: 4 of 8); "
                 f"of the sparse genres: {sum(g in teacher for g in sparse)} of {len(sparse)}.")  # fmt: skip
    if runs.ran("TD"):
        wins = [g for g in genres if _beats(runs, "TD", "Scratch", g)]
        lines.append(f"- TD beats Scratch, paired by seed, by more than 2 SE on **{len(wins)} of "
                     f"{len(genres)}** genres ({', '.join(wins) or 'none'}; mark: ≥ 6 of 8).")  # fmt: skip
        avg = {m: runs.columns(m)["Avg"] for m in DISTILLED if runs.ran(m)}
        avg = {m: v[0] for m, v in avg.items() if v}
        if "TD" in avg and len(avg) > 1:
            best = max((m for m in avg if m != "TD"), key=avg.__getitem__)
            lines.append(f"- On Avg, TD {_signed(avg['TD'])}% against the best one-way baseline, "
                         f"{best}, {_signed(avg[best])}% (mark: TD above it): "
                         f"{'met' if avg['TD'] > avg[best] else 'missed'}.")  # fmt: skip
        columns = runs.columns("TD")
        dense, sparse_gain = columns["Dense"], columns["Sparse"]
        if dense and sparse_gain:
            lines.append(f"- TD's Dense {_signed(dense[0])}% and Sparse {_signed(sparse_gain[0])}% "
                         "against the paper's +1.34% and +3.39%.")  # fmt: skip
        over = [g for g in genres if (runs.mean("TD", g) or 9) < (runs.mean("Teacher", g) or 0)]
        lines.append(f"- The student that talks has a lower mean test RMSE than its own frozen "
                     f"teacher (16× its compute) on **{len(over)} of {len(genres)}** genres "
                     f"({', '.join(over) or 'none'}; the paper's TD: 5 of 8).")  # fmt: skip
    total = results.get("timings", {}).get("total")
    if total is not None:
        reused = any(r.get("reused") for r in _unique_runs(results))
        note = " (this invocation; runs read back from the run log not counted)" if reused else ""
        # a run log's reused runs cost nothing here: the mark is about the whole benchmark
        verdict = "not judged" if reused else "met" if total <= 3600 else "missed"
        lines.append(f"- Wall time of the whole benchmark, tuning included: **{duration(total)}** "
                     f"on {results.get('workers', '?')} workers × {results.get('threads', '?')} "
                     f"thread(s){note} (mark ≤ 60 min): {verdict}.")  # fmt: skip
    return [*lines, ""]


# -- what this shows --------------------------------------------------------------------------


def _what_this_shows(runs: Runs, results: dict[str, Any]) -> list[str]:
    """The page's reading in words: the teacher against Scratch, where it could help, our
    Scratch against the paper's, and what that means for the paper's Table 1."""
    if not (runs.ran("Scratch") and runs.ran("Teacher")):
        return []
    return [
        "## What this shows",
        "",
        *_teacher_against_scratch(runs),
        *_where_the_teacher_could_help(runs, results.get("seen")),
        *_scratch_against_the_paper(runs),
        *_reading_table1(runs),
    ]


def _compare(runs: Runs, method: str, reference: str, genre: str) -> str | None:
    """``"lower"`` or ``"higher"`` test RMSE than ``reference``'s, paired by seed, by more
    than 2 SE; ``"level"`` within 2 SE; ``None`` with fewer than two paired seeds."""
    diffs = _paired(runs, method, reference, genre)
    if len(diffs) < 2:
        return None
    mean, se = mean_se(diffs)
    return "level" if abs(mean) <= 2 * se else "lower" if mean < 0 else "higher"


def _span(values: Sequence[float], fmt: str = "+.2f") -> str:
    """``+0.51% to +0.95%``: the smallest and largest, one alone when both print the same."""
    low, high = (f"{round(v, 2) + 0.0:{fmt}}%" for v in (min(values), max(values)))
    return low if low == high else f"{low} to {high}"


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "n/a"


def _teacher_against_scratch(runs: Runs) -> list[str]:
    n = len(runs.genres)
    gap = {g: -runs.improvement("Teacher", g) for g in runs.genres if runs.mean("Scratch", g)}
    verdicts = {g: _compare(runs, "Teacher", "Scratch", g) for g in gap}
    clauses, explained = [], False
    for verdict, words in (("level", "level with Scratch's (within 2 SE) on"),
                           ("higher", "higher by more than 2 SE on"),
                           ("lower", "lower by more than 2 SE on")):  # fmt: skip
        group = [g for g in gap if verdicts[g] == verdict]
        span = _span([gap[g] for g in group]) if group else ""
        if group and not explained:  # say once what the percentages are
            span, explained = f"its mean {span} from Scratch's", True
        where = f" ({', '.join(group)}: {span})" if group else ""
        clauses.append(f"{words} **{len(group)} of {n}**{' genres' * (not clauses)}{where}")
    unjudged = [g for g in gap if verdicts[g] is None]
    close = sum(abs(v) <= 0.1 for v in gap.values())
    text = (
        f"**What the teacher knows.** Paired by seed, the frozen teacher's test RMSE is "
        f"{clauses[0]}, {clauses[1]} and {clauses[2]}; its mean is within 0.1% of Scratch's on "
        f"{close} of {n}."
        + (f" With one seed, {_and(unjudged)} are not judged." if unjudged else "")
    )
    avg = _avg_improvements(runs)
    if avg:
        top = max(avg, key=avg.__getitem__)
        td = f" (TD {_signed(avg['TD'])}%)" if "TD" in avg and top != "TD" else ""
        lead = ("A tutor no better than the student trained alone leaves any method little to "
                "transfer: the" if _no_better(runs) else "The")  # fmt: skip
        text += (
            f" {lead} best Avg improvement over Scratch here is {top}'s {_signed(avg[top])}%{td}."
        )
    return [text, ""]


def _no_better(runs: Runs) -> bool:
    """Whether the frozen teacher beats Scratch, paired by seed by more than 2 SE, on no genre
    (and some genre was judged)."""
    verdicts = [_compare(runs, "Teacher", "Scratch", g) for g in runs.genres]
    return "lower" not in verdicts and any(verdicts)


def _and(items: Sequence[str]) -> str:
    """``a, b and c``."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _avg_improvements(runs: Runs) -> dict[str, float]:
    """Table 1's Avg of every distillation method that ran."""
    avg = {m: runs.columns(m)["Avg"] for m in DISTILLED if runs.ran(m)}
    return {m: v[0] for m, v in avg.items() if v}


def _where_the_teacher_could_help(runs: Runs, seen: dict[str, dict[str, int]] | None) -> list[str]:
    """Which test ratings come from users or movies the teacher (or the student) saw in
    training, from the counts the benchmark records (``seen``, see
    :func:`benchmarks.movielens.task.seen_in_training`)."""
    counts = {g: seen[g] for g in runs.genres if g in (seen or {}) and seen[g]["test"]}
    if not counts:
        return ["**Where the teacher could help**: these results do not record which test "
                "ratings come from users or movies the teacher saw (`seen`).", ""]  # fmt: skip
    share = {key: [100 * c[key] / c["test"] for c in counts.values()]
             for key in ("user_teacher", "movie_teacher", "teacher_only")}  # fmt: skip
    depth = [c["user_ratings_teacher"] / c["user_ratings_student"]
             for c in counts.values() if c["user_ratings_student"]]  # fmt: skip
    same_movies = all(c["movie_teacher"] == c["movie_student"] for c in counts.values())
    text = (
        f"**Where the teacher could help.** The frozen teacher saw in training the user of "
        f"{_span(share['user_teacher'], '.1f')} of a genre's test ratings, and the movie of "
        f"{_span(share['movie_teacher'], '.1f')}; every other user has no rating in the training "
        "period, and both models read their out-of-vocabulary row for it. The student saw nearly "
        f"as much: only {_span(share['teacher_only'], '.1f')} of the test ratings come from a "
        "user or movie the teacher saw and the student did not"
        + (", and none from a movie." if same_movies else ".")
    )
    if depth:
        text += (
            " What the teacher has beyond the student is depth: for the users it saw, it trained "
            f"on {min(depth):.1f} to {max(depth):.1f} times as many of their ratings (every genre "
            f"against one). Those {_span(share['user_teacher'], '.1f')} of test ratings are where "
            "it could tell its student something new."
        )
    rows = [_seen_row(runs, g, c) for g, c in counts.items()]
    return [text, "", *table(_SEEN_HEADER, rows), "", _SEEN_NOTE, ""]


_SEEN_HEADER = ("Genre", "Test ratings", "User seen: teacher / student",
                "Movie seen: teacher / student", "Seen by the teacher only",
                "Training ratings of a seen user: teacher / student")  # fmt: skip
_SEEN_NOTE = (
    "Shares of each genre's test ratings whose user (movie) is in the teacher's training ratings "
    "(every genre's) or the student's (its genre's); the last column is the mean, over the test "
    "ratings whose user the teacher saw, of that user's training ratings in each one's data."
)


def _seen_row(runs: Runs, genre: str, c: dict[str, int]) -> tuple[str, ...]:
    known = c["user_teacher"]
    per_user = (
        f"{c['user_ratings_teacher'] / known:.0f} / {c['user_ratings_student'] / known:.0f}"
        if known else "n/a"
    )  # fmt: skip
    return (
        _genre_label(runs, genre),
        str(c["test"]),
        f"{_share(c['user_teacher'], c['test'])} / {_share(c['user_student'], c['test'])}",
        f"{_share(c['movie_teacher'], c['test'])} / {_share(c['movie_student'], c['test'])}",
        _share(c["teacher_only"], c["test"]),
        per_user,
    )


def _ours(runs: Runs, method: str) -> dict[str, float]:
    """Our mean test RMSE of ``method`` by genre, for the genres it ran."""
    means = {g: runs.mean(method, g) for g in runs.genres}
    return {g: v for g, v in means.items() if v is not None}


def _papers(runs: Runs, method: str) -> dict[str, float]:
    """The paper's Table 3 mean of ``method`` on each of our genres of rank 8 or less."""
    rows = PAPER["table3"][method]
    return {g: rows[runs.rank[g] - 1][0] for g in runs.genres if runs.rank[g] <= len(rows)}


def _lower(runs: Runs, ours: dict[str, float], theirs: dict[str, float]) -> list[str]:
    """The genres where ``ours`` is below ``theirs``."""
    return [g for g in runs.genres if g in ours and g in theirs and ours[g] < theirs[g]]


def _against(runs: Runs, reference: dict[str, float], rmse: dict[str, float]) -> str:
    """Table 1's columns of ``rmse`` over ``reference`` (mean test RMSEs by genre), as text:
    ``Dense +0.42%, Sparse -3.52%, Avg -2.73%``."""
    by_rank = {runs.rank[g]: relative_improvement(reference[g], rmse[g])
               for g in runs.genres if g in reference and g in rmse}  # fmt: skip
    columns = aggregate(by_rank)
    return ", ".join(f"{c} {_signed(v)}%" for c, v in columns.items() if v is not None)


def _scratch_against_the_paper(runs: Runs) -> list[str]:
    scratch, paper = _ours(runs, "Scratch"), _papers(runs, "Scratch")
    n = len(paper)
    if not n:
        return []
    below = {m: _lower(runs, scratch, _papers(runs, m)) for m in ("Scratch", *DISTILLED)}
    others = [m for m in DISTILLED if m != "TD"]
    text = (
        "**Our Scratch against the paper's.** Genre by genre (matched by rank), our Scratch has "
        f"a lower mean test RMSE than the paper's Scratch on **{len(below['Scratch'])} of {n}** "
        f"genres ({', '.join(below['Scratch']) or 'none'}) and than the paper's TD on "
        f"**{len(below['TD'])} of {n}** ({', '.join(below['TD']) or 'none'}); than the paper's "
        f"{_and(others)} on {_and([str(len(below[m])) for m in others])} of {n}. "
        "Measured as Table 1 measures, over the paper's own Scratch, our Scratch would read "
        f"{_against(runs, paper, scratch)}; the paper's TD reads "
        f"{_against(runs, paper, _papers(runs, 'TD'))} (its Table 3; its Table 1 gives Dense "
        f"{_signed(PAPER['table1']['TD'][0])}% and Sparse {_signed(PAPER['table1']['TD'][1])}%)."
    )
    before = _ours(runs, "Scratch before")
    if before:
        worse = [g for g in paper if g in before and before[g] > paper[g]]
        top = max([abs(v) for v in _avg_improvements(runs).values()], default=0.0)
        text += (
            " Our earlier recipe (*Scratch before*, under *New users* below) has a higher test "
            f"RMSE than the paper's Scratch on {len(worse)} of {n}; the recipe alone moves our "
            f"Scratch by {_against(runs, before, scratch)}, where no method moves it by more than "
            f"{top:.2f}% on Avg."
        )
    return [text, ""]


def _reading_table1(runs: Runs) -> list[str]:
    scratch = _ours(runs, "Scratch")
    paper_scratch, paper_td = _papers(runs, "Scratch"), _papers(runs, "TD")
    n = len(set(scratch) & set(paper_td))
    if not n:
        return []
    weaker = len(_lower(runs, scratch, paper_scratch)) > n / 2
    changed = "; *New users* shows what it changed" if runs.ran("Scratch before") else ""
    text = "**Reading the paper's Table 1.** Its gains are over the paper's Scratch, " + (
        f"a weaker student than one trained with care (the recipe of the protocol below{changed})."
        if weaker else "which ours does not beat on most genres."
    )  # fmt: skip
    measured = _against(runs, scratch, paper_td)
    text += f" Measured against our Scratch, the paper's TD would read {measured}."
    avg = _avg_improvements(runs)
    if avg:
        low, high = min(avg, key=avg.__getitem__), max(avg, key=avg.__getitem__)
        text += (
            " With Scratch trained as here, every method's Avg improvement over it lies between "
            f"{_signed(avg[low])}% ({low}) and {_signed(avg[high])}% ({high})"
            + (", as a teacher no better than Scratch allows." if _no_better(runs) else ".")
        )
    if weaker:
        text += (
            " Table 1 shows what distillation adds to a weak student; it says little of what it "
            "adds to a well-trained one."
        )
    text += (
        " The paper describes its time split in one sentence and leaves its genres unnamed, so a "
        "single genre compares loosely; counts over all of them less so."
    )
    return [text, ""]


# -- CSV and figure --------------------------------------------------------------------------


def _write_csv(results: dict[str, Any], path: Path) -> None:
    rows = results["rows"]
    fields = [*dict.fromkeys(k for row in rows for k in row), "kind"]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "kind": "main" if row["method"] in MAIN else "ablation"})


def _write_figure(runs: Runs, path: Path) -> bool:
    """Bars of ``I`` per genre and method, and ``I`` against rounds; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (bars, rounds) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(3, 1))
    _plot_bars(bars, runs)
    _plot_rounds(rounds, runs)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plot_bars(ax: Any, runs: Runs) -> None:
    methods = [m for m in DISTILLED if runs.ran(m)]
    width = 0.8 / max(len(methods), 1)
    seeded = False  # whether any bar has a standard error (two seeds or more)
    for i, method in enumerate(methods):
        values, errors = [], []
        for genre in runs.genres:
            values.append(runs.improvement(method, genre) or 0.0)
            errors.append(_se(list(runs.seed_improvements(method, genre).values())))
        seeded = seeded or any(e is not None for e in errors)
        yerr = [e or 0.0 for e in errors] if seeded else None
        xs = [g + (i - (len(methods) - 1) / 2) * width for g in range(len(runs.genres))]
        ax.bar(xs, values, width, yerr=yerr, capsize=2, label=method)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(runs.genres)))
    ax.set_xticklabels([f"G{runs.rank[g]}\n{g}" for g in runs.genres], fontsize=8)
    ax.set_ylabel("improvement over Scratch (%)")
    spread = "± SE over seeds" if seeded else "one seed: no error bars"
    ax.set_title(f"Test RMSE improvement over Scratch per genre ({spread})")
    ax.legend(fontsize=8, ncol=max(len(methods), 1))


def _plot_rounds(ax: Any, runs: Runs) -> None:
    for column in COLUMNS:
        points = [
            (k, runs.columns(runs.rounds_method(k))[column])
            for k in ROUNDS
            if runs.ran(runs.rounds_method(k))
        ]
        points = [(k, v) for k, v in points if v is not None]
        if points:
            ks, values = zip(*points)
            errors = [v[1] or 0.0 for v in values]
            ax.errorbar(
                ks, [v[0] for v in values], yerr=errors, marker="o", capsize=2, label=column
            )
    ax.axhline(0, color="black", linewidth=0.8)
    if runs.tuned_rounds is not None:
        ax.axvline(runs.tuned_rounds, color="grey", linestyle=":", label="tuned k")
    ax.set_xticks(ROUNDS)
    ax.set_xlabel("rounds k")
    ax.set_ylabel("improvement over Scratch (%)")
    ax.set_title("TD rounds (Table 5)")
    ax.legend(fontsize=8)


# -- entry point -----------------------------------------------------------------------------


def movielens_page(results: dict[str, Any], figure: bool = True, stem: str = "movielens") -> str:
    """The Markdown of ``<stem>.md``; ``figure`` says whether ``<stem>.png`` exists."""
    runs = Runs.from_results(results)
    lines = [*_header(results), *_marks(runs, results), *_what_this_shows(runs, results)]
    lines += [*_protocol(results), *_settings(results)]
    if figure:
        lines += [f"![Relative improvement over Scratch]({stem}.png)", ""]
    lines += [*_before_after(runs), *_table1(runs), *_table3(runs), *_table5(runs), *_table7(runs)]
    lines += [*_table8(runs, results), *_summary(runs, results), *_where_time_goes(results)]
    lines.append(
        f"Every run, ablations included, is in `{stem}.csv`; the raw results in `{stem}.json`."
    )
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path, stem: str = "movielens") -> None:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.png`` into ``out``.

    ``results`` is what :func:`benchmarks.movielens.task.run` returned (``<stem>.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = _write_figure(Runs.from_results(results), out / f"{stem}.png")
    (out / f"{stem}.md").write_text(movielens_page(results, figure, stem))
    _write_csv(results, out / f"{stem}.csv")
