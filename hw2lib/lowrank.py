"""Low-rank matrix factorization: minimise f(A, B) = ‖X − AB‖²_F.

X is a real m×n matrix, A is m×r and B is r×n. The module provides

* the optimum in closed form (:func:`best_rank_r`, :func:`optimal_loss`), the
  truncated SVD of Eckart and Young (1936) split evenly between the factors;
* gradient descent on (A, B) (:func:`gradient_descent`), with stopping rules
  and divergence detection (:class:`DivergenceError`);
* the gradient and the explicit Hessian of f (:func:`gradient`,
  :func:`hessian`), and the critical points built from the singular triplets of
  X, each classified by its Hessian spectrum (:func:`critical_points`).

Vectorisation convention: the Hessian acts on θ = (vec A, vec B), where vec
stacks columns (column-major order, the convention of the Kronecker identity
vec(AB) = (Bᵀ ⊗ I_m) vec A). :func:`pack` and :func:`unpack` convert between θ
and (A, B).

Every function accepts numpy arrays and torch tensors of dtype float32 or
float64, computes in float64 numpy, and raises ValueError for any invalid input
(wrong type, dtype, shape or rank, complex or non-finite entries). Only
:func:`best_rank_r` returns the caller's array type; the rest return numpy.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

MatrixT = TypeVar("MatrixT", np.ndarray, torch.Tensor)
MatrixLike = np.ndarray | torch.Tensor

_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_TORCH_FLOATS = (torch.float32, torch.float64)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _as_float64(matrix: object, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Validate a real, finite 2-D float32/float64 matrix and return a float64 numpy copy."""
    if isinstance(matrix, torch.Tensor):
        if matrix.is_complex():
            raise ValueError(
                f"{name} is complex (dtype {matrix.dtype}); the factorization is defined "
                f"for real matrices: pass {name}.real or a real tensor"
            )
        if matrix.dtype not in _TORCH_FLOATS:
            raise ValueError(
                f"{name} has dtype {matrix.dtype}; pass a float32 or float64 tensor, "
                f"for example {name}.double()"
            )
        array = matrix.detach().cpu().numpy().astype(np.float64)
    elif isinstance(matrix, np.ndarray):
        if np.iscomplexobj(matrix):
            raise ValueError(
                f"{name} is complex (dtype {matrix.dtype}); the factorization is defined "
                f"for real matrices: pass {name}.real or a real array"
            )
        if matrix.dtype not in _NUMPY_FLOATS:
            raise ValueError(
                f"{name} has dtype {matrix.dtype}; pass a float32 or float64 array, "
                f"for example {name}.astype(np.float64)"
            )
        array = matrix.astype(np.float64)
    else:
        raise ValueError(
            f"{name} is a {type(matrix).__name__}; pass a 2-D numpy array or torch tensor"
        )

    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(array.shape)}")
    if not allow_empty and 0 in array.shape:
        raise ValueError(
            f"{name} has shape {tuple(array.shape)}; it needs at least one row and one column"
        )
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite entries (nan or inf); "
            f"replace them before factorizing"
        )
    return array


def _checked_rank(r: object, shape: tuple[int, int]) -> int:
    """Return ``r`` as an int after checking 0 ≤ r ≤ min(m, n)."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise ValueError(f"rank r must be an integer, got {r!r} ({type(r).__name__})")
    r = int(r)
    limit = min(shape)
    if not 0 <= r <= limit:
        raise ValueError(
            f"rank r={r} is out of range for X of shape {shape}: pass 0 <= r <= min(m, n) = {limit}"
        )
    return r


def _checked_factors(
    X: MatrixLike, A: MatrixLike, B: MatrixLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate X, A, B and their shapes (m, n), (m, r), (r, n); return float64 copies."""
    x = _as_float64(X, "X")
    a = _as_float64(A, "A", allow_empty=True)
    b = _as_float64(B, "B", allow_empty=True)
    m, n = x.shape
    if a.shape[0] != m or b.shape[1] != n or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"factor shapes do not match: X is {x.shape}, A is {a.shape}, B is {b.shape}; "
            f"A must be (m, r) = ({m}, r) and B must be (r, n) = (r, {n}) with the same r"
        )
    return x, a, b


