"""agora: PyTorch models that talk to each other to learn.

Talking-model Distillation on a graph of agents: each :class:`Agent` is a model split into
``lower`` (x -> s), ``upper`` (s -> e) and ``head`` (e -> y), with a codec into one message
space; a :class:`Graph` (a ``networkx.DiGraph``) holds the agents, and each :class:`Edge`
``learner -> tutor`` names the protocols by which the learner learns: ``"talk"`` (the paper's
rounds; :class:`Talk` with its settings, ``Talk(rounds=2)``, which the protocol keeps per
learner), or one-way ``"logit"``, ``"feature"``, ``"fitnet"``, ``"relational"``. The
:class:`Orchestrator` runs one step: round 0 for every agent, the task losses, then each
learner's protocols, each adding its named terms (with their owners) to a :class:`Losses`.
:func:`fit` trains a graph on labelled (and optionally unlabelled, ``transfer=``) data with
Hugging Face Accelerate, writing a run folder of safetensors checkpoints that :func:`load`
reads back; :func:`fit_stages` runs stages, :func:`alone` and :func:`compare` the students
without their tutors. A :class:`GraphSpec` is a graph as data: what YAML configs and
checkpoints hold, made a graph by :meth:`Graph.from_spec`. The layers and their imports are
drawn in ``docs/architecture.md``.
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
from agora.protocols.talk import Talk
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
    "Talk",
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
