"""SST-2 (GLUE), binary sentiment of movie-review phrases, for the text experiment.

One example is one sentence, tokenised by the teacher's own tokenizer; a batch of ``B`` is::

    x = {"input_ids": Long[B, T], "attention_mask": Long[B, T]}    # T: the batch's longest
    y = Long[B]                                                    # 0 negative, 1 positive

Splits: GLUE's ``dev.tsv`` (872 sentences) is the **test** set, since GLUE's test labels are
private; ``valid`` (tuning, early stopping) is carved from ``train.tsv`` with a fixed shuffle,
and ``train`` is the rest, or a subset of it (``train_size``) for CPU budgets.

agora reads ``$AGORA_DATA_DIR/sst2/{train,dev}.tsv`` or downloads GLUE's zip into the cache
on first use, checking its size and sha256. The data is not redistributed with agora.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from agora.data.download import Archive, DataError, Source, locate, read_verified

SST2 = Source(
    name="SST-2",
    folder="sst2",
    files={  # sha256 of the files agora reads, as GLUE's zip holds them
        "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
        "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    },
    archive=Archive(
        url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        size=7_439_277,
        md5=None,
        sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
        folder="SST-2",
    ),
)
SPLIT_SEED = 20_130_101  # the fixed shuffle that carves valid from train, the same for every run

Batch = tuple[dict[str, Tensor], Tensor]


def find_sst2(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The folder holding SST-2's ``train.tsv`` and ``dev.tsv``, downloaded on first use.

    Looks at ``data_dir`` (the folder itself, or its ``sst2/``), then
    ``$AGORA_DATA_DIR/sst2/``, then the cache ``$AGORA_CACHE_DIR/SST-2/`` (default
    ``~/.cache/agora/SST-2/``), filled from GLUE when ``download`` is true
    (:func:`agora.data.download.locate`).
    """
    return locate(SST2, data_dir, download=download)


def read_tsv(path: str | os.PathLike, verify: bool = True) -> tuple[list[str], Tensor]:
    """Sentences and labels of a GLUE SST-2 file (header ``sentence<TAB>label``).

    Args:
        path: ``train.tsv`` or ``dev.tsv``.
        verify: check the file's sha256 against GLUE's release. (default: ``True``)

    Raises:
        DataError: naming the file and line that cannot be read, or the checksum that differs.
    """
    path = Path(path)
    raw = read_verified(SST2, path.parent, path.name, verify)
    lines = raw.decode("utf-8").splitlines()
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise DataError(f"{path}: expected the header 'sentence<TAB>label'")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.rsplit("\t", 1)
        if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
            raise DataError(f"{path}, line {number}: expected 'sentence<TAB>0|1', got {line!r}")
        sentences.append(parts[0].strip())
        labels.append(int(parts[1]))
    return sentences, torch.tensor(labels)


class TextDataset(Dataset):
    """Tokenised sentences and their labels; a batch is padded to its longest sentence.

    ``lengths`` (tokens per example) lets :func:`agora.fit` group sentences of similar length
    (``FitConfig.group_by_length``), so batches hold little padding.

    Args:
        ids (sequence of Tensor): token ids per example, special tokens included.
        labels (Tensor): ``[N]`` class per example.
        pad_id (int): the tokenizer's padding id. (default: ``0``)
    """

    def __init__(self, ids: Sequence[Tensor], labels: Tensor, pad_id: int = 0) -> None:
        if len(ids) != len(labels):
            raise ValueError(f"TextDataset: {len(ids)} sentences but {len(labels)} labels")
        self.ids, self.labels, self.pad_id = list(ids), labels, pad_id
        self.lengths = [len(i) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: Sequence[int] | Tensor) -> Batch:
        indices = torch.as_tensor(indices).tolist()
        x = pad([self.ids[i] for i in indices], self.pad_id)
        return x, self.labels[indices]

    def __getitem__(self, index: int) -> Batch:
        x, y = self.__getitems__([index])
        return {key: value[0] for key, value in x.items()}, y[0]

    def collate_fn(self, batch: Any) -> Batch:
        """Batches come whole from ``__getitems__``; single examples are padded here."""
        if isinstance(batch, tuple):
            return batch
        rows = [x["input_ids"][x["attention_mask"].bool()] for x, _ in batch]
        return pad(rows, self.pad_id), torch.stack([y for _, y in batch])

    def subset(self, indices: Sequence[int]) -> TextDataset:
        """The examples at ``indices``, in that order."""
        return TextDataset([self.ids[i] for i in indices], self.labels[list(indices)], self.pad_id)


def pad(rows: Sequence[Tensor], pad_id: int = 0) -> dict[str, Tensor]:
    """Token ids of several sentences padded to the longest, with their attention mask.

    Example:
        >>> pad([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0)["attention_mask"]
        tensor([[1, 1, 1],
                [1, 0, 0]])
    """
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def tokenize(sentences: Sequence[str], tokenizer: Any, max_length: int) -> list[Tensor]:
    """Token ids of each sentence with the tokenizer's special tokens, cut to ``max_length``."""
    encoded = tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    return [torch.tensor(ids, dtype=torch.long) for ids in encoded]


