"""Peers: two small students on related genres learn from each other (mutual learning), with
talk edges both ways; both train, each on its own genre's ratings and task (two_node.py with
the frozen teacher replaced by a trainable peer).

    python examples/peers.py                               # a minute or two on a CPU
    python examples/peers.py --genres Thriller Crime
    python examples/peers.py --limit 1000                  # a smoke test: seconds
"""

from __future__ import annotations

import argparse

import torch

from agora import FitConfig, Graph, Talk, evaluate, fit
from agora.data.movielens import MovieLens
from agora.models.recommender import student_agent

TD_WEIGHTS = {"message_consistency": 0.5, "state_consistency": 0.5}  # the edge's
TALK = Talk(rounds=2, interact_weight=0.5)  # the learner's k rounds and interact weight


def splits(ml: MovieLens, genre: str | list[str] | None, limit: int | None) -> dict:
    """Train / valid / test ratings of a genre (``None``: all), each cut to ``limit``."""
    return {name: data.head(limit) for name, data in ml.splits(genre).items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genres", nargs=2, default=["Action", "Adventure"], help="two genres")
    parser.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    parser.add_argument("--limit", type=int, help="keep the first N ratings of each split")
    parser.add_argument("--data-dir", help="the folder holding ml-100k/ (default: $AGORA_DATA_DIR)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ml = MovieLens(args.data_dir)

    names = [genre.lower() for genre in args.genres]
    graph = Graph([student_agent(ml.meta, name=name) for name in names], message_dim=128)
    graph.add_edge(names[0], names[1], TALK, weights=TD_WEIGHTS)  # new: both ways
    graph.add_edge(names[1], names[0], TALK, weights=TD_WEIGHTS)

    data = {name: splits(ml, genre, args.limit) for name, genre in zip(names, args.genres)}
    train = {name: d["train"] for name, d in data.items()}
    valid = {name: d["valid"] for name, d in data.items()}
    config = FitConfig(epochs=args.epochs, patience=2, metric="mean/rmse", progress=False)
    fit(graph, train, valid, config)
    test = evaluate(graph, {name: d["test"] for name, d in data.items()})
    print(", ".join(f"{name} test RMSE {test[f'{name}/rmse']:.4f}" for name in names))
    return test


if __name__ == "__main__":
    main()
