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
# # 2(b) The truncated SVD is optimal
#
# Write the singular value decomposition of $X$ as
# $X = \sum_{i=1}^{k} \sigma_i u_i v_i^\top$ with $k = \min(m, n)$ and
# $\sigma_1 \ge \dots \ge \sigma_k \ge 0$, and let $U_r$, $\Sigma_r$, $V_r$ hold
# the first $r$ triplets.
#
# **Theorem** (Eckart–Young [@eckart1936approximation]; Mirsky extended it to
# every unitarily invariant norm [@mirsky1960symmetric]). For every
# $m \times n$ matrix $M$ of rank at most $r$,
#
# $$
# \lVert X - M \rVert_F^2 \;\ge\; \sum_{i > r} \sigma_i^2,
# \tag{1}\label{eq:lr-eckart-young}
# $$
#
# with equality for $M = U_r \Sigma_r V_r^\top$. The products $AB$ with
# $A \in \mathbb{R}^{m \times r}$ and $B \in \mathbb{R}^{r \times n}$ are exactly
# the matrices of rank at most $r$, so the minimum of
# $f(A, B) = \lVert X - AB \rVert_F^2$ is $\sum_{i>r} \sigma_i^2$, attained by
# the balanced factors
#
# $$
# A^\star = U_r \Sigma_r^{1/2}, \qquad B^\star = \Sigma_r^{1/2} V_r^\top.
# \tag{2}\label{eq:lr-optimal-factors}
# $$
#
# **Proof sketch.** Weyl's inequality for singular values states
# $\sigma_{i+j-1}(Y + Z) \le \sigma_i(Y) + \sigma_j(Z)$. Take $Y = X - M$,
# $Z = M$ and $j = r + 1$. Since $\operatorname{rank} M \le r$,
# $\sigma_{r+1}(M) = 0$, so $\sigma_{i+r}(X) \le \sigma_i(X - M)$ for every
# $i$. Squaring and summing over $i$ gives
# $\lVert X - M \rVert_F^2 = \sum_i \sigma_i(X - M)^2 \ge \sum_i \sigma_{i+r}(X)^2$,
# which is \eqref{eq:lr-eckart-young}. For $M = U_r \Sigma_r V_r^\top$ the
# residual is $\sum_{i>r} \sigma_i u_i v_i^\top$, whose squared norm is the
# bound.

# %% [markdown]
# ## A symbolic case: $X = \operatorname{diag}(s_1, s_2)$, $r = 1$
#
# With $s_1 > s_2 > 0$ and $a, b \in \mathbb{R}^2$, SymPy solves
# $\nabla f(a, b) = 0$ for $f = \lVert X - ab^\top \rVert_F^2$. Every solution
# comes with the whole curve $(ca, b/c)$, $c \neq 0$, since the rescaling
# leaves $ab^\top$ unchanged; the code keeps the representative with
# $\lVert a \rVert = \lVert b \rVert$. The rescaling is a linear change of
# variables that leaves $f$ unchanged, so the Hessians along one curve are
# congruent and have the same eigenvalue signs.

# %%
import numpy as np
import sympy as sp
from matplotlib.figure import Figure

from hw2lib import lowrank, symbolic
from hw2lib.checks import check, check_close, check_equal
from hw2lib.part1_display import show_figure, show_table

ey = symbolic.eckart_young_2x2()
s1, s2 = ey.s1, ey.s2
print("solutions of ∇f = 0 returned by sympy.solve:")
for solution in ey.solutions:
    print("  ", solution)
print()
for point in ey.points:
    print(f"a = {list(point.a)}, b = {list(point.b)}: f = {point.loss}")
    print(f"    Hessian eigenvalues: {point.hessian_eigenvalues}")

# %% [markdown]
# Up to sign and rescaling there are three critical points: the origin, the
# bottom singular pair $a = b = \sqrt{s_2}\, e_2$ and the top singular pair
# $a = b = \sqrt{s_1}\, e_1$. The top pair has the smallest loss, $s_2^2$, which
# is $\sum_{i>1} \sigma_i^2$ as \eqref{eq:lr-eckart-young} predicts, and a
# positive semidefinite Hessian (the one zero eigenvalue is the rescaling
# direction). The bottom pair has loss $s_1^2$ and the eigenvalue
# $-2(s_1 - s_2) < 0$, and the origin has $\pm 2 s_1$, $\pm 2 s_2$: both are
# saddles.

