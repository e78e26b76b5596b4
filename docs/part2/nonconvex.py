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
# # 2(a) The loss is not convex
#
# Part 2 studies the factorization loss
#
# $$
# f(A, B) = \lVert X - AB \rVert_F^2, \qquad
# A \in \mathbb{R}^{m \times r},\ B \in \mathbb{R}^{r \times n},
# \tag{1}\label{eq:lr-loss}
# $$
#
# for a fixed real $m \times n$ matrix $X$. For a fixed $B$, $f$ is a
# least-squares loss in $A$ and therefore convex, and the same is true in $B$
# for a fixed $A$. Jointly in $(A, B)$ it is not convex. This page shows why with
# one scalar example, then shows that the origin $A = 0$, $B = 0$ is a saddle
# point for every $X \neq 0$.

# %% [markdown]
# ## The scalar case
#
# Take $m = n = r = 1$ and $X = 1$, so that \eqref{eq:lr-loss} becomes
# $f(a, b) = (1 - ab)^2$. The points $(1, 1)$ and $(-1, -1)$ are global minima
# with $f = 0$. Their midpoint is the origin, where $f(0, 0) = 1$. A convex
# function would satisfy $f(0, 0) \le \tfrac12 f(1, 1) + \tfrac12 f(-1, -1) = 0$,
# so $f$ is not convex. SymPy evaluates the three values:

# %%
import numpy as np
import sympy as sp
from matplotlib.figure import Figure

from hw2lib import lowrank, symbolic
from hw2lib.checks import check, check_close, check_equal
from hw2lib.part1_display import show_figure

example = symbolic.scalar_counterexample()
a, b = example.a, example.b
print("f(a, b) =", example.loss)
for point, value in example.values.items():
    print(f"f{point} = {value}")

check_equal(
    "f(1, 1) = f(-1, -1) = 0 and f(0, 0) = 1",
    example.values,
    {(1, 1): 0, (-1, -1): 0, (0, 0): 1},
)
chord = (example.values[(1, 1)] + example.values[(-1, -1)]) / 2
check(
    "the midpoint (0, 0) lies above the chord: f(0, 0) > (f(1, 1) + f(-1, -1)) / 2",
    example.values[(0, 0)] > chord,
    f"f(0, 0) = {example.values[(0, 0)]}, chord = {chord}",
)

# %% [markdown]
# The Hessian shows the same locally. The gradient
# $\nabla f = -2(1 - ab)\,(b, a)$ vanishes at the origin, and
#
# $$
# \nabla^2 f(a, b) = \begin{pmatrix} 2b^2 & 4ab - 2 \\ 4ab - 2 & 2a^2 \end{pmatrix},
# \qquad
# \nabla^2 f(0, 0) = \begin{pmatrix} 0 & -2 \\ -2 & 0 \end{pmatrix},
# \tag{2}\label{eq:lr-scalar-hessian}
# $$
#
# with eigenvalue $2$ along $(1, -1)$ and $-2$ along $(1, 1)$. A twice
# differentiable convex function has a positive semidefinite Hessian
# everywhere, so the eigenvalue $-2$ is a second proof that $f$ is not convex.
# It also makes the origin a saddle: along $a = b = t$ the loss
# $(1 - t^2)^2 = 1 - 2t^2 + t^4$ decreases, and along $a = -b = t$ the loss
# $(1 + t^2)^2$ increases.

# %%
gradient = sp.Matrix([sp.diff(example.loss, v) for v in (a, b)])
t = sp.Symbol("t", real=True)
along_minima = sp.expand(example.loss.subs({a: t, b: t}))
across = sp.expand(example.loss.subs({a: t, b: -t}))
print("Hessian:")
sp.pprint(example.hessian)
print("Hessian at the origin:")
sp.pprint(example.hessian_at_origin)
print("eigenvalues {value: multiplicity}:", example.eigenvalues)

check_equal("the gradient vanishes at the origin", gradient.subs({a: 0, b: 0}), sp.zeros(2, 1))
check_equal(
    "the Hessian at the origin is [[0, -2], [-2, 0]]",
    example.hessian_at_origin,
    sp.Matrix([[0, -2], [-2, 0]]),
)
check_equal("its eigenvalues are 2 and -2, each once", example.eigenvalues, {2: 1, -2: 1})
check_equal("along a = b = t the loss is 1 - 2t² + t⁴", along_minima, 1 - 2 * t**2 + t**4)
check_equal("along a = -b = t the loss is 1 + 2t² + t⁴", across, 1 + 2 * t**2 + t**4)

# %% [markdown]
# The landscape below shows both features: the global minima form the
# hyperbola $ab = 1$ (two branches, dashed), and the origin is a saddle between
# them, with the loss falling towards the minima along $a = b$ and rising along
# $a = -b$. The figure is drawn by the code cell below when the site is built.

# %%
grid = np.linspace(-2.0, 2.0, 401)
grid_a, grid_b = np.meshgrid(grid, grid)
landscape = (1.0 - grid_a * grid_b) ** 2

