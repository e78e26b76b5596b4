"""Tests for hw2lib.lowrank: the closed-form optimum, the Hessian, critical points and GD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hw2lib import lowrank as lr

# Hypothesis budgets: the whole file should run in a few seconds on one core.
FAST = settings(max_examples=40, deadline=None)
SLOW = settings(max_examples=8, deadline=None)


# ---------------------------------------------------------------------------
# Matrix builders
# ---------------------------------------------------------------------------


def random_orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Return a rows×cols matrix with orthonormal columns (cols <= rows)."""
    q, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q


def matrix_with_singular_values(
    rng: np.random.Generator, m: int, n: int, singular_values: np.ndarray
) -> np.ndarray:
    """Return U diag(s) Vᵀ with random orthonormal U (m×k) and V (n×k), k = len(s)."""
    k = len(singular_values)
    return random_orthonormal(rng, m, k) * singular_values @ random_orthonormal(rng, n, k).T


def well_conditioned_invertible(rng: np.random.Generator, r: int) -> np.ndarray:
    """Return a random r×r matrix with singular values in [0.5, 2]."""
    stretch = rng.uniform(0.5, 2.0, size=r)
    return random_orthonormal(rng, r, r) * stretch @ random_orthonormal(rng, r, r).T


def to_backend(x: np.ndarray, backend: str, dtype: str) -> np.ndarray | torch.Tensor:
    if backend == "numpy":
        return x.astype(dtype)
    return torch.tensor(x, dtype=getattr(torch, dtype))


def to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return x.astype(np.float64)


def loss_tolerance(x: np.ndarray, dtype: str) -> float:
    """Absolute tolerance on a loss: factors rounded to dtype perturb AB by ~eps·‖X‖."""
    eps = 1e-5 if dtype == "float32" else 1e-11
    return eps * float(np.sum(x**2)) + 1e-300