# %%
origin, bottom, top = ey.points
# s1 and s2 are positive symbols, so s1 = s2 + gap with a positive gap covers
# every s1 > s2 > 0, and SymPy decides the sign from the assumptions alone.
gap = sp.Symbol("gap", positive=True)
top_eigenvalues_shifted = [
    sp.simplify(sp.sympify(value).subs(s1, s2 + gap)) for value in top.hessian_eigenvalues
]
print("top pair's Hessian eigenvalues with s1 = s2 + gap:", top_eigenvalues_shifted)
check_equal("there are three critical points up to sign and rescaling", len(ey.points), 3)
check_equal("the top singular pair has the minimum loss s2²", sp.expand(top.loss - s2**2), 0)
check(
    "the top pair's Hessian eigenvalues 4s1, 0, 2(s1 - s2), 2(s1 + s2) are all ≥ 0 "
    "for every s1 > s2 > 0 (symbolic, with s1 = s2 + gap, gap > 0)",
    all(value.is_nonnegative is True for value in top_eigenvalues_shifted),
    f"eigenvalues {top_eigenvalues_shifted}",
)
check_equal("the bottom pair has loss s1²", sp.expand(bottom.loss - s1**2), 0)
check(
    "the bottom pair has the Hessian eigenvalue -2(s1 - s2) < 0: a saddle",
    sp.factor(-2 * (s1 - s2)) in bottom.hessian_eigenvalues,
    f"eigenvalues {bottom.hessian_eigenvalues}",
)
check_equal(
    "the origin has loss s1² + s2² and Hessian eigenvalues ±2s1, ±2s2",
    (sp.expand(origin.loss), origin.hessian_eigenvalues),
    (s1**2 + s2**2, {2 * s1: 1, -2 * s1: 1, 2 * s2: 1, -2 * s2: 1}),
)

# %% [markdown]
# ## Numerical checks
#
# For a random $8 \times 6$ Gaussian matrix and every rank $r$, the loss of
# the factors \eqref{eq:lr-optimal-factors} returned by
# `hw2lib.lowrank.best_rank_r` equals the tail sum of squared singular values.

# %%
rng = np.random.default_rng(0)
X = rng.standard_normal((8, 6))
sigma = np.linalg.svd(X, compute_uv=False)
print("singular values:", np.round(sigma, 4))
losses = []
for r in range(0, 7):
    A, B = lowrank.best_rank_r(X, r)
    losses.append(lowrank.factorization_loss(X, A, B))
tails = [float(np.sum(sigma[r:] ** 2)) for r in range(0, 7)]
print("f(A*, B*) for r = 0..6:", np.round(losses, 6))
check_close("for r = 0, ..., 6, f(A*, B*) = Σ_{i>r} σᵢ²", losses, tails, rtol=1e-12, atol=1e-12)

# %% [markdown]
# No rank-2 factorization found by sampling does better. The first sample set
# draws $A$ at random and fits $B$ by least squares, which gives the best
# factorization with that column space. The second perturbs the optimal
# factors slightly, which tests the neighbourhood of the optimum. Sampling
# cannot prove the bound, which is what the theorem is for. The checks test
# that no sample falls below $\sum_{i>r}\sigma_i^2$, the value that
# `best_rank_r` attains in the cell above, so they would catch a floor
# computed too high.

# %%
r = 2
floor = lowrank.optimal_loss(X, r)
refit = lowrank.random_factorization_losses(X, r, 5000, seed=1)
A_star, B_star = lowrank.best_rank_r(X, r)
nearby = np.array(
    [
        lowrank.factorization_loss(
            X,
            A_star + 1e-2 * rng.standard_normal(A_star.shape),
            B_star + 1e-2 * rng.standard_normal(B_star.shape),
        )
        for _ in range(5000)
    ]
)
print(f"optimum Σ_(i>2) σᵢ² = {floor:.6f}")
print(f"random column space, B refitted: min over 5000 samples {refit.min():.6f}")
print(f"perturbed optimum (scale 1e-2):  min over 5000 samples {nearby.min():.6f}")
check(
    "no random column space with refitted B falls below Σ_{i>2} σᵢ² (5000 samples)",
    refit.min() >= floor,
)
check(
    "no perturbation of the optimal factors falls below Σ_{i>2} σᵢ² (5000 samples)",
    nearby.min() >= floor,
)

# %% [markdown]
# Gradient descent from a small random start reaches the same value. The run
# starts next to the saddle at the origin, stays on a plateau near
# $\lVert X \rVert_F^2$ until the negative curvature has amplified the start,
# and then converges linearly to the floor. It stops when
# $f - \sum_{i>r}\sigma_i^2 \le 10^{-6} \sum_{i>r}\sigma_i^2$.

