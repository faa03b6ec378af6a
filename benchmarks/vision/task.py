"""The image experiment (appendix 6.2 and 6.5): every method, one run each, as the paper.

Teacher: ViT-B/32 pre-trained on ImageNet-21k, frozen, split after 6 of its 12 blocks, with no
head for the downstream labels. LD and Hybrid learn from a **linear probe** on its CLS token,
trained on the training split (:func:`train_probe`); FD, FitNet and TD use only its states.
Student: its first 4 blocks and a fresh classifier, split after 2. Per-token messages
``[B, 50, 512]``, codecs of hidden size 512 (the appendix's sizes). Each run fine-tunes as the
ViT paper does (SGD, momentum 0.9, cosine decay after a warm-up, clipping at 1) for
``--steps`` steps and is scored at its best validation accuracy.

Methods (weights 1, k = 2 unless named): Scratch, LD, FD, FitNet, Hybrid, TD with k = 0, 1, 2
(Table 6), TD without L_SC and TD with noise on the teacher's decoded states (Table 9).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from agora.graph import Graph
from agora.loaders import eval_loader
from agora.train import FitConfig, evaluate, fit
from benchmarks.harness import (
    BenchmarkError,
    Runner,
    RunStore,
    cache_dir,
    linear_probe,
    run_all,
    stamp,
)
from benchmarks.movielens.task import Method, method

DATASETS = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
# the paper's accuracy (Tables 4, 6 and 9): one run each
PAPER = {
    "cifar10": {"Scratch": 0.93678, "LD": 0.93709, "FD": 0.93565, "FitNet": 0.93586,
                "Hybrid": 0.93894, "TD k=0": 0.94089, "TD k=1": 0.94069, "TD k=2": 0.94100,
                "TD no SC": 0.94069, "TD noise": 0.94089},
    "cifar100": {"Scratch": 0.74764, "LD": 0.76162, "FD": 0.74702, "FitNet": 0.75164,
                 "Hybrid": 0.76213, "TD k=0": 0.76460, "TD k=1": 0.76511, "TD k=2": 0.76562,
                 "TD no SC": 0.76398, "TD noise": 0.76562},
    "imagenet": {"Scratch": 0.48683, "LD": 0.48576, "FD": 0.48615, "FitNet": 0.48828,
                 "Hybrid": 0.48691, "TD k=0": 0.49873, "TD k=1": 0.49893, "TD k=2": 0.49930,
                 "TD no SC": 0.49930, "TD noise": 0.49917},
}  # fmt: skip
NOISE = 0.1


def methods(weight: float = 1.0, lr: float = 0.01) -> list[Method]:
    """Every method of the paper's image tables."""
    td = method("TD", weight, rounds=2, lr=lr)
    return [
        method("Scratch", lr=lr), *(method(n, weight, lr=lr) for n in ("LD", "FD", "FitNet", "Hybrid")),
        *(replace(td, name=f"TD k={k}", rounds=k) for k in (0, 1, 2)),
        replace(td.set("state_consistency", 0.0), name="TD no SC"),
        replace(td, name="TD noise", noise=NOISE),
    ]  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """How each student trains, and the model sizes (the paper's, or a smoke test's)."""

    steps: int = 20000
    batch_size: int = 512
    lr: float = 0.01
    warmup_steps: int = 500
    image_size: int = 224
    valid_size: int = 5000
    train_size: int | None = None
    test_size: int | None = None
    evals: int = 20  # evaluations over the run
    message_dim: int = 512
    codec_hidden: int = 512
    mixed_precision: str = "no"


# -- the teacher's probe ---------------------------------------------------------------------


@torch.no_grad()
def cls_features(agent: Any, data: Any, batch_size: int = 256) -> tuple[torch.Tensor, ...]:
    """The frozen agent's CLS token after its last block and norm, and the labels."""
    agent.eval()
    device = next(agent.parameters()).device
    features, labels = [], []
    for x, y in eval_loader(data, batch_size):
        features.append(agent(x.to(device)).e[:, 0].float().cpu())
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


def train_probe(teacher: Any, splits: dict[str, Any], path: Path, classes: int,
                decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2)) -> dict[str, float]:  # fmt: skip
    """Logistic regression on the teacher's CLS features (L-BFGS, its L2 penalty chosen by
    validation accuracy), saved as the teacher head's ``linear.*``."""
    train = cls_features(teacher, splits["train"])
    valid = cls_features(teacher, splits["valid"])
    return linear_probe(train, valid, path, decays, classes, max_iter=300)


# -- one run ---------------------------------------------------------------------------------


def build_graph(m: Method, weights: str, classes: int, probe: Path | None, b: Budget) -> Graph:
    """The frozen teacher (with its probe for LD and Hybrid) and the 4-layer student."""
    from agora.models.vision import load_vit, vit_agent, vit_student

    model = load_vit(weights)
    logits = {"logit", "hybrid"} & set(m.protocols)
    teacher = vit_agent("teacher", model, 6, classes if logits else None, frozen=True)
    if logits and probe is not None:
        teacher.head.load_state_dict(load_file(str(probe)))
    student = vit_student(model, "student", 4, 2, classes)
    graph = Graph([teacher, student], message_dim=b.message_dim, codec="token",
                  codec_hidden=b.codec_hidden)  # fmt: skip
    if m.protocols:
        graph.add_edge("student", "teacher", **m.edge())
    return graph