@st.composite
def problems(draw, max_size: int = 6):
    """Draw (X as float64 numpy, r, scale) over shapes, ranks and scales."""
    m = draw(st.integers(1, max_size))
    n = draw(st.integers(1, max_size))
    r = draw(st.integers(0, min(m, n)))
    scale = 10.0 ** draw(st.integers(-3, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    x = scale * np.random.default_rng(seed).standard_normal((m, n))
    return x, r, seed


backends = st.sampled_from(["numpy", "torch"])
dtypes = st.sampled_from(["float32", "float64"])


# ---------------------------------------------------------------------------
# best_rank_r and the Eckart–Young value
# ---------------------------------------------------------------------------


@FAST
@given(problems(), backends, dtypes)
def test_best_rank_r_loss_is_tail_sum(problem, backend, dtype):
    x, r, _ = problem
    X = to_backend(x, backend, dtype)
    A, B = lr.best_rank_r(X, r)
    s = np.linalg.svd(to_numpy(X), compute_uv=False)
    tail = float(np.sum(s[r:] ** 2))
    loss = lr.factorization_loss(X, A, B)
    assert abs(loss - tail) <= loss_tolerance(x, dtype)
    assert abs(lr.optimal_loss(X, r) - tail) <= 1e-12 * float(np.sum(x**2)) + 1e-300


@FAST
@given(problems(), backends, dtypes)
def test_best_rank_r_keeps_type_and_shape(problem, backend, dtype):
    x, r, _ = problem
    X = to_backend(x, backend, dtype)
    A, B = lr.best_rank_r(X, r)
    assert type(A) is type(X)
    assert type(B) is type(X)
    assert A.dtype == X.dtype
    assert B.dtype == X.dtype
    assert tuple(A.shape) == (x.shape[0], r)
    assert tuple(B.shape) == (r, x.shape[1])
    if backend == "torch":
        assert A.device == X.device


@FAST
@given(problems())
def test_best_rank_r_is_balanced(problem):
    x, r, _ = problem
    A, B = lr.best_rank_r(x, r)
    s = np.linalg.svd(x, compute_uv=False)[:r]
    scale = float(s[0]) if r else 1.0
    np.testing.assert_allclose(A.T @ A, np.diag(s), atol=1e-10 * scale)
    np.testing.assert_allclose(B @ B.T, np.diag(s), atol=1e-10 * scale)
    np.testing.assert_allclose(lr.imbalance(A, B), 0.0, atol=1e-10 * scale)


@FAST
@given(problems())
def test_random_factorizations_never_beat_optimum(problem):
    x, r, seed = problem
    best = lr.optimal_loss(x, r)
    tolerance = 1e-10 * float(np.sum(x**2))
    refit = lr.random_factorization_losses(x, r, 20, seed=seed)
    assert refit.shape == (20,)
    assert np.all(refit >= best - tolerance)

    rng = np.random.default_rng(seed)
    m, n = x.shape
    norm = math.sqrt(float(np.sum(x**2)))
    for _ in range(20):
        A = rng.standard_normal((m, r)) * math.sqrt(norm)
        B = rng.standard_normal((r, n)) * math.sqrt(norm)
        assert lr.factorization_loss(x, A, B) >= best - tolerance


@FAST
@given(problems())
def test_perturbed_optimum_is_not_better(problem):
    x, r, seed = problem
    A, B = lr.best_rank_r(x, r)
    best = lr.factorization_loss(x, A, B)
    rng = np.random.default_rng(seed)
    size = 1e-3 * math.sqrt(float(np.linalg.norm(x, 2)))
    for _ in range(20):
        A2 = A + size * rng.standard_normal(A.shape)
        B2 = B + size * rng.standard_normal(B.shape)
        assert lr.factorization_loss(x, A2, B2) >= best - 1e-10 * float(np.sum(x**2))


@FAST
@given(problems(), backends)
def test_invertible_q_keeps_product_and_loss(problem, backend):
    x, r, seed = problem
    A, B = lr.best_rank_r(x, r)
    Q = well_conditioned_invertible(np.random.default_rng(seed), r)
    A2 = to_backend(A @ Q, backend, "float64")
    B2 = to_backend(np.linalg.solve(Q, B), backend, "float64")
    np.testing.assert_allclose(to_numpy(A2) @ to_numpy(B2), A @ B, atol=1e-10 * np.abs(x).max())
    assert lr.factorization_loss(x, A2, B2) == pytest.approx(
        lr.factorization_loss(x, A, B), rel=1e-9, abs=1e-12 * float(np.sum(x**2))
    )


def test_rank_zero_gives_empty_factors():
    x = np.random.default_rng(0).standard_normal((4, 3))
    A, B = lr.best_rank_r(x, 0)
    assert A.shape == (4, 0)
    assert B.shape == (0, 3)
    assert lr.factorization_loss(x, A, B) == pytest.approx(float(np.sum(x**2)))
    assert lr.optimal_loss(x, 0) == pytest.approx(float(np.sum(x**2)))


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (3, 3)])
def test_full_rank_is_exact(shape):
    x = np.random.default_rng(1).standard_normal(shape)
    r = min(shape)
    A, B = lr.best_rank_r(x, r)
    np.testing.assert_allclose(A @ B, x, atol=1e-12)
    assert lr.factorization_loss(x, A, B) <= 1e-24 * float(np.sum(x**2)) + 1e-20


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_rank_deficient_x_is_recovered(rank):
    rng = np.random.default_rng(rank)
    x = matrix_with_singular_values(rng, 5, 4, np.array([3.0, 1.5][:rank]))
    for r in range(rank, 5):
        A, B = lr.best_rank_r(x, r)
        np.testing.assert_allclose(A @ B, x, atol=1e-12)
        assert lr.optimal_loss(x, r) <= 1e-24


def test_repeated_singular_values_give_two_optimal_products():
    rng = np.random.default_rng(2)
    x = matrix_with_singular_values(rng, 4, 4, np.array([3.0, 1.0, 1.0, 0.5]))
    assert lr.optimal_loss(x, 2) == pytest.approx(1.0 + 0.25)
    A, B = lr.best_rank_r(x, 2)
    assert lr.factorization_loss(x, A, B) == pytest.approx(1.25)

    optimal = [p for p in lr.critical_points(x, 2) if p.loss == pytest.approx(1.25)]
    assert [p.indices for p in optimal] == [(0, 1), (0, 2)]
    first, second = (p.A @ p.B for p in optimal)
    assert np.linalg.norm(first - second) > 0.5


@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (1, 1)])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_vectors_factorize(shape, backend):
    x = np.random.default_rng(3).standard_normal(shape)
    X = to_backend(x, backend, "float64")
    A, B = lr.best_rank_r(X, 1)
    np.testing.assert_allclose(to_numpy(A) @ to_numpy(B), x, atol=1e-12)
    assert lr.factorization_loss(X, A, B) <= 1e-24
    A0, B0 = lr.best_rank_r(X, 0)
    assert lr.factorization_loss(X, A0, B0) == pytest.approx(float(np.sum(x**2)))


# ---------------------------------------------------------------------------
# Invalid input
# ---------------------------------------------------------------------------

GOOD = np.ones((3, 2))