fig = Figure(figsize=(5.2, 4.6))
ax = fig.add_subplot()
contours = ax.contourf(grid_a, grid_b, np.log10(landscape + 1e-3), levels=30, cmap="viridis")
fig.colorbar(contours, ax=ax, label=r"$\log_{10}\,(f + 10^{-3})$")
branch = np.linspace(0.5, 2.0, 100)
for sign in (1.0, -1.0):
    ax.plot(sign * branch, sign / branch, "w--", linewidth=1.5)
ax.plot([0.0], [0.0], "o", color="tab:red", markersize=7, label="saddle at the origin")
ax.plot(
    [1.0, -1.0], [1.0, -1.0], "*", color="white", markeredgecolor="black", markersize=11,
    label="minima (1, 1), (-1, -1)",
)
ax.set_xlabel("a")
ax.set_ylabel("b")
ax.set_title(r"$f(a, b) = (1 - ab)^2$; dashed: $ab = 1$")
ax.legend(loc="upper left", fontsize=8)
show_figure(fig)
# %% [markdown]
# ## The origin is a saddle for every $X \neq 0$
#
# The scalar picture carries over to every dimension. At $A = 0$, $B = 0$, expanding
# \eqref{eq:lr-loss} gives
#
# $$
# f(dA, dB) = \lVert X \rVert_F^2 - 2 \langle X, dA\,dB \rangle + \lVert dA\,dB \rVert_F^2,
# $$
#
# which has no first-order term, so the gradient vanishes, and whose
# second-order term is $-2\langle X, dA\,dB\rangle$. Write
# $X = \sum_i \sigma_i u_i v_i^\top$ for the SVD. The direction
# $dA = t\,u_i e_k^\top$, $dB = \pm t\,e_k v_i^\top$, with $e_k$ a unit vector
# of $\mathbb{R}^r$, has $\lVert (dA, dB) \rVert^2 = 2t^2$ and second-order
# term $\mp 2t^2\sigma_i$, which is a curvature of $\mp 2\sigma_i$. These
# $2r\min(m, n)$ directions are orthonormal eigenvectors, and the remaining
# $r\,|m - n|$ directions have curvature $0$:
#
# $$
# \operatorname{spec} \nabla^2 f(0, 0) =
# \{\pm 2\sigma_i(X),\ \text{each } r \text{ times},\ i = 1, \dots, \min(m, n)\}
# \cup \{0,\ r\,|m - n| \text{ times}\}.
# \tag{3}\label{eq:lr-origin-spectrum}
# $$
#
# So whenever $X \neq 0$ the Hessian at the origin has the eigenvalue
# $-2\sigma_1(X) < 0$, and the origin is a strict saddle.
#
# **Symbolic check** for a $2 \times 2$ matrix $X$ of symbols and $r = 1$: the
# characteristic polynomial of the $4 \times 4$ Hessian is
# $\lambda^4 - 4\,\mathrm{tr}(X^\top X)\,\lambda^2 + 16 \det(X)^2$. Because
# $\sigma_1^2 + \sigma_2^2 = \mathrm{tr}(X^\top X)$ and
# $\sigma_1^2 \sigma_2^2 = \det(X)^2$, that polynomial is
# $(\lambda^2 - 4\sigma_1^2)(\lambda^2 - 4\sigma_2^2)$, whose roots are
# $\pm 2\sigma_1$ and $\pm 2\sigma_2$, as \eqref{eq:lr-origin-spectrum} states.

# %%
spectrum = symbolic.origin_spectrum_2x2()
origin = spectrum.origin
lam = spectrum.lam
X_sym = origin.X
print("variables (vec A, vec B):", origin.variables)
print("Hessian at the origin:")
sp.pprint(origin.hessian_at_origin)
print("det(λI - H) =", spectrum.characteristic_polynomial)

check_equal(
    "the gradient at the origin is zero for every 2×2 X",
    origin.gradient_at_origin,
    sp.zeros(4, 1),
)
check_equal(
    "det(λI - H) = λ⁴ - 4 tr(XᵀX) λ² + 16 det(X)²",
    sp.expand(spectrum.characteristic_polynomial - spectrum.expected),
    0,
)
sigma_1, sigma_2 = spectrum.sigmas
sigma_form_in_x = (
    sp.expand(spectrum.sigma_form)
    .subs({sigma_1**2 * sigma_2**2: X_sym.det() ** 2})
    .subs({sigma_1**2: (X_sym.T * X_sym).trace() - sigma_2**2})
)
check_equal(
    "with σ₁² + σ₂² = tr(XᵀX) and σ₁²σ₂² = det(X)², (λ² - 4σ₁²)(λ² - 4σ₂²) is that polynomial",
    sp.expand(sigma_form_in_x - spectrum.characteristic_polynomial),
    0,
)
check_equal(
    "the roots of (λ² - 4σ₁²)(λ² - 4σ₂²) are ±2σ₁ and ±2σ₂",
    set(sp.solve(spectrum.sigma_form, lam)),
    {2 * sigma_1, -2 * sigma_1, 2 * sigma_2, -2 * sigma_2},
)

