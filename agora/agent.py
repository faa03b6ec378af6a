"""An agent: one model split into ``lower: x -> s``, ``upper: s -> e`` and ``head: e -> y``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agora.codec import Codec
from agora.errors import GraphError

Task = Literal["regression", "classification"]
TASKS = ("regression", "classification")


@dataclass
class AgentOutput:
    """What an agent says about one batch in round 0.

    Shapes:
        - **y**: ``[B]`` or ``[B, C]`` (``None`` for an agent without a head)
        - **s**, **e**: ``[B, ...]`` or ``[B, T, ...]`` for token states
        - **mask**: ``[B, T]`` (``True`` where a token is real) or ``None``
        - **m**: ``[B, m_dim]`` or ``[B, T, m_dim]``, the agent's round-0 message
    """

    y: Tensor | None
    s: Tensor
    e: Tensor
    mask: Tensor | None = None
    m: Tensor | None = None


def check_name(name: Any) -> None:
    """An agent's name: a non-empty string without ``.``, ``/`` or spaces (it names files and
    state-dict keys)."""
    if not isinstance(name, str) or not name or set(name) & set("./ "):
        raise GraphError(
            f"Agent name must be a non-empty string without '.', '/' or spaces: {name!r}", "name"
        )


def check_codec_kind(name: str, kind: str) -> None:
    """An agent's codec kind: one of :data:`~agora.codec.CODEC_KINDS`."""
    from agora.codec import CODEC_KINDS

    if kind not in CODEC_KINDS:
        raise GraphError(
            f"Agent {name!r}: unknown codec kind {kind!r}; choose one of {list(CODEC_KINDS)}",
            "codec",
        )


def check_task(name: str, task: Any, task_weight: Any) -> None:
    """Raise :class:`~agora.errors.GraphError` naming the agent and the field for a bad task
    or task weight."""
    if task is not None and task not in TASKS:
        raise GraphError(
            f"Agent {name!r}: task must be one of {list(TASKS)} or None, not {task!r}", "task"
        )
    if isinstance(task_weight, bool) or not isinstance(task_weight, (int, float)):
        raise GraphError(
            f"Agent {name!r}: task_weight must be a number, got {task_weight!r}", "task_weight"
        )
    if not math.isfinite(task_weight) or task_weight < 0:
        raise GraphError(
            f"Agent {name!r}: task_weight must be finite and >= 0, got {task_weight}",
            "task_weight",
        )


MOVED = ("rounds", "interact_weight", "aggregation")  # an agent's until its talk edges took them


def moved(key: str, learner: str = "learner", value: str = "...") -> str:
    """Where ``key``, a setting an agent held as a learner before its talk edges did, went."""
    return (
        f"{key} moved to the learner's talk edges: graph.add_edge({learner}, tutor, "
        f"Talk({key}={value})); in a config, an edge's protocols: [{{talk: {{{key}: {value}}}}}]"
    )


def _describe(x: Any) -> str:
    """A batch's shapes, ``x [8, 6]`` or ``x {user [8], title [8, 15]}``."""
    if isinstance(x, Tensor):
        return f"x {list(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    if isinstance(x, Mapping):
        parts = ", ".join(
            f"{k} {list(v.shape)}" if isinstance(v, Tensor) else f"{k} {type(v).__name__}"
            for k, v in x.items()
        )
        return f"x {{{parts}}}"
    return f"x of type {type(x).__name__}"


def _misplaced(name: str, unknown: Mapping[str, Any]) -> str:
    """The message for keywords an Agent does not take, saying where each belongs."""
    homes = {
        "message_dim": "the graph's: Graph(agents, message_dim=...)",
        "codec_hidden": "the graph's: Graph(agents, codec_hidden=...)",
        "codec_dropout": "the graph's: Graph(agents, codec_dropout=...)",
        "weights": "an edge's: graph.add_edge(learner, tutor, protocols, weights=...)",
        "noise": "an edge's: graph.add_edge(learner, tutor, 'talk', noise=...)",
    }
    if given := [key for key in unknown if key in MOVED]:
        return f"Agent {name!r}: {moved(given[0], repr(name), repr(unknown[given[0]]))}"
    parts = [f"{key!r} is {homes[key]}" if key in homes else repr(key) for key in unknown]
    return f"Agent {name!r} got unexpected keyword arguments: {'; '.join(parts)}"


