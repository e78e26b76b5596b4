# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1(c) The parameter inventory of ResNet-18
#
# Before deciding which parameters get weight decay, we list them all.
# torchvision's `resnet18` [@he2016deep] is built here with `weights=None`: the
# inventory depends only on the architecture, not on the values.
# `model.named_parameters()` yields every learnable tensor once, under a
# qualified name such as `layer2.0.downsample.1.weight` (stage `layer2`, block 0,
# the shortcut's `Sequential`, its second module, a BatchNorm).

# %%
import torchvision
from matplotlib.figure import Figure
from torch import nn

from hw2lib.checks import check, check_equal
from hw2lib.models import cifar_resnet18
from hw2lib.parameters import (
    group_totals,
    parameter_inventory,
    split_parameters,
    stage_totals,
)
from hw2lib.part1_display import show_figure, show_table

model = torchvision.models.resnet18(weights=None)
rows = parameter_inventory(model)
total = sum(row.numel for row in rows)

check_equal("resnet18 has 62 named parameter tensors", len(rows), 62)
check_equal("resnet18 has 11,689,512 parameters", total, 11_689_512)

# %% [markdown]
# ## Every tensor
#
# The table lists each tensor with its shape, its number of elements and the
# group that [1(e)](../param-groups/) puts it in: `norm` for BatchNorm's scale
# $\gamma$ (stored as `weight`) and shift $\beta$ (`bias`), `bias` for biases of
# convolutions and linear layers, `other` for the rest.

# %%
show_table(
    ["#", "name", "shape", "elements", "group"],
    [
        [i, row.name, "×".join(map(str, row.shape)), row.numel, row.group]
        for i, row in enumerate(rows, start=1)
    ]
    + [["", "total", "", total, ""]],
    numeric=[True, False, False, True, False],
    bold_rows=[len(rows)],
)
# %% [markdown]
# The running mean and variance of each BatchNorm layer do not appear: they are
# *buffers*, updated by the forward pass in training mode rather than by the
# optimizer (see [1(b)](../train-eval/)). Each of the 20 BatchNorm layers has
# three buffers, the third being a counter of batches seen.

# %%
bn_layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
buffers = list(model.named_buffers())
check_equal("resnet18 has 20 BatchNorm2d layers", len(bn_layers), 20)
check_equal("and 60 buffers, none of them a parameter", len(buffers), 3 * len(bn_layers))

# %% [markdown]
# ## Where the parameters are
#
# Grouped by the first component of the name (the stem `conv1` and `bn1`, the
# four stages, the classifier `fc`), the subtotals show that each stage doubles
# the channel count and so roughly quadruples the weight count of its 3×3
# convolutions: a $3\times 3$ convolution from $C$ to $C$ channels has $9C^2$ weights.

# %%
stages = stage_totals(rows)
show_table(
    ["stage", "tensors", "elements", "share of total"],
    [[s.stage, s.tensors, s.numel, f"{s.numel / total:.1%}"] for s in stages]
    + [["total", len(rows), total, "100.0%"]],
    numeric=[False, True, True, True],
    bold_rows=[len(stages)],
)

largest = max(stages, key=lambda s: s.numel)
check_equal("layer4 holds more parameters than any other stage", largest.stage, "layer4")
check(
    "layer4 alone holds more than 70% of all parameters",
    largest.numel / total > 0.7,
    f"layer4: {largest.numel:,} of {total:,} = {largest.numel / total:.1%}",
)
check_equal("the stage subtotals add up to the total", sum(s.numel for s in stages), total)
# %%
fig = Figure(figsize=(7, 3))
ax = fig.subplots()
ax.bar([s.stage for s in stages], [s.numel / 1e6 for s in stages], color="tab:blue")
for i, s in enumerate(stages):
    ax.annotate(f"{s.numel / total:.1%}", (i, s.numel / 1e6), ha="center", va="bottom")
ax.set_ylabel("parameters (millions)")
ax.set_title("resnet18: parameters per stage")
ax.margins(y=0.15)
show_figure(fig)
# %% [markdown]
# ## The three groups
#
# The convolutions in torchvision's ResNet are built with `bias=False`, because
# the BatchNorm that follows each of them subtracts the batch mean and adds its
# own shift $\beta$; a convolution bias would be cancelled. So the only
# non-BatchNorm bias is the classifier's, with one entry per class. BatchNorm
# contributes $2C$ parameters per layer, where $C$ is its channel count.

# %%
split = split_parameters(model)
totals = group_totals(rows)
show_table(
    ["group", "tensors", "elements"],
    [[g, len(split.group(g)), totals[g]] for g in ("norm", "bias", "other")],
)

check_equal("BatchNorm affine parameters: 9,600", totals["norm"], 9_600)
check_equal("conv and linear biases: 1,000", totals["bias"], 1_000)
check_equal("all other parameters: 11,678,912", totals["other"], 11_678_912)
check_equal(
    "the only conv or linear bias is fc.bias", [name for name, _ in split.bias], ["fc.bias"]
)
check_equal(
    "9,600 = 2 × (sum of the BatchNorm channel counts)",
    2 * sum(m.num_features for m in bn_layers),
    totals["norm"],
)
# %% [markdown]
# ## The CIFAR-10 variant
#
# The experiments in this chapter train a CIFAR-10 ResNet-18
# (`hw2lib.models.cifar_resnet18`). Its 7×7 stride-2 stem becomes a 3×3
# stride-1 convolution without max-pool, because 32×32 images are too small to
# shrink by 4 before the first stage. Its classifier has 10 outputs instead of
# 1000. Only those two layers change size.

# %%
cifar = cifar_resnet18(num_classes=10)
cifar_total = sum(p.numel() for p in cifar.parameters())
stem_change = cifar.conv1.weight.numel() - model.conv1.weight.numel()
head_change = sum(p.numel() for p in cifar.fc.parameters()) - sum(
    p.numel() for p in model.fc.parameters()
)
print(f"stem: {stem_change:+,}   classifier: {head_change:+,}")

check_equal("cifar_resnet18 has 11,173,962 parameters", cifar_total, 11_173_962)
check_equal(
    "the difference comes only from the stem and the classifier",
    cifar_total - total,
    stem_change + head_change,
)
