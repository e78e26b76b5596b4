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
# # 1(e) Parameter groups for the optimizer
#
# [1(d)](../weight-decay/) concluded: decay the convolution and linear weights,
# not BatchNorm's $\gamma$, $\beta$ and not the biases. PyTorch optimizers
# accept a list of *parameter groups*, each a dict with its own
# `weight_decay`, so the rule becomes a function that sorts the parameters.
#
# `hw2lib.parameters.split_parameters` decides by module type. Every parameter
# of a normalization layer (BatchNorm, GroupNorm, LayerNorm, InstanceNorm,
# RMSNorm) is `norm`. A parameter named `bias` of any other module is `bias`.
# The rest is `other`. On torchvision's `resnet18`:

# %%
import logging
import sys

import torch
import torchvision

from hw2lib.checks import check, check_equal
from hw2lib.models import TinyTransformerBlock
from hw2lib.parameters import compare_exclusion_rules, optimizer_param_groups, split_parameters
from hw2lib.part1_display import show_table

model = torchvision.models.resnet18(weights=None)
split = split_parameters(model)
show_table(
    ["group", "tensors", "elements", "first names"],
    [
        [g, len(split.group(g)), split.numel(g), ", ".join(n for n, _ in split.group(g)[:3])]
        for g in ("norm", "bias", "other")
    ],
    numeric=[False, True, True, False],
)
check_equal("norm: 9,600 elements", split.numel("norm"), 9_600)
check_equal("bias: 1,000 elements", split.numel("bias"), 1_000)
check_equal("other: 11,678,912 elements", split.numel("other"), 11_678_912)
check_equal(
    "each of the 62 tensors is in exactly one group",
    sorted(n for g in ("norm", "bias", "other") for n, _ in split.group(g)),
    sorted(n for n, _ in model.named_parameters()),
)

# %% [markdown]
# ## The optimizer
#
# `optimizer_param_groups` turns the split into two groups: `other` with the
# requested weight decay, `norm` and `bias` with `weight_decay=0.0`. It logs
# how many tensors and elements went where, so that a training log records
# the split; here the log goes to the page.

# %%
logging.basicConfig(
    level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True
)

groups = optimizer_param_groups(model, weight_decay=5e-4)
optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
for i, group in enumerate(optimizer.param_groups):
    count = sum(p.numel() for p in group["params"])
    print(
        f"group {i}: weight_decay={group['weight_decay']}, {len(group['params'])} tensors, "
        f"{count:,} elements"
    )

# %% [markdown]
# The optimizer should hold every trainable parameter exactly once: a parameter
# missing from all groups is never trained, and PyTorch rejects a parameter
# that appears in two groups.

# %%
held = [id(p) for group in optimizer.param_groups for p in group["params"]]
trainable = {id(p) for p in model.parameters() if p.requires_grad}
check_equal("no parameter appears twice in the optimizer", len(held), len(set(held)))
check_equal("the optimizer holds exactly the trainable parameters", set(held), trainable)
try:
    torch.optim.SGD([{"params": [model.fc.bias]}, {"params": [model.fc.bias]}], lr=0.1)
    duplicate_error = ""
except ValueError as error:
    duplicate_error = str(error)
check(
    "PyTorch rejects a parameter listed in two groups",
    "more than one" in duplicate_error,
    duplicate_error,
)
decayed, not_decayed = optimizer.param_groups
check_equal(
    "decayed group: 11,678,912 elements at weight_decay 5e-4",
    (sum(p.numel() for p in decayed["params"]), decayed["weight_decay"]),
    (11_678_912, 5e-4),
)
check_equal(
    "undecayed group: 9,600 + 1,000 elements at weight_decay 0",
    (sum(p.numel() for p in not_decayed["params"]), not_decayed["weight_decay"]),
    (10_600, 0.0),
)

# %% [markdown]
# Frozen parameters (`requires_grad=False`, as when fine-tuning only the head)
# stay in the split, because it describes the model, but not in the optimizer
# groups:

# %%
frozen = torchvision.models.resnet18(weights=None)
for p in frozen.parameters():
    p.requires_grad_(False)
frozen.fc.requires_grad_(True)
head_groups = optimizer_param_groups(frozen, weight_decay=5e-4)
check_equal(
    "with all but fc frozen, the groups hold fc.weight and fc.bias only",
    [[tuple(p.shape) for p in g["params"]] for g in head_groups],
    [[(1000, 512)], [(1000,)]],
)
check_equal(
    "the split still lists all 62 tensors",
    sum(len(split_parameters(frozen).group(g)) for g in ("norm", "bias", "other")),
    62,
)

