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
# # 2(c) The factors are not unique
#
# For every invertible $r \times r$ matrix $Q$,
#
# $$
# (AQ)(Q^{-1}B) = AB, \qquad\text{so}\qquad f(AQ,\, Q^{-1}B) = f(A, B).
# \tag{1}\label{eq:lr-gauge}
# $$
#
# Every optimal pair $(A^\star, B^\star)$ from [2(b)](../eckart-young/) therefore
# comes with the whole family $\{(A^\star Q, Q^{-1}B^\star) : Q \text{ invertible}\}$
# of optimal pairs. This page measures how large the optimal set is, shows that
# even the product $AB$ is not unique when $\sigma_r = \sigma_{r+1}$, and
# explains which optimal pair gradient descent picks.

# %%
import numpy as np
import sympy as sp

from hw2lib import lowrank, symbolic
from hw2lib.checks import check, check_close, check_equal
from hw2lib.part1_display import show_table

rng = np.random.default_rng(0)
X = lowrank.matrix_with_singular_values(6, 5, [4.0, 3.0, 2.0, 1.0, 0.5], seed=0)
r = 2
floor = lowrank.optimal_loss(X, r)
A_star, B_star = lowrank.best_rank_r(X, r)

Q = rng.standard_normal((r, r)) + 2.0 * np.eye(r)
A_q, B_q = A_star @ Q, np.linalg.solve(Q, B_star)
print(f"condition number of Q: {np.linalg.cond(Q):.2f}")
print(f"‖A*Q - A*‖_F = {np.linalg.norm(A_q - A_star):.4f}")
print(f"‖Q⁻¹B* - B*‖_F = {np.linalg.norm(B_q - B_star):.4f}")
print(f"‖A*Q Q⁻¹B* - A*B*‖_F = {np.linalg.norm(A_q @ B_q - A_star @ B_star):.2e}")

check("the new factors differ from A*, B*", np.linalg.norm(A_q - A_star) > 0.1)
check_close("(A*Q)(Q⁻¹B*) = A*B*", A_q @ B_q, A_star @ B_star, rtol=0.0, atol=1e-12)
check_close(
    "f(A*Q, Q⁻¹B*) = f(A*, B*) = Σ_{i>r} σᵢ²",
    lowrank.factorization_loss(X, A_q, B_q),
    floor,
    rtol=1e-12,
)

# %% [markdown]
# ## The optimal set has dimension $r^2$ when $\sigma_r > \sigma_{r+1}$
#
# With a gap $\sigma_r > \sigma_{r+1}$ the best rank-$r$ approximation
# $M^\star = U_r \Sigma_r V_r^\top$ is unique. If also $\sigma_r > 0$, every pair
# with $AB = M^\star$ has $A = U_r C$ for an invertible $C$ (the column space of
# $A$ must be that of $M^\star$), and then $B = C^{-1} \Sigma_r V_r^\top$. With
# $Q = \Sigma_r^{-1/2} C$ this is exactly the family \eqref{eq:lr-gauge}, which
# is parametrised by the $r^2$ entries of $Q$.
#
# The Hessian shows the same dimension. $f$ is constant along the family, so each
# tangent direction $(A^\star W, -W B^\star)$, $W \in \mathbb{R}^{r \times r}$,
# lies in the null space of $\nabla^2 f(A^\star, B^\star)$. The check below
# confirms that the null space contains these directions and nothing else: its
# dimension is $r^2$.

# %%
eigenvalues = lowrank.hessian_eigenvalues(X, A_star, B_star)
H = lowrank.hessian(X, A_star, B_star)
W = rng.standard_normal((r, r))
tangent = lowrank.pack(A_star @ W, -W @ B_star)
print("singular values of X:", np.linalg.svd(X, compute_uv=False))
# Adding 0.0 turns a rounded -0.0 into 0.0 for printing.
print("smallest Hessian eigenvalues at the optimum:", np.round(eigenvalues[: r * r + 2], 10) + 0.0)

check_equal(
    f"the Hessian null space at the optimum has dimension r² = {r * r}",
    lowrank.null_space_dimension(eigenvalues),
    r * r,
)
check_close(
    "a tangent direction (A*W, -WB*) is in the null space",
    H @ tangent,
    np.zeros_like(tangent),
    rtol=0.0,
    atol=1e-12,
)

