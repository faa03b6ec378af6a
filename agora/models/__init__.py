"""Model families, each split into ``lower`` / ``upper`` / ``head`` for :class:`agora.Agent`.

- :mod:`agora.models.recommender`: the paper's MovieLens MLPs, their agents and pre-training.
- :mod:`agora.models.transformer`: text encoders (all-MiniLM-L6-v2 and any BERT-like model).
- :mod:`agora.models.toy`: a small MLP agent for examples and tests.
"""

from agora.models.recommender import (
    FeatureEmbedding,
    RatingHead,
    Recommender,
    RecommenderConfig,
    student_agent,
    teacher_agent,
)

__all__ = [
    "FeatureEmbedding",
    "RatingHead",
    "Recommender",
    "RecommenderConfig",
    "student_agent",
    "teacher_agent",
]
