"""agora: PyTorch models that talk to each other to learn.

Talking-model Distillation on a graph of agents: each agent owns a codec into one message
space, edges say who learns from whom and how, and an orchestrator runs the rounds.
"""

from agora.agent import Agent, AgentOutput
from agora.aggregation import MeanAggregation, RouterAggregation, WeightedAggregation
from agora.baseline import alone, compare
from agora.checkpoint import load
from agora.codec import Codec, LinearCodec, MLPCodec, make_codec
from agora.edge import Edge
from agora.errors import GraphError
from agora.graph import AgentSpec, Graph, GraphSpec
from agora.losses import Losses, distance, logit_distance
from agora.orchestrator import Orchestrator, StepOutput
from agora.protocols import Link, Protocol
from agora.stages import Stage, fit_stages
from agora.train import FitConfig, FitResult, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentOutput",
    "AgentSpec",
    "Codec",
    "Edge",
    "FitConfig",
    "FitResult",
    "Graph",
    "GraphError",
    "GraphSpec",
    "LinearCodec",
    "Link",
    "Losses",
    "MLPCodec",
    "MeanAggregation",
    "Orchestrator",
    "Protocol",
    "RouterAggregation",
    "Stage",
    "StepOutput",
    "WeightedAggregation",
    "__version__",
    "alone",
    "compare",
    "distance",
    "evaluate",
    "fit",
    "fit_stages",
    "load",
    "logit_distance",
    "make_codec",
]