@pytest.mark.parametrize(
    ("r", "fragment"),
    [
        (-1, "r=-1"),
        (3, "r=3"),
        (1.5, "1.5"),
        (True, "True"),
        ("1", "'1'"),
        (None, "None"),
    ],
)
def test_invalid_rank_is_named(r, fragment):
    with pytest.raises(ValueError, match=fragment):
        lr.best_rank_r(GOOD, r)
    with pytest.raises(ValueError, match=fragment):
        lr.optimal_loss(GOOD, r)


def test_numpy_integer_rank_is_accepted():
    A, _B = lr.best_rank_r(GOOD, np.int64(1))
    assert A.shape == (3, 1)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.ones(3), r"shape \(3,\)"),
        (np.ones((2, 2, 2)), r"shape \(2, 2, 2\)"),
        (np.ones((0, 3)), r"shape \(0, 3\)"),
        (np.ones((2, 2), dtype=complex), "complex"),
        (torch.ones(2, 2, dtype=torch.complex64), "complex"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "1 non-finite"),
        (np.array([[np.inf, -np.inf], [0.0, 1.0]]), "2 non-finite"),
        (torch.tensor([[1.0, float("nan")]]), "1 non-finite"),
        (np.ones((2, 2), dtype=np.int64), "dtype int64"),
        (np.ones((2, 2), dtype=np.float16), "dtype float16"),
        (torch.ones(2, 2, dtype=torch.bfloat16), "bfloat16"),
        ([[1.0, 2.0]], "list"),
    ],
)
def test_invalid_matrix_is_named(x, fragment):
    with pytest.raises(ValueError, match=fragment):
        lr.best_rank_r(x, 0)
    with pytest.raises(ValueError, match=fragment):
        lr.factorization_loss(x, np.ones((1, 0)), np.ones((0, 1)))


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 1), (1, 2)), ((3, 1), (2, 2)), ((3, 2), (2, 3))],
)
def test_factor_shape_mismatch_names_shapes(a_shape, b_shape):
    with pytest.raises(ValueError) as info:
        lr.factorization_loss(GOOD, np.ones(a_shape), np.ones(b_shape))
    message = str(info.value)
    assert "(3, 2)" in message
    assert str(a_shape) in message
    assert str(b_shape) in message


def test_invalid_factor_entries_are_named():
    with pytest.raises(ValueError, match="B contains 1 non-finite"):
        lr.factorization_loss(GOOD, np.ones((3, 1)), np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="A is complex"):
        lr.hessian(GOOD, np.ones((3, 1), dtype=complex), np.ones((1, 2)))


# ---------------------------------------------------------------------------
# Hessian and critical points
# ---------------------------------------------------------------------------