class Pick(nn.Module):
    """Runs ``module`` and passes on one of its outputs, ``output``, when it returns several
    (a tuple, list or mapping); a single tensor passes as it is. The module's parameters are
    its own, shared: ``Pick(gru, 0)`` trains the GRU it wraps."""

    def __init__(self, module: nn.Module, output: int | str) -> None:
        super().__init__()
        self.module, self.output = module, output

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.module(*args, **kwargs)
        return out[self.output] if isinstance(out, (tuple, list, Mapping)) else out

    def extra_repr(self) -> str:
        return f"output={self.output!r}"


def _submodule(
    model: nn.Module, path: str | Sequence[str], role: str, output: int | str | None = None
) -> nn.Module:
    if not isinstance(path, str):
        return nn.Sequential(*(_submodule(model, p, role, output) for p in path))
    try:
        module = model.get_submodule(path)
        return module if output is None else Pick(module, output)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"{role}={path!r} is not a submodule of {type(model).__name__}; "
            f"its children are {names}"
        ) from None


class Agent(nn.Module):
    r"""One model of the graph, split so that others can talk to it.

    .. math::
        s = \mathrm{lower}(x), \quad e = \mathrm{upper}(s), \quad y = \mathrm{head}(e)

    The agent's :class:`~agora.codec.Codec` maps its states into the graph's message space,
    :math:`m = E(s, e)`, and back, :math:`(s', e') = D(m)`. A tutor *interprets* a decoded
    message with its own ``upper`` (:meth:`interpret`).

    Args:
        name (str): unique name of the agent in its graph.
        lower (nn.Module): ``x -> s``.
        upper (nn.Module): ``s -> e``.
        head (nn.Module, optional): ``e -> y``; needed for a task loss or the ``logit``
            protocol. (default: ``None``)
        codec (Codec or str, optional): the agent's encoder/decoder, or the kind of codec
            :meth:`Graph.build <agora.graph.Graph.build>` makes for it (``"pooled"`` for a CNN
            among token models, see :func:`~agora.codec.make_codec`); ``None``: the graph's
            kind. (default: ``None``)
        frozen (bool): the backbone (lower, upper, head) never changes: no gradients, always in
            eval mode. Its codec still trains. (default: ``False``)
        codec_frozen (bool): freeze the codec too. (default: ``False``)
        task (str, optional): ``"regression"`` (MSE) or ``"classification"`` (cross-entropy);
            the task loss this agent trains on, when trainable. (default: ``None``)
        task_weight (float): weight of the task loss. (default: ``1.0``)

    How the agent learns from others is its edges' business: a learner's talk rounds, its
    interact weight and its aggregation of several tutors are settings of the talk protocol on
    its edges (:class:`~agora.protocols.talk.Talk`).

    Shapes:
        - **input**: anything ``lower`` accepts; a mapping with ``"attention_mask"`` marks
          token states.
        - **output**: :class:`AgentOutput`.

    Example:
        >>> from torch import nn
        >>> agent = Agent("student", nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 6), nn.ReLU()),
        ...               nn.Linear(6, 1), task="regression")
        >>> out = agent(torch.randn(3, 4))
        >>> tuple(out.s.shape), tuple(out.e.shape), tuple(out.y.shape)
        ((3, 8), (3, 6), (3, 1))
    """

    def __init__(
        self,
        name: str,
        lower: nn.Module,
        upper: nn.Module,
        head: nn.Module | None = None,
        *,
        codec: Codec | str | None = None,
        frozen: bool = False,
        codec_frozen: bool = False,
        task: Task | None = None,
        task_weight: float = 1.0,
        spec: Mapping[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        check_name(name)
        if unknown:
            raise TypeError(_misplaced(name, unknown))
        check_task(name, task, task_weight)
        self.name = name
        self.lower, self.upper, self.head = lower, upper, head
        self.codec_kind = codec if isinstance(codec, str) else None
        if self.codec_kind is not None:
            check_codec_kind(name, self.codec_kind)
        self.codec = None if isinstance(codec, str) else codec
        self.task = task
        self.task_weight = float(task_weight)
        self.spec = dict(spec) if spec is not None else None
        self.frozen = False
        self.codec_frozen = False
        self.freeze(frozen, codec=codec_frozen)

    @classmethod
    def from_model(
        cls,
        name: str,
        model: nn.Module,
        lower: str | Sequence[str],
        upper: str | Sequence[str],
        head: str | Sequence[str] | None = None,
        *,
        output: int | str | None = None,
        **kwargs: Any,
    ) -> Agent:
        """Wrap an existing model by naming its submodules; a list of names runs in order.

        The parts share the model's parameters, so nothing is copied or rewritten.

        Args:
            output (int or str, optional): for submodules that return several outputs (a GRU
                or LSTM returns ``(output, h)``, a Hugging Face model a ``ModelOutput``): the
                one to pass on, e.g. ``0`` or ``"last_hidden_state"``. A named submodule whose
                forward returns a tuple or mapping is then indexed with it; others are left as
                they are. (default: ``None``)
            **kwargs: the :class:`Agent`'s other arguments (``frozen``, ``task``, ...).

        Example:
            >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Linear(6, 1))
            >>> agent = Agent.from_model("teacher", mlp, lower=["0", "1"], upper="2", head="3")
            >>> torch.equal(agent(torch.ones(2, 4)).y, mlp(torch.ones(2, 4)))
            True
            >>> rnn = nn.ModuleDict({"gru": nn.GRU(4, 8, batch_first=True), "out": nn.Linear(8, 1)})
            >>> agent = Agent.from_model("rnn", rnn, lower="gru", upper="out", output=0)
            >>> tuple(agent(torch.ones(2, 5, 4)).s.shape)  # the GRU's output, not its h
            (2, 5, 8)
        """
        parts = {
            role: _submodule(model, path, role, output) if path is not None else None
            for role, path in (("lower", lower), ("upper", upper), ("head", head))
        }
        return cls(name, parts["lower"], parts["upper"], parts["head"], **kwargs)

    # -- freezing --------------------------------------------------------------------------

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of lower, upper and head (each once, even where the parts share)."""
        seen: dict[int, nn.Parameter] = {}
        for part in (self.lower, self.upper, self.head):
            if part is not None:
                seen.update((id(p), p) for p in part.parameters())
        return list(seen.values())

    def freeze(self, frozen: bool = True, *, codec: bool | None = None) -> Agent:
        """Freeze (or unfreeze) the backbone, and the codec when ``codec`` is given."""
        self.frozen = bool(frozen)
        for p in self.backbone_parameters():
            p.requires_grad_(not self.frozen)
        if codec is not None:
            self.codec_frozen = bool(codec)
        if self.codec is not None:
            self.codec.requires_grad_(not self.codec_frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> Agent:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps eval-mode dropout and batch-norm statistics
            for part in (self.lower, self.upper, self.head):
                if part is not None:
                    part.eval()
        return self

    @property
    def trainable(self) -> bool:
        """True when the backbone trains (the agent is not frozen)."""
        return not self.frozen

    # -- the three steps (override for models that need more than a tensor) -----------------

    def attention_mask(self, x: Any) -> Tensor | None:
        """The ``[B, T]`` mask of real tokens in ``x``, or ``None`` for dense inputs."""
        if isinstance(x, Mapping) and "attention_mask" in x:
            return x["attention_mask"].bool()
        return None

    def perceive(self, x: Any) -> Tensor:
        """``s = lower(x)``."""
        return self.lower(x)

    def interpret(self, s: Tensor, mask: Tensor | None = None) -> Tensor:
        """``e = upper(s)``: how the agent reads lower-level states, its own or decoded ones."""
        return self.upper(s)

    def predict(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        """``y = head(e)``."""
        if self.head is None:
            raise ValueError(f"Agent {self.name!r} has no head, so it cannot predict")
        return self.head(e)

    def forward(self, x: Any) -> AgentOutput:
        mask = self.attention_mask(x)
        s = self._tensor("lower", self.perceive(x))
        e = self._tensor("upper", self.interpret(s, mask))
        y = self._tensor("head", self.predict(e, mask)) if self.head is not None else None
        return AgentOutput(y=y, s=s, e=e, mask=mask)

    def _tensor(self, part: str, value: Any) -> Tensor:
        """``value``, checked to be a tensor: a part that returns several outputs (a GRU's
        ``(output, h)``) is an error naming the agent and the way out."""
        if not isinstance(value, Tensor):
            raise TypeError(
                f"Agent {self.name!r}: its {part} returned a {type(value).__name__}, not a "
                "tensor. For a submodule with several outputs (GRU, LSTM, a Hugging Face model) "
                "choose one: Agent.from_model(..., output=0), or wrap it in agora.agent.Pick"
            )
        return value

    def task_loss(self, y_pred: Tensor, y: Tensor) -> Tensor:
        """MSE for regression (shapes ``[B]`` and ``[B, 1]`` both accepted), CE for classes.

        Raises:
            ValueError: naming the agent, for targets of the wrong shape or type (which torch
                would broadcast, or reject from deep inside).
        """
        if self.task == "regression":
            if y_pred.shape != y.shape and y_pred.numel() == y.numel():
                y_pred = y_pred.reshape(y.shape)
            if y_pred.shape != y.shape:
                raise ValueError(
                    f"Agent {self.name!r}: regression targets of shape {list(y.shape)} do not "
                    f"match its predictions {list(y_pred.shape)}; give one target per prediction"
                )
            return F.mse_loss(y_pred, y.to(y_pred.dtype))
        if self.task == "classification":
            if y.is_floating_point() or y.dim() != 1 or y.shape[0] != y_pred.shape[0]:
                raise ValueError(
                    f"Agent {self.name!r}: classification targets must be integer class indices "
                    f"[B] = [{y_pred.shape[0]}], got {str(y.dtype).removeprefix('torch.')} "
                    f"{list(y.shape)}"
                    + (" (convert with y.long())" if y.is_floating_point() else "")
                )
            return F.cross_entropy(y_pred, y)
        raise ValueError(f"Agent {self.name!r} has no task, so it has no task loss")

    def extra_repr(self) -> str:
        flags = [f"name={self.name!r}"]
        if self.frozen:
            flags.append("frozen")
        if self.codec_frozen:
            flags.append("codec_frozen")
        if self.task:
            flags.append(f"task={self.task}")
        return ", ".join(flags)

    @torch.no_grad()
    def sample_states(self, x: Any) -> AgentOutput:
        """Round 0 on a sample batch without gradients, in eval mode (used to infer shapes)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.read(x)
        finally:
            self.train(was_training)

    def read(self, x: Any) -> AgentOutput:
        """Round 0: ``self(x)``. An input the agent cannot read (a wrong width, key or dtype)
        is a :class:`~agora.errors.GraphError` naming the agent and the input's shapes, not
        torch's error from deep inside its layers.

        Example:
            >>> agent = Agent("student", nn.Linear(6, 8), nn.Linear(8, 4), nn.Linear(4, 1))
            >>> agent.read(torch.randn(2, 5))  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            agora.errors.GraphError: Agent 'student' cannot read this input (x [2, 5] float32): ...
        """
        try:
            return self(x)
        except torch.OutOfMemoryError:  # a RuntimeError, but not the input's fault
            raise
        except (RuntimeError, ValueError, IndexError) as error:  # the input does not fit
            if "Agent " in str(error):  # already names its agent
                raise
            first = str(error).strip().splitlines()[0]
            raise GraphError(
                f"Agent {self.name!r} cannot read this input ({_describe(x)}): {first}. Does the "
                "data have the width, keys and dtype the agent was built for?"
            ) from error
