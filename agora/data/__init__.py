"""Dataset loaders. MovieLens 100K first: ``from agora.data import MovieLens``.

Datasets are never shipped with agora (their licenses forbid it): each loader reads
``$AGORA_DATA_DIR/<name>/`` or downloads into a cache and verifies checksums.
"""

from agora.data.movielens import (
    ML_100K,
    Archive,
    ChecksumError,
    DataError,
    DataMissingError,
    MovieLens,
    MovieLensMeta,
    RatingsDataset,
    collate,
    download_archive,
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
    "collate",
    "download_archive",
    "find_data",
    "title_tokens",
]
