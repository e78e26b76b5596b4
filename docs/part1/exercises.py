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
# # Exercises for Part 1
#
# Each exercise extends one page of Part 1. Try it before opening the worked
# solution; the solutions run at build time and check their own answers.

# %%
import math

import torch
import torchvision
from torch import nn

from hw2lib.bn_demos import bn_dropout_mlp, set_batchnorm_eval
from hw2lib.checks import check, check_close, check_equal
from hw2lib.models import cifar_resnet18
from hw2lib.parameters import compare_exclusion_rules, parameter_inventory, split_parameters

# %% [markdown]
# ## Exercise 1: the inventory of ResNet-34
#
# torchvision's `resnet34` uses the same basic blocks as `resnet18` but
# [3, 4, 6, 3] of them per stage instead of [2, 2, 2, 2]. Before running any
# code, predict (a) which stage holds most parameters, (b) how many conv and
# linear bias elements it has, and (c) how many BatchNorm parameters it has.
# Then check with `parameter_inventory` and `split_parameters`
# ([1(c)](../inventory/), [1(e)](../param-groups/)).

# %% [markdown] tags=["solution"]
# **Solution.** (a) Still `layer4`: its 3×3 convolutions have $9 \cdot 512^2$
# weights each. (b) Still 1,000: the convolutions have no bias, so only `fc.bias`
# counts. (c) Each BatchNorm layer has $2C$ parameters. The stem has one
# 64-channel layer; a stage with $b$ blocks of $C$ channels has $2b$ layers of
# $C$ channels, plus one shortcut BatchNorm in stages 2 to 4:
# $2\,[64 + 6\cdot 64 + (8 \cdot 128 + 128) + (12 \cdot 256 + 256) +
# (6 \cdot 512 + 512)] = 17{,}024$.

# %% tags=["solution"]
resnet34 = torchvision.models.resnet34(weights=None)
rows34 = parameter_inventory(resnet34)
split34 = split_parameters(resnet34)
print(f"{len(rows34)} tensors, {sum(r.numel for r in rows34):,} parameters")
print({group: f"{count:,}" for group, count in split34.counts().items()})

check_equal("resnet34 has 21,797,672 parameters", sum(r.numel for r in rows34), 21_797_672)
check_equal(
    "its only conv or linear bias is fc.bias, 1,000 elements",
    [(n, p.numel()) for n, p in split34.bias],
    [("fc.bias", 1_000)],
)
predicted_norm = 2 * (64 + 6 * 64 + (8 * 128 + 128) + (12 * 256 + 256) + (6 * 512 + 512))
check_equal("BatchNorm parameters: 17,024, as predicted", split34.numel("norm"), predicted_norm)

# %% [markdown]
# ## Exercise 2: the name rule on other torchvision models
#
# On `resnet18` the rule `"bn" in name` catches 7,808 of 9,600 BatchNorm
# parameters. How many normalization parameters does it catch on
# `densenet121` and on `mobilenet_v3_small`? Look at the names first
# (`model.named_parameters()`), then confirm with `compare_exclusion_rules`.

# %% [markdown] tags=["solution"]
# **Solution.** None on either. DenseNet names its BatchNorm layers `norm0`,
# `norm1`, `norm2`, and MobileNetV3 builds each convolution, BatchNorm and
# activation as a `Sequential` whose children are numbered, so its BatchNorm
# parameters are called `features.0.1.weight` and so on. A name rule works only
# for the naming habits of the model it was written for. The module-type and
# shape rules agree with each other on both models.

# %% tags=["solution"]
for name in ("densenet121", "mobilenet_v3_small"):
    net = getattr(torchvision.models, name)(weights=None)
    rules = {r.rule: r for r in compare_exclusion_rules(net)}
    norm_names = [n for n, _ in split_parameters(net).norm]
    print(f"{name}: first normalization parameters {norm_names[:3]}")
    check_equal(
        f"{name}: the name rule catches no normalization parameter",
        rules["name"].norm_numel_excluded,
        0,
    )
    # An independent count: every parameter owned directly by a BatchNorm layer.
    batchnorm_numel = sum(
        p.numel()
        for module in net.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for p in module.parameters(recurse=False)
    )
    check(
        f"{name}: the module-type rule catches them all",
        rules["module_type"].norm_numel_excluded == batchnorm_numel > 0,
        f"{rules['module_type'].norm_numel_excluded:,} elements, "
        f"{batchnorm_numel:,} in BatchNorm layers",
    )
    check_equal(
        f"{name}: the shape rule excludes the same tensors as the module-type rule",
        (rules["shape"].missed_tensors, rules["shape"].extra_tensors),
        (0, 0),
    )

