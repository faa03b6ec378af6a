r"""Linear CKA between agents' states and messages: the paper's Figure 3 (section 4.4).

Centered Kernel Alignment (Kornblith et al., 2019) compares two representations of the same
``n`` examples, ``X [n, p]`` and ``Y [n, q]``, whatever their widths:

.. math::
    \mathrm{CKA}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}
    {\lVert X_c^\top X_c \rVert_F\, \lVert Y_c^\top Y_c \rVert_F}

where ``X_c`` and ``Y_c`` have centered columns. It is 1 for representations equal up to a
rotation and a scale, is unchanged by orthogonal maps and isotropic scaling of either side, but
not by a general invertible linear map.

The paper compares the teacher's ``s`` and ``e`` with the student's ``s``, ``e`` and message
``m`` (:func:`cka_matrix`), for each class (:func:`by_group`); ``agora cka RUN_DIR`` draws it::

    from agora.analysis.cka import states, cka_matrix, by_group, genres, plot

    collected = states(graph, valid)                 # round 0, eval mode, no gradients
    overall = cka_matrix(collected, "teacher", "student")
    per_genre = by_group(graph, valid, genres, names=ml.genres)
    plot(per_genre, "cka.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from agora.graph import Graph

TEACHER_KINDS = ("s", "e")  # the columns of the paper's Figure 3
STUDENT_KINDS = ("s", "e", "m")  # its rows

GroupFunction = Callable[[Any, Any], Tensor]


# -- the measure --------------------------------------------------------------------------------


def linear_cka(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Linear CKA between two representations of the same examples, computed in float64.

    .. math::
        \mathrm{CKA}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}
        {\lVert X_c^\top X_c \rVert_F\, \lVert Y_c^\top Y_c \rVert_F}

    Args:
        x (Tensor): ``[n, p]``; trailing dimensions beyond the first are flattened.
        y (Tensor): ``[n, q]``, the same ``n`` examples in the same order.
        mask (Tensor, optional): ``[n, T]``, ``True`` for real tokens. ``x`` and ``y`` are then
            token states ``[n, T, ...]`` and each real token is one row; padding never counts.
            (default: ``None``)

    Returns:
        A 0-d float64 tensor in ``[0, 1]``; NaN when a side is constant over the rows.

    Shapes:
        - **x**: ``[n, p]`` or ``[n, T, ...]`` with **mask** ``[n, T]``
        - **y**: ``[n, q]`` or ``[n, T, ...]`` with **mask** ``[n, T]``
        - **output**: ``[]``

    Example:
        >>> x = torch.randn(50, 8)
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8))
        >>> round(linear_cka(x, 3 * x @ q).item(), 6)  # a rotation and a scale: the same
        1.0
        >>> linear_cka(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [3.0], [2.0]]))
        tensor(0.2500, dtype=torch.float64)
    """
    if mask is not None:
        x, y = _real_tokens(x, mask, "x"), _real_tokens(y, mask, "y")
    x, y = _matrix(x, "x"), _matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka: x and y must describe the same examples, got {x.shape[0]} rows in x "
            f"{list(x.shape)} and {y.shape[0]} in y {list(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka: needs at least 2 rows, got {x.shape[0]}")
    x = x - x.mean(0)  # [n, p], centered columns
    y = y - y.mean(0)  # [n, q]
    cross = (y.T @ x).pow(2).sum()  # ||Y_c^T X_c||_F^2
    return cross / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y))


def _matrix(t: Tensor, name: str) -> Tensor:
    if t.dim() < 2:
        raise ValueError(f"linear_cka: {name} must be [n, p], got shape {list(t.shape)}")
    return rearrange(t, "n ... -> n (...)").double()


def _real_tokens(t: Tensor, mask: Tensor, name: str) -> Tensor:
    if t.dim() < 3 or tuple(t.shape[:2]) != tuple(mask.shape):
        raise ValueError(
            f"linear_cka: with a mask {list(mask.shape)}, {name} must be token states "
            f"[n, T, ...] of the same n and T, got {list(t.shape)}"
        )
    return rearrange(t, "n t ... -> n t (...)")[mask.bool()]  # [real tokens, features]


# -- collecting states over a dataset ------------------------------------------------------------