def _checked_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _like(array: np.ndarray, reference: MatrixT) -> MatrixT:
    """Return ``array`` as the array type, dtype and device of ``reference``."""
    if isinstance(reference, torch.Tensor):
        return torch.as_tensor(array, dtype=reference.dtype, device=reference.device)
    return array.astype(reference.dtype)


# ---------------------------------------------------------------------------
# The optimum in closed form
# ---------------------------------------------------------------------------


def best_rank_r(X: MatrixT, r: int) -> tuple[MatrixT, MatrixT]:
    """Return balanced optimal factors A = U_r Σ_r^{1/2}, B = Σ_r^{1/2} V_rᵀ.

    Args:
        X: real matrix of shape (m, n), numpy array or torch tensor, float32 or
            float64, all entries finite.
        r: number of factors, an integer with 0 ≤ r ≤ min(m, n).

    Returns:
        ``(A, B)`` with shapes (m, r) and (r, n), of the same array type, dtype
        and device as X. AB is the truncated SVD of X, so f(A, B) equals
        :func:`optimal_loss` (Eckart–Young), and AᵀA = BBᵀ = Σ_r. When
        σ_r = σ_{r+1} the optimum is not unique and the SVD routine picks one.

    Raises:
        ValueError: X is not a non-empty 2-D real float32/float64 matrix with
            finite entries, or r is not an integer in [0, min(m, n)].
    """
    x = _as_float64(X, "X")
    r = _checked_rank(r, x.shape)
    # The SVD runs in float64 even for float32 input, so the only float32
    # error in the factors is the final rounding.
    U, s, Vt = np.linalg.svd(x, full_matrices=False)
    root = np.sqrt(s[:r])
    A = U[:, :r] * root
    B = root[:, None] * Vt[:r]
    return _like(A, X), _like(B, X)


def optimal_loss(X: MatrixLike, r: int) -> float:
    """Return the minimum of ‖X − AB‖²_F over rank-r factors, Σ_{i>r} σ_i(X)².

    Raises:
        ValueError: as :func:`best_rank_r`.
    """
    x = _as_float64(X, "X")
    r = _checked_rank(r, x.shape)
    s = np.linalg.svd(x, compute_uv=False)
    return float(np.sum(s[r:] ** 2))


def factorization_loss(X: MatrixLike, A: MatrixLike, B: MatrixLike) -> float:
    """Return f(A, B) = ‖X − AB‖²_F, computed in float64.

    Args:
        X: matrix of shape (m, n).
        A: matrix of shape (m, r); r may be 0.
        B: matrix of shape (r, n).

    Raises:
        ValueError: any argument is invalid (see the module docstring), or the
            shapes do not fit together; the message names all three shapes.
    """
    x, a, b = _checked_factors(X, A, B)
    residual = x - a @ b
    return float(np.sum(residual**2))


def random_factorization_losses(X: MatrixLike, r: int, count: int, *, seed: int = 0) -> np.ndarray:
    """Return the losses of ``count`` random rank-r factorizations of X.

    Each A has standard normal entries, and B = argmin_B ‖X − AB‖_F is fitted
    by least squares, so every sample is the best factorization whose column
    space is that random one. No sample can beat :func:`optimal_loss`.

    Returns:
        float64 array of shape (count,).

    Raises:
        ValueError: X or r is invalid, or count is not a non-negative integer.
    """
    x = _as_float64(X, "X")
    r = _checked_rank(r, x.shape)
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    rng = np.random.default_rng(seed)
    m, _ = x.shape
    losses = np.empty(int(count))
    for k in range(int(count)):
        a = rng.standard_normal((m, r))
        b = np.linalg.lstsq(a, x, rcond=None)[0]
        losses[k] = np.sum((x - a @ b) ** 2)
    return losses


