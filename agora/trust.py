"""Code named by data: the one function that imports it, and the one rule it follows.

A config, a checkpoint's ``graph.json`` and a run's stored config name code by import path
(an agent's ``factory``, a ``data.factory``, a codec, an aggregation, a protocol on an edge).
Every such import goes through :func:`import_object`. Inside a ``trusting(False)`` block
(:func:`trusting`: the code is named by a run folder, a checkpoint or a stored config, and the
user did not say they trust it), it imports only agora's own constructors
(:data:`CONSTRUCTORS`) and refuses anything else *before* importing it, whatever the spelling
(``"pkg.mod:attr"`` or ``"pkg.mod.attr"``). Outside such a block the path comes from the user (a config file they
run, their own Python), and it is imported as given.

The loading entry points open the block with their ``trust_code`` argument:
:func:`agora.checkpoint.load` and :func:`agora.run.stored_config` (and so ``agora eval`` and
``agora cka``). The fact travels as a context, as ``torch.no_grad()`` does, because the imports
happen deep inside the dataclasses a stored file is read into (an ``AgentSpec`` checks its
factory when it is made), which no argument reaches.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from agora.errors import FieldError, GraphError

# agora's own constructors, by (module, name): what a run folder may name without trust. Not
# every public function (``agora.checkpoint:_write_text`` writes any file, and
# ``agora.models.recommender:write_teacher`` too): only those made to be named by a config.
CONSTRUCTORS: frozenset[tuple[str, str]] = frozenset(
    {
        ("agora.models.toy", "mlp_agent"),
        ("agora.models.recommender", "paper_teacher"),
        ("agora.models.recommender", "paper_student"),
        ("agora.models.transformer", "minilm_teacher"),
        ("agora.models.transformer", "minilm_student"),
        ("agora.models.vision", "paper_vit_teacher"),
        ("agora.models.vision", "paper_vit_student"),
        ("agora.data.synthetic", "regression"),
        ("agora.data.synthetic", "unlabelled"),  # transfer sets (data.transfer), on main
        ("agora.data.sst2", "sst2_transfer"),
        ("agora.data.movielens", "genre_task"),
        ("agora.data.sst2", "sst2_task"),
        ("agora.data.images", "cifar_task"),
        ("agora.data.images", "imagenet_task"),
        ("agora.codec", "MLPCodec"),
        ("agora.codec", "LinearCodec"),
        ("agora.codec", "PooledCodec"),
        ("agora.codec", "SpatialCodec"),
        ("agora.aggregation", "MeanAggregation"),
        ("agora.aggregation", "WeightedAggregation"),
        ("agora.aggregation", "RouterAggregation"),
        ("agora.protocols.talk", "Talk"),
        ("agora.protocols.logit", "Logit"),
        ("agora.protocols.feature", "Feature"),
        ("agora.protocols.fitnet", "FitNet"),
        ("agora.protocols.relational", "Relational"),
    }
)

# whether the code named now may be imported whatever it is (see trusting): outside a block,
# it comes from the user (their config file, their Python)
_TRUSTED: ContextVar[bool] = ContextVar("agora_trusted", default=True)


class UntrustedCodeError(FieldError):
    """A stored file names code outside agora's own constructors, and it is not trusted."""


def split_path(path: str) -> tuple[str, str]:
    """``"pkg.mod:attr"`` or ``"pkg.mod.attr"`` -> ``("pkg.mod", "attr")``.

    Example:
        >>> split_path("agora.models.toy:mlp_agent"), split_path("agora.models.toy.mlp_agent")
        (('agora.models.toy', 'mlp_agent'), ('agora.models.toy', 'mlp_agent'))
    """
    module, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    return module, attr


def is_own(path: str) -> bool:
    """Whether ``path`` names one of agora's own constructors (:data:`CONSTRUCTORS`), so that
    a stored file may name it without trust.

    Example:
        >>> is_own("agora.models.toy.mlp_agent"), is_own("agora.checkpoint:_write_text")
        (True, False)
    """
    return split_path(path) in CONSTRUCTORS


@contextmanager
def trusting(trust_code: bool) -> Iterator[None]:
    """Within the block, :func:`import_object` imports only agora's own code
    (:func:`is_own`) unless ``trust_code``: a loading entry point opens it around reading a
    stored file.

    Example:
        >>> with trusting(False):
        ...     import_object("subprocess.run", "factory")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        agora.trust.UntrustedCodeError: 'subprocess.run' is not agora's own code ...
    """
    token = _TRUSTED.set(trust_code)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def import_object(path: str, key: str | None = None) -> Any:
    """``"package.module:attr"`` (or ``"package.module.attr"``) -> the object, under the rule
    of the enclosing :func:`trusting` block (if any).

    Raises:
        UntrustedCodeError: an untrusted source names code that is not agora's own; nothing
            was imported.
        GraphError: naming ``key`` when the module or the name cannot be imported.
    """
    if not _TRUSTED.get() and not is_own(path):
        raise UntrustedCodeError(
            f"{path!r} is not agora's own code (one of its constructors); loading would import "
            "and run it. Load it only if you trust where it came from: trust_code=True (agora "
            "eval/cka --trust-code), or give the agents yourself (agora.load(..., agents={...}))",
            key,
        )
    module_name, attr = split_path(path)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        what = f"{key} " if key else ""
        raise GraphError(f"Cannot import {what}{path!r}: {error}", key) from error
