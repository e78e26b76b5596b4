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
# # 1(b) What train() and eval() switch
#
# `model.train()` and `model.eval()` set one boolean, `module.training`, on the
# model and every submodule. Most layers ignore it. Two kinds of layer in
# common networks read it:
#
# * **BatchNorm.** In training mode it normalizes with the mean and variance of
#   the current batch and updates its running estimates of them. In eval mode
#   it normalizes with the running estimates and leaves them alone [@ioffe2015batch].
# * **Dropout.** In training mode it zeroes each element with probability $p$
#   and scales the survivors by $1/(1-p)$; in eval mode it passes its input through.
#
# A ResNet has BatchNorm but no Dropout. To see both effects, this page uses a
# small network, Linear → BatchNorm1d → ReLU → Dropout(0.5) → Linear.

# %%
import torch
from torch import nn

from hw2lib.bn_demos import (
    batch_dependence,
    batch_of_one,
    bn_dropout_mlp,
    dropout_under_no_grad,
    momentum_update,
    running_stats_under_no_grad,
)
from hw2lib.checks import check, check_close, check_equal

torch.manual_seed(0)
model = bn_dropout_mlp(in_features=8, hidden=32, out_features=3)
x = torch.randn(1, 8)  # the example whose output we follow
batch_mates_a = torch.randn(15, 8)
batch_mates_b = torch.randn(15, 8)
print(model)

# %% [markdown]
# ## In training mode an output depends on the rest of the batch
#
# We put the same example $x$ into two batches that differ only in the other
# 15 examples, and compare the outputs for $x$. The random generator is reset
# before each pass so that Dropout draws the same mask both times; what
# changes the output is BatchNorm's batch statistics.

# %%
model.train()
change_train = batch_dependence(model, x, batch_mates_a, batch_mates_b)
model.eval()
change_eval = batch_dependence(model, x, batch_mates_a, batch_mates_b)
print(f"train mode: output for x changes by up to {change_train:.4f}")
print(f"eval mode:  output for x changes by up to {change_eval:.4f}")

check(
    "in train mode, x's output depends on its batch-mates",
    change_train > 1e-3,
    f"largest change {change_train:.4g}",
)
check_equal("in eval mode, x's output does not depend on its batch-mates", change_eval, 0.0)

# %% [markdown]
# In eval mode a prediction is a function of its own input only, which is what
# a test-set score or a deployed model needs. In training mode the same image
# gets a different prediction in a different batch.
#
# ## torch.no_grad() does not stop BatchNorm from updating
#
# A classic evaluation bug is a loop that wraps the forward pass in
# `torch.no_grad()` but never calls `model.eval()`. No optimizer step happens,
# so it is tempting to think the model cannot change. But BatchNorm's running
# mean and variance are *buffers*, not parameters: the forward pass itself
# updates them in training mode, and `no_grad()` does not change that.

# %%
eval_batches = [torch.randn(16, 8) + 2.0 for _ in range(5)]  # data shifted from training
model.train()
in_train = running_stats_under_no_grad(model, eval_batches)
model.eval()
in_eval = running_stats_under_no_grad(model, eval_batches)
for label, change in [("train mode", in_train), ("eval mode", in_eval)]:
    print(
        f"{label}: running mean moved {change.mean_change:.4f}, running var moved "
        f"{change.var_change:.4f}, batches tracked {change.batches_tracked_before} -> "
        f"{change.batches_tracked_after}, parameters changed: {change.parameters_changed}"
    )

check(
    "under no_grad in train mode, BatchNorm's running mean moves",
    in_train.mean_change > 1e-2,
    f"moved {in_train.mean_change:.4g}",
)
check_equal(
    "and its batch counter advances by one per batch",
    in_train.batches_tracked_after - in_train.batches_tracked_before,
    len(eval_batches),
)
check_equal("while no parameter changes", in_train.parameters_changed, False)
check_equal("in eval mode the running mean does not move", in_eval.mean_change, 0.0)

# %% [markdown]
# The test batches have leaked into the statistics the model will use from now
# on, and the scores computed in that loop were made with batch statistics.
#
# ## no_grad() is not eval()
#
# The two switches are independent. `torch.no_grad()` stops autograd from
# recording the graph, which saves memory and time, and leaves
# `module.training` as it was. `model.eval()` changes how BatchNorm and
# Dropout compute, and leaves autograd on. Inference needs both.

# %%
model.train()
with torch.no_grad():
    still_training = model.training
dropout_train = dropout_under_no_grad(model, batch_mates_a)
model.eval()
dropout_eval = dropout_under_no_grad(model, batch_mates_a)
records_graph = model(batch_mates_a).requires_grad
print(f"inside no_grad, model.training = {still_training}")
print(
    f"two passes under no_grad differ by {dropout_train:.3f} in train mode, "
    f"{dropout_eval:.3f} in eval mode"
)
print(f"in eval mode without no_grad, the output requires grad: {records_graph}")

check_equal("no_grad() leaves the model in training mode", still_training, True)
check(
    "under no_grad in train mode, Dropout still draws new masks",
    dropout_train > 0,
    f"difference {dropout_train:.4g}",
)
check_equal("in eval mode, two passes agree exactly", dropout_eval, 0.0)
check_equal("eval() does not turn off gradient recording", records_graph, True)

