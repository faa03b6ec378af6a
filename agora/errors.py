"""Errors about one field of a graph, an edge, an agent, a stage or a fit.

Each carries the dotted ``key`` of the field at fault, relative to the object that raised it
(``"tutor"``, ``"edges.1.weights"``), so that a config loader can name the key in the file.
:class:`NonFiniteLossError` is what a run raises when a loss or a validation metric turns NaN
or infinite.
"""

from __future__ import annotations


class FieldError(ValueError):
    """A bad value of one field.

    Args:
        message (str): what is wrong and what would be right.
        key (str, optional): the dotted field at fault, relative to the object that raised it.
            (default: ``None``)
        owner (str, optional): the class the field belongs to, shown before the key when the
            error is printed on its own (``FitConfig.lr: must be > 0``). (default: ``None``)
    """

    def __init__(self, message: str, key: str | None = None, owner: str | None = None) -> None:
        self.message, self.key, self.owner = message, key, owner
        super().__init__(f"{owner}.{key}: {message}" if owner and key else message)

    def under(self, prefix: str) -> FieldError:
        """The same error with its key under ``prefix`` (``"edges.0"`` + ``"tutor"``)."""
        key = ".".join(part for part in (prefix, self.key) if part)
        return type(self)(self.message, key)


class GraphError(FieldError):
    """A graph that cannot train: the message names the agent, edge or stage at fault."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the term (and its edge)."""
