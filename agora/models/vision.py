"""Vision agents from Hugging Face transformers: a ViT split between its blocks, a ResNet split
between its stages.

The paper's image experiments (appendix 6.2, 6.5) distil ViT-B/32, pre-trained on ImageNet-21k,
into a 4-layer ViT initialised from its first 4 layers::

    teacher_model = load_vit("google/vit-base-patch32-224-in21k")   # or a local folder
    teacher = vit_agent("teacher", teacher_model, lower_layers=6, num_labels=10, frozen=True)
    student = vit_student(teacher_model, num_layers=4, lower_layers=2, num_labels=10)

A ViT agent's states are tokens, ``[B, 1 + N, D]`` (the CLS token and ``N`` patches), so the
graph talks per token (``Graph(..., codec="token")``); a ResNet agent's are feature maps
``[B, C, H, W]`` (pool them, or use a per-position codec). Both parts share the model's
parameters: ``upper(lower(x))`` is the model's own output, bit for bit.

Needs ``transformers`` (``pip install 'agora-distill[vision]'``); torchvision and timm are not
needed.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from agora.agent import Agent
from agora.models.transformer import check_split, run_layers, token_layers, truncated_copy

VISION_EXTRA = "pip install 'agora-distill[vision]'"
PAPER_VIT = "google/vit-base-patch32-224-in21k"  # the paper's teacher checkpoint
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)  # the normalisation of the paper's ViT checkpoints


# -- ViT ---------------------------------------------------------------------------------------


class PatchLower(nn.Module):
    """The patch embedding and the first blocks: ``pixel_values [B, 3, H, W] -> s [B, 1+N, D]``."""

    def __init__(self, embeddings: nn.Module, layers: nn.ModuleList, config: Any) -> None:
        super().__init__()
        self.embeddings, self.layers, self.config = embeddings, layers, config

    def forward(self, pixel_values: Tensor) -> Tensor:
        return run_layers(self.layers, self.embeddings(pixel_values), None, self.config)


class BlocksUpper(nn.Module):
    """The remaining blocks and the final norm: ``s [B, 1+N, D] -> e [B, 1+N, D]``."""

    def __init__(self, layers: nn.ModuleList, norm: nn.Module, config: Any) -> None:
        super().__init__()
        self.layers, self.norm, self.config = layers, norm, config

    def forward(self, s: Tensor) -> Tensor:
        return self.norm(run_layers(self.layers, s, None, self.config))


class ClsHead(nn.Module):
    """The classifier on the CLS token: ``e [B, 1+N, D] -> y [B, C]`` (as
    ``ViTForImageClassification``)."""

    def __init__(self, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, num_labels)

    def forward(self, e: Tensor) -> Tensor:
        return self.linear(e[:, 0])


def vit_agent(
    name: str, model: nn.Module, lower_layers: int, num_labels: int | None = None, **agent: Any
) -> Agent:
    """Split a Hugging Face ``ViTModel`` after ``lower_layers`` blocks.

    Args:
        name (str): the agent's name.
        model (nn.Module): a ``ViTModel`` (its ``embeddings``, blocks and ``layernorm``).
        lower_layers (int): blocks in ``lower``; ``upper`` keeps the rest (at least one).
        num_labels (int, optional): classes of a CLS-token classifier head; ``None``: no head.
        **agent: :class:`~agora.agent.Agent` keywords (``frozen``, ``codec``...); ``task`` is
            ``"classification"`` when a head is given.

    Example:
        >>> from transformers import ViTConfig, ViTModel
        >>> config = ViTConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        ...                    intermediate_size=32, image_size=32, patch_size=8)
        >>> agent = vit_agent("t", ViTModel(config, add_pooling_layer=False), 1, num_labels=10)
        >>> out = agent(torch.randn(2, 3, 32, 32))
        >>> tuple(out.s.shape), tuple(out.y.shape)  # 1 CLS token + 16 patches
        ((2, 17, 16), (2, 10))
    """
    layers = token_layers(model)
    check_split(name, "lower_layers", lower_layers, len(layers), "blocks")
    config = model.config
    lower = PatchLower(model.embeddings, layers[:lower_layers], config)
    upper = BlocksUpper(layers[lower_layers:], model.layernorm, config)
    head = ClsHead(config.hidden_size, num_labels) if num_labels else None
    if head is not None:
        agent.setdefault("task", "classification")
    return Agent(name, lower, upper, head, **agent)


def vit_student(
    teacher_model: nn.Module,
    name: str = "student",
    num_layers: int = 4,
    lower_layers: int = 2,
    num_labels: int | None = None,
    **agent: Any,
) -> Agent:
    """The paper's student: a ViT of the teacher's first ``num_layers`` blocks (its patch
    embedding, blocks and final norm copied, :func:`~agora.models.transformer.truncated_copy`),
    a fresh classifier, split after ``lower_layers``.

    Example:
        >>> from transformers import ViTConfig, ViTModel
        >>> config = ViTConfig(hidden_size=16, num_hidden_layers=6, num_attention_heads=2,
        ...                    intermediate_size=32, image_size=32, patch_size=8)
        >>> student = vit_student(ViTModel(config, add_pooling_layer=False), num_labels=10)
        >>> len(student.lower.layers), len(student.upper.layers)
        (2, 2)
    """
    model = truncated_copy(teacher_model, num_layers)
    return vit_agent(name, model, lower_layers, num_labels, **agent)


def load_vit(name_or_path: str | os.PathLike = PAPER_VIT) -> nn.Module:
    """A pre-trained ``ViTModel`` from a local folder, or by its Hub name: from the Hub's cache,
    else downloaded when online.

    A folder, or a name only a path can have (``vit-b32/``, ``./vit``), is read locally and
    never sends a request. For a Hub name not in the cache the Hub is asked once, without
    retries, so that an offline machine says so at once.

    Raises:
        OSError: the folder is missing or incomplete, or the weights cannot be had; the
            message says where to put them.
    """
    transformers = _transformers()
    load = partial(transformers.ViTModel.from_pretrained, add_pooling_layer=False)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        try:
            return load(str(path), local_files_only=True)
        except OSError:
            raise OSError(
                f"{path} is not a folder holding config.json and model.safetensors. {_PUT_VIT}"
            ) from None
    name = str(name_or_path)
    if not _hub_name(name):
        raise OSError(f"{name}: folder not found. {_PUT_VIT}")
    try:
        return load(name, local_files_only=True)  # the Hub's cache: no request
    except OSError:
        pass
    if (unreachable := _hub_unreachable(name)) is not None:
        raise OSError(
            f"{name}: folder not found, and not in the Hub's cache; {unreachable}. {_PUT_VIT}"
        )
    try:
        return load(name)
    except OSError as error:
        first = str(error).splitlines()[0]
        raise OSError(f"{name} could not be downloaded ({first}). {_PUT_VIT}") from None


_PUT_VIT = (
    "Without a network, put the checkpoint's files (config.json, model.safetensors) in a folder "
    "and pass its path (agora run vit-cifar10 --weights DIR); on a machine with one, "
    f"`hf download {PAPER_VIT} --local-dir vit-b32` fetches them"
)


def _hub_name(name: str) -> bool:
    """Whether ``name`` can name a model on the Hub (``org/model``), not only a path."""
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:
        return False
    return True


def _hub_unreachable(name: str) -> str | None:
    """Why the Hub cannot give ``name``'s files now, asked once without retries (the
    library's own download retries for half a minute offline); ``None`` when it can."""
    import huggingface_hub

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    try:
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(name, "config.json"))
    except Exception as error:  # the Hub library's own: offline mode, network, HTTP status
        return f"the Hub cannot be asked ({str(error).splitlines()[0]})"
    return None