def train_student(splits: dict[str, Any], m: Method, weights: str, classes: int,
                  probe: Path | None, b: Budget) -> dict[str, Any]:  # fmt: skip
    """One student: validation and test accuracy at its best validation step."""
    started = time.perf_counter()
    torch.manual_seed(0)
    graph = build_graph(m, weights, classes, probe, b)
    config = FitConfig(
        epochs=10**6, max_steps=b.steps, batch_size=b.batch_size, lr=m.lr, optimizer="sgd",
        momentum=0.9, scheduler="cosine", warmup_steps=b.warmup_steps, max_grad_norm=1.0,
        eval_every=max(1, b.steps // b.evals), metric="student/accuracy",
        mixed_precision=b.mixed_precision, progress=False, log_every=10**9,
    )  # fmt: skip
    result = fit(graph, splits["train"], splits["valid"], config)
    test = evaluate(graph, splits["test"], batch_size=256)
    return {
        "method": m.name, "setting": m.describe(), "valid_accuracy": result.metrics["student/accuracy"],
        "test_accuracy": test["student/accuracy"], "best_step": result.best_step,
        "steps": result.steps, "seconds": time.perf_counter() - started,
    }  # fmt: skip


# -- the benchmark ---------------------------------------------------------------------------


def _splits(dataset: str, b: Budget, data_dir: str | None, verify: bool = True) -> dict[str, Any]:
    from agora.data.images import cifar_task, imagenet_task

    if dataset == "imagenet":
        if data_dir is None:
            raise BenchmarkError("ImageNet is read from a folder: pass --imagenet DIR")
        return imagenet_task(data_dir, b.image_size, b.valid_size)
    return cifar_task(dataset, b.image_size, b.valid_size, b.train_size, b.test_size,
                      data_dir=data_dir, verify=verify)  # fmt: skip


def quick_setup(folder: Path) -> tuple[str, str, Budget]:
    """A smoke test: a tiny random ViT and generated CIFAR-10 files under ``folder``."""
    import transformers

    vit = folder / "tiny-vit"
    if not (vit / "config.json").exists():
        config = transformers.ViTConfig(
            hidden_size=16, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32,
            image_size=32, patch_size=8,
        )  # fmt: skip
        torch.manual_seed(0)
        transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(vit)
    data = folder / "data" / "cifar-10-batches-bin"
    data.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        records = torch.randint(0, 256, (16, 1 + 3 * 32 * 32), generator=g, dtype=torch.uint8)
        records[:, 0] %= 10
        (data / name).write_bytes(records.numpy().tobytes())
    budget = Budget(steps=4, batch_size=8, warmup_steps=1, image_size=32, valid_size=16,
                    evals=2, message_dim=8, codec_hidden=16)  # fmt: skip
    return str(vit), str(folder / "data"), budget


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every method on every dataset asked for, one run each."""
    started = time.perf_counter()
    cache = cache_dir(args)
    budget = Budget(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    mixed_precision=args.mixed_precision)  # fmt: skip
    weights, data_dir, datasets = args.weights, args.data_dir, args.datasets.split(",")
    notes = []
    if args.quick:
        weights, data_dir, budget = quick_setup(cache / "vision-quick")
        datasets = ["cifar10"]
        notes.append("--quick: a tiny random ViT on generated images, 4 steps: a smoke test")
    store = RunStore(Path(args.out) / f"{args.benchmark}{'-quick' * args.quick}-runs.jsonl",
                     {**asdict(budget), "weights": weights})  # fmt: skip
    rows, probes = [], {}
    with Runner(1, args.threads) as runner:
        for dataset in datasets:
            classes = DATASETS[dataset]
            source = args.imagenet if dataset == "imagenet" else data_dir
            splits = _splits(dataset, budget, source, verify=not args.quick)  # quick: 16 records
            from agora.models.vision import load_vit, vit_agent

            probe = cache / "vision" / f"probe-{dataset}-{budget.image_size}.safetensors"
            teacher = vit_agent("teacher", load_vit(weights), 6, frozen=True)
            if torch.cuda.is_available():
                teacher.cuda()
            probes[dataset] = train_probe(teacher, splits, probe, classes)

            def one(m: Method, splits=splits, classes=classes, probe=probe) -> dict:
                return train_student(splits, m, weights, classes, probe, budget)

            tasks = methods(lr=budget.lr)
            done = run_all(runner, one, tasks, store, lambda m, d=dataset: json.dumps([d, m.name]),
                           dataset)  # fmt: skip
            rows += [{**row, "dataset": dataset} for row in done]
    return {
        **stamp(args), "datasets": datasets, "budget": asdict(budget), "weights": weights,
        "probes": probes, "rows": rows, "paper": PAPER, "notes": notes,
        "timings": {"total": time.perf_counter() - started},
    }  # fmt: skip


def arguments(parser: argparse.ArgumentParser) -> None:
    """The weights, the datasets and the fine-tuning budget."""
    parser.add_argument("--weights", default="google/vit-base-patch32-224-in21k",
                        help="the teacher's checkpoint: a folder, or its Hub name (online)")  # fmt: skip
    parser.add_argument("--datasets", default="cifar10,cifar100",
                        help="comma-separated, of cifar10, cifar100, imagenet")  # fmt: skip
    parser.add_argument("--imagenet", help="the ImageNet folder (train/ and val/ of class folders)")
    parser.add_argument("--steps", type=int, default=20000, help="steps per run (default: 20000)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.01, help="SGD's (default: 0.01)")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))


def check(args: argparse.Namespace) -> None:
    """The datasets named, and transformers, before anything trains."""
    unknown = set(args.datasets.split(",")) - set(DATASETS)
    if unknown:
        raise BenchmarkError(f"--datasets: unknown {sorted(unknown)}; choose from {list(DATASETS)}")
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise BenchmarkError(
            "the vision benchmark needs pip install 'agora-distill[vision]'"
        ) from None
