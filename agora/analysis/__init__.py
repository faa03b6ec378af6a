"""Looking inside trained graphs: how similar agents' representations are.

:mod:`agora.analysis.cka` — linear CKA between agents' states and messages, overall, per class
or per genre (the paper's Figure 3); ``agora cka RUN_DIR`` draws it.
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

__all__ = [
    "CKAMatrix",
    "States",
    "by_group",
    "cka_matrix",
    "classes",
    "genres",
    "linear_cka",
    "plot",
    "states",
]
