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
# # 1(d) Weight decay, and what not to decay
#
# Weight decay adds $\frac{\lambda}{2}\lVert w\rVert^2$ to the loss $L(w)$.
# This page derives what one gradient step on that sum does, then asks which
# parameters it makes sense for: not the biases, not BatchNorm's $\gamma$ and
# $\beta$, and, for the weights that BatchNorm normalizes, not for the reason
# usually given.
#
# ## One step shrinks the weights by $1 - \eta\lambda$
#
# SymPy takes the gradient of $L(w) + \frac{\lambda}{2}\lVert w\rVert^2$ for a
# loss $L$ that is an undefined function of $w = (w_1, w_2, w_3)$, so the
# result holds for every differentiable loss, and compares the step with
# learning rate $\eta$ to $(1 - \eta\lambda)\,w - \eta\nabla L(w)$.

# %%
import sympy as sp

from hw2lib.checks import check, check_close, check_equal
from hw2lib.part1_display import show_math, show_table
from hw2lib.weight_decay import (
    decay_only_step,
    derive_l2_step,
    derive_norm_growth,
    derive_scale_invariance,
    measure_scale_invariance,
)

step = derive_l2_step()
eta, lam = sp.symbols("eta lambda", positive=True)
collected = sp.collect(sp.expand(step.step[0]), step.w[0])
show_math(
    r"w_1 - \eta\,\partial_{w_1}\!\Big(L + \tfrac{\lambda}{2}\lVert w\rVert^2\Big) = "
    + sp.latex(step.step[0])
    + " = "
    + sp.latex(collected)
)
show_math(
    r"\text{SymPy: step} - \big[(1-\eta\lambda)\,w - \eta\nabla L\big] = "
    + sp.latex(step.difference.T)
)
check("a gradient step on L + (λ/2)‖w‖² equals (1 − ηλ)·w − η∇L(w)", step.holds)
check_equal(
    "the factor multiplying w is 1 − ηλ", sp.simplify(step.shrink_factor - (1 - eta * lam)), 0
)

# %% [markdown]
# So plain SGD with an L2 penalty first multiplies every weight by
# $1 - \eta\lambda$ and then takes the ordinary step, which is why the penalty
# is called weight *decay*. PyTorch's `SGD(weight_decay=λ)` implements it by
# adding $\lambda w$ to the gradient. With a zero loss gradient, one step shows
# the shrink factor directly, for weights spread over three orders of magnitude.
# Adam is different: it adds $\lambda w$ to the gradient and then divides by
# the running root mean square of that gradient, so the decay no longer
# shrinks in proportion to $w$. Loshchilov and Hutter [@loshchilov2019decoupled]
# separate the two again ("decoupled" decay, AdamW): the optimizer multiplies
# $w$ by $1 - \eta\lambda$ outside the adaptive step. That is PyTorch's
# `AdamW`, which scales the decay by the learning rate $\eta$; in Loshchilov
# and Hutter's algorithm the decay is scaled by the schedule multiplier
# $\eta_t$ instead of Adam's step size, so the same $\lambda$ means different
# decay in the two conventions.

# %%
lr, wd = 0.1, 0.01
steps = {name: decay_only_step(name, lr=lr, weight_decay=wd) for name in ("sgd", "adam", "adamw")}
show_table(
    ["w before", "SGD: after / before", "Adam (L2): after / before", "AdamW: after / before"],
    [
        [f"{steps['sgd'].start[i]:+.3f}"]
        + [f"{steps[n].ratio[i]:.4f}" for n in ("sgd", "adam", "adamw")]
        for i in range(len(steps["sgd"].start))
    ],
    numeric=[True] * 4,
)
for name in ("sgd", "adamw"):
    check_close(
        f"{name}: every weight is multiplied by 1 − ηλ = {1 - lr * wd:g}",
        steps[name].ratio.numpy(),
        [1 - lr * wd] * 8,
        rtol=1e-12,
    )
adam_moves = (steps["adam"].after - steps["adam"].start).abs()
check_close(
    "Adam with L2: every weight moves by about η, whatever its size",
    adam_moves.numpy(),
    [lr] * 8,
    rtol=1e-3,
)

# %% [markdown]
# ## Biases and BatchNorm's $\gamma$, $\beta$
#
# Decay pulls each parameter toward zero. For a weight matrix, zero means "this
# input does not matter", and a small norm is a simple model. For a bias, a
# BatchNorm shift $\beta$ or the classifier's bias, zero is not simpler, only a
# particular offset: the ReLU threshold at the raw pre-activation, or equal
# class priors. For BatchNorm's scale $\gamma$, zero switches the channel off.
# The second BN of each block ends its residual branch. There, shrinking
# $\gamma$ and $\beta$ shrinks the branch against the shortcut (the identity,
# or in the three downsampling blocks a 1×1 convolution with its own BN),
# which changes the function rather than regularizing it. These
# are also few numbers: in `resnet18`, 9,600 BatchNorm parameters and 1,000
# biases out of 11.7 million ([1(c)](../inventory/)), so there is little
# capacity to control, only a bias toward zero. He et al.'s "bag of tricks"
# [@he2019bag] decays only convolution and fully connected weights, and Goyal
# et al. [@goyal2017accurate] leave BatchNorm's $\gamma$ and $\beta$ undecayed
# in their large-batch ImageNet training.
#
# ## Weights followed by BatchNorm: the penalty does not constrain the function
#
# In ResNet every convolution has no bias and feeds a BatchNorm. In training
# mode BatchNorm subtracts the batch mean and divides by the batch standard
# deviation, so scaling the convolution weight by any $\alpha > 0$ leaves the
# output unchanged. The loss is then a function of $w/\lVert w\rVert$ alone.
# SymPy derives three consequences for $f(w) = u(w/\lVert w\rVert)$ with $u$ an
# undefined function:

