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
# # Exercises for Part 2
#
# Each exercise extends one page of Part 2. The worked solutions are folded;
# where a solution computes something, the build checks the result.
#
# Throughout, $f(A, B) = \lVert X - AB \rVert_F^2$ and
# $X = \sum_i \sigma_i u_i v_i^\top$ with $\sigma_1 \ge \sigma_2 \ge \dots$.

# %%
import numpy as np

from hw2lib import lowrank
from hw2lib.checks import check, check_close, check_equal

# %% [markdown]
# ## Exercise 1: the escape direction at a saddle
#
# Let $r = 1$ and suppose the singular values are distinct and positive. For
# $j > 1$, the pair $a = \sqrt{\sigma_j}\, u_j$, $b = \sqrt{\sigma_j}\, v_j^\top$
# is a critical point ([2(b)](../eckart-young/)). Find a direction
# $(d_a, d_b)$ along which the curvature of $f$ is $-2(\sigma_1 - \sigma_j)$,
# and check numerically that this is the smallest Hessian eigenvalue there.

# %% [markdown] tags=["solution"]
# **Solution.** Turn the pair towards the top singular pair:
# $d_a = \sqrt{\sigma_j}\, u_1$, $d_b = \sqrt{\sigma_j}\, v_1^\top$. With
# $R = X - ab = \sum_{i \ne j} \sigma_i u_i v_i^\top$, the second-order term of
# $f$ in a direction $(d_a, d_b)$ is
# $\lVert d_a b + a d_b \rVert_F^2 - 2\langle R, d_a d_b\rangle$. Here
# $d_a b + a d_b = \sigma_j (u_1 v_j^\top + u_j v_1^\top)$ has squared norm
# $2\sigma_j^2$, and $\langle R, d_a d_b \rangle = \sigma_j \sigma_1$. The curvature
# (twice the second-order term over $\lVert (d_a, d_b)\rVert^2 = 2\sigma_j$) is therefore
# $\left(4\sigma_j^2 - 4\sigma_1\sigma_j\right) / (2\sigma_j) = -2(\sigma_1 - \sigma_j)$.
# The same construction with any $i < j$ in place of $1$ gives $-2(\sigma_i - \sigma_j)$,
# which is why only the top choice of triplets is a local minimum.

# %% tags=["solution"]
X = lowrank.matrix_with_singular_values(5, 4, [4.0, 3.0, 2.0, 1.0], seed=0)
U, s, Vt = np.linalg.svd(X)
for j in [1, 2, 3]:
    a = np.sqrt(s[j]) * U[:, [j]]
    b = np.sqrt(s[j]) * Vt[[j]]
    direction = lowrank.pack(np.sqrt(s[j]) * U[:, [0]], np.sqrt(s[j]) * Vt[[0]])
    H = lowrank.hessian(X, a, b)
    curvature = direction @ H @ direction / (direction @ direction)
    smallest = np.linalg.eigvalsh(H)[0]
    print(
        f"j = {j + 1}: curvature {curvature:+.6f}, -2(σ₁ - σⱼ) = {-2 * (s[0] - s[j]):+.6f}, "
        f"smallest eigenvalue {smallest:+.6f}"
    )
    check_close(
        f"j = {j + 1}: the curvature along (u₁, v₁) is -2(σ₁ - σⱼ) and is the smallest eigenvalue",
        [curvature, smallest],
        [-2 * (s[0] - s[j])] * 2,
        rtol=1e-10,
    )
    d_a, d_b = lowrank.unpack(direction, 5, 4, 1)
    step = 0.1
    check(
        f"j = {j + 1}: a step of 0.1 along the direction lowers f",
        lowrank.factorization_loss(X, a + step * d_a, b + step * d_b)
        < lowrank.factorization_loss(X, a, b),
    )

# %% [markdown]
# ## Exercise 2: the edge cases $r = 0$ and $r = \min(m, n)$
#
# (a) What is the minimum of $f$ for $r = 0$, and what are the optimal
# factors? (b) For $r = k = \min(m, n)$ and a full-rank $X$, what is the
# minimum, and what is the dimension of the Hessian's null space at the
# optimum? Check both on a $5 \times 3$ matrix.

