"""The paper's models, split into ``lower`` / ``upper`` / ``head`` for :class:`agora.Agent`."""

from agora.models.mlp import FeatureEmbedding, RatingHead, Recommender, RecommenderConfig

__all__ = ["FeatureEmbedding", "RatingHead", "Recommender", "RecommenderConfig"]
