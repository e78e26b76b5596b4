"""Speed benchmark: the trainer's on-device batches against a per-image DataLoader.

Both ways train the same model (the CIFAR ResNet-18 of ``--width``) with the
same optimizer, loss and batch size for the same number of steps, on an
ImageFolder copy of CIFAR-10:

1. :func:`hw2lib.training.train`: the split decoded once into a uint8 tensor
   (read from the cache), batches cropped and flipped on the device, weights
   and inputs channels-last, once per ``--precision`` (``auto`` is float32 on
   the CPU and bfloat16 autocast on CUDA).
2. A plain loop over ``torch.utils.data.DataLoader`` on
   ``torchvision.datasets.ImageFolder`` with per-image transforms (random crop
   with 4-pixel padding, horizontal flip, ``ToTensor``, ``Normalize``), which
   decodes every JPEG again in every epoch. The model stays in the default
   layout and in float32, as such a loop would leave it.

It prints images per second for both and their ratio. It is a benchmark, not a
test: the figures depend on the machine and on what else runs on it.

    python -m hw2lib.bench --data-dir ../shared/data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hw2lib.data import CIFAR10_MEAN, CIFAR10_STD, DatasetError, load_split, locate
from hw2lib.training import (
    PRECISIONS,
    TrainConfig,
    build_model,
    build_optimizer,
    cpu_has_bfloat16,
    resolve_device,
    train,
)


def bench_trainer(config: TrainConfig, data_dir: Path, cache_dir: Path | None) -> dict[str, Any]:
    """Train ``config`` with :func:`train` and return the speed of its last epoch.

    Each epoch is ``steps x batch`` images. With ``torch.compile`` the config
    has two epochs, so the compilation in the first one is not timed.
    """
    tick = time.perf_counter()
    train_split = load_split(data_dir, "train", cache_dir=cache_dir)
    test_split = load_split(data_dir, "test", cache_dir=cache_dir)
    load_time = time.perf_counter() - tick
    result = train(config, train_split, test_split, progress=False)
    epoch = result.history[-1]
    return {
        "precision": result.precision,
        "compiled": result.compiled,
        "images_per_s": epoch["images_per_s"],
        "train_time_s": epoch["train_time_s"],
        "load_time_s": load_time,
        "from_cache": float(train_split.from_cache and test_split.from_cache),
    }


def bench_dataloader(
    config: TrainConfig, data_dir: Path, steps: int, workers: int
) -> dict[str, float]:
    """Train the same model for ``steps`` steps from a per-image DataLoader; return its speed."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    device = resolve_device(config.device)
    source = locate(data_dir)
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    dataset = datasets.ImageFolder(str(source.root / "train"), transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = build_model(config).to(device)
    optimizer = build_optimizer(model, config)
    model.train()

    tick = time.perf_counter()
    done = 0
    # Worker start-up is inside the timed region, as it is in every epoch of a
    # training run that does not keep its workers.
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == steps:
            break
    elapsed = time.perf_counter() - tick
    return {"images_per_s": done * config.batch_size / elapsed, "train_time_s": elapsed}


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m hw2lib.bench", description=summary)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/cifar10-jpeg"),
        help="ImageFolder copy of CIFAR-10 with train/<class>/ folders "
        "(default: ../shared/data/cifar10-jpeg)",
    )
    parser.add_argument(
        "--steps", type=int, default=40, help="optimizer steps per way (default: 40)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=128, help="images per step (default: 128)"
    )
    parser.add_argument(
        "--width", type=int, default=16, help="channels of the first ResNet stage (default: 16)"
    )
    parser.add_argument(
        "--workers",
        default="0,2",
        help="comma-separated DataLoader worker counts to measure for the per-image way; "
        "each count is one run (default: 0,2)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    parser.add_argument(
        "--precision",
        default=None,
        help="comma-separated trainer precisions to measure: auto, float32, bfloat16 "
        "(default: float32,bfloat16 on a CPU with native bfloat16 units, auto elsewhere, "
        "which is float32 on the CPU and bfloat16 autocast on CUDA)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="on CUDA, train with torch.compile and time a second epoch, after compilation "
        "(ignored on the CPU, where the trainer never compiles)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded-dataset cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        worker_counts = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--workers must be integers separated by commas, not {args.workers!r}")
    if args.precision is None:
        native = resolve_device(args.device).type == "cpu" and cpu_has_bfloat16()
        args.precision = "float32,bfloat16" if native else "auto"
    precisions = [part.strip() for part in args.precision.split(",") if part.strip()]
    unknown = [name for name in precisions if name not in PRECISIONS]
    if unknown or not precisions:
        parser.error(
            f"--precision takes {', '.join(PRECISIONS)} separated by commas, not {args.precision!r}"
        )

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    config = TrainConfig(
        epochs=2 if args.compile else 1,
        batch_size=args.batch_size,
        lr=0.05,
        warmup_epochs=0.0,
        width=args.width,
        train_size=args.steps * args.batch_size,
        test_size=100,
        eval_batch_size=100,
        device=args.device,
        num_threads=threads,
        compile=args.compile,
    )
    try:
        trainers = {
            name: bench_trainer(
                dataclasses.replace(config, precision=name), args.data_dir, args.cache_dir
            )
            for name in precisions
        }
        baselines = {
            workers: bench_dataloader(config, args.data_dir, args.steps, workers)
            for workers in worker_counts
        }
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(
        f"model: CIFAR ResNet-18, width {args.width}; batch {args.batch_size}; {args.steps} steps; "
        f"device {args.device}, {threads} torch threads"
    )
    for workers, baseline in baselines.items():
        print(
            f"DataLoader, ImageFolder, per-image transforms, float32, {workers} workers: "
            f"{baseline['images_per_s']:8.1f} images/s  ({baseline['train_time_s']:.1f} s)"
        )
    for trainer in trainers.values():
        ratios = ", ".join(
            f"{trainer['images_per_s'] / baseline['images_per_s']:.2f}x over {workers} workers"
            for workers, baseline in baselines.items()
        )
        compiled = ", torch.compile, second epoch" if trainer["compiled"] else ""
        print(
            f"trainer, {trainer['precision']}{compiled}: {trainer['images_per_s']:8.1f} images/s  "
            f"({trainer['train_time_s']:.1f} s; one-time dataset load "
            f"{trainer['load_time_s']:.2f} s"
            f"{' from the cache' if trainer['from_cache'] else ', decoded'}); {ratios}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