# %% [markdown]
# ## When $\sigma_r = \sigma_{r+1}$, even $AB$ is not unique
#
# Take singular values $3, 1, 1, \tfrac12$ and $r = 2$. Keeping triplets
# $\{1, 2\}$ or $\{1, 3\}$ gives the same loss, $1^2 + (\tfrac12)^2$, with two
# different products, and so does every rotation of the pair $(u_2, v_2)$
# towards $(u_3, v_3)$. The optimal set now contains a circle of products, and
# the Hessian null space gains one dimension.

# %%
X_tie = lowrank.matrix_with_singular_values(5, 4, [3.0, 1.0, 1.0, 0.5], seed=1)
floor_tie = lowrank.optimal_loss(X_tie, r)
optimal = [
    p for p in lowrank.critical_points(X_tie, r) if abs(p.loss - floor_tie) <= 1e-12 * floor_tie
]
first, second = (p.A @ p.B for p in optimal)
for p in optimal:
    print(f"triplets {[i + 1 for i in p.indices]}: f = {p.loss:.6f}")
print(f"‖M₁ - M₂‖_F = {np.linalg.norm(first - second):.6f}")

check_equal(
    "two choices of triplets, {1, 2} and {1, 3}, reach the optimum",
    [p.indices for p in optimal],
    [(0, 1), (0, 2)],
)
check_close("both have loss 1² + 0.5² = 1.25", [p.loss for p in optimal], [1.25, 1.25], rtol=1e-12)
check_close(
    "the two optimal products differ by ‖u₂v₂ᵀ - u₃v₃ᵀ‖_F = √2",
    np.linalg.norm(first - second),
    np.sqrt(2.0),
    rtol=1e-10,
)
tie_eigenvalues = lowrank.hessian_eigenvalues(X_tie, optimal[0].A, optimal[0].B)
check_equal(
    "the Hessian null space grows to r² + 1 = 5",
    lowrank.null_space_dimension(tie_eigenvalues),
    r * r + 1,
)

# %% [markdown]
# ## Which optimum gradient descent finds
#
# Along the gradient flow $\dot A = -\partial f / \partial A = 2RB^\top$,
# $\dot B = -\partial f / \partial B = 2A^\top R$ with $R = X - AB$,
#
# $$
# \frac{d}{dt}\left(A^\top A - BB^\top\right)
# = \left(2BR^\top A + 2A^\top R B^\top\right) - \left(2A^\top R B^\top + 2B R^\top A\right) = 0,
# \tag{2}\label{eq:lr-balance}
# $$
#
# so the imbalance $A^\top A - BB^\top$ is conserved. Du, Hu and Lee prove
# this invariance, and its analogue between adjacent layers of deeper
# homogeneous networks [@du2018algorithmic]. SymPy confirms it for symbolic
# $X$ ($3 \times 2$), $A$ and $B$ with $r = 2$, differentiating $f$ entry by
# entry:

# %%
flow = symbolic.gradient_flow_invariant(3, 2, 2)
print("d/dt (AᵀA - BBᵀ) =", flow.derivative)
check_equal(
    "d/dt (AᵀA - BBᵀ) = 0 along the gradient flow (symbolic X, A, B)",
    flow.derivative,
    sp.zeros(2, 2),
)

# %% [markdown]
# Gradient descent with step $\eta$ follows the flow only approximately. One
# step changes the imbalance by $4\eta^2 (BR^\top R B^\top - A^\top R R^\top A)$,
# so over a fixed time span $T$, which takes $T/\eta$ steps, the drift is of
# order $\eta$. The table runs $T = 5$ from one start of moderate scale with three
# step sizes: halving $\eta$ halves the drift.

# %%
A0, B0 = lowrank.initial_factors(X.shape, r, init_scale=0.5, seed=2)
D0 = lowrank.imbalance(A0, B0)
drifts = {}
for step_size in [0.02, 0.01, 0.005]:
    run = lowrank.gradient_descent(
        X, r, step_size=step_size, initial=(A0, B0), max_steps=round(5 / step_size)
    )
    drift = np.linalg.norm(lowrank.imbalance(run.A, run.B) - D0)
    drifts[step_size] = drift / np.linalg.norm(D0)