# %%
result = lowrank.gradient_descent(X, r, target=floor, rtol=1e-6, init_scale=1e-4, seed=2)
gap = result.final_loss / floor - 1
print(
    f"{result.steps} steps of size {result.step_size:.4f}: f = {result.final_loss:.8f}, "
    f"floor {floor:.8f}, relative gap {gap:.2e}"
)
check_equal("gradient descent stops on the target rule", result.stop_reason, "target")
check(
    "gradient descent ends within a relative 1e-6 of Σ_{i>r} σᵢ²",
    0 <= gap <= 1e-6,
    f"gap {gap:.3g}",
)

steps = np.arange(result.steps + 1)
fig = Figure(figsize=(9, 3.4))
left, right = fig.subplots(1, 2)
left.semilogy(steps, result.losses, label="gradient descent")
left.axhline(floor, color="tab:red", linestyle="--", label=r"floor $\sum_{i>r}\sigma_i^2$")
left.axhline(np.sum(X**2), color="gray", linestyle=":", label=r"$\|X\|_F^2$ (at 0)")
left.set_xlabel("step")
left.set_ylabel("loss")
left.legend(fontsize=8)
right.semilogy(steps, result.losses - floor)
right.set_xlabel("step")
right.set_ylabel(r"loss $-$ floor")
fig.suptitle(f"8×6 Gaussian X, r = {r}, step size {result.step_size:.3f}")
fig.tight_layout()
show_figure(fig)
# %% [markdown]
# ## Every other critical point is a saddle
#
# Choosing any $r$ of the singular triplets, indexed by a set $S$, gives a
# critical point $A = U_S \Sigma_S^{1/2}$, $B = \Sigma_S^{1/2} V_S^\top$ with
# loss $\lVert X \rVert_F^2 - \sum_{i \in S}\sigma_i^2$, and so does a smaller
# set padded with zero columns of $A$ and rows of $B$. If $S$ misses an index
# $i$ with $\sigma_i > \sigma_j$ for some $j \in S$ (or with $\sigma_i > 0$ where a
# column is zero), turning the pair $(u_j, v_j)$ towards $(u_i, v_i)$ lowers the
# loss, and the Hessian has a negative eigenvalue there. So when the singular
# values are distinct and positive, only the top-$r$ choice is a local minimum:
# the problem has no spurious local minima [@baldi1989neural].
#
# The table checks this for a $4 \times 4$ matrix with singular values
# $4, 3, 2, 1$ and $r = 2$, over all eleven choices of at most two triplets.

# %%
X4 = lowrank.matrix_with_singular_values(4, 4, [4.0, 3.0, 2.0, 1.0], seed=3)
sigma4 = np.linalg.svd(X4, compute_uv=False)
points = lowrank.critical_points(X4, 2, include_padded=True)
show_table(
    ["triplets S", "loss", "‖X‖² − Σ_S σᵢ²", "smallest Hessian eigenvalue", "kind"],
    [
        [
            "{" + ", ".join(str(i + 1) for i in p.indices) + "}",
            f"{p.loss:.4f}",
            f"{np.sum(sigma4**2) - np.sum(sigma4[list(p.indices)] ** 2):.4f}",
            # A rounding-level negative zero would print as -0.0000.
            f"{p.min_eigenvalue if abs(p.min_eigenvalue) > 1e-9 else 0.0:+.4f}",
            p.kind,
        ]
        for p in points
    ],
    numeric=[False, True, True, True, False],
)
minima = [p.indices for p in points if p.kind == "minimum"]
check_equal("only the top pair S = {1, 2} is a local minimum", minima, [(0, 1)])
check(
    "every other choice has a negative Hessian eigenvalue",
    all(p.min_eigenvalue < -0.1 for p in points if p.indices != (0, 1)),
)
check("every listed point has zero gradient", max(p.gradient_norm for p in points) < 1e-10)
check_close(
    "each loss is ‖X‖² - Σ_{i∈S} σᵢ²",
    [p.loss for p in points],
    [np.sum(sigma4**2) - np.sum(sigma4[list(p.indices)] ** 2) for p in points],
    rtol=1e-12,
)
top_pair = next(p for p in points if p.indices == (0, 1))
check_close("the minimum's loss is σ₃² + σ₄² = 5", top_pair.loss, 5.0, rtol=1e-12)

# %% [markdown]
# The optimum is not unique, though: [2(c)](../non-unique/) shows the whole
# family of optimal factors and what happens when $\sigma_r = \sigma_{r+1}$.
