"""Data sets and their loaders: MovieLens 100K, SST-2 (text extra), synthetic data.

Data sets are never shipped with agora (their licenses forbid it): each loader reads
``$AGORA_DATA_DIR/<name>/`` or downloads into a cache, verifying checksums
(:mod:`agora.data.download`). What agora's loaders read from a data set is written down in
:class:`agora.data.dataset.TaskData`.
"""

from agora.data.dataset import TaskData
from agora.data.download import (
    Archive,
    ChecksumError,
    DataError,
    DataMissingError,
    Source,
    download_archive,
    locate,
)
from agora.data.movielens import (
    ML_100K,
    MovieLens,
    MovieLensMeta,
    RatingsDataset,
    collate,
    find_data,
    title_tokens,
)

__all__ = [
    "ML_100K",
    "Archive",
    "ChecksumError",
    "DataError",
    "DataMissingError",
    "MovieLens",
    "MovieLensMeta",
    "RatingsDataset",
    "Source",
    "TaskData",
    "collate",
    "download_archive",
    "find_data",
    "locate",
    "title_tokens",
]
