"""Protocols: what an edge ``learner -> tutor`` adds to the loss, one class per protocol.

Every module of this package is imported here, and defining a :class:`Protocol` subclass with
a ``name`` registers it: a new protocol is one file in this folder (or in a user's package,
named on an edge by its import path ``"package.module:Class"``). An edge holds instances:
``"talk"`` is ``Talk()``, and ``Talk(rounds=2)`` one with settings of its own.

=============  ==========================================================  =====================
name           class                                                       weights
=============  ==========================================================  =====================
``talk``       :class:`~agora.protocols.talk.Talk` (TD, the paper's)       message_consistency,
                                                                           state_consistency
``logit``      :class:`~agora.protocols.logit.Logit` (LD, Hinton)          logit
``feature``    :class:`~agora.protocols.feature.Feature` (FD)              feature
``fitnet``     :class:`~agora.protocols.fitnet.FitNet`                     fitnet
``relational`` :class:`~agora.protocols.relational.Relational` (RKD-D)     relational
``hybrid``     alias of ``logit`` + ``feature``                            logit, feature
=============  ==========================================================  =====================
"""

import importlib
import pkgutil

from agora.protocols.base import (
    ALIASES,
    PROTOCOLS,
    Link,
    Protocol,
    expand,
    get_protocol,
    known_protocols,
    make_protocols,
    protocol_class,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def all_weights() -> dict[str, float]:
    """Every loss weight name of every protocol, with its default."""
    return {k: v for protocol in PROTOCOLS.values() for k, v in protocol.weights.items()}


__all__ = [
    "ALIASES",
    "PROTOCOLS",
    "Link",
    "Protocol",
    "all_weights",
    "expand",
    "get_protocol",
    "known_protocols",
    "make_protocols",
    "protocol_class",
]