def matrix_with_singular_values(
    m: int, n: int, singular_values: np.ndarray | list[float], *, seed: int = 0
) -> np.ndarray:
    """Return a random m×n float64 matrix U diag(s) Vᵀ with prescribed singular values.

    U (m×k) and V (n×k), k = len(s), have orthonormal columns drawn from the
    QR factorization of a standard normal matrix, so the singular values of
    the result are s (in any order given) and min(m, n) − k zeros. Pages and
    tests use it to build X with known gaps or ties.

    Raises:
        ValueError: m or n is not a positive integer, s has more than
            min(m, n) entries, or an entry of s is negative or not finite.
    """
    for name, value in (("m", m), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    values = np.asarray(singular_values, dtype=np.float64)
    if values.ndim != 1 or values.size > min(m, n):
        raise ValueError(
            f"singular_values has shape {values.shape}; pass a list of at most "
            f"min(m, n) = {min(m, n)} values"
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"singular_values must be finite and >= 0, got {values.tolist()}")
    rng = np.random.default_rng(seed)
    k = values.size
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (U * values) @ V.T


# ---------------------------------------------------------------------------
# Gradient, Hessian and the balance invariant
# ---------------------------------------------------------------------------


def gradient(X: MatrixLike, A: MatrixLike, B: MatrixLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (∂f/∂A, ∂f/∂B) = (−2 R Bᵀ, −2 Aᵀ R) with R = X − AB, as float64 arrays.

    Raises:
        ValueError: as :func:`factorization_loss`.
    """
    x, a, b = _checked_factors(X, A, B)
    residual = x - a @ b
    return -2.0 * residual @ b.T, -2.0 * a.T @ residual


def pack(A: MatrixLike, B: MatrixLike) -> np.ndarray:
    """Return θ = (vec A, vec B) with column-major vec, shape (m·r + r·n,)."""
    a = _as_float64(A, "A", allow_empty=True)
    b = _as_float64(B, "B", allow_empty=True)
    return np.concatenate([a.ravel(order="F"), b.ravel(order="F")])


def unpack(theta: np.ndarray, m: int, n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Split θ = (vec A, vec B) back into A (m×r) and B (r×n); inverse of :func:`pack`.

    Raises:
        ValueError: θ is not a vector of length m·r + r·n.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (m * r + r * n,):
        raise ValueError(
            f"theta has shape {theta.shape}; for m={m}, n={n}, r={r} it must be ({m * r + r * n},)"
        )
    A = theta[: m * r].reshape((m, r), order="F")
    B = theta[m * r :].reshape((r, n), order="F")
    return A, B


def hessian(X: MatrixLike, A: MatrixLike, B: MatrixLike) -> np.ndarray:
    """Return the Hessian of f at (A, B) as a symmetric (mr + rn)×(mr + rn) matrix.

    With R = X − AB and column-major vec, the quadratic form vᵀHv for the
    direction v = (vec dA, vec dB) is 2‖dA B + A dB‖²_F − 4⟨R, dA dB⟩, twice the
    second-order Taylor term of f. It gives the blocks

        H_AA = 2 (BBᵀ ⊗ I_m),   H_BB = 2 (I_n ⊗ AᵀA),
        H_AB[(i,k), (l,j)] = 2 A_il B_kj − 2 δ_kl R_ij,

    where (i, k) indexes A_ik and (l, j) indexes B_lj.

    Raises:
        ValueError: as :func:`factorization_loss`.
    """
    x, a, b = _checked_factors(X, A, B)
    m, n = x.shape
    r = a.shape[1]
    residual = x - a @ b

    h_aa = 2.0 * np.kron(b @ b.T, np.eye(m))
    h_bb = 2.0 * np.kron(np.eye(n), a.T @ a)

    # cross[i, k, l, j] is the mixed derivative by A_ik and B_lj.
    cross = 2.0 * np.einsum("il,kj->iklj", a, b)
    cross -= 2.0 * np.einsum("kl,ij->iklj", np.eye(r), residual)
    # Column-major vec puts A_ik at i + m·k and B_lj at l + r·j, so the slower
    # index (k, and j) goes first before a row-major reshape.
    h_ab = cross.transpose(1, 0, 3, 2).reshape(m * r, r * n)

    return np.block([[h_aa, h_ab], [h_ab.T, h_bb]])


def hessian_eigenvalues(X: MatrixLike, A: MatrixLike, B: MatrixLike) -> np.ndarray:
    """Return the eigenvalues of :func:`hessian` in ascending order, shape (mr + rn,)."""
    return np.linalg.eigvalsh(hessian(X, A, B))


def null_space_dimension(eigenvalues: np.ndarray, *, rtol: float = 1e-8) -> int:
    """Count eigenvalues with |λ| ≤ rtol · max|λ| (all of them if every λ is 0)."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.size == 0:
        return 0
    scale = float(np.max(np.abs(eigenvalues)))
    return int(np.count_nonzero(np.abs(eigenvalues) <= rtol * scale))


def imbalance(A: MatrixLike, B: MatrixLike) -> np.ndarray:
    """Return AᵀA − BBᵀ (r×r), the quantity that gradient flow on f conserves.

    Raises:
        ValueError: A or B is invalid, or A has a different number of columns
            than B has rows.
    """
    a = _as_float64(A, "A", allow_empty=True)
    b = _as_float64(B, "B", allow_empty=True)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"A is {a.shape} and B is {b.shape}; A must have as many columns as B has rows"
        )
    return a.T @ a - b @ b.T


# ---------------------------------------------------------------------------
# Critical points from singular triplets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalPoint:
    """A critical point of f built from a subset of the singular triplets of X.

    Attributes:
        indices: positions of the chosen singular triplets, 0-based, in the
            order of decreasing σ_i; a point padded with zero factors lists
            fewer than r indices.
        A, B: the balanced factors U_S Σ_S^{1/2} and Σ_S^{1/2} V_Sᵀ.
        loss: f(A, B) = ‖X‖²_F − Σ_{i∈S} σ_i².
        gradient_norm: Frobenius norm of the full gradient (zero up to rounding).
        min_eigenvalue: smallest Hessian eigenvalue.
        kind: ``"minimum"`` when the Hessian is positive semidefinite up to the
            tolerance, ``"saddle"`` when it has a negative eigenvalue.
    """

    indices: tuple[int, ...]
    A: np.ndarray
    B: np.ndarray
    loss: float
    gradient_norm: float
    min_eigenvalue: float
    kind: Literal["minimum", "saddle"]


def critical_points(
    X: MatrixLike,
    r: int,
    *,
    include_padded: bool = False,
    rtol: float = 1e-8,
    max_points: int = 2000,
) -> list[CriticalPoint]:
    """Enumerate the critical points of f built from subsets of singular triplets.

    For each subset S of r of the min(m, n) singular triplets (u_i, σ_i, v_i),
    the balanced factors A = U_S Σ_S^{1/2}, B = Σ_S^{1/2} V_Sᵀ satisfy ∇f = 0.
    Every (AQ, Q⁻¹B) with invertible Q is then critical too. The map is linear
    and leaves f unchanged, so the Hessians are congruent and have the same
    loss and the same signs of eigenvalues. When the singular values are
    distinct and positive, every critical point at which A and B have rank r
    is of this form. Rank-deficient critical points exist as well, for example
    the padded ones that ``include_padded`` adds.

    A point is a ``"minimum"`` when its smallest Hessian eigenvalue is at least
    ``-rtol`` times the largest |eigenvalue|, and a ``"saddle"`` otherwise. For
    this f every critical point with a positive semidefinite Hessian is a
    global minimum, so the label is exact up to that tolerance.

    Args:
        X: matrix of shape (m, n).
        r: number of factors, 0 ≤ r ≤ min(m, n).
        include_padded: also list subsets of size k < r, padded to r factors
            with zero columns of A and zero rows of B.
        rtol: tolerance of the sign test, relative to the largest |eigenvalue|.
        max_points: upper bound on the number of points; the Hessian of each
            costs one dense (mr + rn)² eigendecomposition.

    Returns:
        The points in the order of the subsets (lexicographic, by size).

    Raises:
        ValueError: X or r is invalid, or the number of subsets exceeds
            ``max_points``.
    """
    x = _as_float64(X, "X")
    r = _checked_rank(r, x.shape)
    m, n = x.shape
    U, s, Vt = np.linalg.svd(x, full_matrices=False)
    sizes = range(r + 1) if include_padded else [r]
    total = sum(math.comb(len(s), k) for k in sizes)
    if total > max_points:
        raise ValueError(
            f"X of shape {x.shape} with r={r} has {total} subsets of singular triplets, "
            f"more than max_points={max_points}; raise max_points or use a smaller X"
        )

    points = []
    for size in sizes:
        for subset in itertools.combinations(range(len(s)), size):
            chosen = list(subset)
            root = np.sqrt(s[chosen])
            A = np.zeros((m, r))
            B = np.zeros((r, n))
            A[:, :size] = U[:, chosen] * root
            B[:size] = root[:, None] * Vt[chosen]

            grad_a, grad_b = gradient(x, A, B)
            eigenvalues = hessian_eigenvalues(x, A, B)
            scale = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
            smallest = float(eigenvalues[0]) if eigenvalues.size else 0.0
            points.append(
                CriticalPoint(
                    indices=tuple(subset),
                    A=A,
                    B=B,
                    loss=factorization_loss(x, A, B),
                    gradient_norm=math.hypot(np.linalg.norm(grad_a), np.linalg.norm(grad_b)),
                    min_eigenvalue=smallest,
                    kind="minimum" if smallest >= -rtol * scale else "saddle",
                )
            )
    return points


# ---------------------------------------------------------------------------
# Gradient descent
# ---------------------------------------------------------------------------


class DivergenceError(RuntimeError):
    """Gradient descent produced a non-finite loss.

    Attributes:
        step: the step whose loss was non-finite (step 0 is the initial point).
        losses: the loss history up to and including that step.
        step_size: the step size of the run.
    """

    def __init__(self, step: int, losses: np.ndarray, step_size: float, sigma_max: float):
        self.step = step
        self.losses = losses
        self.step_size = step_size
        hint = ""
        if sigma_max > 0:
            hint = f" (σ_1(X) = {sigma_max:.4g}, so try step_size <= {0.1 / sigma_max:.3g})"
        super().__init__(
            f"gradient descent diverged: the loss is {losses[-1]} at step {step} with "
            f"step_size={step_size:g}; reduce step_size{hint} or the init scale"
        )


@dataclass(frozen=True)
class DescentResult:
    """The outcome of :func:`gradient_descent` that reached a stopping rule.

    Attributes:
        A, B: final factors, float64, shapes (m, r) and (r, n).
        initial_A, initial_B: the starting factors.
        losses: f after each step, shape (steps + 1,); ``losses[0]`` is the
            loss at the start.
        steps: number of gradient steps taken.
        stop_reason: ``"target"`` (within rtol of the target loss),
            ``"stalled"`` (relative loss change below rtol, no target given) or
            ``"max_steps"``.
        step_size: the step size used.
    """

    A: np.ndarray
    B: np.ndarray
    initial_A: np.ndarray
    initial_B: np.ndarray
    losses: np.ndarray
    steps: int
    stop_reason: Literal["target", "stalled", "max_steps"]
    step_size: float

    @property
    def converged(self) -> bool:
        """True when a tolerance rule stopped the run, False when max_steps did."""
        return self.stop_reason != "max_steps"

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def initial_factors(
    shape: tuple[int, int],
    r: int,
    *,
    init_scale: float = 1e-3,
    balanced: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return small random starting factors A0 (m×r) and B0 (r×n), float64.

    The default draws every entry from N(0, init_scale²). With ``balanced``,
    A0 = U Σ^{1/2}, B0 = Σ^{1/2} Vᵀ from the rank-r SVD of a standard normal
    m×n matrix, so A0ᵀA0 = B0B0ᵀ exactly; both are then rescaled so that
    ‖A0‖²_F + ‖B0‖²_F = init_scale² (mr + rn), the expected value of the
    default draw.

    Raises:
        ValueError: r is out of range or init_scale is not positive and finite.
    """
    m, n = shape
    r = _checked_rank(r, (m, n))
    init_scale = _checked_positive(init_scale, "init_scale")
    rng = np.random.default_rng(seed)
    if not balanced:
        return init_scale * rng.standard_normal((m, r)), init_scale * rng.standard_normal((r, n))

    U, s, Vt = np.linalg.svd(rng.standard_normal((m, n)), full_matrices=False)
    root = np.sqrt(s[:r])
    A = U[:, :r] * root
    B = root[:, None] * Vt[:r]
    energy = np.sum(A**2) + np.sum(B**2)
    if energy > 0:
        factor = init_scale * math.sqrt((m * r + r * n) / energy)
        A, B = factor * A, factor * B
    return A, B


def gradient_descent(
    X: MatrixLike,
    r: int,
    *,
    step_size: float | None = None,
    max_steps: int = 10_000,
    target: float | None = None,
    rtol: float = 1e-9,
    atol: float = 0.0,
    init_scale: float = 1e-3,
    balanced_init: bool = False,
    seed: int = 0,
    initial: tuple[MatrixLike, MatrixLike] | None = None,
) -> DescentResult:
    """Minimise ‖X − AB‖²_F by full-batch gradient descent on (A, B).

    Each step is A ← A − η ∂f/∂A, B ← B − η ∂f/∂B, with both gradients taken
    at the old point.

    Stopping rules, checked after every step:

    * with ``target`` (for example :func:`optimal_loss`): stop when
      loss − target ≤ rtol · target + atol. When the target is 0 (X has rank
      at most r), only ``atol`` can stop the run, so pass atol > 0 then;
    * without ``target``: stop when |Δloss| ≤ rtol · previous loss;
    * always: stop after ``max_steps`` steps (``stop_reason="max_steps"``).

    NOTE: from a small start the run begins next to the saddle at the origin,
    where the loss changes slowly, so the loss-change rule can stop there
    before the loss has dropped. Pass a target when one is known.

    Args:
        X: matrix of shape (m, n).
        r: number of factors, 0 ≤ r ≤ min(m, n).
        step_size: η > 0; the default 0.1/σ_1(X) stays below the stability
            limit of about 1/(2σ_1) near the balanced optimum.
        max_steps: maximum number of steps, ≥ 0.
        target: loss to reach, ≥ 0, or None.
        rtol: relative tolerance of the active stopping rule, ≥ 0.
        atol: absolute tolerance of the target rule, ≥ 0, in units of the loss.
        init_scale, balanced_init, seed: passed to :func:`initial_factors`.
        initial: starting factors (A0, B0); overrides the random start.

    Returns:
        A :class:`DescentResult`.

    Raises:
        DivergenceError: the loss became non-finite; the error carries the
            step and the loss history.
        ValueError: any argument is invalid.
    """
    x = _as_float64(X, "X")
    r = _checked_rank(r, x.shape)
    sigma_max = float(np.linalg.norm(x, 2))
    if step_size is None:
        step_size = 0.1 / sigma_max if sigma_max > 0 else 0.1
    step_size = _checked_positive(step_size, "step_size")
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer, got {max_steps!r}")
    if (
        isinstance(rtol, bool)
        or not isinstance(rtol, numbers.Real)
        or not (math.isfinite(rtol) and rtol >= 0)
    ):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    if (
        isinstance(atol, bool)
        or not isinstance(atol, numbers.Real)
        or not (math.isfinite(atol) and atol >= 0)
    ):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    if target is not None:
        if (
            isinstance(target, bool)
            or not isinstance(target, numbers.Real)
            or not (math.isfinite(target) and target >= 0)
        ):
            raise ValueError(f"target must be a finite number >= 0 or None, got {target!r}")
        target = float(target)

    if initial is None:
        A, B = initial_factors(x.shape, r, init_scale=init_scale, balanced=balanced_init, seed=seed)
    else:
        _, A, B = _checked_factors(x, *initial)
        if A.shape[1] != r:
            raise ValueError(
                f"initial factors have rank {A.shape[1]}, but r={r}: pass A0 with {r} columns "
                f"and B0 with {r} rows"
            )
    initial_A, initial_B = A.copy(), B.copy()

    logger.info(
        "gradient descent: X %s, r=%d, step_size=%.3g, max_steps=%d, target=%s",
        x.shape,
        r,
        step_size,
        max_steps,
        target,
    )
    losses = [float(np.sum((x - A @ B) ** 2))]
    stop_reason: Literal["target", "stalled", "max_steps"] = "max_steps"
    if target is not None and losses[0] - target <= rtol * target + atol:
        stop_reason = "target"
    # Overflow to inf is the divergence signal, so numpy's warnings are muted.
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(1, int(max_steps) + 1 if stop_reason == "max_steps" else 1):
            residual = x - A @ B
            grad_a = -2.0 * residual @ B.T
            grad_b = -2.0 * A.T @ residual
            A = A - step_size * grad_a
            B = B - step_size * grad_b
            loss = float(np.sum((x - A @ B) ** 2))
            losses.append(loss)

            if not math.isfinite(loss):
                logger.warning("gradient descent diverged at step %d", step)
                raise DivergenceError(step, np.array(losses), step_size, sigma_max)
            if target is not None:
                if loss - target <= rtol * target + atol:
                    stop_reason = "target"
                    break
            elif abs(losses[-2] - loss) <= rtol * losses[-2]:
                stop_reason = "stalled"
                break

    history = np.array(losses)
    logger.info(
        "gradient descent stopped (%s) after %d steps at loss %.6g",
        stop_reason,
        len(history) - 1,
        history[-1],
    )
    return DescentResult(
        A=A,
        B=B,
        initial_A=initial_A,
        initial_B=initial_B,
        losses=history,
        steps=len(history) - 1,
        stop_reason=stop_reason,
        step_size=step_size,
    )