# %% [markdown] tags=["solution"]
# **Solution.** (a) With $r = 0$, $A$ is $m \times 0$, $B$ is $0 \times n$, and
# $AB$ is the zero matrix, so $f \equiv \lVert X \rVert_F^2 = \sum_i \sigma_i^2$,
# which is the Eckart–Young tail sum $\sum_{i > 0} \sigma_i^2$. There is
# nothing to optimise and the Hessian is a $0 \times 0$ matrix.
#
# (b) With $r = k$, $AB = X$ is reachable, so the minimum is $0$. The optimal
# set is still $\{(A^\star Q, Q^{-1} B^\star)\}$, so the null space has
# dimension $k^2$. The remaining $mk + kn - k^2 = k(m + n - k)$ eigenvalues are
# positive, and $k(m + n - k)$ is the dimension of the set of $m \times n$
# matrices of rank $k$: for $5 \times 3$ that is $15$, all of
# $\mathbb{R}^{5 \times 3}$.

# %% tags=["solution"]
X = np.random.default_rng(1).standard_normal((5, 3))
A0, B0 = lowrank.best_rank_r(X, 0)
check_equal(
    "r = 0 gives factors of shapes (5, 0) and (0, 3)", (A0.shape, B0.shape), ((5, 0), (0, 3))
)
check_close("r = 0: f = ‖X‖²_F", lowrank.factorization_loss(X, A0, B0), np.sum(X**2), rtol=1e-12)

k = 3
A, B = lowrank.best_rank_r(X, k)
eigenvalues = lowrank.hessian_eigenvalues(X, A, B)
print(f"r = {k}: f = {lowrank.factorization_loss(X, A, B):.2e}, Hessian size {eigenvalues.size}")
check("r = min(m, n): the minimum is 0", lowrank.factorization_loss(X, A, B) < 1e-24)
check_equal("the null space has dimension k² = 9", lowrank.null_space_dimension(eigenvalues), 9)
check_equal(
    "the other k(m + n - k) = 15 eigenvalues are positive",
    int(np.sum(eigenvalues > 1e-8 * eigenvalues[-1])),
    15,
)

# %% [markdown]
# ## Exercise 3: the largest stable step size
#
# Linearised at a minimum, gradient descent with step $\eta$ is stable only if
# $\eta\, \lambda_{\max} \le 2$, where $\lambda_{\max}$ is the largest Hessian
# eigenvalue there. (a) Show that
# at the balanced optimum $(A^\star, B^\star)$ the direction
# $(\sqrt{\sigma_1}\, u_1 e_1^\top, \sqrt{\sigma_1}\, e_1 v_1^\top)$ has
# curvature $4\sigma_1$. (b) Check numerically that $\lambda_{\max} = 4\sigma_1$
# there, and show that no minimum is flatter: $\lambda_{\max} \ge 4\sigma_1$ at
# every minimum when the singular values are distinct and positive. (c) Run
# gradient descent from next to the optimum with
# $\eta = 0.9 \cdot 2/(4\sigma_1)$ and with $\eta = 1.1 \cdot 2/(4\sigma_1)$.