# %% [markdown]
# ## A batch of one example
#
# BatchNorm in training mode estimates a variance from the values of each
# channel in the batch. BatchNorm1d on a batch of one has a single value per
# channel: the normalized value is always 0, so the output is the constant
# $\beta$ whatever the input, and the unbiased running variance would divide
# by $N - 1 = 0$. PyTorch raises an error instead.
# BatchNorm2d on one image still has $H \times W$ values per channel, so it
# runs, but its statistics come from that one image. It then computes
# instance normalization: each channel of the image is shifted and scaled to
# zero mean and unit variance over its own pixels, which erases any
# per-channel brightness and contrast, and the running statistics absorb that
# single image. On a 1×1 feature map the error returns.

# %%
one = batch_of_one(channels=4, size=8)
print("BatchNorm1d, input (1, 4):      ValueError:", one.bn1d_error)
print("BatchNorm2d, input (1, 4, 1, 1): ValueError:", one.bn2d_1x1_error)
print(
    "BatchNorm2d, input (1, 4, 8, 8): differs from instance norm by "
    f"{one.bn2d_vs_instance_norm:.2g}"
)
print(
    f"  output change when the image becomes a·x + b per channel: "
    f"train mode {one.bn2d_affine_change:.2g}, eval mode {one.eval_affine_change:.2g}"
)

check(
    "BatchNorm1d raises ValueError on a batch of one in train mode",
    "Expected more than 1 value per channel" in one.bn1d_error,
    one.bn1d_error,
)
check(
    "BatchNorm2d raises it too on a single 1×1 feature map",
    "Expected more than 1 value per channel" in one.bn2d_1x1_error,
    one.bn2d_1x1_error,
)
check(
    "BatchNorm2d on one image equals instance normalization",
    one.bn2d_vs_instance_norm < 1e-5,
    f"largest difference {one.bn2d_vs_instance_norm:.2g}",
)
check(
    "in train mode, per-channel brightness and contrast of the image are erased",
    one.bn2d_affine_change < 1e-3 < one.eval_affine_change,
    f"train {one.bn2d_affine_change:.2g}, eval {one.eval_affine_change:.2g}",
)

# %% [markdown]
# ## The momentum of the running statistics
#
# After each training-mode pass, PyTorch updates the running estimates as
#
# $$
# \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu_B, \qquad
# \hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\frac{N}{N-1}\sigma_B^2,
# $$
#
# with `momentum` $m = 0.1$ by default, where $\mu_B$ and $\sigma_B^2$ are the
# batch mean and (biased) variance over the $N$ values of a channel; the
# running variance uses the unbiased estimate. PyTorch's momentum is the
# weight of the *new* batch. Keras's `BatchNormalization(momentum=0.99)` keeps
# the same kind of moving average (its running variance takes the biased batch
# variance, without the $N/(N-1)$ factor), but its momentum is the weight of
# the *old* value, so Keras's 0.99
# corresponds to PyTorch's `momentum=0.01`, and PyTorch's default 0.1
# corresponds to Keras's 0.9. Porting a model between the two libraries with
# the number copied unchanged turns an average over roughly the last 100
# batches into one dominated by the last batch.

# %%
check_equal("PyTorch's default BatchNorm momentum is 0.1", nn.BatchNorm2d(8).momentum, 0.1)
for m in (0.1, 0.01):
    update = momentum_update(m)
    check_close(
        f"momentum {m}: running mean = (1 − m)·old + m·batch mean",
        update.running_mean.numpy(),
        update.predicted_mean.numpy(),
        rtol=1e-5,
    )
    check_close(
        f"momentum {m}: running var = (1 − m)·old + m·unbiased batch var",
        update.running_var.numpy(),
        update.predicted_var.numpy(),
        rtol=1e-5,
    )

# %% [markdown]
# ## The same bug in a trained network
#
# The demonstrations above use a small untrained model. Experiment E3 takes
# the ResNet-18 trained in E1 and evaluates it on the test set in `eval()`
# mode and in `train()` mode, at test batch sizes 1, 16 and 256, and on a
# balanced test subset sorted by label (100 images per class), so that a batch
# of 16 holds one or two classes and a batch of 256 three or four, and the
# batch statistics are far from the training statistics. The results are
# frozen files written by `nox -s experiments`; the build only reads them.

# %%
from hw2lib.results import show_experiment

e3 = show_experiment("e3")

# %% [markdown]
# The frozen results repeat the two effects measured above on a trained
# network: `eval()` gives one accuracy whatever the batch, and `train()` mode
# with a batch of one, or with class-sorted batches, falls far below it.

# %%
if e3 is not None:
    accuracy = {
        (row["mode"], row["order"], row["batch_size"]): row["accuracy"][0] for row in e3["rows"]
    }
    eval_accuracy = accuracy[("eval", "shuffled", 256)]
    check(
        "In train() mode with a batch of one, the trained network loses more than "
        "20 accuracy points against eval()",
        accuracy[("train", "shuffled", 1)] < eval_accuracy - 0.20,
        f"train(), batch 1: {accuracy[('train', 'shuffled', 1)]:.1%}; "
        f"eval(): {eval_accuracy:.1%}",
    )
    check(
        "Class-sorted batches of 256 in train() mode lose more than 10 points against eval()",
        accuracy[("train", "class-sorted", 256)] < eval_accuracy - 0.10,
        f"train(), class-sorted 256: {accuracy[('train', 'class-sorted', 256)]:.1%}; "
        f"eval(): {eval_accuracy:.1%}",
    )
