"""Names, titles and configurations of the experiments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Experiment:
    """One experiment: its configurations are overrides of the preset's training options."""

    name: str
    title: str
    description: str
    # configuration name -> (label shown on the site, TrainConfig overrides)
    configurations: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


EXPERIMENTS: dict[str, Experiment] = {
    "e1": Experiment(
        "e1",
        "E1: BatchNorm before or after ReLU",
        "train ResNet-18 with Conv-BN-ReLU and with Conv-ReLU-BN, the latter with and "
        "without a ReLU after each residual addition",
        {
            "before_relu": ("Conv → BN → ReLU", {"norm_position": "before_relu"}),
            "after_relu": ("Conv → ReLU → BN", {"norm_position": "after_relu"}),
            "after_relu_add_relu": (
                "Conv → ReLU → BN, ReLU after the addition",
                {"norm_position": "after_relu_add_relu"},
            ),
        },
    ),
    "e2": Experiment(
        "e2",
        "E2: which parameters get weight decay",
        "train with weight decay on every parameter or with biases and/or BN parameters excluded",
        {
            "decay_all": ("decay everything", {"decay_norm": True, "decay_bias": True}),
            # The same training options as E1's before_relu, so E2 reuses its
            # checkpoints when both run with the same preset.
            "exclude_bias_and_norm": (
                "exclude biases and BN",
                {"decay_norm": False, "decay_bias": False},
            ),
            "exclude_norm": ("exclude BN only", {"decay_norm": False, "decay_bias": True}),
            "exclude_bias": ("exclude biases only", {"decay_norm": True, "decay_bias": False}),
        },
    ),
    "e3": Experiment(
        "e3",
        "E3: train() or eval() at test time",
        "evaluate an E1 model (BN before ReLU) with running and with batch statistics",
    ),
    "e4": Experiment(
        "e4",
        "E4: gradient descent against the SVD at scale",
        "time gradient descent to the Eckart-Young floor, the exact SVD and torch.svd_lowrank",
    ),
}