# %% [markdown] tags=["solution"]
# **Solution.** (a) In that direction $d_A B^\star + A^\star d_B = 2\sigma_1 u_1 v_1^\top$,
# with squared norm $4\sigma_1^2$, and
# $\langle R, d_A d_B\rangle = \sigma_1 \langle R, u_1 v_1^\top\rangle = 0$ because the residual
# $R = \sum_{i > r} \sigma_i u_i v_i^\top$ is orthogonal to $u_1 v_1^\top$. Twice the
# second-order term, $8\sigma_1^2$, over $\lVert (d_A, d_B)\rVert^2 = 2\sigma_1$ gives $4\sigma_1$.
#
# (b) With distinct positive singular values, every local minimum has
# $AB = U_r \Sigma_r V_r^\top$ ([2(b)](../eckart-young/)). This product has rank
# $r$, so the columns of $A$ span the same space as $u_1, \dots, u_r$, and
# $x^\top R = 0$ for every $x$ in that space. Let $x$ be a unit top left singular
# vector of $A$ and $y$ a unit top right singular vector of $B$, so that
# $AA^\top x = \lVert A\rVert_2^2\, x$ and $B^\top B y = \lVert B\rVert_2^2\, y$, and
# take $d_A = x (By)^\top$, $d_B = (A^\top x) y^\top$. With
# $s = \lVert A\rVert_2^2 + \lVert B\rVert_2^2$,
# $d_A B + A d_B = x y^\top B^\top B + AA^\top x y^\top = s\, x y^\top$, and
# $d_A d_B = (y^\top B^\top A^\top x)\, x y^\top$, so
# $\langle R, d_A d_B\rangle$ is a multiple of $x^\top R y = 0$. The direction
# has $\lVert (d_A, d_B)\rVert^2 = \lVert By\rVert^2 + \lVert A^\top x\rVert^2 = s$
# and twice the second-order term is $2s^2$, so its curvature is $2s$ and
#
# $$
# \lambda_{\max} \ge 2\left(\lVert A\rVert_2^2 + \lVert B\rVert_2^2\right)
# \ge 4 \lVert A\rVert_2 \lVert B\rVert_2 \ge 4 \lVert AB\rVert_2 = 4\sigma_1 .
# $$
#
# The balanced optimum has $\lVert A^\star\rVert_2^2 = \lVert B^\star\rVert_2^2 = \sigma_1$
# and $\lambda_{\max} = 4\sigma_1$, so it is a flattest minimum. It is not the
# only one. Here $\sigma_1 = 4$, $\sigma_2 = 3$, and $Q = \operatorname{diag}(1, 1.1)$
# scales the second columns of $A^\star$ and rows of $B^\star$ to squared norms
# $3 \cdot 1.1^2$ and $3 / 1.1^2$, both below $4$. So $\lVert A\rVert_2^2$ and
# $\lVert B\rVert_2^2$ stay at $\sigma_1$, and the code finds
# $\lambda_{\max} = 4\sigma_1$ at this unbalanced optimum as well. With
# $\eta > 2/(4\sigma_1)$, every minimum has $\eta\lambda_{\max} > 2$, so none is
# stable in the linearised sense above. The code checks the bound on random
# $Q$ as numerical evidence, not as a proof.
#
# (c) The run with $\eta = 1.1 \cdot 2/(4\sigma_1)$ ends oscillating above the
# floor instead of converging.

# %% tags=["solution"]
X = lowrank.matrix_with_singular_values(6, 5, [4.0, 3.0, 2.0, 1.0, 0.5], seed=0)
r = 2
sigma_1 = 4.0
floor = lowrank.optimal_loss(X, r)
A_star, B_star = lowrank.best_rank_r(X, r)
lambda_max = lowrank.hessian_eigenvalues(X, A_star, B_star)[-1]
check_close("at the balanced optimum λ_max = 4σ₁ = 16", lambda_max, 4 * sigma_1, rtol=1e-10)


def sharpness_and_bound(Q):
    """Return λ_max at (A*Q, Q⁻¹B*) and the lower bound 2(‖A*Q‖₂² + ‖Q⁻¹B*‖₂²)."""
    A_q, B_q = A_star @ Q, np.linalg.solve(Q, B_star)
    bound = 2 * (np.linalg.norm(A_q, 2) ** 2 + np.linalg.norm(B_q, 2) ** 2)
    return lowrank.hessian_eigenvalues(X, A_q, B_q)[-1], bound


rng = np.random.default_rng(2)
sharpness, bounds = [], []
for _ in range(200):
    Q = rng.standard_normal((r, r))
    if abs(np.linalg.det(Q)) > 1e-2:
        sharpness_q, bound_q = sharpness_and_bound(Q)
        sharpness.append(sharpness_q)
        bounds.append(bound_q)