@dataclass
class Representation:
    """One agent's ``s``, ``e`` or ``m`` over a dataset, one row per example or per real token.

    Shapes:
        - **values**: ``[rows, features]`` (float32, on the CPU)
        - **example**: ``Long[rows]``, the index in the dataset of the example of each row
    """

    values: Tensor
    example: Tensor
    tokens: bool = False

    def select(self, members: Tensor) -> Representation:
        """The rows of the examples where ``members`` (``Bool[n_examples]``) is true."""
        keep = members[self.example]
        return Representation(self.values[keep], self.example[keep], self.tokens)

    def per_example(self) -> Representation:
        """Token rows averaged per example (over real tokens); per-example rows as they are."""
        if not self.tokens:
            return self
        ids, inverse, counts = torch.unique(self.example, return_inverse=True, return_counts=True)
        sums = self.values.new_zeros(len(ids), self.values.shape[1]).index_add_(
            0, inverse, self.values
        )
        return Representation(sums / counts.unsqueeze(1).to(sums.dtype), ids, False)


def aligned(a: Representation, b: Representation) -> tuple[Tensor, Tensor]:
    """The rows of ``a`` and ``b`` that describe the same examples (or tokens), in one order.

    Token states meet per-example ones (e.g. a per-example message of a token model) as their
    mean over each example's real tokens.
    """
    if a.tokens != b.tokens:
        a, b = a.per_example(), b.per_example()
    if a.tokens:
        if not torch.equal(a.example, b.example):
            raise ValueError("token states with different masks cannot be compared row by row")
        return a.values, b.values
    common = a.example[torch.isin(a.example, b.example)]
    return (
        a.values[torch.isin(a.example, common)],
        b.values[torch.isin(b.example, common)],
    )


@dataclass
class States:
    """Every collected representation, by key ``"<agent>.<kind>"`` (``"student.m"``).

    ``count`` is the number of examples; :meth:`select` keeps some of them (a class, a genre).
    """

    representations: dict[str, Representation]
    count: int

    def __getitem__(self, key: str) -> Representation:
        if key not in self.representations:
            raise KeyError(
                f"No states {key!r}; collected: {sorted(self.representations)} (collect the "
                f"agent with states(..., agents=[...]))"
            )
        return self.representations[key]

    def select(self, members: Tensor) -> States:
        """The states of the examples where ``members`` (``Bool[count]``) is true."""
        chosen = {key: rep.select(members) for key, rep in self.representations.items()}
        return States(chosen, int(members.sum()))

    def cka(self, a: str, b: str) -> Tensor:
        """Linear CKA between two collected representations, e.g. ``("student.m", "teacher.e")``."""
        return linear_cka(*aligned(self[a], self[b]))


def _rows(value: Tensor, mask: Tensor | None, offset: int) -> Representation:
    """A batch's ``[B, ...]`` (or token ``[B, T, ...]``) tensor as rows ``[rows, features]``."""
    batch = value.shape[0]
    example = torch.arange(offset, offset + batch)  # [B]
    if mask is not None and value.dim() >= 3 and tuple(value.shape[:2]) == tuple(mask.shape):
        mask = mask.bool().cpu()
        rows = rearrange(value, "b t ... -> b t (...)").float().cpu()[mask]  # [real tokens, F]
        return Representation(rows, repeat(example, "b -> b t", t=mask.shape[1])[mask], True)
    return Representation(rearrange(value, "b ... -> b (...)").float().cpu(), example, False)