# %% [markdown]
# ## Exercise 3: training with a batch of one
#
# [1(b)](../train-eval/) showed that BatchNorm1d rejects a batch of one in
# training mode and that BatchNorm2d turns into instance normalization. Suppose
# memory allows only one example per step while fine-tuning a network that was
# pretrained with BatchNorm. Give two ways to train, and show one of them
# working on the network of 1(b): Dropout must stay active, and BatchNorm's
# running statistics must not change.

# %% [markdown] tags=["solution"]
# **Solution.** (1) Keep BatchNorm in eval mode while the rest of the network
# trains: it then normalizes with the running statistics from pretraining, which
# are no longer updated (its $\gamma$ and $\beta$ can still be trained).
# torchvision's detection models go one step further with `FrozenBatchNorm2d`,
# which also freezes $\gamma$ and $\beta$ (they are buffers there). The trap
# is that `model.train()` switches BatchNorm back, so this must be redone after
# every call. (2) Replace BatchNorm with a normalization that does not use the
# batch, such as GroupNorm. It normalizes over groups of channels within each
# example, and `cifar_resnet18` accepts it through `norm_layer`. That changes the
# network, so pretrained BatchNorm statistics are lost.

# %% tags=["solution"]
torch.manual_seed(0)
net = bn_dropout_mlp()
net.train()
bn_layers = set_batchnorm_eval(net)
running_before = bn_layers[0].running_mean.clone()
one_example = torch.randn(1, 8)
with torch.no_grad():
    first, second = net(one_example), net(one_example)
check("with BatchNorm in eval mode, a batch of one runs in training", first.shape == (1, 3))
check("Dropout is still active: two passes differ", not torch.equal(first, second))
check(
    "BatchNorm's running statistics did not change",
    torch.equal(bn_layers[0].running_mean, running_before),
)
net.train()
check_equal("model.train() switches BatchNorm back to training mode", bn_layers[0].training, True)

# %% tags=["solution"]
group_norm_net = cifar_resnet18(width=16, norm_layer=lambda c: nn.GroupNorm(8, c)).train()
images = torch.randn(4, 3, 32, 32)
with torch.no_grad():
    alone = group_norm_net(images[:1])
    in_batch = group_norm_net(images)[:1]
check_close(
    "with GroupNorm, an image's output is the same alone or in a batch (train mode)",
    alone.numpy(),
    in_batch.numpy(),
    rtol=1e-4,
    atol=1e-5,
)

# %% [markdown]
# ## Exercise 4: how long BatchNorm remembers
#
# A BatchNorm layer starts with running mean 0. It then sees batches whose
# mean is 1 in every channel. With PyTorch's update
# $\hat\mu \leftarrow (1-m)\hat\mu + m\mu_B$, after how many training-mode
# batches does the initial value weigh less than 1%, that is, when does
# $\hat\mu$ exceed 0.99? Answer for the default $m = 0.1$ and for $m = 0.01$,
# the value a Keras model with `momentum=0.99` corresponds to. Then simulate it.

# %% [markdown] tags=["solution"]
# **Solution.** After $k$ batches $\hat\mu = 1 - (1-m)^k$, so we need
# $(1-m)^k < 0.01$, that is $k > \ln 0.01 / \ln(1-m)$: 44 batches for
# $m = 0.1$ and 459 for $m = 0.01$. Copying Keras's `momentum=0.99` into
# PyTorch unchanged gives $m = 0.99$, after which a single batch sets the
# running statistics almost alone.


# %% tags=["solution"]
def batches_until(threshold: float, momentum: float) -> int:
    bn = nn.BatchNorm1d(2, momentum=momentum).train()
    batch = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean 1 in both channels
    steps = 0
    with torch.no_grad():
        while bn.running_mean.min() <= threshold:
            bn(batch)
            steps += 1
    return steps


for m in (0.1, 0.01):
    predicted = math.ceil(math.log(0.01) / math.log(1 - m))
    simulated = batches_until(0.99, m)
    print(f"momentum {m}: predicted {predicted}, simulated {simulated}")
    check_equal(
        f"momentum {m}: the simulation needs {predicted} batches, as derived", simulated, predicted
    )
check_equal(
    "the two answers are 44 and 459",
    [math.ceil(math.log(0.01) / math.log(1 - m)) for m in (0.1, 0.01)],
    [44, 459],
)