show_table(
    ["step size η", "steps", "‖ΔD‖ / ‖D₀‖"],
    [[f"{eta:g}", round(5 / eta), f"{drift:.4f}"] for eta, drift in drifts.items()],
    numeric=[True, True, True],
)
check(
    "halving the step size halves the drift of AᵀA - BBᵀ (ratio between 1.6 and 2.4)",
    all(1.6 < drifts[eta] / drifts[eta / 2] < 2.4 for eta in [0.02, 0.01]),
    f"drifts {', '.join(f'{d:.4f}' for d in drifts.values())}",
)

# %% [markdown]
# This is why the start decides where the run ends. An optimum with
# $A^\top A = BB^\top$ is balanced: then $(AB)(AB)^\top = A\,BB^\top A^\top$
# has the same nonzero eigenvalues as $(BB^\top)(A^\top A) = (A^\top A)^2$, so
# $A^\top A = BB^\top$ has eigenvalues $\sigma_1, \dots, \sigma_r$, and the pair
# is \eqref{eq:lr-gauge} with an orthogonal $Q$. A small balanced start has
# imbalance $0$, so gradient descent ends near such a point. Any small start
# has a small imbalance, which is how Du, Hu and Lee show that layers end up
# nearly balanced without explicit regularization [@du2018algorithmic].
# Arora, Cohen and Hazan assume that a deep linear network starts balanced,
# which gradient flow then preserves, and derive the dynamics of the
# end-to-end matrix from it [@arora2018optimization]. A start with a large
# $A$ and a small $B$ keeps its imbalance and ends at a different optimum: same
# product and loss, but an unbalanced split.

# %%
sigma_r = np.linalg.svd(X, compute_uv=False)[:r]
stopping = {"target": floor, "rtol": 1e-8, "max_steps": 100_000}
balanced = lowrank.gradient_descent(
    X, r, step_size=0.01, init_scale=1e-3, balanced_init=True, seed=1, **stopping
)
A_big, B_small = 1.0 * rng.standard_normal((6, r)), 0.01 * rng.standard_normal((r, 5))
unbalanced = lowrank.gradient_descent(X, r, step_size=0.01, initial=(A_big, B_small), **stopping)
rows = []
for name, run in [("small balanced start", balanced), ("large A, small B", unbalanced)]:
    rows.append(
        [
            name,
            run.steps,
            f"{run.final_loss - floor:.1e}",
            np.array2string(np.linalg.eigvalsh(run.A.T @ run.A)[::-1], precision=3),
            np.array2string(np.linalg.eigvalsh(run.B @ run.B.T)[::-1], precision=3),
        ]
    )
show_table(
    ["start", "steps", "f − floor", "eig AᵀA", "eig BBᵀ"],
    rows,
    numeric=[False, True, True, False, False],
)
print("top singular values of X:", sigma_r)

ascending = sigma_r[::-1]
check_close(
    "from a small balanced start, AᵀA and BBᵀ end with eigenvalues σ₁, σ₂ (the balanced optimum)",
    [np.linalg.eigvalsh(balanced.A.T @ balanced.A), np.linalg.eigvalsh(balanced.B @ balanced.B.T)],
    [ascending, ascending],
    rtol=1e-4,
)
check_close(
    "from the unbalanced start, the run still reaches the optimal loss",
    unbalanced.final_loss,
    floor,
    rtol=1e-7,
)
start_imbalance = lowrank.imbalance(A_big, B_small)
end_imbalance = lowrank.imbalance(unbalanced.A, unbalanced.B)
relative_drift = np.linalg.norm(end_imbalance - start_imbalance) / np.linalg.norm(start_imbalance)
check(
    "the unbalanced run keeps its starting imbalance (drift below 5 %)",
    relative_drift < 0.05,
    f"relative drift {relative_drift:.3f}",
)
check(
    "so its AᵀA ends far from Σ_r (eigenvalues off by more than 1)",
    np.linalg.norm(np.linalg.eigvalsh(unbalanced.A.T @ unbalanced.A)[::-1] - sigma_r) > 1.0,
)
