"""The SST-2 transfer-set page, every number computed from the results of
:func:`benchmarks.text_transfer.task.run`."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import duration, grid, header, mean_se, table
from benchmarks.text.task import STUDENT_LAYERS, TEACHER_LOWER
from benchmarks.text_transfer.task import ARMS, FIGURE, PULL_BATCHES


def write(results: dict[str, Any], out: Path, stem: str = "text-transfer") -> None:
    """Write ``<stem>.md`` and its figure ``<stem>.png`` into ``out``."""
    out = Path(out)
    figure = _figure(results, out / f"{stem}.png")
    (out / f"{stem}.md").write_text(transfer_page(results, f"{stem}.png" if figure else None))


def _arms(r: dict[str, Any]) -> dict[str, list[dict]]:
    """The rows of each arm on the whole transfer set (or its labels), by arm."""
    full = r["teacher"]["sizes"]["transfer"]
    arms: dict[str, list[dict]] = {}
    for row in r["rows"]:
        if row["transfer"] == full:
            arms.setdefault(row["method"], []).append(row)
    return arms


def _layers(r: dict[str, Any]) -> int:
    """The student's number of layers (results from before ``--student-layers``: the default)."""
    return r["budget"].get("student_layers", STUDENT_LAYERS)


def _points(values: list[float]) -> str:
    mean, se = mean_se([100 * v for v in values])
    return f"{mean:.2f}" if se is None else f"{mean:.2f} ± {se:.2f}"


def _paired(rows: list[dict], base: list[dict]) -> list[float]:
    by_seed = {row["seed"]: row["test_accuracy"] for row in base}
    return [100 * (x["test_accuracy"] - by_seed[x["seed"]]) for x in rows if x["seed"] in by_seed]


def _difference(rows: list[dict], base: list[dict]) -> str:
    diffs = _paired(rows, base)
    if not diffs or rows is base:
        return "-"
    mean, se = mean_se(diffs)
    if se is None:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} ± {se:.2f}" + (" (2 SE)" if abs(mean) > 2 * se else "")


def _mean(rows: list[dict]) -> float:
    return 100 * sum(row["test_accuracy"] for row in rows) / len(rows)


def recovered(rows: list[dict], scratch: list[dict], teacher: float) -> float:
    """The fraction of the teacher's lead a method recovers, from the means over seeds:
    ``(method - Scratch) / (teacher - Scratch)``."""
    alone = _mean(scratch)
    lead = teacher - alone
    return (_mean(rows) - alone) / lead if lead > 0 else float("nan")


def _share(fraction: float) -> str:
    return "-" if fraction != fraction else f"{100 * fraction:.0f} %"  # NaN: no lead