# %% [markdown]
# **Numerical check** for larger sizes, including $m \neq n$ and $r > 1$: the
# eigenvalues of the explicit Hessian (`hw2lib.lowrank.hessian`) at the origin
# match \eqref{eq:lr-origin-spectrum} for random Gaussian matrices $X$.

# %%
rng = np.random.default_rng(0)
for m, n, r in [(5, 3, 2), (4, 6, 3), (7, 7, 1), (6, 2, 2)]:
    X = rng.standard_normal((m, n))
    s = np.linalg.svd(X, compute_uv=False)
    expected = np.sort(
        np.concatenate([np.repeat(2 * s, r), np.repeat(-2 * s, r), np.zeros(r * abs(m - n))])
    )
    eigenvalues = lowrank.hessian_eigenvalues(X, np.zeros((m, r)), np.zeros((r, n)))
    grad_a, grad_b = lowrank.gradient(X, np.zeros((m, r)), np.zeros((r, n)))
    print(f"m={m} n={n} r={r}: smallest eigenvalue {eigenvalues[0]:+.4f}, -2σ₁ {-2 * s[0]:+.4f}")
    check(
        f"m={m}, n={n}, r={r}: the gradient at the origin is zero",
        not (grad_a.any() or grad_b.any()),
    )
    check_close(
        f"m={m}, n={n}, r={r}: Hessian eigenvalues at the origin are ±2σᵢ (each {r}×) "
        f"and {r * abs(m - n)} zeros",
        eigenvalues,
        expected,
        rtol=0.0,
        atol=1e-12 * s[0],
    )

# %% [markdown]
# ## What does hold: convexity in each factor
#
# Fix $B$. With $\operatorname{vec}$ stacking columns,
# $\operatorname{vec}(AB) = (B^\top \otimes I_m)\operatorname{vec}(A)$, so
# $f$ is a quadratic in $\operatorname{vec}(A)$ with Hessian
#
# $$
# \nabla_A^2 f = 2\,(BB^\top \otimes I_m),
# \qquad
# \operatorname{vec}(D)^\top\, \nabla_A^2 f\, \operatorname{vec}(D) = 2\lVert DB \rVert_F^2 \ge 0
# \tag{4}\label{eq:lr-hessian-a}
# $$
#
# for every direction $D \in \mathbb{R}^{m \times r}$. The Hessian does not
# depend on $A$ and is positive semidefinite, so $f$ is convex in $A$; the same
# argument with $2(I_n \otimes A^\top A)$ shows it is convex in $B$. This is
# why alternating least squares, which solves for one factor at a time, has a
# convex subproblem at every step. SymPy derives \eqref{eq:lr-hessian-a} for
# symbolic $X$, $A$ and $B$ with $m = n = r = 2$:

# %%
convex = symbolic.convexity_in_A(2, 2, 2)
print("Hessian in vec(A):")
sp.pprint(convex.hessian_A, num_columns=100)
check_equal("the Hessian in A is 2 (BBᵀ ⊗ I₂)", convex.hessian_A, convex.expected)
check_equal(
    "vec(D)ᵀ H_A vec(D) = 2‖DB‖²_F for a symbolic direction D",
    sp.expand(convex.quadratic_form - convex.sum_of_squares),
    0,
)

# %% [markdown]
# Numerically, at a random point of a larger problem, the $A$-block of the full
# Hessian equals $2(BB^\top \otimes I_m)$ and has no negative eigenvalue, while
# the full Hessian at the same point does.

# %%
m, n, r = 6, 5, 3
X = rng.standard_normal((m, n))
A = rng.standard_normal((m, r))
B = rng.standard_normal((r, n))
H = lowrank.hessian(X, A, B)
block_a = H[: m * r, : m * r]
block_eigenvalues = np.linalg.eigvalsh(block_a)
full_eigenvalues = np.linalg.eigvalsh(H)
print(f"A-block: smallest eigenvalue {block_eigenvalues[0]:.4f}")
print(f"full Hessian: smallest eigenvalue {full_eigenvalues[0]:.4f}")

check_close(
    "the A-block equals 2 (BBᵀ ⊗ I_m)", block_a, 2 * np.kron(B @ B.T, np.eye(m)), rtol=1e-12
)
check(
    "the A-block is positive semidefinite",
    block_eigenvalues[0] >= -1e-12 * block_eigenvalues[-1],
    f"smallest eigenvalue {block_eigenvalues[0]:.3g}",
)
check(
    "the full Hessian at the same point has a negative eigenvalue",
    full_eigenvalues[0] < 0,
    f"smallest eigenvalue {full_eigenvalues[0]:.3g}",
)

# %% [markdown]
# Non-convexity does not make the problem hard, though. The
# [next page](../eckart-young/) shows that the truncated SVD solves it in closed
# form, and that every critical point other than the global minima is a saddle
# like the origin. Negative curvature of the kind found here is what lets
# gradient descent leave such points.
