"""A small deterministic run, for tests that need a separate process (kill/resume, DDP).

usage: python train_tiny.py OUT_DIR [--batch-size N] [--slow SECONDS] [--epochs N]
                            [--patience N] [--crash PHASE@K] [--transfer] [--store DIR]
Writes OUT_DIR/final.safetensors with every weight of the graph when training ends.
``--crash PHASE@K`` dies (``os._exit``, as a kill would) in the K-th checkpoint, at PHASE:
``model`` (its model written, not its state), ``state`` (state written, not sealed),
``sealed`` (complete, not yet named), ``named`` (named, ``latest`` not moved) or ``pointer``
(``latest`` moved, old checkpoints not pruned).
"""

import argparse
import os
import time

import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from agora import Graph, Talk
from agora.models.toy import mlp_agent
from agora.train import FitConfig, fit


class SlowDataset(TensorDataset):
    """Sleeps on each batch, so a test can kill the run part-way through an epoch."""

    def __init__(self, *tensors, delay: float = 0.0):
        super().__init__(*tensors)
        self.delay = delay

    def __getitems__(self, indices):
        time.sleep(self.delay)
        return [self[i] for i in indices]


def build(dropout: float) -> Graph:
    torch.manual_seed(0)
    graph = Graph(
        [mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("student", 8, 8)],
        message_dim=8,
        codec_dropout=dropout,
    )
    graph.add_edge("student", "teacher", (Talk(rounds=2), "logit"), noise=0.0)
    return graph


def build_per_learner(dropout: float) -> Graph:
    """One frozen teacher, two students each on its own task."""
    torch.manual_seed(0)
    agents = [mlp_agent("teacher", 8, 32, frozen=True), mlp_agent("a", 8, 8), mlp_agent("b", 8, 8)]
    graph = Graph(agents, message_dim=8, codec_dropout=dropout)
    for learner in ("a", "b"):
        graph.add_edge(learner, "teacher", (Talk(rounds=2), "logit"), noise=0.0)
    return graph


def crash_in_checkpoint(phase: str, k: str) -> None:
    """Make the K-th checkpoint die at ``phase`` (see the module's docstring)."""
    import accelerate

    from agora import checkpoint, train

    calls = {"n": 0}
    count = train.RunLog.checkpoint

    def counted(self, state):
        calls["n"] += 1
        return count(self, state)

    train.RunLog.checkpoint = counted
    hooks = {  # the phase: the call that starts the step after it
        "model": (accelerate.Accelerator, "save_state"),
        "state": (checkpoint, "seal_state"),
        "sealed": (checkpoint, "publish"),
        "named": (checkpoint, "set_pointer"),
        "pointer": (checkpoint, "prune"),
    }
    owner, name = hooks[phase]
    original = getattr(owner, name)

    def die_first(*args, **kwargs):
        if calls["n"] == int(k) and (name != "set_pointer" or args[1] == "latest"):
            os._exit(9)
        return original(*args, **kwargs)

    setattr(owner, name, die_first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--per-learner", action="store_true", help="two students, own data")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--balance", action="store_true", help="with the loss balancer")
    parser.add_argument("--crash", help="PHASE@K: die in the K-th checkpoint at PHASE")
    parser.add_argument("--transfer", action="store_true", help="96 labelled, 192 unlabelled")
    parser.add_argument("--store", help="read the teacher from a store in this folder")
    args = parser.parse_args()
    if args.crash:
        crash_in_checkpoint(*args.crash.split("@"))
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = x[:, :4].sum(-1).sin()
    train = SlowDataset(x[:192], y[:192], delay=args.slow)
    valid = TensorDataset(x[192:], y[192:])
    graph = build(args.dropout)
    if args.per_learner:  # student a learns sin(sum), b cos(sum), on halves of the data
        b = x[:, :4].sum(-1).cos()
        train = {
            "a": SlowDataset(x[:96], y[:96], delay=args.slow),
            "b": TensorDataset(x[96:192], b[96:192]),
        }
        valid = {"a": TensorDataset(x[192:], y[192:]), "b": TensorDataset(x[192:], b[192:])}
        graph = build_per_learner(args.dropout)
    transfer = None
    if args.transfer:  # each step: a labelled batch and a transfer batch; an epoch: 12 steps
        train = SlowDataset(x[:96], y[:96], delay=args.slow)
        transfer = TensorDataset(torch.randn(192, 8, generator=torch.Generator().manual_seed(2)))
    config = FitConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        patience=args.patience,
        progress=False,
        log_every=1,
        seed=7,
        balance_losses=args.balance,
        balance_every=2,
        teacher_store=args.store is not None,
        store_dir=args.store,
    )
    fit(graph, train, valid, config, transfer=transfer, out_dir=args.out)
    import accelerate

    if accelerate.PartialState().is_main_process:
        state = {k: v.contiguous() for k, v in graph.state_dict().items()}
        save_file(state, f"{args.out}/final.safetensors")
    rank = accelerate.PartialState().process_index
    state = {k: v.contiguous() for k, v in graph.state_dict().items()}
    save_file(state, f"{args.out}/final-rank{rank}.safetensors")


if __name__ == "__main__":
    main()
