"""The speed page, every number computed from the results of
:func:`benchmarks.speed.task.run`."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.harness import duration, table


def write(results: dict[str, Any], out: Path, stem: str = "speed") -> None:
    """Write ``<stem>.md`` into ``out``."""
    (Path(out) / f"{stem}.md").write_text(render(results))


def render(r: dict[str, Any]) -> str:
    """The ``speed.md`` page (Markdown) for the results of :func:`run`."""
    td = r["td_vs_hand"]
    lines = [
        "# Speed",
        "",
        f"- Command: `{r['command']}`",
        f"- Date: {r['date']}; machine: {r['machine']}; torch {r['torch']}",
        f"- Threads: {r['threads']} (`torch.set_num_threads`); batch {r['batch_size']}; "
        f"medians over {r['repeats']} repeats of {r['steps_per_block']}-step blocks, "
        "A and B alternating",
        _wall_time(r),
    ]
    if r["quick"]:
        lines += ["", "> **--quick: a smoke test with few repeats, not a measurement.**"]
    verdict = "meets" if td["ratio"] <= 1.10 else "misses"
    lines += [
        "",
        "## agora's TD step vs a hand-written one",
        "",
        "The paper's two-node MovieLens graph, k = 2, all three TD losses; the hand-written step "
        "runs the same math on the same modules in plain PyTorch (`hand_written_step` in "
        "`benchmarks/speed/task.py`), reusing the teacher's decoding of the first question as agora "
        "does.",
        "",
        "| | ms / step |",
        "|---|---|",
        f"| agora `Orchestrator` | {td['a_ms']:.2f} |",
        f"| hand-written | {td['b_ms']:.2f} |",
        f"| ratio (median of paired ratios) | **{td['ratio']:.3f}** "
        f"(range {td['ratio_min']:.3f}-{td['ratio_max']:.3f}) |",
        "",
        f"The ratio {verdict} the target of 1.10.",
    ]
    lines += _where_section(r.get("where"), r["repeats"] * r["steps_per_block"])
    lines += _balancer_section(r.get("balancer"))
    lines += _series_section("rounds k (one tutor)", r["rounds"], r["rounds_fit"], "k")
    lines += _series_section(
        "tutors (k = 2, mean aggregation)", r["tutors"], r["tutors_fit"], "tutors"
    )
    lines += _torchdistill_section(r["torchdistill"])
    lines += _cache_section(r["cache"])
    lines += ["", "## Peak memory", "",
              "Each configuration in a fresh process: 3 warm-up steps, then one step under torch's "
              "memory profiler. *Step peak* is the most memory held by tensors at any moment of "
              "that step (parameters, gradients, AdamW state, activations, temporaries), read "
              "from the profiler's memory timeline; *process peak RSS* is the whole process's "
              "resident set (interpreter, torch and the data included).", "",
              "| step | k | tutors | step peak (MiB) | process peak RSS (MiB) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for m in r["memory"]:
        lines.append(
            f"| {m['kind']} | {m['rounds']} | {m['tutors']} | {m['step_peak_mib']:.1f} | "
            f"{m['peak_rss_mib']:.0f} |"
        )
    by = {(m["kind"], m["rounds"], m["tutors"]): m["step_peak_mib"] for m in r["memory"]}
    if ("agora", 2, 1) in by and ("hand", 2, 1) in by:
        lines += ["", f"Step peak, agora / hand-written (k = 2): "
                  f"**{by[('agora', 2, 1)] / by[('hand', 2, 1)]:.3f}**."]  # fmt: skip
    lines += _timings_section(r.get("timings"))
    return "\n".join(lines) + "\n"


def _wall_time(r: dict[str, Any]) -> str:
    if "timings" not in r:  # a page written before the command's start was recorded
        return (
            f"- Wall time: {r['seconds']:.0f} s from the start of the measurements "
            "(Python's start and the imports before them not included)"
        )
    return (
        f"- Wall time: {duration(r['timings']['total'])} in all, the whole command from its "
        "start to the end of its last measurement (each part's at the end of the page)"
    )


def _timings_section(timings: dict[str, float] | None) -> list[str]:
    if timings is None:
        return []
    parts = {name: s for name, s in timings.items() if name != "total"}
    rest = timings["total"] - sum(parts.values())
    rows = [[name, duration(s)] for name, s in parts.items()]
    rows += [["before and between the parts (Python, torch, the data)", duration(rest)],
             ["**total**", f"**{duration(timings['total'])}**"]]  # fmt: skip
    return [
        "", "## Wall time", "",
        "The parts ran one after another, in this order; the total is the whole command's, "
        "from its start to the end of the last part.", "",
        *table(["part", "wall time"], rows),
    ]  # fmt: skip


PHASES = {"forward": "forward pass and losses", "backward": "backward pass",
          "optimizer": "optimizer step (AdamW)"}  # fmt: skip
CODE = ("operators", "torch's Python", "models' Python", "agora's Python", "other Python")


def _where_section(where: dict | None, steps: int) -> list[str]:
    """Each phase of agora's and the hand-written step side by side, and a profile of
    agora's forward pass by whose code holds the time."""
    if where is None:  # a page written before this was measured
        return []
    phases = where["phases"]
    agora, hand = phases["agora"], phases["hand-written"]
    rows = [[PHASES[p], f"{agora[p]:.2f}", f"{hand[p]:.2f}", f"{agora[p] - hand[p]:+.2f}"]
            for p in PHASES]  # fmt: skip
    total_a, total_h = sum(agora.values()), sum(hand.values())
    rows.append(["**step**", f"**{total_a:.2f}**", f"**{total_h:.2f}**",
                 f"**{total_a - total_h:+.2f}**"])  # fmt: skip
    profile = where["profile"]
    total = sum(profile.values())
    code = [[kind, f"{profile.get(kind, 0.0):.2f}", f"{100 * profile.get(kind, 0.0) / total:.0f}%"]
            for kind in CODE]  # fmt: skip
    return [
        "", "## Where the time goes", "",
        f"The same two steps again, each phase timed on its own, agora's and the hand-written "
        f"steps alternating (medians over {steps} steps each, after 3 warm-up steps):", "",
        *table(["phase", "agora (ms)", "hand-written (ms)", "difference (ms)"], rows), "",
        f"agora's forward pass (k = 2, the losses included) under cProfile, {steps} steps: the "
        "self time of each function, by whose code it is. *Operators* are torch's kernels "
        "(the layers' matrix products, dropout, the losses); *torch's Python* its `nn.Module` "
        "calls and functional wrappers; *models' Python* the recommender's own code; "
        "*agora's Python* the orchestrator, the talk protocol, the codecs' packing, the losses' "
        "bookkeeping. cProfile adds its own cost to every Python call, so the Python rows are "
        "upper bounds.", "",
        *table(["code", "ms / step", "share"], code),
    ]  # fmt: skip


