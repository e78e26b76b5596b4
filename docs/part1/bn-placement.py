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
# # 1(a) BatchNorm before ReLU
#
# In torchvision's ResNet every convolution is followed by BatchNorm, and BN
# comes before the ReLU: Conv → BN → ReLU [@he2016deep]. Two kinds of
# convolution differ in what follows the BN. A block's second convolution is
# added to the shortcut before the ReLU, and the 1×1 shortcut convolutions have
# no ReLU at all. That is the placement Ioffe and Szegedy chose when they
# introduced BatchNorm [@ioffe2015batch]: they normalize the affine output $Wu$
# of a layer, not its input $u$. They argue that $Wu$ is more likely to have a
# symmetric, non-sparse distribution, while the distribution of $u$, the
# output of the previous nonlinearity, changes its shape during training, so
# normalizing its first two moments would not stabilize it.
#
# This page looks at what each order hands to BatchNorm and to the next layer,
# on real images passed through one convolution:
#
# | order | BatchNorm normalizes | the next layer receives |
# |---|---|---|
# | Conv → BN → ReLU | the convolution output $z$ | $\max(0,\ \gamma \hat z + \beta)$: nonnegative, with exact zeros |
# | Conv → ReLU → BN | the rectified output $\max(0, z)$ | $\gamma \widehat{\max(0,z)} + \beta$: signed, with a spike where the zeros were |
#
# Here $\hat x = (x - \mu_B)/\sqrt{\sigma_B^2 + \epsilon}$ uses the batch mean
# $\mu_B$ and variance $\sigma_B^2$ of each channel.

# %% [markdown]
# ## A batch of images through one convolution
#
# The batch is 64 CIFAR-10 test images when the dataset is on disk, and
# otherwise 64 patches of 32×32 pixels cut from photographs bundled with
# scikit-image. The images are standardized per channel and pass through a
# 3×3 convolution with 16 output channels, Kaiming-initialized and without a
# bias, as in ResNet.

# %%
import numpy as np
import torch
from matplotlib.figure import Figure

from hw2lib.bn_demos import affine_statistics, bn_placement_statistics, load_image_batch
from hw2lib.checks import check, check_close, check_equal
from hw2lib.part1_display import show_figure, show_table

batch = load_image_batch(64, seed=0)
stats = bn_placement_statistics(batch.images, channels=16, seed=0)
print(f"batch: {batch.source}, tensor {tuple(batch.images.shape)}")
print(f"fraction of exact zeros entering BN, BN before ReLU: {stats.zero_fraction_before:.3f}")
print(f"fraction of exact zeros entering BN, BN after ReLU:  {stats.zero_fraction_after:.3f}")

# %% [markdown]
# With BN after ReLU, about half of what BatchNorm receives is exactly zero:
# the ReLU has discarded the sign of every negative response. BatchNorm then
# estimates a mean and a variance for a distribution made of a point mass at 0
# and a one-sided tail.

# %%
check_equal("with BN before ReLU, no exact zeros enter BN", stats.zero_fraction_before, 0.0)
check(
    "with BN after ReLU, between 30% and 70% of BN's input is exactly zero",
    0.3 < stats.zero_fraction_after < 0.7,
    f"measured {stats.zero_fraction_after:.3f}",
)

# %% [markdown]
# ## The batch statistics BatchNorm estimates
#
# Per channel, BatchNorm estimates $\mu_B$ and $\sigma_B^2$ over the 64 images
# and all 32×32 positions. Before the ReLU, a zero-mean input and a bias-free
# convolution give means close to 0. After the ReLU every mean is positive and
# every variance is smaller, since the negative half has been clipped to zero.

# %%
show_table(
    [
        "channel",
        "μ (BN before ReLU)",
        "σ² (BN before ReLU)",
        "μ (BN after ReLU)",
        "σ² (BN after ReLU)",
    ],
    [
        [
            c,
            f"{stats.mean_before[c]:+.3f}",
            f"{stats.var_before[c]:.3f}",
            f"{stats.mean_after[c]:+.3f}",
            f"{stats.var_after[c]:.3f}",
        ]
        for c in range(8)
    ],
    numeric=[True] * 5,
)
check(
    "after ReLU, every channel's batch mean is positive",
    bool((stats.mean_after > 0).all()),
    f"smallest mean {stats.mean_after.min():.3f}",
)
check(
    "after ReLU, every channel's batch variance is smaller than before",
    bool((stats.var_after < stats.var_before).all()),
    f"largest ratio {(stats.var_after / stats.var_before).max():.3f}",
)

# %% [markdown]
# The histograms below pool all channels. Top: what enters BatchNorm. Bottom:
# what the next convolution receives, with BatchNorm's $\gamma = 1$, $\beta = 0$
# as at initialization. With BN first, the next layer receives nonnegative values
# and about half zeros. With ReLU first, it receives signed values, and all the
# zeros of one channel land on a single negative value, $-\mu_B/\sigma_B$.


# %%
def histogram(ax, values, title, color):
    values = values.flatten().numpy()
    ax.hist(values, bins=80, color=color, log=True)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(np.percentile(values, 0.1) - 0.5, np.percentile(values, 99.9) + 0.5)


fig = Figure(figsize=(9, 5.5), layout="constrained")
axes = fig.subplots(2, 2)
histogram(axes[0, 0], stats.bn_input_before, "BN input, Conv → BN → ReLU: z", "tab:blue")
histogram(axes[0, 1], stats.bn_input_after, "BN input, Conv → ReLU → BN: max(0, z)", "tab:orange")
histogram(axes[1, 0], stats.next_input_before, "next layer's input: ReLU(BN(z))", "tab:blue")
histogram(axes[1, 1], stats.next_input_after, "next layer's input: BN(ReLU(z))", "tab:orange")
for ax in axes[:, 0]:
    ax.set_ylabel("count (log scale)")
