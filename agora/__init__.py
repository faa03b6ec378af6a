"""agora: PyTorch models that talk to each other to learn.

Talking-model Distillation on a graph of agents: each agent owns a codec into one message
space, edges say who learns from whom and how, and an orchestrator runs the rounds.
"""

from agora.agent import Agent, AgentOutput
from agora.aggregation import MeanAggregation, RouterAggregation, WeightedAggregation
from agora.checkpoint import load
from agora.codec import Codec, LinearCodec, MLPCodec, make_codec
from agora.graph import Edge, Graph, GraphError
from agora.orchestrator import Orchestrator, StepOutput
from agora.protocols import Losses, distance, logit_distance
from agora.stages import Stage, fit_stages
from agora.train import FitConfig, FitResult, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentOutput",
    "Codec",
    "Edge",
    "FitConfig",
    "FitResult",
    "Graph",
    "GraphError",
    "LinearCodec",
    "Losses",
    "MLPCodec",
    "MeanAggregation",
    "Orchestrator",
    "RouterAggregation",
    "Stage",
    "StepOutput",
    "WeightedAggregation",
    "__version__",
    "distance",
    "evaluate",
    "fit",
    "fit_stages",
    "load",
    "logit_distance",
    "make_codec",
]