def _balancer_section(b: dict | None) -> list[str]:
    if b is None:  # a page written before the balancer was measured
        return []
    return [
        "", "## The loss balancer's cost", "",
        f"The same TD step with `FitConfig(balance_losses=True)`'s balancer (every {b['every']} "
        "steps it differentiates each loss term alone, through its learner's backbone, to "
        "measure the gradient norms), against the step without it; blocks of "
        "steps as above, so each block holds its share of measurements.", "",
        "| | ms / step |", "|---|---|",
        f"| balanced | {b['a_ms']:.2f} |", f"| plain | {b['b_ms']:.2f} |",
        f"| ratio (median of paired ratios) | **{b['ratio']:.3f}** "
        f"(range {b['ratio_min']:.3f}-{b['ratio_max']:.3f}) |",
    ]  # fmt: skip


def _series_section(title: str, points: list[dict], fit: dict, name: str) -> list[str]:
    lines = ["", f"## Step time vs {title}", "", f"| {name} | ms / step |", "|---|---|"]
    lines += [f"| {p['value']} | {p['ms']:.2f} |" for p in points]
    linear = fit["max_relative_deviation"] < 0.1
    lines += [
        "",
        f"Least squares: {fit['intercept_ms']:.2f} ms + {fit['slope_ms']:.2f} ms per {name}; "
        f"the largest deviation from the line is {100 * fit['max_relative_deviation']:.1f}% "
        f"({'linear' if linear else 'not linear within 10%'}).",
    ]
    steps = [f"{b['ms'] - a['ms']:+.1f}" for a, b in pairwise(points)]
    lines += ["", f"Added per step of the table: {', '.join(steps)} ms."]
    if name == "k" and len(points) > 2 and points[0]["value"] == 0:
        first = points[1]["ms"] - points[0]["ms"]
        later = (points[-1]["ms"] - points[1]["ms"]) / (points[-1]["value"] - points[1]["value"])
    if name == "k" and len(points) > 2 and points[0]["value"] == 0 and first < 0.9 * later:
        lines += [
            "",
            f"From k = 1 on, each round adds about {later:.1f} ms; the first adds {first:.1f} ms. "
            "The first round is cheaper by design: the tutor's decoding of the round-0 question "
            "is shared with the state-consistency loss, and no follow-up question precedes it "
            "(a later round costs one tutor decoder pass and one learner interpret-and-encode "
            "more). So the step time is linear in k from k = 1, with a cheaper first round.",
        ]
    return lines


def _torchdistill_section(td: dict | None) -> list[str]:
    lines = ["", "## LD: agora vs torchdistill", ""]
    if td is None:
        return [*lines, "Not measured: torchdistill is not installed "
                "(`pip install torchdistill==1.1.5`; it is never a dependency of agora)."]  # fmt: skip
    return [
        *lines,
        f"Ratings as 5 classes. torchdistill {td['torchdistill']}: `KDLoss` (0.5 CE + 0.5 T^2 KL, "
        "T = 4) on logits caught by its `ForwardHookManager`; agora: a `logit` edge (T^2 KL) plus "
        "the student's CE task loss. Same teacher, student, batch and optimizer (AdamW).",
        "",
        "| | ms / step | samples / s |",
        "|---|---|---|",
        f"| agora | {td['a_ms']:.2f} | {td['agora_samples_per_s']:.0f} |",
        f"| torchdistill | {td['b_ms']:.2f} | {td['torchdistill_samples_per_s']:.0f} |",
        "",
        f"Ratio agora / torchdistill (time per step): **{td['ratio']:.3f}**.",
    ]


def _cache_section(cache: dict | None) -> list[str]:
    lines = ["", "## The frozen-teacher state cache", ""]
    if cache is None:
        return [*lines, "Not measured: MovieLens 100K is not at hand (set AGORA_DATA_DIR)."]
    return [
        *lines,
        f"Two-node TD (k = 2) on {cache['genre']}'s {cache['examples']} training ratings with `fit`: "
        "seconds per epoch, averaged over 2 epochs (the first fills the cache).",
        "",
        "| | s / epoch |",
        "|---|---|",
        f"| cache on | {cache['with_cache_s']:.2f} |",
        f"| cache off | {cache['without_cache_s']:.2f} |",
        "",
        f"Ratio on / off: **{cache['ratio']:.3f}**.",
    ]