def paper_vit_teacher(
    name: str = "teacher", path: str = PAPER_VIT, lower_layers: int = 6, **agent: Any
) -> Agent:
    """The paper's teacher: ViT-B/32 pre-trained on ImageNet-21k (its 12 blocks), without a
    head for the downstream labels, split after ``lower_layers`` blocks. ``path``: a local
    folder of the checkpoint, or its Hub name (online). Configs name it as
    ``agora.models.vision:paper_vit_teacher``."""
    return vit_agent(name, load_vit(path), lower_layers, None, **agent)


def paper_vit_student(
    name: str = "student",
    path: str = PAPER_VIT,
    num_layers: int = 4,
    lower_layers: int = 2,
    num_labels: int = 10,
    **agent: Any,
) -> Agent:
    """The paper's student: the teacher's first ``num_layers`` blocks and a fresh classifier
    (:func:`vit_student`). Configs name it as ``agora.models.vision:paper_vit_student``."""
    return vit_student(load_vit(path), name, num_layers, lower_layers, num_labels, **agent)


# -- ResNet ------------------------------------------------------------------------------------


class StagesLower(nn.Module):
    """The stem and the first stages: ``pixel_values [B, 3, H, W] -> s [B, C, H', W']``."""

    def __init__(self, embedder: nn.Module, stages: nn.ModuleList) -> None:
        super().__init__()
        self.embedder, self.stages = embedder, stages

    def forward(self, pixel_values: Tensor) -> Tensor:
        h = self.embedder(pixel_values)
        for stage in self.stages:
            h = stage(h)
        return h


