"""Presets: one dictionary per scale, with every hyperparameter and its unit.

* ``smoke``: synthetic CIFAR-shaped data and a tiny network; the whole pipeline
  in seconds, for tests and CI. Its numbers mean nothing.
* ``cpu``: a balanced subset of CIFAR-10, a ResNet-18 of width 16 and a few
  epochs. E1-E3 took 15 minutes (E4 3 more) on a 2-core Xeon with nothing
  else running, where training ran at 720-890 images/s. It shows the
  direction of each effect at a reduced scale, not the accuracies of a full
  run.
* ``gpu``: full CIFAR-10 and ResNet-18 of width 64, the reference recipe.
  NOTE: this recipe targets more than 93% test accuracy on the official data
  (batch 512, 35 epochs, label smoothing). It has not been run yet, because
  the machines this project was built on have no GPU.
"""

from __future__ import annotations

import copy
from typing import Any

SMOKE: dict[str, Any] = {
    "description": "synthetic data, width-4 network, 3 epochs; checks the pipeline only",
    "data": "synthetic",  # "synthetic" or "cifar10"
    "synthetic_sizes": (512, 128),  # (train, test) images
    "seeds": (0, 1),
    "train": {
        "epochs": 3,  # passes over the training images
        "batch_size": 64,  # images per optimizer step
        "lr": 0.2,  # peak learning rate
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,  # L2 coefficient of the decayed group
        "warmup_epochs": 0.5,  # linear warm-up, in epochs
        "schedule": "cosine",  # decay after warm-up, per step
        "label_smoothing": 0.1,  # probability mass spread uniformly over the classes
        "width": 4,  # channels of the first ResNet stage
        "train_size": None,  # every synthetic training image
        "test_size": None,
        "eval_batch_size": 128,  # images per evaluation batch
    },
    "e3": {
        "batch_sizes": (1, 16, 256),  # test batch sizes in images
        "test_size": 64,  # test images per evaluation
    },
    "e4": {
        "sizes": (32, 64),  # m = n of the square test matrices
        "rank": 3,  # r, the number of factors
        "seeds": (0, 1),
        "rtol": 1e-6,  # stop when loss - floor <= rtol * floor
        "max_steps": 20_000,
        "lowrank_oversampling": 5,  # q = r + this, for torch.svd_lowrank
        "lowrank_power_iterations": 2,  # niter of torch.svd_lowrank
    },
}

CPU: dict[str, Any] = {
    "description": (
        "reduced: 8,000 training and 2,000 test images of CIFAR-10, ResNet-18 of width 16, 4 epochs"
    ),
    "data": "cifar10",
    "seeds": (0, 1, 2),
    "train": {
        "epochs": 4,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "warmup_epochs": 0.5,
        "schedule": "cosine",
        "label_smoothing": 0.1,
        "width": 16,
        "train_size": 8_000,  # balanced: 800 images per class
        "test_size": 2_000,  # balanced: 200 images per class
        "eval_batch_size": 500,
    },
    "e3": {
        "batch_sizes": (1, 16, 256),
        "test_size": 1_000,
    },
    "e4": {
        "sizes": (256, 512, 1024, 2048, 4096),
        "rank": 10,
        "seeds": (0, 1, 2),
        "rtol": 1e-6,
        "max_steps": 20_000,
        "lowrank_oversampling": 5,
        "lowrank_power_iterations": 2,
    },
}

GPU: dict[str, Any] = {
    "description": "full CIFAR-10, ResNet-18 of width 64, 35 epochs at batch 512",
    "data": "cifar10",
    "seeds": (0, 1, 2),
    "train": {
        "epochs": 35,
        "batch_size": 512,
        "lr": 0.4,  # 0.1 per 128 images, scaled linearly with the batch
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "warmup_epochs": 2.0,
        "schedule": "cosine",
        "label_smoothing": 0.1,
        "width": 64,
        "train_size": None,
        "test_size": None,
        "eval_batch_size": 1024,
    },
    "e3": {
        "batch_sizes": (1, 16, 256),
        "test_size": None,  # all 10,000 test images
    },
    "e4": {
        "sizes": (512, 1024, 2048, 4096, 8192),
        "rank": 10,
        "seeds": (0, 1, 2),
        "rtol": 1e-6,
        "max_steps": 20_000,
        "lowrank_oversampling": 5,
        "lowrank_power_iterations": 2,
    },
}

PRESETS: dict[str, dict[str, Any]] = {"smoke": SMOKE, "cpu": CPU, "gpu": GPU}


def get_preset(name: str) -> dict[str, Any]:
    """Return a deep copy of preset ``name``, so callers may change it freely."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def e4_description(settings: dict[str, Any]) -> str:
    """Describe E4's scale from a preset's ``e4`` settings: the matrix sizes and the rank."""
    sizes = ", ".join(str(size) for size in settings["sizes"])
    return f"square float64 matrices of n = {sizes}, rank {settings['rank']}"