show_figure(fig)
# %%
zeros_after = stats.bn_input_after == 0
spike = stats.next_input_after[zeros_after]
channel0 = stats.next_input_after[:, 0][zeros_after[:, 0]]
predicted = -stats.mean_after[0] / torch.sqrt(stats.var_after[0] + 1e-5)
# With BN first the next layer's input is a ReLU output, nonnegative by
# construction, so it is printed rather than checked.
print(f"smallest input to the next layer with BN first: {stats.next_input_before.min():.2f}")
check("with ReLU first, every former zero becomes a negative value", bool((spike < 0).all()))
spread = float(channel0.max() - channel0.min())
check("in channel 0, all former zeros land on one value", spread < 1e-6, f"spread {spread:.2g}")
# BatchNorm computes its statistics in float32 with its own summation order,
# so the value matches −μ_B/σ_B computed here only to within about 0.1%.
check_close("that value is −μ_B/σ_B", float(channel0[0]), float(predicted), rtol=1e-3)

# %% [markdown]
# ## BatchNorm does not force zero mean and unit variance into the ReLU
#
# A common summary says that, with BN before ReLU, the ReLU always receives
# zero-mean, unit-variance inputs, so it always zeroes half of them. That holds
# only at initialization. BatchNorm ends with a learned affine map, and in
# training mode channel $c$ leaves BatchNorm with mean exactly $\beta_c$ and
# standard deviation $|\gamma_c|$ (up to $\epsilon$). The ratio $\beta_c/\gamma_c$
# sets how much of the channel the ReLU lets through, and the network learns it.
# With BN after ReLU, the ReLU acts on the raw convolution output, and in these
# bias-free convolutions no per-channel parameter moves its threshold directly.
#
# Below, six channels get different $\gamma$ and $\beta$, chosen to span the
# range; they are illustrative values, not values read from a trained network.

# %%
z = stats.bn_input_before[:, :6]
gamma = torch.tensor([1.0, 1.0, 0.5, 2.0, 1.0, 0.3])
beta = torch.tensor([0.0, 1.0, -1.0, 0.5, -2.0, 0.3])
affine = affine_statistics(z, gamma, beta)
show_table(
    ["channel", "γ", "β", "mean into ReLU", "std into ReLU", "fraction ReLU passes"],
    [
        [
            c,
            f"{gamma[c]:.1f}",
            f"{beta[c]:+.1f}",
            f"{affine.mean[c]:+.3f}",
            f"{affine.std[c]:.3f}",
            f"{affine.active_fraction[c]:.1%}",
        ]
        for c in range(6)
    ],
    numeric=[True] * 6,
)
check_close("the mean entering the ReLU equals β", affine.mean.numpy(), beta.numpy(), atol=1e-5)
check_close(
    "the standard deviation entering the ReLU equals |γ|",
    affine.std.numpy(),
    gamma.abs().numpy(),
    rtol=1e-3,
)
check(
    "β and γ move the fraction the ReLU passes far from one half",
    float(affine.active_fraction.min()) < 0.1 and float(affine.active_fraction.max()) > 0.7,
    f"from {affine.active_fraction.min():.1%} to {affine.active_fraction.max():.1%}",
)

# %% [markdown]
# ## What the evidence says
#
# The argument above is about what each layer receives, not about accuracy,
# and the accuracy evidence is mixed. Ioffe and Szegedy [@ioffe2015batch] and
# the ResNet papers [@he2016deep] use BN before ReLU. He et al.'s study of
# identity mappings [@he2016identity] moves BN and ReLU in front of the
# convolution ("pre-activation"), still BN before ReLU, and reports lower error
# for very deep networks. Mishkin et al.'s ImageNet study of CNN design choices
# [@mishkin2017systematic], on the other hand, includes BN placement among its
# ablations and reports BN after the non-linearity slightly ahead in its
# setting. The published comparisons differ by architecture and training
# recipe, and neither order wins by a margin that carries over from one setup
# to the next.
#
# This chapter runs its own ablation, experiment E1:
# `hw2lib.models.cifar_resnet18` trained on CIFAR-10 with everything else
# equal, in three block designs. Moving BN
# behind the ReLU inside a residual block also moves a ReLU. In torchvision's
# block the second convolution goes through BN, then the addition, then ReLU.
# With `norm_position="after_relu"` that ReLU moves in front of the BN, so no
# ReLU follows the addition and the residual stream is not rectified. With
# `norm_position="after_relu_add_relu"` the block keeps a ReLU after the
# addition as well. The two Conv → ReLU → BN designs differ by that final
# ReLU only. Conv → BN → ReLU and the design that keeps the final ReLU differ
# in where BN sits (and in one more ReLU inside the branch). The site build
# never trains: the cell below reads the frozen results files that
# `nox -s experiments` wrote (see the [Experiments](../../experiments/) page
# for all of them and for how to reproduce them). The preset line states at
# what scale they were measured. A reduced CPU run shows the direction of an
# effect at best, not the full-scale difference.

# %%
from IPython.display import Markdown, display

from hw2lib.results import describe_e1, show_experiment

e1 = show_experiment("e1")
if e1 is not None:
    display(Markdown(describe_e1(e1["rows"])))
