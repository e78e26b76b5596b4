"""Small BatchNorm experiments that the Part 1 pages run at build time.

Each function runs in well under a second on a CPU and returns plain numbers
or tensors, so that a page can show them and a test can assert on them:

* image batches from CIFAR-10 (JPEG copy) when it is on disk, otherwise
  patches of scikit-image's bundled photographs (:func:`load_image_batch`);
* what BatchNorm receives and passes on when it comes before or after ReLU
  (:func:`bn_placement_statistics`, :func:`affine_statistics`);
* what ``train()`` and ``eval()`` change (:func:`batch_dependence`,
  :func:`running_stats_under_no_grad`, :func:`dropout_under_no_grad`,
  :func:`batch_of_one`, :func:`momentum_update`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

# Photographs that ship inside the scikit-image wheel, so loading needs no network.
SKIMAGE_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
CIFAR10_ENV = "HW2LIB_CIFAR10_JPEG"


# ---------------------------------------------------------------------------
# Image batches
# ---------------------------------------------------------------------------


def cifar10_jpeg_dir() -> Path | None:
    """Return the CIFAR-10 JPEG folder (with ``test/<class>/*.jpg``) if it exists, else ``None``.

    Looks at ``$HW2LIB_CIFAR10_JPEG`` first, then at ``../shared/data/cifar10-jpeg``
    next to the project root.
    """
    candidates = []
    if os.environ.get(CIFAR10_ENV):
        candidates.append(Path(os.environ[CIFAR10_ENV]))
    project_root = Path(__file__).resolve().parent.parent
    candidates.append(project_root.parent / "shared" / "data" / "cifar10-jpeg")
    for folder in candidates:
        if (folder / "test").is_dir():
            return folder
    return None


@dataclass(frozen=True)
class ImageBatch:
    """RGB images of shape ``(N, 3, size, size)``, float32 in ``[0, 1]``, and their source."""

    images: Tensor
    source: str


def _cifar10_batch(folder: Path, count: int, rng: np.random.Generator) -> Tensor:
    from PIL import Image

    class_dirs = sorted(p for p in (folder / "test").iterdir() if p.is_dir())
    files = [f for d in class_dirs for f in sorted(d.glob("*.jpg"))]
    if len(files) < count:
        raise ValueError(
            f"{folder / 'test'} contains {len(files)} JPEG files but count={count} were "
            "requested: lower count"
        )
    chosen = rng.choice(len(files), size=count, replace=False)
    arrays = [np.asarray(Image.open(files[i]).convert("RGB")) for i in sorted(chosen)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _skimage_batch(count: int, size: int, rng: np.random.Generator) -> Tensor:
    import skimage.data

    # Shrink each photograph to a short side of 4 * size, so that a size x size
    # patch shows an object part at roughly the scale of a CIFAR-10 image.
    photos = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(skimage.data, name)()[..., :3]
        image = torch.from_numpy(array).permute(2, 0, 1).float()[None] / 255.0
        scale = 4 * size / min(image.shape[-2:])
        photos.append(F.interpolate(image, scale_factor=scale, mode="bilinear", antialias=True)[0])
    patches = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top = int(rng.integers(0, photo.shape[1] - size + 1))
        left = int(rng.integers(0, photo.shape[2] - size + 1))
        patches.append(photo[:, top : top + size, left : left + size])
    return torch.stack(patches).clamp(0.0, 1.0)


def load_image_batch(
    count: int = 64, *, size: int = 32, seed: int = 0, source: str = "auto"
) -> ImageBatch:
    """Load ``count`` RGB images of ``size x size`` pixels.

    ``source="auto"`` reads CIFAR-10 test images (JPEG copy, 32x32) when
    :func:`cifar10_jpeg_dir` finds them and ``size == 32``, and otherwise cuts
    patches from scikit-image's bundled photographs (``SKIMAGE_PHOTOS``).
    ``source="cifar10"`` or ``"skimage"`` forces one. The choice of images is
    fixed by ``seed``. Raises ``ValueError`` for an unknown ``source``, and
    ``FileNotFoundError`` when ``"cifar10"`` is forced but not on disk.
    """
    if source not in ("auto", "cifar10", "skimage"):
        raise ValueError(f"source must be 'auto', 'cifar10' or 'skimage', got {source!r}")
    if count < 1 or size < 1:
        raise ValueError(f"count and size must be positive, got count={count}, size={size}")
    rng = np.random.default_rng(seed)
    folder = cifar10_jpeg_dir()
    if source == "cifar10" and folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 JPEG folder not found: set ${CIFAR10_ENV} to a folder "
            "with test/<class>/*.jpg"
        )
    if source == "cifar10" or (source == "auto" and folder is not None and size == 32):
        assert folder is not None
        images = _cifar10_batch(folder, count, rng)
        label = f"{count} CIFAR-10 test images (JPEG copy)"
    else:
        images = _skimage_batch(count, size, rng)
        label = f"{count} patches of {size}x{size} pixels from scikit-image photographs"
    logger.info("loaded %s", label)
    return ImageBatch(images, label)


def standardize(images: Tensor) -> Tensor:
    """Subtract the per-channel mean and divide by the per-channel std of ``(N, C, H, W)``."""
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True)
    return (images - mean) / std


# ---------------------------------------------------------------------------
# BatchNorm before or after ReLU
# ---------------------------------------------------------------------------


def channel_mean_var(x: Tensor) -> tuple[Tensor, Tensor]:
    """Return the per-channel mean and biased variance of ``(N, C, H, W)``, as BatchNorm does."""
    return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)


@dataclass(frozen=True)
class PlacementStatistics:
    """Inputs of BatchNorm and of the next layer under each order.

    Tensors of shape ``(N, C, H, W)``: ``bn_input_*`` enters BatchNorm,
    ``next_input_*`` leaves the Conv-BN-ReLU unit for the next layer. Per-channel
    ``(C,)`` tensors: the batch mean and biased variance BatchNorm estimates.
    """

    bn_input_before: Tensor
    bn_input_after: Tensor
    next_input_before: Tensor
    next_input_after: Tensor
    mean_before: Tensor
    var_before: Tensor
    mean_after: Tensor
    var_after: Tensor

    @property
    def zero_fraction_before(self) -> float:
        """Fraction of exact zeros entering BatchNorm when BN comes before ReLU."""
        return float((self.bn_input_before == 0).float().mean())

    @property
    def zero_fraction_after(self) -> float:
        """Fraction of exact zeros entering BatchNorm when BN comes after ReLU."""
        return float((self.bn_input_after == 0).float().mean())


def bn_placement_statistics(
    images: Tensor, *, channels: int = 16, seed: int = 0
) -> PlacementStatistics:
    """Pass ``images`` ``(N, 3, H, W)`` through one 3x3 conv and compare BN -> ReLU with ReLU -> BN.

    The images are standardized per channel, the convolution has no bias and
    Kaiming-normal weights drawn with ``seed``, and both BatchNorm layers are
    freshly initialized (``gamma = 1``, ``beta = 0``) and in training mode.
    """
    torch.manual_seed(seed)
    conv = nn.Conv2d(images.shape[1], channels, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    with torch.no_grad():
        z = conv(standardize(images))
        relu_z = F.relu(z)
        next_before = F.relu(nn.BatchNorm2d(channels).train()(z))
        next_after = nn.BatchNorm2d(channels).train()(relu_z)
    mean_before, var_before = channel_mean_var(z)
    mean_after, var_after = channel_mean_var(relu_z)
    return PlacementStatistics(
        z, relu_z, next_before, next_after, mean_before, var_before, mean_after, var_after
    )


@dataclass(frozen=True)
class AffineStatistics:
    """Per-channel statistics of ``BN(z)`` with given ``gamma`` and ``beta``, shape ``(C,)`` each.

    ``mean`` and ``std`` describe what enters the ReLU; ``active_fraction``
    is the fraction of positions where the ReLU passes a nonzero value.
    """

    gamma: Tensor
    beta: Tensor
    mean: Tensor
    std: Tensor
    active_fraction: Tensor


def affine_statistics(z: Tensor, gamma: Tensor, beta: Tensor) -> AffineStatistics:
    """Apply training-mode BatchNorm with affine parameters ``gamma``, ``beta`` to ``z``.

    ``z`` has shape ``(N, C, H, W)``. The result shows that BN hands the ReLU
    channels with mean ``beta`` and standard deviation ``|gamma|`` (up to
    ``eps``), not zero mean and unit variance.
    """
    channels = z.shape[1]
    if gamma.shape != (channels,) or beta.shape != (channels,):
        raise ValueError(
            f"gamma and beta must have shape ({channels},), got {tuple(gamma.shape)} "
            f"and {tuple(beta.shape)}"
        )
    bn = nn.BatchNorm2d(channels).train()
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
        y = bn(z)
    mean, var = channel_mean_var(y)
    active = (y > 0).float().mean(dim=(0, 2, 3))
    return AffineStatistics(gamma.clone(), beta.clone(), mean, var.sqrt(), active)


# ---------------------------------------------------------------------------
# train() and eval()
# ---------------------------------------------------------------------------


def bn_dropout_mlp(in_features: int = 8, hidden: int = 32, out_features: int = 3) -> nn.Sequential:
    """Build Linear -> BatchNorm1d -> ReLU -> Dropout(0.5) -> Linear for ``(N, in_features)``."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(hidden, out_features),
    )


def output_of_first(model: nn.Module, first: Tensor, others: Tensor, *, seed: int = 0) -> Tensor:
    """Return the output for ``first`` ``(1, ...)`` when batched with ``others`` ``(M, ...)``.

    The random generator is reset to ``seed`` before the forward pass. In
    training mode Dropout then draws the same mask for the same batch size, so
    any change in the output comes from the other examples.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(torch.cat([first, others]))[0]


def batch_dependence(model: nn.Module, first: Tensor, others_a: Tensor, others_b: Tensor) -> float:
    """Return the largest change in ``first``'s output when its batch-mates change from a to b.

    Uses the model's current mode; ``others_a`` and ``others_b`` must have the same shape.
    """
    out_a = output_of_first(model, first, others_a)
    out_b = output_of_first(model, first, others_b)
    return float((out_a - out_b).abs().max())


@dataclass(frozen=True)
class RunningStatsChange:
    """BatchNorm state before and after ``torch.no_grad()`` forward passes with no optimizer."""

    mean_change: float
    var_change: float
    batches_tracked_before: int
    batches_tracked_after: int
    parameters_changed: bool


def running_stats_under_no_grad(model: nn.Module, batches: list[Tensor]) -> RunningStatsChange:
    """Run ``batches`` through ``model`` in its current mode under ``torch.no_grad()``.

    Reports how much the first BatchNorm layer's running statistics moved and
    whether any parameter changed. No optimizer exists, so parameters cannot
    change; the running statistics are buffers, which BatchNorm updates in
    training mode whether or not gradients are recorded.
    """
    bn = next((m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
    if bn is None:
        raise ValueError("model has no BatchNorm layer: use e.g. bn_dropout_mlp()")
    mean0 = bn.running_mean.clone()
    var0 = bn.running_var.clone()
    tracked0 = int(bn.num_batches_tracked)
    params0 = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for batch in batches:
            model(batch)
    return RunningStatsChange(
        mean_change=float((bn.running_mean - mean0).abs().max()),
        var_change=float((bn.running_var - var0).abs().max()),
        batches_tracked_before=tracked0,
        batches_tracked_after=int(bn.num_batches_tracked),
        parameters_changed=any(
            not torch.equal(p0, p.detach())
            for p0, p in zip(params0, model.parameters(), strict=True)
        ),
    )


def dropout_under_no_grad(model: nn.Module, x: Tensor) -> float:
    """Return the largest difference between two forward passes of ``x`` under ``torch.no_grad()``.

    Nonzero in training mode (Dropout draws a new mask each pass); zero in eval mode.
    BatchNorm layers are switched to eval mode for the two passes, so that only
    Dropout can make them differ, and restored afterwards.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    for m in bns:
        m.eval()
    try:
        with torch.no_grad():
            first = model(x)
            second = model(x)
    finally:
        for m, mode in zip(bns, modes, strict=True):
            m.train(mode)
    return float((first - second).abs().max())


@dataclass(frozen=True)
class BatchOfOne:
    """Training-mode BatchNorm outcomes on a batch of a single example.

    ``bn1d_error``: the message of the ``ValueError`` BatchNorm1d raises on
    ``(1, C)``. ``bn2d_1x1_error``: the same for BatchNorm2d on ``(1, C, 1, 1)``.
    ``bn2d_vs_instance_norm``: largest difference between BatchNorm2d on
    ``(1, C, H, W)`` and instance normalization of the same image.
    ``bn2d_affine_change``: largest output difference between an image ``x``
    and ``a * x + b`` (per-channel ``a > 0``, ``b``), in training mode;
    ``eval_affine_change``: the same in eval mode.
    """

    bn1d_error: str
    bn2d_1x1_error: str
    bn2d_vs_instance_norm: float
    bn2d_affine_change: float
    eval_affine_change: float


def _value_error_message(module: nn.Module, x: Tensor) -> str:
    try:
        module(x)
    except ValueError as error:
        return str(error)
    return ""


def batch_of_one(channels: int = 4, size: int = 8, *, seed: int = 0) -> BatchOfOne:
    """Run BatchNorm1d and BatchNorm2d in training mode on batches of one example."""
    generator = torch.Generator().manual_seed(seed)
    bn1d_error = _value_error_message(nn.BatchNorm1d(channels).train(), torch.randn(1, channels))
    bn2d_1x1_error = _value_error_message(
        nn.BatchNorm2d(channels).train(), torch.randn(1, channels, 1, 1)
    )

    x = torch.randn(1, channels, size, size, generator=generator)
    scale = 0.5 + torch.rand(1, channels, 1, 1, generator=generator) * 2
    shift = torch.randn(1, channels, 1, 1, generator=generator)
    bn = nn.BatchNorm2d(channels).train()
    with torch.no_grad():
        out = bn(x)
        out_affine = bn(scale * x + shift)
        instance = F.instance_norm(x, eps=bn.eps)
        # Running statistics of an untrained layer (mean 0, var 1) let eval mode show
        # the raw difference between the two inputs.
        bn_eval = nn.BatchNorm2d(channels).eval()
        eval_change = (bn_eval(scale * x + shift) - bn_eval(x)).abs().max()
    return BatchOfOne(
        bn1d_error=bn1d_error,
        bn2d_1x1_error=bn2d_1x1_error,
        bn2d_vs_instance_norm=float((out - instance).abs().max()),
        bn2d_affine_change=float((out_affine - out).abs().max()),
        eval_affine_change=float(eval_change),
    )


@dataclass(frozen=True)
class MomentumUpdate:
    """Running statistics after one training-mode pass, and the values the formula predicts.

    All tensors have shape ``(C,)``. The prediction is
    ``(1 - momentum) * running + momentum * batch`` with the biased batch mean
    and the unbiased (``N - 1``) batch variance.
    """

    momentum: float
    running_mean: Tensor
    predicted_mean: Tensor
    running_var: Tensor
    predicted_var: Tensor


def momentum_update(
    momentum: float = 0.1, *, channels: int = 5, batch: int = 12, seed: int = 0
) -> MomentumUpdate:
    """Run one training-mode pass of BatchNorm1d from non-default running statistics."""
    generator = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(channels, momentum=momentum).train()
    start_mean = torch.randn(channels, generator=generator)
    start_var = 0.5 + torch.rand(channels, generator=generator)
    bn.running_mean.copy_(start_mean)
    bn.running_var.copy_(start_var)
    x = 3.0 + 2.0 * torch.randn(batch, channels, generator=generator)
    with torch.no_grad():
        bn(x)
    predicted_mean = (1 - momentum) * start_mean + momentum * x.mean(dim=0)
    predicted_var = (1 - momentum) * start_var + momentum * x.var(dim=0, unbiased=True)
    return MomentumUpdate(
        momentum, bn.running_mean.clone(), predicted_mean, bn.running_var.clone(), predicted_var
    )


def set_batchnorm_eval(model: nn.Module) -> list[nn.Module]:
    """Switch every BatchNorm layer of ``model`` to eval mode and return those layers.

    The rest of the model keeps its mode, so Dropout stays active in training.
    BatchNorm normalizes with its running statistics and stops updating them,
    which makes a batch of one work. ``model.train()`` switches the layers
    back, so call this again after every ``model.train()``.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.eval()
    return layers
