"""Run one experiment at one preset and write a results file per configuration and seed.

A results file that already exists is kept, so an interrupted run of the
command picks up where it stopped; ``force`` recomputes. Training runs keep
their checkpoints under ``checkpoint_dir``. A checkpoint's name is a hash of the
options that determine the weights and of the content of the training and test
splits. So E2 reuses E1's ``before_relu`` runs and E3 reuses E1's trained
models, while a run on other data trains from scratch.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw2lib import results as results_io
from hw2lib.data import (
    DatasetTooSmallError,
    DeviceLoader,
    Split,
    balanced_subset,
    load_split,
    synthetic_split,
)
from hw2lib.experiments.presets import e4_description, get_preset
from hw2lib.experiments.registry import EXPERIMENTS
from hw2lib.training import TrainConfig, TrainResult, evaluate, resolve_device, train

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_DIR = Path(".cache") / "checkpoints"


@dataclass
class RunOptions:
    """Paths of the data, results and checkpoints, and the run settings."""

    preset: str = "smoke"
    data_dir: Path = Path("data")
    results_dir: Path = results_io.RESULTS_DIR
    checkpoint_dir: Path = DEFAULT_CHECKPOINT_DIR
    cache_dir: Path | None = None  # decoded-dataset cache; None uses data.default_cache_dir()
    seeds: tuple[int, ...] | None = None  # None uses the preset's seeds
    download: bool = False
    device: str = "auto"
    num_threads: int | None = None
    precision: str = "auto"  # see TrainConfig.precision
    force: bool = False  # recompute results files that exist
    progress: bool = True
    # Receives the runs.log lines; None appends them to results_dir/runs.log directly.
    run_log: results_io.RunLog | None = None
    # With force, checkpoints written after this time (by earlier experiments of
    # the same command) are reused rather than trained again. Seconds since the epoch.
    started_at: float = field(default_factory=time.time)


class _Context:
    """The preset, the loaded data and the options of one command."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.preset = get_preset(options.preset)
        self.seeds = tuple(options.seeds) if options.seeds else tuple(self.preset["seeds"])
        self._splits: tuple[Split, Split] | None = None

    def splits(self) -> tuple[Split, Split]:
        if self._splits is None:
            if self.preset["data"] == "synthetic":
                train_size, test_size = self.preset["synthetic_sizes"]
                self._splits = (
                    synthetic_split(train_size, split="train"),
                    synthetic_split(test_size, split="test"),
                )
            else:
                kwargs = {
                    "download": self.options.download,
                    "cache_dir": self.options.cache_dir,
                    "progress": self.options.progress,
                }
                splits = (
                    load_split(self.options.data_dir, "train", **kwargs),
                    load_split(self.options.data_dir, "test", **kwargs),
                )
                self._check_split_sizes(*splits)
                self._splits = splits
        return self._splits

    def _check_split_sizes(self, train_split: Split, test_split: Split) -> None:
        """Raise DatasetTooSmallError when the data has fewer images than the preset uses."""
        settings = self.preset["train"]
        name = self.options.preset
        fix = (
            "point --data-dir at a folder with the full CIFAR-10 (50,000 training and "
            "10,000 test images), or run --preset smoke, which needs no data"
        )
        batch_size = settings["batch_size"]
        train_need = max(settings["train_size"] or 0, batch_size)
        if len(train_split) < train_need:
            raise DatasetTooSmallError(
                f"{self.options.data_dir} has {len(train_split):,} training images, but the "
                f"{name} preset trains on {train_need:,} (batches of {batch_size:,}); {fix}"
            )
        test_need = max(settings["test_size"] or 0, self.preset["e3"]["test_size"] or 0, 1)
        if len(test_split) < test_need:
            raise DatasetTooSmallError(
                f"{self.options.data_dir} has {len(test_split):,} test images, but the "
                f"{name} preset evaluates on {test_need:,}; {fix}"
            )

    def skip_existing(self, path: Path) -> bool:
        """Return whether the results file ``path`` exists and is kept, logging the skip."""
        if path.exists() and not self.options.force:
            logger.info("%s exists; skipping (pass --force to recompute)", path)
            return True
        return False

    def train_config(self, overrides: dict[str, Any], seed: int) -> TrainConfig:
        values = dict(self.preset["train"])
        values.update(overrides)
        values.update(
            seed=seed,
            device=self.options.device,
            num_threads=self.options.num_threads,
            precision=self.options.precision,
        )
        return TrainConfig.from_dict(values)

    def checkpoint_path(self, config: TrainConfig) -> Path:
        train_split, test_split = self.splits()
        # The test split is part of the key because the checkpoint stores the
        # per-epoch test metrics that the results file reports.
        data = {
            "variant": train_split.source.variant,
            "train_images": len(train_split),
            "test_images": len(test_split),
            "train_digest": train_split.content_digest(),
            "test_digest": test_split.content_digest(),
        }
        key = json.dumps({"training": config.training_key(), "data": data}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return Path(self.options.checkpoint_dir) / self.options.preset / f"{digest}.pt"

    def result_path(self, experiment: str, configuration: str, seed: int) -> Path:
        return results_io.result_path(
            self.options.results_dir, self.options.preset, experiment, configuration, seed
        )

    def dataset_info(self, train_images: int, test_images: int) -> dict[str, Any]:
        source = self.splits()[0].source
        return {
            "name": "CIFAR-10",
            "variant": source.variant,
            "label": source.label,
            "path": str(source.root),
            "train_images": train_images,
            "test_images": test_images,
        }

    def header(self, experiment: str, configuration: str, label: str, seed: int) -> dict[str, Any]:
        return {
            "schema": results_io.SCHEMA_VERSION,
            "experiment": experiment,
            "experiment_title": EXPERIMENTS[experiment].title,
            "configuration": configuration,
            "configuration_label": label,
            "configuration_index": _configuration_index(experiment, configuration),
            "preset": self.options.preset,
            "preset_description": (
                e4_description(self.preset["e4"])
                if experiment == "e4"
                else self.preset["description"]
            ),
            "seed": seed,
        }


def _save_result(context: _Context, path: Path, record: dict, summary: str) -> None:
    """Write one results file atomically and log the run in the results folder's runs.log."""
    results_io.write_result(path, record)
    line = f"{context.options.preset} {summary} -> {path.name}"
    if context.options.run_log is not None:
        context.options.run_log.write(line)
    else:
        results_io.append_log(context.options.results_dir, line)


def _configuration_index(experiment: str, configuration: str) -> int:
    names = list(EXPERIMENTS[experiment].configurations)
    return names.index(configuration) if configuration in names else 0


def _subset_size(size: int | None, available: int) -> int:
    return available if size is None else min(size, available)


# -----------------------------------------------------------------------------
# E1 and E2: training runs


def _train_configuration(
    context: _Context, experiment: str, configuration: str, seed: int, *, retrain: bool
) -> tuple[TrainResult, Path]:
    """Train, resume or reload one configuration; write its results file unless it exists.

    ``retrain`` deletes a checkpoint written before this command started, so
    the run starts from scratch; one that an earlier experiment of the same
    command wrote (E1's runs that E2 repeats) is kept and restored.
    """
    label, overrides = EXPERIMENTS[experiment].configurations[configuration]
    config = context.train_config(overrides, seed)
    checkpoint = context.checkpoint_path(config)
    path = context.result_path(experiment, configuration, seed)
    if retrain and checkpoint.exists():
        if checkpoint.stat().st_mtime < context.options.started_at:
            checkpoint.unlink()
        else:
            logger.info("%s was written by this command; restoring it", checkpoint)

    train_split, test_split = context.splits()
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    logger.info(
        "%s %s seed %d: training (checkpoint %s)", experiment, configuration, seed, checkpoint
    )
    result = train(
        config,
        train_split,
        test_split,
        checkpoint_path=checkpoint,
        progress=context.options.progress,
    )
    wall = time.perf_counter() - clock
    # Epochs trained by earlier processes count towards the run's wall time.
    wall += sum(row["epoch_time_s"] for row in result.history[: result.resumed_from_epoch])
    if path.exists() and not retrain:
        return result, path

    record = context.header(experiment, configuration, label, seed)
    record.update(
        {
            "status": "diverged" if result.diverged else "ok",
            "diverged_step": result.diverged_step,
            "config": config.to_dict(),
            "dataset": context.dataset_info(
                _subset_size(config.train_size, len(train_split)),
                _subset_size(config.test_size, len(test_split)),
            ),
            # Epochs restored from a checkpoint; all of them when another
            # experiment with the same training options trained the model.
            "resumed_from_epoch": result.resumed_from_epoch,
            "compiled": result.compiled,
            "precision": result.precision,
            "checkpoint": checkpoint.name,
            "provenance": results_io.provenance(
                started_at=started,
                wall_time_s=wall,
                device=result.device,
                num_threads=result.num_threads,
            ),
            "epochs": result.history,
        }
    )
    _save_result(
        context,
        path,
        record,
        f"{experiment} {configuration} seed={seed} status={record['status']} wall={wall:.1f}s",
    )
    return result, path


def _run_training_experiment(context: _Context, experiment: str) -> list[Path]:
    paths = []
    for configuration in EXPERIMENTS[experiment].configurations:
        for seed in context.seeds:
            path = context.result_path(experiment, configuration, seed)
            if context.skip_existing(path):
                paths.append(path)
                continue
            _, path = _train_configuration(
                context, experiment, configuration, seed, retrain=context.options.force
            )
            paths.append(path)
    return paths


# -----------------------------------------------------------------------------
# E3: train() against eval() at test time


def _run_e3(context: _Context) -> list[Path]:
    settings = context.preset["e3"]
    paths = []
    for seed in context.seeds:
        path = context.result_path("e3", "bn_mode", seed)
        if context.skip_existing(path):
            paths.append(path)
            continue
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        # The trained model comes from E1's checkpoint; its results file is
        # written as well when E1 has not run yet.
        trained, _ = _train_configuration(context, "e1", "before_relu", seed, retrain=False)
        if trained.diverged:
            logger.warning("E1 before_relu seed %d diverged; E3 skips this seed", seed)
            continue
        model = trained.model
        device = resolve_device(context.options.device)

        _, test_split = context.splits()
        index = balanced_subset(test_split.labels, settings["test_size"], seed=0)
        images, labels = test_split.images[index], test_split.labels[index]
        # A fixed shuffle, because an ImageFolder test split is stored sorted by class.
        shuffle = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        orders = {
            "shuffled": shuffle,
            "class-sorted": torch.sort(labels, stable=True).indices,
        }

        evaluations = []
        amp = trained.precision == "bfloat16"
        for order, permutation in orders.items():
            for batch_size in settings["batch_sizes"]:
                if order == "class-sorted" and batch_size == 1:
                    continue  # a batch of one image has no order
                loader = DeviceLoader(
                    images[permutation],
                    labels[permutation],
                    batch_size,
                    device=device,
                    train=False,
                )
                for mode in ("eval", "train"):
                    clock_eval = time.perf_counter()
                    metrics = evaluate(model, loader, mode=mode, amp=amp)
                    evaluations.append(
                        {
                            "mode": mode,
                            "order": order,
                            "batch_size": batch_size,
                            "loss": metrics["loss"],
                            "accuracy": metrics["accuracy"],
                            "time_s": time.perf_counter() - clock_eval,
                        }
                    )
                    logger.info(
                        "E3 seed %d: %s, %s batches of %d: accuracy %.4f",
                        seed,
                        mode,
                        order,
                        batch_size,
                        metrics["accuracy"],
                    )

        record = context.header("e3", "bn_mode", "BN mode at test time", seed)
        record.update(
            {
                "status": "ok",
                "config": {**trained.config.to_dict(), "e3": settings},
                "dataset": context.dataset_info(
                    _subset_size(trained.config.train_size, len(context.splits()[0])),
                    len(labels),
                ),
                "trained_model": {
                    "experiment": "e1",
                    "configuration": "before_relu",
                    "final_test_accuracy": trained.final.get("test_accuracy"),
                },
                "precision": trained.precision,
                "provenance": results_io.provenance(
                    started_at=started,
                    wall_time_s=time.perf_counter() - clock,
                    device=trained.device,
                    num_threads=trained.num_threads,
                ),
                "evaluations": evaluations,
            }
        )
        _save_result(context, path, record, f"e3 bn_mode seed={seed} status=ok")
        paths.append(path)
    return paths


# -----------------------------------------------------------------------------
# E4: low-rank factorization at scale


def noisy_low_rank_matrix(size: int, rank: int, seed: int, noise: float = 0.3) -> torch.Tensor:
    """Build a float64 ``size`` x ``size`` matrix: a rank-``rank`` signal plus Gaussian noise.

    The signal's singular values run linearly from 2(sqrt(m) + sqrt(n)) down to
    sqrt(m) + sqrt(n). The largest singular value of the noise is close to
    ``noise`` * (sqrt(m) + sqrt(n)) for Gaussian entries, so the ratio
    sigma_r / sigma_(r+1) is about the same at every size.
    """
    generator = torch.Generator().manual_seed(seed)
    left = torch.linalg.qr(torch.randn(size, rank, generator=generator, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(size, rank, generator=generator, dtype=torch.float64)).Q
    scale = 2 * size**0.5
    singular = torch.linspace(2.0, 1.0, rank, dtype=torch.float64) * scale
    signal = (left * singular) @ right.T
    return signal + noise * torch.randn(size, size, generator=generator, dtype=torch.float64)


def factorization_descent(
    matrix: torch.Tensor,
    initial: tuple[torch.Tensor, torch.Tensor],
    *,
    step_size: float,
    floor: float,
    rtol: float,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, int, bool, float]:
    """Run full-batch gradient descent on ‖X − AB‖²_F until loss − floor <= rtol · floor.

    The update is the one of :func:`hw2lib.lowrank.gradient_descent`, written
    in torch so it runs on any device. Returns ``(A, B, steps, converged, loss)``.
    """
    a, b = initial
    steps = 0
    while True:
        residual = matrix - a @ b
        loss = float(torch.sum(residual * residual))
        if loss - floor <= rtol * floor:
            return a, b, steps, True, loss
        if not np.isfinite(loss) or steps == max_steps:
            return a, b, steps, False, loss
        grad_a = -2.0 * residual @ b.T
        grad_b = -2.0 * a.T @ residual
        a = a - step_size * grad_a
        b = b - step_size * grad_b
        steps += 1


def _randomized_rank_r(
    matrix: torch.Tensor, rank: int, *, oversampling: int, power_iterations: int
) -> torch.Tensor:
    """Approximate the best rank-``rank`` matrix by a randomized SVD (``torch.svd_lowrank``).

    The SVD keeps ``rank + oversampling`` columns and runs ``power_iterations``
    power iterations before its factors are cut to ``rank`` columns.
    """
    u, s, v = torch.svd_lowrank(matrix, q=rank + oversampling, niter=power_iterations)
    return (u[:, :rank] * s[:rank]) @ v[:, :rank].T


def _median_time(
    function: Callable[[], Any], device: torch.device, budget_s: float = 1.0, max_calls: int = 5
) -> tuple[float, Any, int]:
    """Call ``function`` until ``budget_s`` seconds or ``max_calls`` calls have passed.

    Returns the median time of one call in seconds, the result of the last call
    and the number of calls. A single call longer than ``budget_s`` is timed once.
    """
    times = []
    while True:
        if device.type == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
        if len(times) >= max_calls or sum(times) >= budget_s:
            return float(np.median(times)), result, len(times)


def _run_e4(context: _Context) -> list[Path]:
    from hw2lib import lowrank

    settings = context.preset["e4"]
    seeds = tuple(context.options.seeds) if context.options.seeds else tuple(settings["seeds"])
    device = resolve_device(context.options.device)
    threads = context.options.num_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    rank = settings["rank"]
    # The first call of each routine pays one-time costs (library loading,
    # workspace allocation) that would otherwise be timed with the smallest size.
    warmup = noisy_low_rank_matrix(2 * rank + 8, rank, seed=0).to(device)
    torch.svd_lowrank(warmup, q=rank + settings["lowrank_oversampling"], niter=1)
    lowrank.best_rank_r(warmup.cpu(), rank)
    paths = []
    for size in settings["sizes"]:
        for seed in seeds:
            configuration = f"n{size}"
            path = context.result_path("e4", configuration, seed)
            if context.skip_existing(path):
                paths.append(path)
                continue
            started = dt.datetime.now(dt.UTC)
            clock = time.perf_counter()
            matrix = noisy_low_rank_matrix(size, rank, seed)

            # The exact route: the truncated SVD of hw2lib.lowrank (LAPACK, float64).
            svd_time, (best_a, best_b), svd_calls = _median_time(
                functools.partial(lowrank.best_rank_r, matrix, rank), torch.device("cpu")
            )
            floor = lowrank.factorization_loss(matrix, best_a, best_b)
            singular = torch.linalg.svdvals(matrix)
            sigma_max = float(singular[0])

            on_device = matrix.to(device)

            randomized = functools.partial(
                _randomized_rank_r,
                on_device,
                rank,
                oversampling=settings["lowrank_oversampling"],
                power_iterations=settings["lowrank_power_iterations"],
            )
            lowrank_time, approx, lowrank_calls = _median_time(randomized, device)
            lowrank_loss = float(torch.sum((on_device - approx) ** 2))

            # Step size 0.1 / sigma_1, the default of lowrank.gradient_descent.
            step_size = 0.1 / sigma_max
            start_a, start_b = lowrank.initial_factors((size, size), rank, seed=seed)
            initial = (
                torch.from_numpy(start_a).to(device),
                torch.from_numpy(start_b).to(device),
            )
            gd_time, descent, gd_calls = _median_time(
                functools.partial(
                    factorization_descent,
                    on_device,
                    initial,
                    step_size=step_size,
                    floor=floor,
                    rtol=settings["rtol"],
                    max_steps=settings["max_steps"],
                ),
                device,
            )
            _, _, steps, converged, final_loss = descent

            # Cross-check the torch loop against the library's numpy implementation
            # where that is cheap: both must stop after the same number of steps.
            library_steps = None
            if size <= 512:
                library = lowrank.gradient_descent(
                    matrix,
                    rank,
                    step_size=step_size,
                    target=floor,
                    rtol=settings["rtol"],
                    max_steps=settings["max_steps"],
                    initial=(start_a, start_b),
                )
                library_steps = library.steps

            measurements = {
                "size": size,
                "rank": rank,
                "sigma_r": float(singular[rank - 1]),
                "sigma_r_plus_1": float(singular[rank]),
                "sigma_1": sigma_max,
                "floor": floor,
                "step_size": step_size,
                "gd_steps": steps,
                "gd_converged": converged,
                "gd_final_loss": final_loss,
                "gd_excess": (final_loss - floor) / floor,
                "gd_time_s": gd_time,
                "gd_time_per_step_s": gd_time / max(steps, 1),
                "library_gd_steps": library_steps,
                "svd_time_s": svd_time,
                "svd_lowrank_time_s": lowrank_time,
                "svd_lowrank_excess": (lowrank_loss - floor) / floor,
                # Each time is the median over this many calls (see _median_time).
                "timed_calls": {"svd": svd_calls, "svd_lowrank": lowrank_calls, "gd": gd_calls},
            }
            logger.info(
                "E4 n=%d seed %d: %d steps in %.2f s, exact SVD %.3f s, svd_lowrank %.3f s",
                size,
                seed,
                steps,
                gd_time,
                svd_time,
                lowrank_time,
            )
            record = context.header("e4", configuration, f"m = n = {size}", seed)
            record.update(
                {
                    "status": "ok",
                    "config": dict(settings),
                    "dataset": {
                        "name": "synthetic matrices",
                        "variant": "synthetic",
                        "label": f"random rank-{rank} signal plus Gaussian noise (float64)",
                    },
                    "provenance": results_io.provenance(
                        started_at=started,
                        wall_time_s=time.perf_counter() - clock,
                        device=str(device),
                        num_threads=threads,
                    ),
                    "measurements": measurements,
                }
            )
            _save_result(context, path, record, f"e4 {configuration} seed={seed} status=ok")
            paths.append(path)
    return paths


# -----------------------------------------------------------------------------


def run_experiment(name: str, options: RunOptions) -> list[Path]:
    """Run experiment ``name`` (``"e1"`` ... ``"e4"``) and return its results files.

    Raises:
        KeyError: unknown experiment or preset.
        hw2lib.data.DatasetError: the data cannot be loaded.
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    context = _Context(options)
    if name in ("e1", "e2"):
        return _run_training_experiment(context, name)
    if name == "e3":
        return _run_e3(context)
    return _run_e4(context)