def transfer_page(results: dict[str, Any], figure: str | None = None) -> str:
    """The results page, computed from ``results`` (what :func:`run` returns)."""
    r, budget, teacher = results, results["budget"], results["teacher"]
    sizes, info = teacher["sizes"], teacher["info"]
    arms = _arms(r)
    scratch, selfish = arms.get("Scratch", []), arms.get("Self-training", [])
    teacher_dev = 100 * teacher["accuracy"]["test"]
    lines = [
        *header(
            "SST-2 with a transfer set: the student hears its teacher on unlabelled sentences", r
        ),
        "## Protocol",
        "",
        f"The fine-tuned track of the [SST-2 page](text.md): all-MiniLM-L6-v2 with a "
        f"classifier, every layer fine-tuned on {teacher_budget_text(info)}, then frozen "
        f"(split after layer {TEACHER_LOWER}); the student is the same architecture with "
        f"{_layers(r)} layers, initialised from the "
        f"pre-trained model's embeddings and "
        f"first layers (not the fine-tuned teacher's: `minilm_student(teacher=...)` would "
        f"start it from those). "
        f"The student has **{sizes['train']} labelled sentences** and {sizes['valid']} "
        f"validation sentences; GLUE's dev set ({sizes['test']} sentences) is the test set. "
        f"The **transfer set** is {sizes['transfer']} further sentences of SST-2's train.tsv, "
        f"none of them among the student's labelled or validation sentences or the teacher's "
        f"own training sentences; their labels are read only by the *all labels* arm.",
        "",
        f"Every run takes **{budget['steps']} steps**: {budget['epochs']} pass(es) over the "
        f"transfer set, each step a labelled batch of {budget['batch_size']} and a transfer "
        f"batch of {budget['transfer_batch_size']} (`fit(..., transfer=...)`; the task loss on "
        f"the labelled sentences only, each distillation term its mean over both). Arms that "
        f"train on labels alone (Scratch on its {sizes['train']}; self-training and all labels "
        f"on the labelled and transfer sentences together) take as many steps, "
        f"self-training and all labels with {budget['batch_size'] + budget['transfer_batch_size']}"
        f" sentences a step. Each run is scored {budget['evals'] * budget['epochs']} times on "
        f"validation, evenly "
        f"spaced, and keeps its best (AdamW, batches grouped by length).",
        "",
        "- **Scratch**: the student on its labels alone.",
        "- **Self-training**: the teacher's hard labels (its argmax) on the transfer set, used "
        "as labels beside the real ones: the control every distillation method must beat.",
        "- **LD, FD, FitNet, Hybrid, TD**: one edge student → teacher with that protocol; TD's "
        "rounds k tuned over " + grid(r["grid"]["rounds"]) + ".",
        '- **TD + LD**: one edge with both protocols (`("talk", "logit")`), LD\'s weight '
        "kept at its own choice.",
        "- **All labels**: the transfer set's real labels: the ceiling a perfect teacher would "
        "approach.",
        "",
        f"Tuning, on validation with seed 0 before any dev number is read: the learning rate "
        f"of Scratch and of self-training (all labels takes self-training's) from "
        f"{grid(r['grid']['lr'])}; LD's weight, then its learning rate (every other "
        f"distillation arm takes it), then its temperature T (the KL's softening, "
        f"{grid(r['grid'].get('temperature', [1]))}; TD + LD keeps it); each arm's weight on its own grid (below), TD's at k = 1 "
        f"and then its k. A choice on the edge of its grid adds the value beyond it (times or "
        f"over 3), up to {r['grid']['max_widen']} times. Dev accuracy is the mean ± standard "
        f"error (ddof=1) over {len(r['seeds'])} seed(s) {r['seeds']}; differences are paired "
        f"by seed. One dev sentence is {100 / sizes['test']:.2f} points.",
        "",
        "## The teacher and its store",
        "",
    ]
    stores = teacher["stores"]
    body = [
        [name, f"{store['examples']}", f"{store['bytes'] / 2**20:.1f} MiB",
         f"{store['bytes'] / store['examples']:,.0f}", f"{store['bytes'] / store['tokens']:,.0f}",
         f"{store['fill_seconds']:.1f} s" + ("" if store["filled_now"] else " (an earlier run)")]
        for name, store in stores.items()
    ]  # fmt: skip
    lines += [
        f"Fine-tuned teacher: validation {100 * teacher['accuracy']['valid']:.2f} %, dev "
        f"{teacher_dev:.2f} %; its hard labels agree with SST-2's on "
        f"{100 * teacher['accuracy']['transfer_agreement']:.1f} % of the transfer set. Its "
        "round-0 outputs (`y` and the per-token `s`, `e` of 384 dimensions, packed without "
        "padding, fp32) are read from the teacher store, filled once before any run:",
        "",
        *table(
            ["Data", "Sentences", "Size", "Bytes / sentence", "Bytes / token", "Fill time"], body
        ),
        "",
        _teacher_runs(r),
        "",
        *_results(r, arms, scratch, selfish, teacher_dev),
        *_figure_section(r, figure),
        *_other_budgets(r),
        *_marks(r, arms, scratch, selfish, teacher_dev),
        *_what_this_shows(
            arms,
            scratch,
            selfish,
            teacher_dev,
            _figure_rows(r),
            teacher["mean_tokens"],
            _student_sizes(r),
        ),
        *_pull(r),
        *_tuning(r),
        *_timing(r),
    ]
    return "\n".join(lines) + "\n"


