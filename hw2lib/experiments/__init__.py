"""The chapter's experiments, E1 to E4, run by preset and written as results files.

* E1 BatchNorm placement: Conv → BN → ReLU against Conv → ReLU → BN.
* E2 weight decay: decay every parameter, or exclude biases and BN parameters,
  only BN parameters, or only biases.
* E3 ``train()`` against ``eval()`` at test time: a model trained as in E1
  (BN before ReLU) evaluated with running statistics and with batch
  statistics, at several test batch sizes and on class-sorted batches.
* E4 low-rank factorization at scale: gradient descent to the SVD floor
  against the exact and the randomized SVD, for growing matrix sizes.

Run them with ``python -m hw2lib.experiments run NAME --preset PRESET`` (see
``--help``); :mod:`hw2lib.results` reads what they write.
"""

from __future__ import annotations

from hw2lib.experiments.registry import EXPERIMENTS, Experiment
from hw2lib.experiments.runner import RunOptions, run_experiment

__all__ = ["EXPERIMENTS", "Experiment", "RunOptions", "run_experiment"]
