"""Draws the documentation's figures: ``python docs/figures.py`` writes docs/img/*.png.

- ``talk_round.png``: one talk round between a learner and its tutor (docs/concepts.md).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

IMG = Path(__file__).resolve().parent / "img"

LEARNER, MESSAGE, TUTOR = 2.0, 5.5, 9.0  # column centres
COLORS = {"learner": "#d6e9f8", "tutor": "#e3e3e3", "message": "#fff1c9", "loss": "#f8d7d3"}


def box(ax, x: float, y: float, text: str, kind: str, width: float = 3.6, size=10) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - 0.32),
            width,
            0.64,
            boxstyle="round,pad=0.04,rounding_size=0.12",
            facecolor=COLORS[kind],
            edgecolor="#444444",
            linewidth=1.0,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, start, end, label: str = "", *, dashed: bool = False, bend: float = 0.0) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=14,
            linewidth=1.2,
            color="#333333",
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={bend}",
        )
    )
    if label:
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.18)
        ax.text(*mid, label, ha="center", va="bottom", fontsize=8.5, color="#333333")


def talk_round(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 6.6))
    ax.axvspan(MESSAGE - 1.25, MESSAGE + 1.25, color=COLORS["message"], alpha=0.55, lw=0)
    for x, title in (
        (LEARNER, "learner $u$ (student, trains)"),
        (MESSAGE, "message space ($m_{dim}$)"),
        (TUTOR, "tutor $v$ (teacher, frozen)"),
    ):
        ax.text(x, 6.55, title, ha="center", fontsize=11, weight="bold")

    # round 0
    box(ax, LEARNER, 5.7, r"$s_u = \mathrm{lower}_u(x)$,  $e_u = \mathrm{upper}_u(s_u)$", "learner")
    box(ax, TUTOR, 5.7, r"$s_v, e_v$ = round 0 (no grad)", "tutor")
    # 1. the question
    box(ax, LEARNER, 4.6, r"① ask: $m = E_u(s_u, e_u)$", "learner")
    box(ax, MESSAGE, 4.6, r"question $m$", "message", width=2.2)
    arrow(ax, (LEARNER, 5.38), (LEARNER, 4.92))
    arrow(ax, (LEARNER + 1.8, 4.6), (MESSAGE - 1.1, 4.6))
    # 2-4. the tutor decodes, interprets with its own upper layers, replies
    box(ax, TUTOR, 4.6, r"② decode: $s'_v = D_v(m)$ (+ noise)", "tutor")
    box(ax, TUTOR, 3.5, r"③ interpret: $\tilde e_v = \mathrm{upper}_v(s'_v)$", "tutor")
    box(ax, TUTOR, 2.4, r"④ reply: $r_v = E_v(s'_v, \tilde e_v)$", "tutor")
    arrow(ax, (MESSAGE + 1.1, 4.6), (TUTOR - 1.8, 4.6))
    arrow(ax, (TUTOR, 4.28), (TUTOR, 3.82))
    arrow(ax, (TUTOR, 3.18), (TUTOR, 2.72))
    box(ax, MESSAGE, 2.4, r"reply $r = \mathrm{agg}_v(r_v)$", "message", width=2.2)
    arrow(ax, (TUTOR - 1.8, 2.4), (MESSAGE + 1.1, 2.4))
    ax.text(
        MESSAGE, 1.88, "(mean / weights / router\nover several tutors)", ha="center", fontsize=8
    )
    # 5. the learner decodes the reply and learns from the difference
    box(ax, LEARNER, 2.4, r"⑤ listen: $(s'_u, e'_u) = D_u(r)$", "learner")
    arrow(ax, (MESSAGE - 1.1, 2.4), (LEARNER + 1.8, 2.4))
    box(
        ax,
        LEARNER,
        1.3,
        r"$L \;{+}{=}\; w_{interact}\, d((s_u, e_u), (s'_u, e'_u))$",
        "loss",
        size=9.5,
    )
    arrow(ax, (LEARNER, 2.08), (LEARNER, 1.62))
    # 6. the follow-up question opens the next round
    box(ax, LEARNER, 0.2, r"⑥ follow up: $m = E_u(s'_u, \mathrm{upper}_u(s'_u))$", "learner")
    arrow(ax, (LEARNER - 1.8, 2.3), (LEARNER - 1.8, 0.3), bend=0.5)
    ax.text(LEARNER - 2.55, 1.3, r"$s'_u$", ha="center", va="center", fontsize=10)
    box(ax, MESSAGE, 0.2, r"next question $m$", "message", width=2.2)
    arrow(ax, (LEARNER + 1.8, 0.2), (MESSAGE - 1.1, 0.2))
    ax.text(
        MESSAGE,
        -0.3,
        "→ ② of the next round\n($k$ rounds in all)",
        ha="center",
        va="top",
        fontsize=8,
    )
    ax.text(
        TUTOR,
        0.55,
        "Gradients flow through the frozen tutor's\n"
        r"$\mathrm{upper}_v$ into both codecs and the learner;" + "\nits weights never change.",
        ha="center",
        va="center",
        fontsize=8.5,
        style="italic",
        color="#555555",
    )
    ax.set_xlim(-1.2, 11.2)
    ax.set_ylim(-0.9, 6.85)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(talk_round(IMG / "talk_round.png"))