# %% [markdown]
# ## Three rules for what not to decay
#
# Training scripts use several rules, and they do not always agree:
#
# * **module type** (this library): parameters of normalization layers and
#   biases of other layers;
# * **shape** (timm's `param_groups_weight_decay`, nanoGPT's "2D or more is
#   decayed"): every tensor with at most one dimension, plus names ending in `.bias`;
# * **name**: every parameter whose qualified name contains `"bn"`.
#
# The table counts what each rule excludes from decay, how many BatchNorm or
# other normalization parameters it catches, what it misses that the
# module-type rule excludes, and what it excludes beyond it.


# %%
def show_rules(model):
    rows = compare_exclusion_rules(model)
    show_table(
        [
            "rule",
            "excluded tensors",
            "excluded elements",
            "norm elements caught",
            "missed",
            "extra",
            "examples missed / extra",
        ],
        [
            [
                r.label,
                r.excluded_tensors,
                r.excluded_numel,
                r.norm_numel_excluded,
                r.missed_numel,
                r.extra_numel,
                ", ".join(r.missed_sample[:3] + r.extra_sample[:3]),
            ]
            for r in rows
        ],
        numeric=[False, True, True, True, True, True, False],
    )
    return {r.rule: r for r in rows}


resnet_rules = show_rules(model)

# %% [markdown]
# On `resnet18` the shape rule and the module-type rule agree, because every
# one-dimensional tensor there is a BatchNorm parameter or `fc.bias`. The name
# rule catches 7,808 of the 9,600 BatchNorm parameters: BatchNorm layers named
# `bn1` and `bn2` match, but the shortcut's BatchNorm is the second module of a
# `Sequential` and is called `layer2.0.downsample.1`, so its $\gamma$ and
# $\beta$ get decayed; the rule also decays `fc.bias`.

# %%
shape_rule, name_rule = resnet_rules["shape"], resnet_rules["name"]
check_equal(
    "resnet18: the shape rule excludes the same 10,600 elements",
    (shape_rule.excluded_numel, shape_rule.missed_numel, shape_rule.extra_numel),
    (10_600, 0, 0),
)
check_equal(
    "resnet18: the name rule catches 7,808 BatchNorm parameters, not 9,600",
    name_rule.norm_numel_excluded,
    7_808,
)
missed_by_name = {n for n, _ in split.norm + split.bias} - {
    n for n, _ in model.named_parameters() if "bn" in n
}
check(
    "the BatchNorm parameters it misses are all in downsample.1",
    all(".downsample.1." in n for n in missed_by_name - {"fc.bias"}),
    f"{len(missed_by_name)} tensors missed, including fc.bias",
)
check_equal(
    "they hold 2 × (128 + 256 + 512) = 1,792 elements",
    9_600 - name_rule.norm_numel_excluded,
    2 * (128 + 256 + 512),
)

# %% [markdown]
# A small transformer block shows all three disagreeing. It has a token
# embedding (`nn.Embedding`), a learned positional embedding of shape
# $(T, d)$, LayerNorms named `norm1`, `norm2`, `norm_out`, self-attention whose
# input projection bias is called `in_proj_bias`, and two *layer-scale*
# vectors of shape $(d,)$, learned per-channel gains on the residual branches.

# %%
block = TinyTransformerBlock(vocab_size=100, max_tokens=16, dim=32, heads=4)
for name, p in block.named_parameters():
    print(f"{name:28s} {tuple(p.shape)}")
block_rules = show_rules(block)

# %% [markdown]
# The name rule finds nothing: no name contains `"bn"`, so every LayerNorm
# parameter and every bias gets decayed. The shape rule additionally excludes
# the two layer-scale vectors, because they are one-dimensional. That is a
# defensible choice (a layer scale is a gain like $\gamma$), but it follows
# from the shape, not from what the tensor does. All three rules decay both
# embeddings; codebases that do not want that name them explicitly, as
# `optimizer_param_groups(..., no_decay_names=["pos_embedding"])` does here.

# %%
check_equal(
    "transformer block: the name rule excludes nothing", block_rules["name"].excluded_tensors, 0
)
check_equal(
    "the shape rule also excludes the two layer-scale vectors",
    set(block_rules["shape"].extra_sample),
    {"layer_scale1", "layer_scale2"},
)
check_equal(
    "the module-type rule excludes 490 elements", block_rules["module_type"].excluded_numel, 490
)
check_equal(
    "which are the LayerNorm parameters and the biases",
    block_rules["module_type"].excluded_numel,
    sum(p.numel() for n, p in block.named_parameters() if "norm" in n or "bias" in n),
)
named_groups = optimizer_param_groups(block, 0.05, no_decay_names=["pos_embedding"])
check(
    "no_decay_names moves pos_embedding to the undecayed group",
    any(p is block.pos_embedding for p in named_groups[1]["params"]),
)