sharpness, bounds = np.array(sharpness), np.array(bounds)
print(
    f"{sharpness.size} random Q: λ_max from {sharpness.min():.4f} to {sharpness.max():.1f}, "
    f"λ_max / 2(‖A‖₂² + ‖B‖₂²) from {np.min(sharpness / bounds):.12f} "
    f"to {np.max(sharpness / bounds):.12f}"
)
check(
    f"at all {sharpness.size} sampled optima (A*Q, Q⁻¹B*), λ_max ≥ 2(‖A‖₂² + ‖B‖₂²)",
    bool(np.all(sharpness >= bounds * (1 - 1e-10))),
    f"smallest λ_max / bound {np.min(sharpness / bounds):.12f}",
)
check(
    f"at all {sharpness.size} sampled optima, 2(‖A‖₂² + ‖B‖₂²) ≥ 4σ₁ = 16",
    bool(np.all(bounds >= 4 * sigma_1 * (1 - 1e-10))),
    f"smallest bound {bounds.min():.4f}",
)
sharpness_diagonal, _ = sharpness_and_bound(np.diag([1.0, 1.1]))
check_close(
    "the unbalanced optimum with Q = diag(1, 1.1) is as flat as the balanced one: λ_max = 16",
    sharpness_diagonal,
    4 * sigma_1,
    rtol=1e-10,
)

start = (
    A_star + 1e-3 * rng.standard_normal(A_star.shape),
    B_star + 1e-3 * rng.standard_normal(B_star.shape),
)
for factor in [0.9, 1.1]:
    eta = factor * 2 / lambda_max
    try:
        run = lowrank.gradient_descent(X, r, step_size=eta, initial=start, max_steps=3000)
        outcome = f"last losses {np.round(run.losses[-4:], 4)} (floor {floor:.4f})"
        final_gap = run.final_loss - floor
    except lowrank.DivergenceError as error:
        outcome = f"diverged at step {error.step}"
        final_gap = float("inf")
    print(f"η = {factor} · 2/λ_max = {eta:.4f}: {outcome}")
    if factor < 1:
        check("η = 0.9 · 2/λ_max converges to the floor", final_gap <= 1e-6 * floor, outcome)
    else:
        check("η = 1.1 · 2/λ_max does not converge to the floor", final_gap > 1e-3 * floor, outcome)

# %% [markdown]
# ## Exercise 4: missing entries
#
# In matrix completion only the entries in a set $\Omega$ are observed, and the
# loss is $f_\Omega(A, B) = \sum_{(i,j) \in \Omega} (X - AB)_{ij}^2$. Explain why
# the truncated SVD no longer solves the problem, and show it on a rank-1
# $5 \times 4$ matrix with one missing entry: compare the exact factors with
# the rank-1 truncated SVD of the matrix whose missing entry is set to zero.

# %% [markdown] tags=["solution"]
# **Solution.** Eckart–Young compares $X$ with $AB$ in the Frobenius norm over
# all entries, and its proof uses the singular values of $X - AB$. A mask breaks
# that: $f_\Omega$ is not a function of $X - AB$'s singular values, and filling
# the missing entries with zeros changes the matrix being approximated. The
# filled matrix has rank 2 in general, so its best rank-1 approximation misses
# the observed entries, while the true rank-1 factors fit them exactly
# ($f_\Omega = 0$ at $(u, v)$ because the code builds $X$ as $uv$). What
# survives is convexity in each factor: for fixed $A$, each column of $B$ is a
# separate least-squares problem over the observed rows, which is what
# alternating least squares solves.

# %% tags=["solution"]
rng = np.random.default_rng(3)
u, v = rng.standard_normal((5, 1)), rng.standard_normal((1, 4))
X = u @ v
observed = np.ones(X.shape, dtype=bool)
observed[0, 0] = False
zero_filled = np.where(observed, X, 0.0)
A_svd, B_svd = lowrank.best_rank_r(zero_filled, 1)
masked_svd = float(np.sum((X - A_svd @ B_svd)[observed] ** 2))
masked_true = float(np.sum((X - u @ v)[observed] ** 2))
print(f"f_Ω at the truncated SVD of the zero-filled matrix: {masked_svd:.4f}")
print(f"f_Ω at the true factors (0 because X = uv): {masked_true:.4f}")
check(
    "the truncated SVD of the zero-filled matrix misses the observed entries (f_Ω > 1e-3)",
    masked_svd > 1e-3,
    f"f_Ω = {masked_svd:.4g}",
)