@torch.no_grad()
def states(
    graph: Graph,
    data: Any,
    *,
    agents: Iterable[str] | None = None,
    batch_size: int = 1024,
) -> States:
    """Each agent's round-0 ``s`` and ``e`` and its message ``m = E(s, e)`` over a dataset.

    The graph runs in eval mode (no dropout) without gradients, and is put back as it was.
    Token states (``[B, T, ...]`` with an attention mask) give one row per real token.

    Args:
        graph (Graph): a built graph, e.g. ``agora.load(run_dir)``.
        data (Dataset or DataLoader): yields ``(x, y)`` batches (a dataset's ``collate_fn`` is
            used); read in order.
        agents (iterable of str, optional): the agents to collect. (default: every agent)
        batch_size (int): examples per forward pass. (default: ``1024``)

    Returns:
        :class:`States`, keyed ``"<agent>.s"``, ``"<agent>.e"``, ``"<agent>.m"``.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8).build(torch.randn(2, 4))
        >>> data = torch.utils.data.TensorDataset(torch.randn(30, 4), torch.randn(30))
        >>> collected = states(graph, data, batch_size=8)
        >>> collected.count, tuple(collected["student.m"].values.shape)
        (30, (30, 8))
    """
    from agora.loaders import eval_loader, split_batch, to_device

    names = list(graph.agents) if agents is None else list(agents)
    unknown = [name for name in names if name not in graph.agents]
    if unknown:
        raise ValueError(f"Unknown agents {unknown}; the graph has {list(graph.agents)}")
    missing = [name for name in names if graph.agents[name].codec is None]
    if missing:
        raise ValueError(f"Agents {missing} have no codec; call graph.build(sample) first")
    device = next(graph.parameters()).device
    was_training = graph.training
    graph.eval()  # no dropout in the states or the codecs
    chunks: dict[str, list[Representation]] = {}
    offset = 0
    try:
        for batch in eval_loader(data, batch_size):
            x = to_device(split_batch(batch)[0], device)
            for name in names:
                agent = graph.agents[name]
                out = agent(x)
                m = agent.codec.encode(out.s, out.e)  # [B, m_dim] or [B, T, m_dim]
                for kind, value in (("s", out.s), ("e", out.e), ("m", m)):
                    chunks.setdefault(f"{name}.{kind}", []).append(_rows(value, out.mask, offset))
            offset += out.s.shape[0]
    finally:
        graph.train(was_training)
    return States({key: _concat(parts) for key, parts in chunks.items()}, offset)


def _concat(parts: Sequence[Representation]) -> Representation:
    return Representation(
        torch.cat([p.values for p in parts]),
        torch.cat([p.example for p in parts]),
        parts[0].tokens,
    )


# -- the paper's matrix ------------------------------------------------------------------------


@dataclass
class CKAMatrix:
    """Linear CKA between a student's representations (rows) and a teacher's (columns).

    The paper's Figure 3: rows ``student.s``, ``student.e``, ``student.m``; columns
    ``teacher.s``, ``teacher.e``.

    Shapes:
        - **values**: ``[len(rows), len(columns)]``, float64
    """

    values: Tensor
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    examples: int

    def __getitem__(self, key: tuple[str, str]) -> float:
        """``matrix["student.m", "teacher.e"]``."""
        row, column = key
        return self.values[self.rows.index(row), self.columns.index(column)].item()

    def to_dict(self) -> dict[str, Any]:
        """The matrix as plain JSON-ready values: ``rows``, ``columns``, ``values`` (nested lists)
        and ``examples``."""
        return {
            "rows": list(self.rows),
            "columns": list(self.columns),
            "values": self.values.tolist(),
            "examples": self.examples,
        }

    def __str__(self) -> str:
        width = max(len(label) for label in self.rows)
        lines = [" " * width + "".join(f"  {c:>10}" for c in self.columns)]
        for label, row in zip(self.rows, self.values.tolist()):
            lines.append(f"{label:<{width}}" + "".join(f"  {v:>10.3f}" for v in row))
        return "\n".join(lines)


def cka_matrix(
    collected: States,
    teacher: str = "teacher",
    student: str = "student",
    *,
    teacher_kinds: Sequence[str] = TEACHER_KINDS,
    student_kinds: Sequence[str] = STUDENT_KINDS,
) -> CKAMatrix:
    """The paper's Figure 3 for one set of examples: student ``s, e, m`` against teacher ``s, e``.

    Args:
        collected (States): from :func:`states`, holding both agents.
        teacher (str): the columns' agent. (default: ``"teacher"``)
        student (str): the rows' agent. (default: ``"student"``)
        teacher_kinds (sequence of str): the columns. (default: ``("s", "e")``)
        student_kinds (sequence of str): the rows. (default: ``("s", "e", "m")``)

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8).build(torch.randn(2, 4))
        >>> data = torch.utils.data.TensorDataset(torch.randn(30, 4), torch.randn(30))
        >>> matrix = cka_matrix(states(graph, data))
        >>> tuple(matrix.values.shape), matrix.rows[2], matrix.columns
        ((3, 2), 'student.m', ('teacher.s', 'teacher.e'))
    """
    rows = tuple(f"{student}.{kind}" for kind in student_kinds)
    columns = tuple(f"{teacher}.{kind}" for kind in teacher_kinds)
    values = torch.tensor(
        [[collected.cka(row, column).item() for column in columns] for row in rows],
        dtype=torch.float64,
    )
    return CKAMatrix(values, rows, columns, collected.count)