class StagesUpper(nn.Module):
    """The remaining stages: ``s [B, C, H', W'] -> e [B, C', H'', W'']``."""

    def __init__(self, stages: nn.ModuleList) -> None:
        super().__init__()
        self.stages = stages

    def forward(self, s: Tensor) -> Tensor:
        for stage in self.stages:
            s = stage(s)
        return s


class PooledHead(nn.Module):
    """Global average pooling and a linear classifier: ``e [B, C, H, W] -> y [B, classes]``."""

    def __init__(self, channels: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, num_labels)

    def forward(self, e: Tensor) -> Tensor:
        return self.linear(e.mean(dim=(-2, -1)))


def resnet_agent(
    name: str, model: nn.Module, lower_stages: int, num_labels: int | None = None, **agent: Any
) -> Agent:
    """Split a Hugging Face ``ResNetModel`` after ``lower_stages`` stages.

    Example:
        >>> from transformers import ResNetConfig, ResNetModel
        >>> config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64],
        ...                       depths=[1, 1, 1, 1])
        >>> agent = resnet_agent("cnn", ResNetModel(config), 2, num_labels=10)
        >>> out = agent(torch.randn(2, 3, 64, 64))
        >>> tuple(out.s.shape), tuple(out.e.shape), tuple(out.y.shape)
        ((2, 16, 8, 8), (2, 64, 2, 2), (2, 10))
    """
    stages = model.encoder.stages
    check_split(name, "lower_stages", lower_stages, len(stages), "stages")
    lower = StagesLower(model.embedder, stages[:lower_stages])
    upper = StagesUpper(stages[lower_stages:])
    head = PooledHead(model.config.hidden_sizes[-1], num_labels) if num_labels else None
    if head is not None:
        agent.setdefault("task", "classification")
    return Agent(name, lower, upper, head, **agent)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"Vision agents need transformers: {VISION_EXTRA}") from error
    return transformers


__all__ = [
    "PAPER_VIT",
    "VIT_MEAN",
    "VIT_STD",
    "BlocksUpper",
    "ClsHead",
    "PatchLower",
    "PooledHead",
    "StagesLower",
    "StagesUpper",
    "load_vit",
    "paper_vit_student",
    "paper_vit_teacher",
    "resnet_agent",
    "vit_agent",
    "vit_student",
]
