"""Looking inside trained graphs: how similar agents' representations are.

:mod:`agora.analysis.cka` — linear CKA between agents' states and messages, overall, per class
or per genre (the paper's Figure 3); ``agora cka RUN_DIR`` draws it.

:mod:`agora.analysis.gradients` — how hard each loss term pulls on each agent's backbone
(:func:`~agora.analysis.gradients.term_gradients`), to see whether a loss weight can matter.
"""

from agora.analysis.cka import (
    CKAMatrix,
    States,
    by_group,
    cka_matrix,
    classes,
    genres,
    linear_cka,
    plot,
    states,
)
from agora.analysis.gradients import relative, term_gradients

__all__ = [
    "CKAMatrix",
    "States",
    "by_group",
    "cka_matrix",
    "classes",
    "genres",
    "linear_cka",
    "plot",
    "relative",
    "states",
    "term_gradients",
]