# %%
invariance = derive_scale_invariance()
show_math(
    r"\langle \nabla f(w),\, w\rangle = "
    + sp.latex(invariance.inner_product)
    + r",\qquad f(\alpha w) - f(w) = "
    + sp.latex(invariance.value_change)
    + r",\qquad \nabla f(\alpha w) - \tfrac{1}{\alpha}\nabla f(w) = "
    + sp.latex(invariance.gradient_scaling.T)
)
check("for f(w) = u(w/‖w‖): ⟨∇f, w⟩ = 0, f(αw) = f(w) and ∇f(αw) = ∇f(w)/α", invariance.holds)

# %% [markdown]
# The same holds, measured in float64, for a real bias-free `Conv2d` followed
# by `BatchNorm2d` in training mode with a fixed random loss. BatchNorm divides
# by $\sqrt{\sigma_B^2 + \epsilon}$, so the invariance is exact only up to a
# relative error of order $\epsilon/\sigma_B^2$ with the default
# $\epsilon = 10^{-5}$; with $\epsilon = 10^{-12}$ it reaches rounding level.

# %%
rows = []
for eps in (1e-5, 1e-12):
    for alpha in (0.5, 3.0):
        m = measure_scale_invariance(alpha, eps=eps)
        rows.append(
            [
                f"{eps:g}",
                alpha,
                f"{m.output_change:.1e}",
                f"{m.cosine_grad_weight:.1e}",
                f"{m.gradient_ratio:.6f}",
                f"{1 / alpha:.6f}",
            ]
        )
        check(
            f"ε={eps:g}, α={alpha}: output unchanged when the conv weight is scaled",
            m.output_change < 100 * eps,
            f"relative change {m.output_change:.2g}",
        )
        check(
            f"ε={eps:g}, α={alpha}: the gradient is orthogonal to the weight",
            abs(m.cosine_grad_weight) < 1e-6,
            f"cosine {m.cosine_grad_weight:.2g}",
        )
        check_close(
            f"ε={eps:g}, α={alpha}: the gradient norm scales as 1/α",
            m.gradient_ratio,
            1 / alpha,
            rtol=100 * eps,
        )
show_table(
    ["ε", "α", "relative output change", "cos(∇L, w)", "‖∇L(αw)‖/‖∇L(w)‖", "1/α"],
    rows,
    numeric=[True] * 6,
)
# %% [markdown]
# ## What decay does to such weights: the effective learning rate
#
# Since the gradient is orthogonal to $w$, a step without decay can only
# lengthen $w$. SymPy expands the change in the squared norm:

# %%
growth = derive_norm_growth()
show_math(
    r"\lVert w - \eta g\rVert^2 - \lVert w\rVert^2 - \eta^2\lVert g\rVert^2 = " + sp.latex(growth)
)
g_syms = sp.symbols("g1:4", real=True)
w_syms = sp.symbols("w1:4", real=True)
inner = sum(gi * wi for gi, wi in zip(g_syms, w_syms, strict=True))
check_equal(
    "the squared norm grows by η²‖g‖² − 2η⟨w, g⟩, which is η²‖g‖² when g ⟂ w",
    sp.simplify(growth + 2 * eta * inner),
    0,
)

# %% [markdown]
# What the network computes depends only on the direction $\hat w = w/\lVert w\rVert$.
# A step of size $\eta$ along a gradient that scales as $1/\lVert w\rVert$
# turns $\hat w$ by about $\eta\,\lVert\nabla f(\hat w)\rVert / \lVert w\rVert^2$:
# the *effective* learning rate on the direction is $\eta/\lVert w\rVert^2$.
# Without decay, $\lVert w\rVert$ grows at every step and the effective
# learning rate falls. With decay, each step multiplies $w$ by $1-\eta\lambda$,
# and the norm settles where growth and shrinkage balance. Van Laarhoven
# [@vanlaarhoven2017l2] makes this argument: for weights followed by
# normalization, L2 regularization has no regularizing effect on the function
# and acts through the effective learning rate. This is also why the choice
# between L2 and decoupled decay [@loshchilov2019decoupled] matters for
# adaptive optimizers: it changes how fast each weight's norm, and so its
# effective step, moves.
#
# For the parameter groups of [1(e)](../param-groups/) this gives the rule:
# decay the convolution and linear weights, and put BatchNorm's $\gamma$,
# $\beta$ and all biases in a group with `weight_decay=0`.

# %% [markdown]
# ## Measured: which parameters to decay
#
# Experiment E2 trains the CIFAR-10 ResNet-18 four times, changing only the
# parameter groups: decay everything, exclude biases and BatchNorm
# parameters (the rule above), exclude only BatchNorm parameters, and exclude
# only biases. The results are frozen files written by `nox -s experiments`;
# the build only reads them, and the preset line says at what scale they were
# measured.

# %%
from IPython.display import Markdown, display

from hw2lib.results import describe_training, show_experiment

e2 = show_experiment("e2")
if e2 is not None:
    display(Markdown(describe_training(e2["rows"])))