def sst2_task(
    train_size: int | None = 8000,
    valid_size: int = 1000,
    max_length: int = 64,
    test_size: int | None = None,
    data_dir: str | None = None,
    tokenizer: str | None = None,
) -> dict[str, TextDataset]:
    """SST-2 tokenised by the teacher's tokenizer: ``{"train", "valid", "test"}``.

    ``valid`` is the first ``valid_size`` examples of ``train.tsv`` under a fixed shuffle
    (the same for every run and seed), ``train`` the next ``train_size`` (``None``: all the
    rest), ``test`` GLUE's dev set (its first ``test_size``, for smoke tests). Configs name it
    as ``agora.data.sst2:sst2_task``.

    Args:
        train_size (int, optional): training examples. (default: ``8000``)
        valid_size (int): validation examples carved from train. (default: ``1000``)
        max_length (int): tokens per sentence at most, special tokens included. (default: ``64``)
        test_size (int, optional): keep the first of dev's 872 sentences. (default: all)
        data_dir (str, optional): see :func:`find_sst2`.
        tokenizer (str, optional): a local tokenizer folder (default: all-MiniLM-L6-v2's).

    Example:
        >>> task = sst2_task(train_size=64, valid_size=32, test_size=16)  # doctest: +SKIP
        >>> {name: len(split) for name, split in task.items()}  # doctest: +SKIP
        {'train': 64, 'valid': 32, 'test': 16}
    """
    from agora.models.transformer import load_tokenizer

    root = find_sst2(data_dir)
    tok = load_tokenizer(tokenizer)
    sentences, labels = read_tsv(root / "train.tsv")
    if valid_size < 1 or valid_size >= len(sentences):
        raise ValueError(f"valid_size must be in 1..{len(sentences) - 1}, got {valid_size}")
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(SPLIT_SEED))
    rest = len(sentences) - valid_size
    if train_size is not None and not 1 <= train_size <= rest:
        raise ValueError(f"train_size must be in 1..{rest} (or null for all), got {train_size}")
    picked = {
        "valid": order[:valid_size],
        "train": order[valid_size : valid_size + (train_size or rest)],
    }
    pad_id = tok.pad_token_id or 0
    splits = {}
    for name in ("train", "valid"):
        rows = picked[name].tolist()
        ids = tokenize([sentences[i] for i in rows], tok, max_length)
        splits[name] = TextDataset(ids, labels[rows], pad_id)
    dev_sentences, dev_labels = read_tsv(root / "dev.tsv")
    keep = len(dev_sentences) if test_size is None else test_size
    splits["test"] = TextDataset(
        tokenize(dev_sentences[:keep], tok, max_length), dev_labels[:keep], pad_id
    )
    return {name: splits[name] for name in ("train", "valid", "test")}


def sst2_transfer(
    size: int | None = 20000,
    skip: int = 10000,
    valid_size: int = 1000,
    max_length: int = 64,
    data_dir: str | None = None,
    tokenizer: str | None = None,
) -> TextDataset:
    """A transfer set of SST-2 sentences that no training or validation split of
    :func:`sst2_task` with ``train_size <= skip`` holds: those after the first ``valid_size``
    + ``skip`` of train.tsv under the fixed shuffle, the first ``size`` of them (``None``: all
    the rest). Their labels come along (a transfer set never reads them; a ceiling run can).
    Configs name it as ``agora.data.sst2:sst2_transfer`` under ``data.transfer``.

    Args:
        size (int, optional): sentences. (default: ``20000``)
        skip (int): training sentences to leave out, e.g. the teacher's. (default: ``10000``)
        valid_size (int): :func:`sst2_task`'s. (default: ``1000``)
        max_length (int): tokens per sentence at most. (default: ``64``)
        data_dir (str, optional): see :func:`find_sst2`.
        tokenizer (str, optional): a local tokenizer folder (default: all-MiniLM-L6-v2's).
    """
    from agora.models.transformer import load_tokenizer

    sentences, labels = read_tsv(find_sst2(data_dir) / "train.tsv")
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(SPLIT_SEED))
    rest = order[valid_size + skip :]
    if skip < 0 or len(rest) < 1 or (size is not None and not 1 <= size <= len(rest)):
        raise ValueError(
            f"sst2_transfer: {len(rest)} sentences remain after valid_size={valid_size} and "
            f"skip={skip}; size must be in 1..{len(rest)} (or null for all), got {size}"
        )
    rows = rest[:size].tolist()
    tok = load_tokenizer(tokenizer)
    ids = tokenize([sentences[i] for i in rows], tok, max_length)
    return TextDataset(ids, labels[rows], tok.pad_token_id or 0)