def teacher_and_student(graph: Graph) -> tuple[str, str]:
    """The default pair: the tutor and learner of the first active edge (talk edges first)."""
    edges = sorted(graph.active_edges, key=lambda edge: edge.protocol("talk") is None)
    if not edges:
        raise ValueError(
            f"The graph has no active edge; name the teacher and the student among "
            f"{list(graph.agents)}"
        )
    return edges[0].tutor, edges[0].learner


# -- per class, per genre ----------------------------------------------------------------------


def genres(x: Any, y: Any) -> Tensor:
    """Group by genre: ``x["genres"]`` is the multi-hot ``[B, G]`` of each example's movie, and
    a rating belongs to every genre its movie has (MovieLens)."""
    if not isinstance(x, Mapping) or "genres" not in x:
        got = f"keys {sorted(x)}" if isinstance(x, Mapping) else f"a {type(x).__name__}"
        raise ValueError(f"Grouping by genre needs inputs x['genres'] (a multi-hot), got {got}")
    return x["genres"] > 0  # [B, G]


def classes(x: Any, y: Any) -> Tensor:
    """Group by class: the integer target ``y`` ``[B]`` of each example."""
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dim() != 1:
        what = f"{y.dtype} {list(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"Grouping by class needs integer class labels y [B], got {what}; for a regression "
            f"task group by something else (e.g. genres)"
        )
    return y


def memberships(
    data: Any, groups: GroupFunction, *, batch_size: int = 1024
) -> tuple[Tensor, list[Any]]:
    """Which group each example of ``data`` belongs to.

    Args:
        data (Dataset or DataLoader): read in order, as :func:`states` reads it.
        groups (callable): ``(x, y) -> Tensor`` per batch: ``Bool[B, G]`` (an example may be in
            several groups; 0/1 floats work too) or integer group ids ``[B]``.
        batch_size (int): examples per batch. (default: ``1024``)

    Returns:
        ``Bool[n_examples, n_groups]`` and each group's key: its column for ``[B, G]`` groups,
        its id for ``[B]`` ids (sorted).
    """
    from agora.loaders import eval_loader, split_batch

    parts = [groups(*split_batch(batch)) for batch in eval_loader(data, batch_size)]
    if all(p.dim() == 2 for p in parts):
        table = torch.cat([p.bool().cpu() for p in parts])  # [n, G]
        return table, list(range(table.shape[1]))
    if all(p.dim() == 1 for p in parts):
        ids = torch.cat([p.cpu() for p in parts])  # [n]
        keys = torch.unique(ids)
        return ids.unsqueeze(1) == keys.unsqueeze(0), keys.tolist()
    raise ValueError(
        f"A group function returns Bool[B, G] or ids [B], got shapes {[list(p.shape) for p in parts[:3]]}"
    )


def by_group(
    graph: Graph,
    data: Any,
    groups: GroupFunction,
    *,
    teacher: str | None = None,
    student: str | None = None,
    names: Sequence[str] | Mapping[Any, str] | None = None,
    min_examples: int = 20,
    batch_size: int = 1024,
) -> dict[str, CKAMatrix]:
    """The paper's Figure 3 per group (class, genre): one :class:`CKAMatrix` per group.

    The states are collected once; each group's matrix uses the rows of its examples.

    Args:
        graph (Graph): a built graph.
        data (Dataset or DataLoader): yields ``(x, y)``.
        groups (callable): ``(x, y) -> Bool[B, G]`` or ids ``[B]``, e.g. :func:`genres` or
            :func:`classes`.
        teacher (str, optional): the columns' agent. (default: the first edge's tutor)
        student (str, optional): the rows' agent. (default: the first edge's learner)
        names (sequence or mapping, optional): a name per group column (``[B, G]``) or per id
            (``[B]``), e.g. MovieLens' genre names. (default: the column or id)
        min_examples (int): groups with fewer examples are left out; CKA on a handful of rows
            is close to 1 whatever the representations (the paper uses 20 per class).
            (default: ``20``)
        batch_size (int): examples per forward pass. (default: ``1024``)

    Returns:
        Group name -> its matrix, in the groups' order.

    Example:
        >>> from agora.models.toy import mlp_agent
        >>> graph = Graph([mlp_agent("teacher", 4, 16, frozen=True), mlp_agent("student", 4, 8)],
        ...               message_dim=8)
        >>> _ = graph.add_edge("student", "teacher")
        >>> _ = graph.build(torch.randn(2, 4))
        >>> data = torch.utils.data.TensorDataset(torch.randn(60, 4), torch.arange(60) % 3)
        >>> per_class = by_group(graph, data, classes, names=["a", "b", "c"])
        >>> list(per_class), per_class["b"].examples
        (['a', 'b', 'c'], 20)
    """
    if teacher is None or student is None:
        default_teacher, default_student = teacher_and_student(graph)
        teacher, student = teacher or default_teacher, student or default_student
    members, keys = memberships(data, groups, batch_size=batch_size)
    collected = states(graph, data, agents=[teacher, student], batch_size=batch_size)
    if members.shape[0] != collected.count:
        raise ValueError(
            f"The group function saw {members.shape[0]} examples but the states cover "
            f"{collected.count}; read the data in a fixed order"
        )
    matrices = {}
    for column, key in enumerate(keys):
        if int(members[:, column].sum()) < max(min_examples, 2):
            continue
        matrix = cka_matrix(collected.select(members[:, column]), teacher, student)
        matrices[_group_name(names, column, key)] = matrix
    return matrices