def torch_hessian(x: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Hessian of ‖X − AB‖²_F in θ = (vec A, vec B) by torch.func.hessian (autodiff)."""
    m, n = x.shape
    r = A.shape[1]
    target = torch.tensor(x)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        a = theta[: m * r].reshape(r, m).T  # column-major vec
        b = theta[m * r :].reshape(n, r).T
        return ((target - a @ b) ** 2).sum()

    return torch.func.hessian(loss)(torch.tensor(lr.pack(A, B))).numpy()


@SLOW
@given(problems(max_size=4), st.booleans())
def test_hessian_matches_autodiff(problem, at_optimum):
    x, r, seed = problem
    if at_optimum:
        A, B = lr.best_rank_r(x, r)
    else:
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((x.shape[0], r))
        B = rng.standard_normal((r, x.shape[1]))
    H = lr.hessian(x, A, B)
    expected = torch_hessian(x, A, B)
    assert H.shape == expected.shape
    scale = np.abs(expected).max() if expected.size else 1.0
    np.testing.assert_allclose(H, expected, atol=1e-10 * max(scale, 1.0))
    np.testing.assert_array_equal(H, H.T)


@FAST
@given(problems())
def test_origin_hessian_spectrum(problem):
    x, r, _ = problem
    m, n = x.shape
    zeros_a, zeros_b = np.zeros((m, r)), np.zeros((r, n))
    grad_a, grad_b = lr.gradient(x, zeros_a, zeros_b)
    assert not grad_a.any()
    assert not grad_b.any()

    s = np.linalg.svd(x, compute_uv=False)
    expected = np.sort(
        np.concatenate([np.repeat(2 * s, r), np.repeat(-2 * s, r), np.zeros(r * abs(m - n))])
    )
    eigenvalues = lr.hessian_eigenvalues(x, zeros_a, zeros_b)
    np.testing.assert_allclose(eigenvalues, expected, atol=1e-10 * max(s[0], 1e-300))


@FAST
@given(problems(max_size=5))
def test_null_space_at_optimum_is_r_squared(problem):
    x, r, _ = problem
    s = np.linalg.svd(x, compute_uv=False)
    # A generic Gaussian X has distinct positive singular values; skip the
    # rare near-ties where the tolerance cannot separate them.
    gaps = -np.diff(s)
    if r == 0 or (gaps.size and gaps.min() < 1e-3 * s[0]) or s[-1] < 1e-3 * s[0]:
        return
    A, B = lr.best_rank_r(x, r)
    eigenvalues = lr.hessian_eigenvalues(x, A, B)
    assert eigenvalues[0] >= -1e-9 * np.abs(eigenvalues).max()
    assert lr.null_space_dimension(eigenvalues, rtol=1e-9) == r * r


def test_null_space_grows_when_sigma_r_is_repeated():
    x = matrix_with_singular_values(np.random.default_rng(4), 4, 4, np.array([3.0, 1.0, 1.0, 0.5]))
    A, B = lr.best_rank_r(x, 2)
    eigenvalues = lr.hessian_eigenvalues(x, A, B)
    assert lr.null_space_dimension(eigenvalues, rtol=1e-9) > 4


@FAST
@given(st.integers(2, 5), st.integers(2, 5), st.integers(0, 2**32 - 1), st.data())
def test_only_top_subset_is_minimum(m, n, seed, data):
    k = min(m, n)
    r = data.draw(st.integers(1, k))
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(1.0, 2.0, size=k) + 2.0 * np.arange(k))[::-1]
    x = matrix_with_singular_values(rng, m, n, s)

    points = lr.critical_points(x, r, include_padded=True)
    total = float(np.sum(s**2))
    for point in points:
        assert point.gradient_norm <= 1e-9 * s[0]
        assert point.loss == pytest.approx(total - float(np.sum(s[list(point.indices)] ** 2)))
        if point.indices == tuple(range(r)):
            assert point.kind == "minimum"
            assert point.loss == pytest.approx(lr.optimal_loss(x, r))
        else:
            assert point.kind == "saddle"
            assert point.min_eigenvalue < -0.1


def test_critical_points_limit_is_enforced():
    x = np.random.default_rng(5).standard_normal((12, 12))
    with pytest.raises(ValueError, match="max_points=10"):
        lr.critical_points(x, 6, max_points=10)


@pytest.mark.parametrize("shape", [(3, 4), (4, 2)])
def test_pack_unpack_round_trip(shape):
    rng = np.random.default_rng(6)
    m, n = shape
    A, B = rng.standard_normal((m, 2)), rng.standard_normal((2, n))
    A2, B2 = lr.unpack(lr.pack(A, B), m, n, 2)
    np.testing.assert_array_equal(A2, A)
    np.testing.assert_array_equal(B2, B)
    with pytest.raises(ValueError, match=r"must be \("):
        lr.unpack(np.zeros(3), m, n, 2)


# ---------------------------------------------------------------------------
# Gradient descent
# ---------------------------------------------------------------------------


@SLOW
@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 2**32 - 1), st.data(), st.booleans())
def test_gd_reaches_optimum(m, n, seed, data, balanced):
    k = min(m, n)
    r = data.draw(st.integers(1, k))
    rng = np.random.default_rng(seed)
    # Singular values 1, 1.5, 2, ... keep the gap σ_r − σ_{r+1} away from 0,
    # so the number of steps stays bounded.
    s = 1.0 + 0.5 * np.arange(k)[::-1]
    x = matrix_with_singular_values(rng, m, n, s)
    best = lr.optimal_loss(x, r)
    # For r = min(m, n) the optimum is 0, so an absolute tolerance ends the run.
    atol = 1e-10 * float(np.sum(x**2))
    result = lr.gradient_descent(
        x,
        r,
        target=best,
        rtol=1e-6,
        atol=atol,
        max_steps=20_000,
        seed=seed,
        balanced_init=balanced,
    )
    assert result.stop_reason == "target"
    assert result.converged
    assert result.final_loss - best <= 1e-6 * best + atol
    assert result.losses.shape == (result.steps + 1,)
    assert lr.factorization_loss(x, result.A, result.B) == pytest.approx(result.final_loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gd_accepts_torch_input(dtype):
    values = np.array([3.0, 2.0, 1.0])
    x = torch.tensor(
        matrix_with_singular_values(np.random.default_rng(7), 4, 3, values), dtype=dtype
    )
    result = lr.gradient_descent(x, 2, target=lr.optimal_loss(x, 2), rtol=1e-5)
    assert result.stop_reason == "target"
    assert result.final_loss == pytest.approx(1.0, rel=1e-4)


def test_gd_huge_step_raises_divergence():
    x = np.random.default_rng(8).standard_normal((5, 4))
    with pytest.raises(lr.DivergenceError, match="step_size=100") as info:
        lr.gradient_descent(x, 2, step_size=100.0, init_scale=1.0, max_steps=1000)
    error = info.value
    assert error.step >= 1
    assert error.losses.shape == (error.step + 1,)
    assert not math.isfinite(error.losses[-1])
    assert np.all(np.isfinite(error.losses[:-1]))
    assert error.step_size == 100.0


def test_gd_max_steps_is_not_converged():
    x = np.random.default_rng(9).standard_normal((5, 4))
    result = lr.gradient_descent(x, 2, target=lr.optimal_loss(x, 2), rtol=0.0, max_steps=5)
    assert result.stop_reason == "max_steps"
    assert not result.converged
    assert result.steps == 5


def test_gd_stalled_rule_without_target():
    x = matrix_with_singular_values(np.random.default_rng(10), 4, 4, np.array([2.0, 1.0, 0.5, 0.2]))
    result = lr.gradient_descent(x, 2, rtol=1e-12, init_scale=0.1, max_steps=50_000)
    assert result.stop_reason == "stalled"
    assert result.final_loss == pytest.approx(lr.optimal_loss(x, 2), rel=1e-6)


def test_gd_rank_zero_stops_at_start():
    x = np.random.default_rng(11).standard_normal((3, 3))
    result = lr.gradient_descent(x, 0, target=lr.optimal_loss(x, 0))
    assert result.steps == 0
    assert result.stop_reason == "target"


def test_gd_small_step_nearly_conserves_imbalance():
    x = matrix_with_singular_values(np.random.default_rng(12), 5, 4, np.array([2.0, 1.0, 0.5, 0.2]))
    A0, B0 = lr.initial_factors(x.shape, 2, init_scale=0.5, seed=3)
    drifts = []
    for step_size in [0.02, 0.01]:
        result = lr.gradient_descent(
            x, 2, step_size=step_size, initial=(A0, B0), max_steps=round(4 / step_size)
        )
        drift = np.linalg.norm(lr.imbalance(result.A, result.B) - lr.imbalance(A0, B0))
        drifts.append(drift)
    # Each step changes AᵀA − BBᵀ by O(η²), so over a fixed time span the
    # drift is O(η): halving η roughly halves it.
    assert drifts[1] < 0.6 * drifts[0]
    assert drifts[1] < 1e-2 * np.linalg.norm(lr.imbalance(A0, B0))


def test_balanced_init_is_balanced():
    A0, B0 = lr.initial_factors((5, 3), 2, init_scale=1e-2, balanced=True, seed=1)
    np.testing.assert_allclose(lr.imbalance(A0, B0), 0.0, atol=1e-15)
    energy = np.sum(A0**2) + np.sum(B0**2)
    assert energy == pytest.approx(1e-4 * (5 * 2 + 2 * 3))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": float("nan")}, "step_size"),
        ({"max_steps": -1}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"rtol": -1.0}, "rtol"),
        ({"atol": float("nan")}, "atol"),
        ({"target": -1.0}, "target"),
        ({"target": float("inf")}, "target"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"initial": (np.ones((3, 1)), np.ones((1, 2)))}, "rank 1"),
        ({"initial": (np.ones((2, 2)), np.ones((2, 2)))}, "shapes do not match"),
    ],
)
def test_gd_invalid_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        lr.gradient_descent(GOOD, 2, **kwargs)


# ---------------------------------------------------------------------------
# Test matrices with prescribed singular values
# ---------------------------------------------------------------------------


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_matrix_with_singular_values(m, n, seed, data):
    k = data.draw(st.integers(0, min(m, n)))
    values = data.draw(st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k))
    x = lr.matrix_with_singular_values(m, n, values, seed=seed)
    assert x.shape == (m, n)
    expected = np.sort(np.concatenate([values, np.zeros(min(m, n) - k)]))[::-1]
    np.testing.assert_allclose(np.linalg.svd(x, compute_uv=False), expected, atol=1e-12 * 10)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((0, 3, [1.0]), "m must be"),
        ((3, 2.0, [1.0]), "n must be"),
        ((3, 2, [1.0, 1.0, 1.0]), "at most"),
        ((3, 2, [[1.0]]), "at most"),
        ((3, 2, [-1.0]), "finite and >= 0"),
        ((3, 2, [np.nan]), "finite and >= 0"),
    ],
)
def test_matrix_with_singular_values_rejects(args, fragment):
    with pytest.raises(ValueError, match=fragment):
        lr.matrix_with_singular_values(*args)
