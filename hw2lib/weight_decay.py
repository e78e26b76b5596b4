"""Weight decay, derived with SymPy and measured on a convolution followed by BatchNorm.

Three symbolic facts and two measurements:

* :func:`derive_l2_step`: a gradient step on ``L(w) + (lambda/2) ||w||^2``
  equals multiplying ``w`` by ``(1 - eta*lambda)`` and then taking the plain
  gradient step on ``L``.
* :func:`derive_scale_invariance`: for a loss that depends on ``w`` only
  through ``w / ||w||``, the gradient is orthogonal to ``w`` and scales as
  ``1/alpha`` when ``w`` is scaled by ``alpha > 0``.
* :func:`derive_norm_growth`: a step along a gradient orthogonal to ``w``
  increases ``||w||^2`` by ``eta^2 ||g||^2``.
* :func:`measure_scale_invariance`: a bias-free convolution followed by
  BatchNorm in training mode is such a function of the convolution weight,
  up to BatchNorm's ``eps``.
* :func:`decay_only_step`: SGD and AdamW shrink every weight by the same
  factor, while Adam with an L2 term moves every weight by about the same amount.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
import torch
import torch.nn.functional as F
from torch import nn

# Three coordinates keep the SymPy expressions readable; each identity below
# holds coordinate by coordinate or through sums that have the same form for any n.
_DIMENSION = 3


def _vector(name: str) -> sp.Matrix:
    return sp.Matrix(sp.symbols(f"{name}1:{_DIMENSION + 1}", real=True))


@dataclass(frozen=True)
class L2StepDerivation:
    """A gradient step on the L2-penalized loss, before and after SymPy rewrites it.

    ``step`` is ``w - eta * grad(L + lambda/2 ||w||^2)`` with ``L`` an
    undefined function of ``w``. ``decoupled`` is ``(1 - eta*lambda) w - eta
    grad L``. ``difference`` is their simplified difference, zero when the
    identity holds. ``shrink_factor`` is the coefficient SymPy collects on
    ``w1`` once the gradient of ``L`` is set to zero.
    """

    w: sp.Matrix
    step: sp.Matrix
    decoupled: sp.Matrix
    difference: sp.Matrix
    shrink_factor: sp.Expr

    @property
    def holds(self) -> bool:
        """Whether SymPy reduced the difference to exactly zero."""
        return all(entry == 0 for entry in self.difference)


def derive_l2_step() -> L2StepDerivation:
    """Derive that a gradient step on ``L + (lambda/2)||w||^2`` shrinks ``w`` by ``1 - eta*lambda``.

    ``L`` is an undefined SymPy function of ``w = (w1, w2, w3)``, so the result
    holds for every differentiable loss.
    """
    eta, lam = sp.symbols("eta lambda", positive=True)
    w = _vector("w")
    loss = sp.Function("L")(*w)
    penalized = loss + lam / 2 * (w.T * w)[0]

    grad_penalized = sp.Matrix([sp.diff(penalized, wi) for wi in w])
    grad_loss = sp.Matrix([sp.diff(loss, wi) for wi in w])
    step = w - eta * grad_penalized
    decoupled = (1 - eta * lam) * w - eta * grad_loss
    difference = sp.simplify(step - decoupled)

    # With the loss gradient removed, what is left of the first coordinate is c * w1.
    without_loss = step[0].subs(grad_loss[0], 0)
    shrink_factor = sp.factor(sp.expand(without_loss).coeff(w[0]))
    return L2StepDerivation(w, step, decoupled, difference, shrink_factor)


@dataclass(frozen=True)
class ScaleInvarianceDerivation:
    """Gradient facts for ``f(w) = u(w / ||w||)`` with ``u`` an undefined function.

    Each field holds a simplified SymPy expression that is zero when the fact holds.
    """

    inner_product: sp.Expr
    value_change: sp.Expr
    gradient_scaling: sp.Matrix

    @property
    def holds(self) -> bool:
        """Whether all three expressions simplified to zero."""
        return (
            self.inner_product == 0
            and self.value_change == 0
            and all(entry == 0 for entry in self.gradient_scaling)
        )


def derive_scale_invariance() -> ScaleInvarianceDerivation:
    """Derive, for ``f(w) = u(w/||w||)`` and ``alpha > 0``, the three facts weight decay relies on.

    ``inner_product``: ``<grad f(w), w>``. ``value_change``: ``f(alpha w) - f(w)``.
    ``gradient_scaling``: ``grad f(alpha w) - grad f(w) / alpha``.
    """
    alpha = sp.symbols("alpha", positive=True)
    w = _vector("w")
    radius = sp.sqrt(sum(wi**2 for wi in w))
    f = sp.Function("u")(*(wi / radius for wi in w))
    gradient = sp.Matrix([sp.diff(f, wi) for wi in w])

    scaled = {wi: alpha * wi for wi in w}
    inner_product = sp.simplify((gradient.T * w)[0])
    value_change = sp.simplify(f.subs(scaled, simultaneous=True) - f)
    gradient_scaling = sp.simplify(gradient.subs(scaled, simultaneous=True) - gradient / alpha)
    return ScaleInvarianceDerivation(inner_product, value_change, gradient_scaling)


def derive_norm_growth() -> sp.Expr:
    """Return ``||w - eta g||^2 - ||w||^2 - eta^2 ||g||^2`` expanded; it is ``-2 eta <w, g>``.

    So when ``<w, g> = 0`` the squared norm grows by exactly ``eta^2 ||g||^2`` per step.
    """
    eta = sp.symbols("eta", positive=True)
    w = _vector("w")
    g = _vector("g")
    after = w - eta * g
    change = (after.T * after)[0] - (w.T * w)[0] - eta**2 * (g.T * g)[0]
    return sp.factor(sp.expand(change))


@dataclass(frozen=True)
class ScaleInvarianceMeasurement:
    """Conv (no bias) -> BatchNorm (train mode) measured at weight ``w`` and at ``alpha * w``.

    ``output_change``: largest absolute output difference, relative to the
    largest absolute output. ``cosine_grad_weight``: ``<grad, w> / (||grad|| ||w||)``.
    ``gradient_ratio``: ``||grad at alpha w|| / ||grad at w||``, expected ``1/alpha``.
    """

    alpha: float
    output_change: float
    cosine_grad_weight: float
    gradient_ratio: float


def measure_scale_invariance(
    alpha: float, *, seed: int = 0, eps: float = 1e-5
) -> ScaleInvarianceMeasurement:
    """Measure how a bias-free conv + BatchNorm (train mode) responds to scaling the conv weight.

    Runs in float64 on a random batch of shape ``(16, 3, 8, 8)`` with 8 output
    channels and a fixed random loss ``sum(output * r)``. BatchNorm divides by
    ``sqrt(var + eps)``, so invariance holds up to a relative error of about
    ``eps / var``. A smaller ``eps`` shrinks that error, but PyTorch requires
    ``eps > 0`` in training mode. Raises ``ValueError`` unless ``alpha > 0``.
    """
    if not alpha > 0:
        raise ValueError(
            f"alpha must be > 0, got {alpha!r}: pass a positive scale, because a "
            "negative one flips the sign of the normalized output"
        )
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 3, 8, 8, generator=generator, dtype=torch.float64)
    weight = torch.randn(8, 3, 3, 3, generator=generator, dtype=torch.float64)
    probe = torch.randn(16, 8, 8, 8, generator=generator, dtype=torch.float64)
    bn = nn.BatchNorm2d(8, eps=eps).double().train()

    def output_and_grad(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = w.detach().clone().requires_grad_(True)
        out = bn(F.conv2d(x, w, padding=1))
        (grad,) = torch.autograd.grad((out * probe).sum(), w)
        return out.detach(), grad

    out, grad = output_and_grad(weight)
    out_scaled, grad_scaled = output_and_grad(alpha * weight)
    output_change = (out_scaled - out).abs().max() / out.abs().max()
    cosine = (grad * weight).sum() / (grad.norm() * weight.norm())
    return ScaleInvarianceMeasurement(
        alpha=alpha,
        output_change=float(output_change),
        cosine_grad_weight=float(cosine),
        gradient_ratio=float(grad_scaled.norm() / grad.norm()),
    )


@dataclass(frozen=True)
class OptimizerDecayStep:
    """One optimizer step on a loss whose own gradient is zero, so only weight decay acts.

    ``start`` and ``after`` are the weights before and after the step, shape ``(n,)``.
    """

    optimizer: str
    start: torch.Tensor
    after: torch.Tensor

    @property
    def ratio(self) -> torch.Tensor:
        """Elementwise ``after / start``, one constant for every element under pure shrinking."""
        return self.after / self.start


def decay_only_step(
    optimizer: str, *, lr: float = 0.1, weight_decay: float = 0.01, seed: int = 0
) -> OptimizerDecayStep:
    """Take one step of ``"sgd"``, ``"adam"`` or ``"adamw"`` with a zero loss gradient.

    The weights are 8 float64 values spread over three orders of magnitude. SGD
    and AdamW multiply each by ``1 - lr * weight_decay``. Adam adds
    ``weight_decay * w`` to the gradient and then divides by its running RMS, so
    on the first step every weight moves by about ``lr`` whatever its size.
    Raises ``ValueError`` for another optimizer name.
    """
    generator = torch.Generator().manual_seed(seed)
    magnitudes = torch.logspace(-2, 1, 8, dtype=torch.float64)
    signs = torch.where(torch.rand(8, generator=generator) < 0.5, -1.0, 1.0).double()
    weight = nn.Parameter(signs * magnitudes)
    start = weight.detach().clone()
    if optimizer == "sgd":
        opt = torch.optim.SGD([weight], lr=lr, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam([weight], lr=lr, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW([weight], lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {optimizer!r}")
    weight.grad = torch.zeros_like(weight)
    opt.step()
    return OptimizerDecayStep(optimizer, start, weight.detach().clone())