def _group_name(names: Sequence[str] | Mapping[Any, str] | None, column: int, key: Any) -> str:
    if names is None:
        return str(key)
    if isinstance(names, Mapping):
        return str(names.get(key, key))
    return str(names[column]) if column < len(names) else str(key)


# -- the figure --------------------------------------------------------------------------------


def _split(labels: Sequence[str]) -> tuple[str, list[str]]:
    """``("student.s", "student.m")`` -> ``("student", ["s", "m"])`` (keys of one agent)."""
    agents = {label.rpartition(".")[0] for label in labels}
    kinds = [label.rpartition(".")[2] for label in labels]
    return (agents.pop(), kinds) if len(agents) == 1 else ("", list(labels))


# what the rows and columns of a CKA matrix are (the figure says it under the heatmaps)
KINDS = (
    "s: the agent's lower state (input of its upper layers)   e: its upper state (input of its "
    "head)   m: the message it sends"
)


def plot(
    matrices: Mapping[str, CKAMatrix],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    columns: int = 4,
) -> Path:
    """Draw CKA matrices as annotated heatmaps (lighter is more similar), one per group.

    Args:
        matrices (mapping): name -> :class:`CKAMatrix`, e.g. ``{"all": ...}`` or
            :func:`by_group`'s result.
        path (str or Path): the image file (its suffix picks the format).
        title (str, optional): a title above the figure. (default: ``None``)
        columns (int): heatmaps per row of the figure. (default: ``4``)

    Example:
        >>> import tempfile
        >>> matrix = CKAMatrix(torch.rand(3, 2, dtype=torch.float64), ("g.s", "g.e", "g.m"),
        ...                    ("h.s", "h.e"), examples=20)
        >>> plot({"all": matrix}, tempfile.mkdtemp() + "/cka.png").suffix
        '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not matrices:
        raise ValueError("No CKA matrix to draw")
    count = len(matrices)
    ncols = min(columns, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(0.8 + 2.4 * ncols, 0.6 + 3.0 * nrows), squeeze=False
    )
    image = None
    for ax, (name, matrix) in zip(axes.flat, matrices.items()):
        values = matrix.values.numpy()
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        for (i, j), value in _cells(values):
            text = "nan" if math.isnan(value) else f"{value:.2f}"
            color = "black" if value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
        (column_agent, column_kinds), (row_agent, row_kinds) = (
            _split(matrix.columns),
            _split(matrix.rows),
        )
        ax.set_xticks(range(len(column_kinds)), column_kinds)
        ax.set_yticks(range(len(row_kinds)), row_kinds)
        ax.set_xlabel(column_agent, fontsize=9)
        if ax in axes[:, 0]:  # one row label per line of heatmaps: they sit side by side
            ax.set_ylabel(row_agent, fontsize=9)
        ax.set_title(f"{name} (n={matrix.examples})", fontsize=9)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    fig.text(0.5, -0.03, KINDS, ha="center", va="top", fontsize=8, color="#333333")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def _cells(values: Any) -> Iterable[tuple[tuple[int, int], float]]:
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            yield (i, j), float(value)