def _teacher_runs(r: dict[str, Any]) -> str:
    """Which teacher this page's runs record (the digest of its weights, which a rebuilt
    teacher of the same file name does not share), in a sentence."""
    digest = r["teacher"].get("digest")
    if digest is None:
        return "Its digest was not recorded."
    runs = _distinct_runs(r)
    recorded = Counter(row.get("teacher") for row in runs)
    parts = [f"{recorded.pop(digest, 0)} of the page's {len(runs)} runs recorded it"]
    if None in recorded:
        parts.append(f"{recorded.pop(None)} ran before runs recorded their teacher")
    if recorded:
        parts.append(f"**{sum(recorded.values())} recorded another teacher** "
                     f"({', '.join(f'`{d}`' for d in sorted(recorded))}): their numbers are "
                     "not this teacher's")  # fmt: skip
    return (
        f"The teacher's weights have the digest `{digest}` (`agora.store.agent_digest`); "
        + "; ".join(parts)
        + "."
    )


def teacher_budget_text(info: dict[str, Any]) -> str:
    return (f"the first {info['train_sentences']} training sentences ({info['epochs']} epochs, "
            f"lr {info['lr']:g}, batch {info['batch_size']})")  # fmt: skip


def _results(r, arms, scratch, selfish, teacher_dev) -> list[str]:
    lines = ["## Results (dev accuracy, %)", ""]
    body = []
    epoch = r["budget"]["steps"] / r["budget"]["epochs"]  # steps a pass over the transfer set
    for name in ARMS:
        rows = arms.get(name, [])
        if not rows:
            continue
        per_step = sorted(row["seconds"] / row["steps"] for row in rows)[len(rows) // 2]
        best = sorted(row["best_step"] for row in rows)[len(rows) // 2]
        body.append([
            name, r["chosen"].get(name, "-"), _points([x["test_accuracy"] for x in rows]),
            _points([x["valid_accuracy"] for x in rows]),
            "-" if name == "Scratch" else _difference(rows, scratch),
            "-" if name == "Self-training" else _difference(rows, selfish),
            _share(recovered(rows, scratch, teacher_dev)) if scratch else "-",
            f"{best} of {rows[0]['steps']}", f"{epoch * per_step:.0f}",
        ])  # fmt: skip
    lines += table(
        ["Arm", "Setting", "Dev (test)", "Validation", "− Scratch, paired",
         "− Self-training, paired", "Lead recovered", "Best step", "s / epoch"],
        body,
    )  # fmt: skip
    missing = [name for name in ARMS if name not in arms]
    seeds = {name: len(rows) for name, rows in arms.items()}
    lines += [
        "",
        *(
            [
                (f"**Not run yet: {', '.join(missing)}.** " if missing else "**Not finished.** ")
                + "Seeds run so far: "
                + ", ".join(f"{name} {n}" for name, n in seeds.items())
                + f" of {len(r['seeds'])}. The same command (without `--finished`) resumes from the "
                "run log and runs the rest.",
                "",
            ]
            if missing or any(n < len(r["seeds"]) for n in seeds.values())
            else []
        ),
        f'"Lead recovered" is `(arm − Scratch) / (teacher − Scratch)` from the means over '
        f"seeds, with the teacher at {teacher_dev:.2f} % on dev. Best step: the median over "
        "seeds of the step whose validation score the run kept (a run that peaks at its last "
        "evaluation would have gained from more steps). "
        '"(2 SE)" marks a paired '
        "difference larger than twice its standard error. s / epoch: the median run's wall "
        f"time (its evaluations included) per pass over the transfer set ({epoch:.0f} steps), "
        f"{r['workers']} workers × {r['threads']} thread(s).",
        "",
    ]
    return lines


def _arm_name(row: dict[str, Any]) -> str:
    return {"teacher": "Self-training", "real": "All labels"}.get(row["labels"], row["method"])


def _budget_arms(other: dict[str, Any], full: int) -> dict[str, tuple[str, list[dict]]]:
    """Each arm of another budget at its setting with the best seed-0 validation score, with
    that setting's rows (every seed), on the full transfer set."""
    by_arm: dict[str, dict[str, list[dict]]] = {}
    for row in other["rows"]:
        if row["transfer"] == full:
            by_arm.setdefault(_arm_name(row), {}).setdefault(row["setting"], []).append(row)
    return {name: max(settings.items(), key=lambda item: (max(
                (x["valid_accuracy"] for x in item[1] if x["seed"] == 0), default=-1.0),
                len(item[1])))  # on a tie, the setting that ran every seed: the one chosen
            for name, settings in by_arm.items()}  # fmt: skip


def _other_budgets(r: dict[str, Any]) -> list[str]:
    """Each arm at another budget, of steps or of the student's layers (an earlier
    invocation's runs, from the run log): its setting with the best seed-0 validation score,
    over the seeds it ran, and the lead it recovers over that budget's own Scratch."""
    full, teacher_dev = r["teacher"]["sizes"]["transfer"], 100 * r["teacher"]["accuracy"]["test"]
    now, layers = _arms(r), _layers(r)
    body = []
    for other in r.get("other_budgets", []):
        steps = other["budget"]["steps"]
        best = _budget_arms(other, full)
        scratch = best.get("Scratch", ("", []))[1]
        for name in [n for n in ARMS if n in best]:
            setting, rows = best[name]
            here = now.get(name)
            body.append([
                name, f"{other['budget']['student_layers']}", f"{steps}", setting,
                _points([x["test_accuracy"] for x in rows]), f"{len(rows)}",
                _share(recovered(rows, scratch, teacher_dev)) if scratch else "-",
                f"{sorted(x['best_step'] for x in rows)[len(rows) // 2]} of {steps}",
                _points([x["test_accuracy"] for x in here]) if here else "-",
            ])  # fmt: skip
    if not body:
        return []
    head = ["Arm", "Student layers", "Steps", "Setting", "Dev (test)", "Seeds",
            "Lead recovered", "Best step", "Dev on this page"]  # fmt: skip
    return [
        "## Other budgets: steps and the student's size",
        "",
        f"The same arms with another budget of steps or another number of student layers, "
        f"from an earlier invocation's runs (the run log): each arm's setting with the best "
        f"validation score on seed 0 at that budget, dev accuracy (%) over the seeds it ran, "
        f"and the lead it recovers over the Scratch of the same budget, beside this page's "
        f"{layers}-layer student at {r['budget']['steps']} steps.",
        "",
        *table(head, body),
        "",
    ]


def _figure_rows(r: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Seed 0's dev accuracy of LD and TD by transfer size, and Scratch's (which reads none)."""
    curves: dict[str, dict[int, float]] = {}
    for row in r["rows"]:
        if row["seed"] == 0 and row["method"] in FIGURE and not row["labels"]:
            curves.setdefault(row["method"], {})[row["transfer"]] = 100 * row["test_accuracy"]
    return curves


def _figure_section(r: dict[str, Any], figure: str | None) -> list[str]:
    curves = _figure_rows(r)
    if not curves:
        return []
    sizes = sorted({n for curve in curves.values() for n in curve if n})
    scratch = next(iter(curves.get("Scratch", {}).values()), None)
    body = []
    for name in FIGURE:
        curve = curves.get(name, {})
        cells = [f"{scratch:.2f}" if name == "Scratch" and scratch is not None
                 else (f"{curve[n]:.2f}" if n in curve else "-") for n in [0, *sizes]]  # fmt: skip
        body.append([name, *cells])
    lines = [
        "## How the gain grows with unlabelled sentences",
        "",
        "Dev accuracy (%), seed 0, by the number of transfer sentences, every run the same "
        "steps (0: the labels alone). Scratch reads no transfer sentence: its value is the "
        "same at every size.",
        "",
        *table(["Arm", *(f"{n:,}" for n in [0, *sizes])], body),
        "",
    ]
    if figure:
        lines += [f"![Dev accuracy against transfer sentences]({figure})", ""]
    return lines


def _figure(r: dict[str, Any], path: Path) -> bool:
    curves = _figure_rows(r)
    if not curves:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name in FIGURE:
        curve = curves.get(name, {})
        if name == "Scratch" and curve:
            ax.axhline(next(iter(curve.values())), color="grey", ls="--", label="Scratch")
        elif curve:
            xs = sorted(curve)
            ax.plot(xs, [curve[x] for x in xs], marker="o", label=name)
    ax.axhline(100 * r["teacher"]["accuracy"]["test"], color="black", ls=":", label="teacher")
    ax.set_xlabel("transfer sentences")
    ax.set_ylabel("dev accuracy (%), seed 0")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: no point hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _beats(rows: list[dict], base: list[dict]) -> tuple[bool, str]:
    diffs = _paired(rows, base)
    if len(diffs) < 2:
        return False, "too few seeds"
    mean, se = mean_se(diffs)
    return mean > 2 * se, f"{mean:+.2f} ± {se:.2f}"


def _marks(r, arms, scratch, selfish, teacher_dev) -> list[str]:
    if not scratch or "LD" not in arms:
        return []
    distillers = [n for n in ("LD", "FD", "FitNet", "Hybrid", "TD", "TD + LD") if n in arms]
    best = max(distillers, key=lambda n: _mean(arms[n]))
    ld = recovered(arms["LD"], scratch, teacher_dev)
    overall = max((n for n in arms if n != "All labels"), key=lambda n: _mean(arms[n]))
    top = recovered(arms[overall], scratch, teacher_dev)
    beats, by = _beats(arms[best], selfish) if selfish else (False, "no self-training run")
    by = "not judged with fewer than 2 paired seeds" if by == "too few seeds" else f"{by} points"
    talk = [n for n in ("TD", "TD + LD") if n in arms]
    talking = max(talk, key=lambda n: _mean(arms[n])) if talk else None
    reaches = talking is not None and _mean(arms[talking]) >= _mean(arms["LD"])
    ld_se = mean_se([100 * x["test_accuracy"] for x in arms["LD"]])[1]
    scratch_se = mean_se([100 * x["test_accuracy"] for x in scratch])[1]
    total = r["timings"]["total"]
    reused = sum(1 for row in _distinct_runs(r) if row.get("reused"))
    layers = _layers(r)
    read_back = {o["budget"]["student_layers"] for o in r.get("other_budgets", [])}
    judged = (
        f"Judged for this page's {layers}-layer student; the [SST-2 page](text.md)'s has "
        f"{STUDENT_LAYERS}"
        + (", and its runs are among the other budgets above." if STUDENT_LAYERS in read_back
           else ".")
    )  # fmt: skip
    lines = [
        "## Marks",
        "",
        *([judged, ""] if layers != STUDENT_LAYERS else []),
        f"- LD with the transfer set recovers **{100 * ld:.0f} %** of the teacher's lead "
        f"(mark: at least 70 %): {'met' if ld >= 0.7 else 'missed'}. Its spread over seeds: SE "
        f"{ld_se:.2f} points, against Scratch's {scratch_se:.2f}."
        if ld_se is not None and scratch_se is not None
        else f"- LD with the transfer set recovers **{100 * ld:.0f} %** of the teacher's lead "
        f"(mark: at least 70 %): {'met' if ld >= 0.7 else 'missed'}.",
        f"- The best distillation arm, {best}, against self-training, paired: {by} "
        f"(mark: more than 2 SE): "
        f"{'met' if beats else 'not judged' if by.startswith('not judged') else 'missed'}.",
    ]
    if talking is not None:
        lines.append(
            f"- TD (alone or with LD on one edge) reaches LD's accuracy: {talking} "
            f"{_mean(arms[talking]):.2f} against LD {_mean(arms['LD']):.2f}: "
            f"{'met' if reaches else 'missed'}."
        )
    if "All labels" in arms:
        ceiling = recovered(arms["All labels"], scratch, teacher_dev)
        lines.append(
            f"- The ceiling: *all labels* (the transfer set's real labels, what a perfect "
            f"teacher would give) recovers {100 * ceiling:.0f} % of the lead at this budget; LD "
            f"recovers {100 * ld / ceiling:.0f} % of that, self-training "
            f"{100 * recovered(selfish, scratch, teacher_dev) / ceiling:.0f} %."
            if ceiling > 0 and selfish
            else f"- The ceiling: *all labels* recovers {100 * ceiling:.0f} % of the lead."
        )
    lines += [
        f"- Reach: the best arm but all labels, {overall}, recovers **{100 * top:.0f} %** "
        f"(mark: 85 %): {'met' if top >= 0.85 else 'missed'}.",
        _track_mark(r, total, reused),
        f"- An LD epoch reading the store against a Scratch epoch over as many sentences: "
        f"**{r['timing']['ratio']:.3f}** (mark: at most 1.15): "
        f"{'met' if r['timing']['ratio'] <= 1.15 else 'missed'} (below).",
        "",
    ]
    return lines


def _track_mark(r: dict[str, Any], total: float, reused: int) -> str:
    """The 60-minute mark: this invocation's wall time, or, when it read runs back, the
    runs' own times over the workers (a lower bound on a fresh run's wall time)."""
    if not reused:
        return (f"- The whole CPU track, tuning included, in {duration(total)} (mark: at most "
                f"60 min): {'met' if total <= 3600 else 'missed'}.")  # fmt: skip
    seconds = _run_seconds(r)
    least = seconds / r["workers"]
    return (
        f"- The whole CPU track, tuning included (mark: at most 60 min): "
        f"{'missed' if least > 3600 else 'not judged'}: the runs' own times add up to "
        f"{duration(seconds)}, at least {duration(least)} of wall time on "
        f"{r['workers']} workers (this invocation read {reused} runs back from the run log and "
        f"took {duration(total)})."
    )


READS_ANSWERS = ("Self-training", "LD", "Hybrid", "TD + LD")  # losses on the teacher's outputs


def _student_sizes(r: dict[str, Any]) -> list[str]:
    """A line on how the student's number of layers moves the lead each arm recovers, from
    the other budgets with this page's steps and another student (each over its own
    Scratch), or nothing when there are none."""
    teacher_dev, full = 100 * r["teacher"]["accuracy"]["test"], r["teacher"]["sizes"]["transfer"]
    layers = _layers(r)
    sizes = {layers: _arms(r)}
    for other in r.get("other_budgets", []):
        if other["budget"]["steps"] == r["budget"]["steps"]:
            best = _budget_arms(other, full)
            sizes[other["budget"]["student_layers"]] = {n: rows for n, (_, rows) in best.items()}
    shown = ("All labels", "Self-training", "LD")
    told = {n: arms for n, arms in sizes.items()
            if "Scratch" in arms and all(name in arms for name in shown)}  # fmt: skip
    if len(told) < 2:
        return []

    def said(n: int) -> str:
        arms = told[n]
        return f"with {n} layers{' (this page)' if n == layers else ''}, " + ", ".join(
            f"{name} {_share(recovered(arms[name], arms['Scratch'], teacher_dev))}"
            for name in shown
        )

    return [
        f"- The student's size bounds what any teacher signal can give it: of the teacher's "
        f"lead over a Scratch of the same size, at {r['budget']['steps']} steps, "
        + "; ".join(said(n) for n in sorted(told))
        + " (the table of other budgets)."
    ]


def _what_this_shows(arms, scratch, selfish, teacher_dev, curves, tokens, sizes=()) -> list[str]:
    """In words, from the numbers above: which arms move the student, how the gain grows
    with the transfer set, soft against hard labels, where the ceiling lies and how the
    student's size moves it (``sizes``, lines of :func:`_student_sizes`)."""
    if not scratch or "LD" not in arms:
        return []
    gains = {n: mean_se(_paired(rows, scratch)) for n, rows in arms.items()
             if n not in ("Scratch", "All labels")}  # fmt: skip
    moved = [n for n, (m, se) in gains.items() if se is not None and m > 2 * se]
    still = [n for n in gains if n not in moved]

    def listed(names: list[str]) -> str:
        return ", ".join(f"{n} ({gains[n][0]:+.2f})" for n in names)

    why = (" They are exactly the arms whose losses read the teacher's answers on the transfer "
           "set (its logits, or its hard labels); the others match only its hidden states."
           if moved and set(moved) == set(READS_ANSWERS) & set(arms) else "")  # fmt: skip
    lines = ["## What this shows", "",
             f"- Which arms move the student: {listed(moved) or 'none'} gain more than 2 SE over "
             f"Scratch, paired (points of dev accuracy); {listed(still) or 'none'} do not."
             + why]  # fmt: skip
    ld = curves.get("LD", {})
    if len(ld) > 1:
        first, last = min(ld), max(ld)
        lines.append(
            f"- The gain comes from the unlabelled sentences: LD on seed 0 reads {ld[first]:.2f} "
            f"with {first:,} transfer sentences and {ld[last]:.2f} with {last:,}, rising at "
            "every size between (the figure)."
            if all(ld[a] < ld[b] for a, b in zip(sorted(ld), sorted(ld)[1:]))
            else f"- LD on seed 0 reads {ld[first]:.2f} with {first:,} transfer sentences and "
            f"{ld[last]:.2f} with {last:,} (the figure)."
        )
    if selfish:
        mean, se = mean_se(_paired(arms["LD"], selfish))
        if se is not None:
            lines.append(
                f"- The teacher's soft labels carry no more than its hard ones here: LD against "
                f"self-training, paired, {mean:+.2f} ± {se:.2f} points."
                if abs(mean) <= 2 * se
                else f"- LD against self-training, paired: {mean:+.2f} ± {se:.2f} points."
            )
    ceiling = recovered(arms["All labels"], scratch, teacher_dev) if "All labels" in arms else 0
    if ceiling > 0:  # NaN (no lead) and no ceiling alike say nothing
        best = max((n for n in gains), key=lambda n: _mean(arms[n]))
        ceiling_text = (
            "The 70 % mark lies above what the real labels of the same sentences give this "
            "student at this budget, so a better signal alone is unlikely to reach it; more "
            "transfer sentences, sentences nearer the test set's (the transfer set's average "
            f"{tokens['transfer']:.1f} tokens, mostly phrases of SST-2's training sentences; "
            f"dev's {tokens['test']:.1f}, whole sentences) or a larger student are what is left."
        )
        lines.append(
            f"- The ceiling: trained on the real labels of the same transfer sentences, the "
            f"student reaches {_mean(arms['All labels']):.2f}, "
            f"{100 * ceiling:.0f} % of the teacher's lead, and the best arm, {best}, "
            f"{100 * recovered(arms[best], scratch, teacher_dev) / ceiling:.0f} % of that."
            + (" " + ceiling_text if ceiling < 0.7 else "")
        )
    return [*lines, *sizes, ""]


def _pull(r: dict[str, Any]) -> list[str]:
    """Where the terms of the runs that talk pull the student at their best step."""
    full = r["teacher"]["sizes"]["transfer"]  # the figure's smaller sets are left out
    runs = {(row["method"], row["setting"], row["seed"]): row["pull"]
            for row in [*r["tuning_rows"], *r["rows"]]
            if "pull" in row and row["transfer"] == full}  # fmt: skip
    if not runs:
        return []
    body = []
    for (name, setting, seed), pull in sorted(runs.items()):
        for term, cosine in pull["alignment"].items():
            if term.startswith("task["):
                continue
            body.append([f"{name} ({setting}), seed {seed}", term.split("[")[0],
                         f"{cosine:+.3f}", f"{pull['norm'][term]:.3f}"])  # fmt: skip
    return [
        "## Where the talk terms pull",
        "",
        *_pull_summary(r),
        "For each run that talks (those measured), at its best step: each loss term's gradient "
        "on the student's backbone (lower layers, upper layers, head), its cosine with the "
        "task term's gradient (1: the way the labels pull; 0: across; below 0: against) and "
        f"its norm over the task term's, means over the first {PULL_BATCHES} labelled batches, "
        "each beside a transfer batch as in training (`agora.analysis.gradients`, `transfer=`).",
        "",
        *table(["run", "term", "cosine with the task's gradient", "norm / the task's"], body),
        "",
    ]


def _pull_summary(r: dict[str, Any]) -> list[str]:
    """In words, for each arm that talks: its largest term's pull at the chosen setting, the
    means over the seeds measured."""
    lines = []
    for name in ("TD", "TD + LD"):
        rows = [row for row in r["rows"] if row["method"] == name and "pull" in row
                and row["transfer"] == r["teacher"]["sizes"]["transfer"]]  # fmt: skip
        if not rows:
            continue
        terms = [t for t in rows[0]["pull"]["norm"] if not t.startswith("task[")]
        norm = {t: statistics.fmean(row["pull"]["norm"][t] for row in rows) for t in terms}
        cosine = {t: statistics.fmean(row["pull"]["alignment"][t] for row in rows) for t in terms}
        top = max(terms, key=norm.get)
        talk = [t for t in terms if not t.startswith("logit[")]
        way = "with" if cosine[top] >= 0.3 else "against" if cosine[top] <= -0.3 else "across"
        lines.append(
            f"- {name} ({rows[0]['setting']}, {len(rows)} seed(s)): the largest pull on the "
            f"student is {top.split('[')[0]}'s, **{norm[top]:.2f}×** the task's, at a cosine of "
            f"{cosine[top]:+.2f} with it: it moves the student mostly {way} the way its labels "
            f"pull; its talk terms together pull {sum(norm[t] for t in talk):.3f}× the task's."
        )
    return [*lines, ""] if lines else []


def _distinct_runs(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's runs, each once: a search's run that is also an arm's final run is one."""
    rows = {(row["method"], row["setting"], row["labels"], row["transfer"], row["seed"]): row
            for row in [*r.get("tuning_rows", []), *r["rows"]]}  # fmt: skip
    return list(rows.values())


def _run_seconds(r: dict[str, Any]) -> float:
    """Every distinct run's own wall time, summed (reused runs included)."""
    return sum(row["seconds"] for row in _distinct_runs(r))


def _tuning(r: dict[str, Any]) -> list[str]:
    tokens = r["teacher"]["mean_tokens"]
    valid_tokens, test_tokens = tokens["valid"], tokens["test"]
    body = []
    for search in r["searches"]:
        devs = search.get("dev") or [None] * len(search["grid"])
        cells = [
            f"{v:g}: not run" if s < 0
            else (f"**{v:g}: {100 * s:.1f}**" if v == search["chosen"] else f"{v:g}: {100 * s:.1f}")
            + ("" if dev is None else f" ({100 * dev:.1f})")
            for v, s, dev in zip(search["grid"], search["scores"], devs)
        ]  # fmt: skip
        edge = {True: "on the edge", False: "inside", None: "incomplete"}[search["on_edge"]]
        body.append([search["method"], search["param"], ", ".join(cells), edge])
    return [
        "## Tuning",
        "",
        "Validation accuracy (%) with seed 0 at each grid value, the chosen one in bold; in "
        "brackets the same run's dev accuracy, shown here after the choice and never used for "
        f"it. Validation sentences are phrases of train.tsv (mean {valid_tokens:.1f} tokens), "
        f"dev's are whole sentences (mean {test_tokens:.1f}): the two can rank settings "
        "differently.",
        "",
        *table(["Arm", "Parameter", "Grid", "Choice"], body),
        "",
    ]


def _timing(r: dict[str, Any]) -> list[str]:
    t = r["timing"]
    seconds = t["seconds"]
    layers = "" if _layers(r) == STUDENT_LAYERS else f" --student-layers {_layers(r)}"
    body = [[name, ", ".join(f"{s:.1f}" for s in values)] for name, values in seconds.items()]
    return [
        "## What the store costs a step",
        "",
        f"One epoch of {t['steps']} steps over the first {t['sentences']} transfer sentences, "
        f"{t['sentences_per_step']} sentences a step, side by side in one process with "
        f"{r['workers'] * r['threads']} threads, repeats interleaved: LD reading the teacher "
        "from the store (the teacher never runs); Scratch on as many labelled sentences a step; "
        "and, once, LD with the teacher run live (no store, no cache). Seconds per epoch:",
        "",
        *table(["Run", "Seconds"], body),
        "",
        f"LD with the store / Scratch, median of the paired ratios "
        f"({', '.join(f'{x:.3f}' for x in t['ratios'])}): **{t['ratio']:.3f}**.",
        *(
            [
                "",
                "Measured by an earlier invocation of the same command (read back from its "
                "run log).",
            ]
            if t.get("reused")
            else []
        ),
        "",
        "## Wall time",
        "",
        *table(["Part", "Time"], [[k, duration(v)] for k, v in r["timings"].items()]),
        "",
        "The GPU budget, every remaining sentence of train.tsv as the transfer set: "
        f"`python -m benchmarks text-transfer{layers} --transfer all --epochs 2 --out DIR`.",
    ]
