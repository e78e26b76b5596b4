"""ResNet-18 for 32x32 CIFAR-10 images, with BatchNorm placed before or after ReLU.

The network follows ResNet-18 (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016) with the usual CIFAR-10 stem: one 3x3 convolution at
stride 1 and no max-pool, so that the 32x32 input is not shrunk to 8x8 before
the first block. The four stages hold two basic blocks each, at ``width``,
``2*width``, ``4*width`` and ``8*width`` channels. Each of the last three
stages halves the spatial size in its first block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

NormPosition = Literal["before_relu", "after_relu", "after_relu_add_relu"]
NORM_POSITIONS: tuple[str, ...] = ("before_relu", "after_relu", "after_relu_add_relu")

NormLayer = Callable[[int], nn.Module]


def _check_norm_position(norm_position: str) -> None:
    if norm_position not in NORM_POSITIONS:
        raise ValueError(f"norm_position must be one of {NORM_POSITIONS}, got {norm_position!r}")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (the BatchNorm after it has a shift)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias, used by the projection shortcut."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection.

    ``norm_position="before_relu"`` (torchvision's order)::

        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    The residual addition sits after ``bn2`` and before the block's last ReLU.

    ``norm_position="after_relu"``: every convolution in the main branch is
    followed by ReLU and then BatchNorm::

        out = bn2(relu(conv2(bn1(relu(conv1(x)))))) + shortcut(x)

    The residual addition sits after ``bn2``, and no ReLU follows it, because
    the ReLU that ``before_relu`` applies after the addition has moved in front
    of ``bn2``. ``before_relu`` and ``after_relu`` both use two ReLUs per block.

    ``norm_position="after_relu_add_relu"``: the ``after_relu`` branch, with
    the ReLU after the addition kept as well (three ReLUs per block)::

        out = relu(bn2(relu(conv2(bn1(relu(conv1(x)))))) + shortcut(x))

    Comparing it with ``after_relu`` separates the effect of the final ReLU
    from the effect of where BatchNorm sits.

    In every order, ``shortcut`` is the identity when the shape is kept, and
    otherwise ``downsample`` = 1x1 convolution (with the block's stride) followed
    by BatchNorm, with no ReLU, so the shortcut's BN sits just before the addition.

    Input shape ``(N, in_channels, H, W)``, output ``(N, channels, H/stride, W/stride)``.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        norm_position: NormPosition = "before_relu",
    ) -> None:
        super().__init__()
        _check_norm_position(norm_position)
        self.norm_position = norm_position
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if self.norm_position == "before_relu":
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.bn2(self.relu(self.conv2(out)))
        if self.norm_position == "after_relu_add_relu":
            return self.relu(out + identity)
        return out + identity


class CifarResNet(nn.Module):
    """ResNet with a 3x3 stride-1 stem for 32x32 inputs; see :func:`cifar_resnet18`.

    Input shape ``(N, 3, H, W)``; output logits ``(N, num_classes)``. Any
    ``H, W`` of at least 8 works because the head pools adaptively.
    """

    def __init__(
        self,
        layers: list[int],
        num_classes: int = 10,
        *,
        width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        norm_position: NormPosition = "before_relu",
    ) -> None:
        super().__init__()
        _check_norm_position(norm_position)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"width must be a positive integer (base channel count), got {width!r}: "
                "use 64 for the standard ResNet-18, or e.g. 16 for a small CPU model"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must list four positive block counts, got {layers!r}")

        self.norm_layer = norm_layer
        self.norm_position = norm_position
        self.in_channels = width

        self.conv1 = conv3x3(3, width)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != channels * BasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.in_channels, channels * BasicBlock.expansion, stride),
                self.norm_layer(channels * BasicBlock.expansion),
            )
        stage = [
            BasicBlock(
                self.in_channels,
                channels,
                stride,
                downsample,
                norm_layer=self.norm_layer,
                norm_position=self.norm_position,
            )
        ]
        self.in_channels = channels * BasicBlock.expansion
        for _ in range(1, blocks):
            stage.append(
                BasicBlock(
                    self.in_channels,
                    channels,
                    norm_layer=self.norm_layer,
                    norm_position=self.norm_position,
                )
            )
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_position == "before_relu":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.bn1(self.relu(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def cifar_resnet18(
    num_classes: int = 10,
    norm_position: NormPosition = "before_relu",
    width: int = 64,
    *,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> CifarResNet:
    """Build ResNet-18 for CIFAR-10: 3x3 stride-1 stem, no max-pool, basic blocks [2, 2, 2, 2].

    ``norm_position`` places the normalization relative to ReLU, in the stem and
    in every block:

    * ``"before_relu"``: Conv -> BN -> ReLU, torchvision's order. In each block
      the residual addition comes after the second BN and is followed by ReLU.
    * ``"after_relu"``: Conv -> ReLU -> BN. In each block the residual addition
      comes after the second BN and no ReLU follows it.
    * ``"after_relu_add_relu"``: Conv -> ReLU -> BN as in ``"after_relu"``, and
      a ReLU after each block's addition as in ``"before_relu"``.

    In all three, a shortcut that changes shape is a 1x1 convolution followed by BN
    (no ReLU) whose output goes straight into the addition; see
    :class:`BasicBlock` for the formulas.

    With ``width=64`` and 10 classes the model has 11,173,962 parameters in
    every order. ``width`` is the channel count of the stem and the first
    stage; smaller values give a cheap model for CPU runs.
    ``norm_layer`` takes a channel count and returns a module, as in
    torchvision (for example ``lambda c: nn.GroupNorm(8, c)``).

    Raises ``ValueError`` for an unknown ``norm_position`` (the allowed values
    are listed in ``NORM_POSITIONS``) or a ``width`` or
    ``num_classes`` that is not a positive integer.
    """
    return CifarResNet(
        [2, 2, 2, 2],
        num_classes,
        width=width,
        norm_layer=norm_layer,
        norm_position=norm_position,
    )


class TinyTransformerBlock(nn.Module):
    """A one-block transformer classifier whose parameters the exclusion rules split differently.

    Tokens ``(N, T)`` of integer ids in ``[0, vocab_size)`` go through a token
    embedding (``nn.Embedding``) plus a learned positional embedding of shape
    ``(T, dim)``. One pre-norm block follows (LayerNorm, self-attention,
    LayerNorm, MLP), with a learned per-channel scale of shape ``(dim,)`` on
    each residual branch (layer scale). A final LayerNorm and a linear head on
    the mean token give logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int = 100,
        max_tokens: int = 16,
        dim: int = 32,
        heads: int = 4,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(max_tokens, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.layer_scale1 = nn.Parameter(torch.full((dim,), 0.1))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.layer_scale2 = nn.Parameter(torch.full((dim,), 0.1))
        self.norm_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        if length > self.pos_embedding.shape[0]:
            raise ValueError(
                f"sequence length {length} exceeds max_tokens={self.pos_embedding.shape[0]}"
            )
        x = self.token_embedding(tokens) + self.pos_embedding[:length]
        h = self.norm1(x)
        x = x + self.layer_scale1 * self.attn(h, h, h, need_weights=False)[0]
        x = x + self.layer_scale2 * self.mlp(self.norm2(x))
        return self.head(self.norm_out(x).mean(dim=1))
