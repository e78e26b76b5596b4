"""SymPy derivations for the low-rank factorization f(A, B) = ‖X − AB‖²_F.

Each function builds the loss from symbols, differentiates it, and returns
SymPy objects (matrices, expressions, dictionaries of eigenvalues), so that a
page can display them and a test can assert on them exactly. Every function
finishes in well under a second on small sizes. Matrices are vectorised column
by column (vec stacks columns), the convention of :mod:`hw2lib.lowrank`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


def _matrix_symbols(name: str, rows: int, cols: int) -> sp.Matrix:
    """Return a rows×cols matrix of real symbols name_ij (1-based indices)."""
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True))


def _factorization_symbols(m: int, n: int, r: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """Return symbolic X (m×n), A (m×r) and B (r×n) with entries x_ij, a_ij and b_ij."""
    return _matrix_symbols("x", m, n), _matrix_symbols("a", m, r), _matrix_symbols("b", r, n)


def _vec(matrix: sp.Matrix) -> list[sp.Symbol]:
    """Return the entries of ``matrix`` stacked column by column."""
    return [matrix[i, j] for j in range(matrix.cols) for i in range(matrix.rows)]


def _frobenius_loss(X: sp.Matrix, A: sp.Matrix, B: sp.Matrix) -> sp.Expr:
    residual = X - A * B
    return sum((entry**2 for entry in residual), sp.Integer(0))


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------------
# 2(a): the scalar counterexample
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarCounterexample:
    """f(a, b) = (1 − ab)², the case m = n = r = 1 with X = 1.

    Attributes:
        a, b: the two real variables.
        loss: the expression (1 − ab)².
        values: f at (1, 1), (−1, −1) and (0, 0), keyed by the point.
        hessian: the Hessian of f as a function of (a, b).
        hessian_at_origin: the Hessian at (0, 0).
        eigenvalues: eigenvalues of the Hessian at the origin with their
            multiplicities, as returned by ``Matrix.eigenvals()``.
    """

    a: sp.Symbol
    b: sp.Symbol
    loss: sp.Expr
    values: dict[tuple[int, int], sp.Expr]
    hessian: sp.Matrix
    hessian_at_origin: sp.Matrix
    eigenvalues: dict[sp.Expr, int]


def scalar_counterexample() -> ScalarCounterexample:
    """Derive the values and the Hessian at the origin of f(a, b) = (1 − ab)².

    (0, 0) is the midpoint of the two global minima (1, 1) and (−1, −1), yet
    f(0, 0) = 1 > 0, so f is not convex. The Hessian at the origin is
    [[0, −2], [−2, 0]] with eigenvalues 2 and −2.
    """
    a, b = sp.symbols("a b", real=True)
    loss = (1 - a * b) ** 2
    points = [(1, 1), (-1, -1), (0, 0)]
    values = {point: loss.subs({a: point[0], b: point[1]}) for point in points}
    hessian = sp.hessian(loss, (a, b))
    at_origin = hessian.subs({a: 0, b: 0})
    return ScalarCounterexample(
        a=a,
        b=b,
        loss=loss,
        values=values,
        hessian=hessian,
        hessian_at_origin=at_origin,
        eigenvalues=at_origin.eigenvals(),
    )


def scalar_hessian_at_origin() -> tuple[sp.Matrix, dict[sp.Expr, int]]:
    """Return the Hessian of (1 − ab)² at (0, 0) and its eigenvalues {2: 1, −2: 1}."""
    example = scalar_counterexample()
    return example.hessian_at_origin, example.eigenvalues


# ---------------------------------------------------------------------------
# 2(a): the origin is a saddle for every X ≠ 0
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OriginHessian:
    """Gradient and Hessian of f at A = 0, B = 0 for a symbolic X.

    Attributes:
        X, A, B: matrices of symbols, shapes (m, n), (m, r), (r, n).
        variables: (vec A, vec B) in the order of the Hessian's rows.
        gradient_at_origin: column vector of the first derivatives at 0.
        hessian_at_origin: the (mr + rn)×(mr + rn) Hessian at 0.
    """

    X: sp.Matrix
    A: sp.Matrix
    B: sp.Matrix
    variables: list[sp.Symbol]
    gradient_at_origin: sp.Matrix
    hessian_at_origin: sp.Matrix


def origin_hessian(m: int = 2, n: int = 2, r: int = 1) -> OriginHessian:
    """Differentiate f twice at the origin for a symbolic m×n matrix X.

    At the origin the diagonal blocks 2(BBᵀ ⊗ I_m) and 2(I_n ⊗ AᵀA) vanish, so
    the Hessian is [[0, C], [Cᵀ, 0]] with C built from −2X. Its eigenvalues are
    ± the singular values of C, which are 2σ_i(X), each r times.

    Raises:
        ValueError: m, n or r is not a positive integer.
    """
    _check_sizes(m=m, n=n, r=r)
    X, A, B = _factorization_symbols(m, n, r)
    variables = _vec(A) + _vec(B)
    loss = _frobenius_loss(X, A, B)
    origin = {v: 0 for v in variables}
    gradient = sp.Matrix([sp.diff(loss, v) for v in variables]).subs(origin)
    hessian = sp.hessian(loss, variables).subs(origin)
    return OriginHessian(
        X=X,
        A=A,
        B=B,
        variables=variables,
        gradient_at_origin=gradient,
        hessian_at_origin=hessian,
    )


@dataclass(frozen=True)
class OriginSpectrum2x2:
    """The characteristic polynomial of the Hessian at the origin, m = n = 2, r = 1.

    Attributes:
        origin: the gradient and Hessian at the origin.
        lam: the variable λ of the polynomial.
        characteristic_polynomial: det(λI − H), expanded.
        expected: λ⁴ − 4 tr(XᵀX) λ² + 16 det(X)², which equals
            (λ² − 4σ_1²)(λ² − 4σ_2²) because σ_1² + σ_2² = tr(XᵀX) and
            σ_1² σ_2² = det(X)².
        sigma_form: (λ² − 4σ_1²)(λ² − 4σ_2²) in the symbols ``sigmas``.
        sigmas: the singular values σ_1, σ_2 as positive symbols.
    """

    origin: OriginHessian
    lam: sp.Symbol
    characteristic_polynomial: sp.Expr
    expected: sp.Expr
    sigma_form: sp.Expr
    sigmas: tuple[sp.Symbol, sp.Symbol]


def origin_spectrum_2x2() -> OriginSpectrum2x2:
    """Show that the Hessian at 0 has eigenvalues ±2σ_i(X) for a symbolic 2×2 X, r = 1.

    The characteristic polynomial of the 4×4 Hessian is a polynomial in λ²
    whose coefficients are tr(XᵀX) = σ_1² + σ_2² and det(X)² = σ_1² σ_2², so
    its roots are λ = ±2σ_1 and ±2σ_2. For X ≠ 0 at least one root is
    negative: the origin is a strict saddle.
    """
    origin = origin_hessian(2, 2, 1)
    lam = sp.Symbol("lambda")
    X = origin.X
    characteristic = sp.expand(origin.hessian_at_origin.charpoly(lam).as_expr())
    expected = sp.expand(lam**4 - 4 * (X.T * X).trace() * lam**2 + 16 * X.det() ** 2)
    sigma_1, sigma_2 = sp.symbols("sigma_1 sigma_2", positive=True)
    sigma_form = (lam**2 - 4 * sigma_1**2) * (lam**2 - 4 * sigma_2**2)
    return OriginSpectrum2x2(
        origin=origin,
        lam=lam,
        characteristic_polynomial=characteristic,
        expected=expected,
        sigma_form=sigma_form,
        sigmas=(sigma_1, sigma_2),
    )


# ---------------------------------------------------------------------------
# 2(a): convex in A for fixed B
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvexityInA:
    """The Hessian of f in A alone, with B held fixed.

    Attributes:
        A, B: symbol matrices, shapes (m, r) and (r, n).
        hessian_A: the mr×mr Hessian of f with respect to vec A.
        expected: 2 (BBᵀ ⊗ I_m).
        quadratic_form: vec(D)ᵀ H_A vec(D) for a symbolic direction D (m×r).
        sum_of_squares: 2 ‖D B‖²_F, equal to ``quadratic_form``, hence ≥ 0.
    """

    A: sp.Matrix
    B: sp.Matrix
    hessian_A: sp.Matrix
    expected: sp.Matrix
    quadratic_form: sp.Expr
    sum_of_squares: sp.Expr


def convexity_in_A(m: int = 2, n: int = 2, r: int = 2) -> ConvexityInA:
    """Derive H_A = 2 (BBᵀ ⊗ I_m) for symbolic X and B, and its quadratic form 2‖DB‖²_F.

    The quadratic form is a sum of squares for every direction D, so H_A is
    positive semidefinite at every point and f is convex in A for fixed B. The
    same argument with AᵀA shows that f is convex in B for fixed A.

    Raises:
        ValueError: m, n or r is not a positive integer.
    """
    _check_sizes(m=m, n=n, r=r)
    X, A, B = _factorization_symbols(m, n, r)
    D = _matrix_symbols("d", m, r)
    loss = _frobenius_loss(X, A, B)
    hessian_A = sp.hessian(loss, _vec(A))
    expected = 2 * sp.kronecker_product(B * B.T, sp.eye(m))
    direction = sp.Matrix(_vec(D))
    quadratic_form = sp.expand((direction.T * hessian_A * direction)[0, 0])
    product = D * B
    sum_of_squares = 2 * sum((entry**2 for entry in product), sp.Integer(0))
    return ConvexityInA(
        A=A,
        B=B,
        hessian_A=hessian_A,
        expected=expected,
        quadratic_form=quadratic_form,
        sum_of_squares=sp.expand(sum_of_squares),
    )


# ---------------------------------------------------------------------------
# 2(b): Eckart–Young for X = diag(s1, s2), r = 1
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolicCriticalPoint:
    """One critical point of f, scaled so that ‖a‖ = ‖b‖.

    Attributes:
        a, b: column vectors (2×1) of the factors.
        loss: f(a, b).
        hessian_eigenvalues: eigenvalues of the 4×4 Hessian with multiplicities.
    """

    a: sp.Matrix
    b: sp.Matrix
    loss: sp.Expr
    hessian_eigenvalues: dict[sp.Expr, int]


@dataclass(frozen=True)
class EckartYoung2x2:
    """Critical points of f(a, b) = ‖diag(s1, s2) − a bᵀ‖²_F for s1 > s2 > 0.

    Attributes:
        s1, s2: positive symbols; the derivation assumes s1 > s2.
        variables: (a1, a2, b1, b2).
        loss: f as an expression.
        solutions: the distinct solutions that ``sympy.solve`` returns for
            ∇f = 0. A solution with a free variable stands for a whole curve
            (a, b) → (ca, b/c).
        points: one balanced representative of each family, with its loss
            and Hessian eigenvalues: the origin, the bottom pair (σ = s2) and
            the top pair (σ = s1), in that order.
    """

    s1: sp.Symbol
    s2: sp.Symbol
    variables: tuple[sp.Symbol, ...]
    loss: sp.Expr
    solutions: list[dict[sp.Symbol, sp.Expr]]
    points: list[SymbolicCriticalPoint]


def eckart_young_2x2() -> EckartYoung2x2:
    """Solve ∇f = 0 for X = diag(s1, s2), r = 1, and classify every critical point.

    Up to the rescaling a → ca, b → b/c there are three critical points (and
    their negatives). The origin has loss s1² + s2², the bottom singular pair
    has loss s1², and the top singular pair has the minimum loss s2². The
    bottom pair has the Hessian eigenvalue −2(s1 − s2) < 0, so it is a saddle.
    The Hessians at two points of one curve are congruent (the rescaling is a
    linear change of variables that leaves f unchanged), so the signs of the
    eigenvalues, though not their values, are the same at every point of it.
    """
    s1, s2 = sp.symbols("s1 s2", positive=True)
    a1, a2, b1, b2 = sp.symbols("a1 a2 b1 b2", real=True)
    a = sp.Matrix([a1, a2])
    b = sp.Matrix([b1, b2])
    variables = (a1, a2, b1, b2)
    loss = _frobenius_loss(sp.diag(s1, s2), a, b.T)
    gradient = [sp.diff(loss, v) for v in variables]
    # sympy.solve can list a family twice; keep the first copy of each.
    solutions = []
    for solution in sp.solve(gradient, variables, dict=True):
        if solution not in solutions:
            solutions.append(solution)
    hessian = sp.hessian(loss, variables)

    points: list[SymbolicCriticalPoint] = []
    seen: set[tuple[sp.Expr, ...]] = set()
    for solution in solutions:
        point = {v: solution.get(v, v) for v in variables}
        symbols_left = set().union(*(sp.sympify(e).free_symbols for e in point.values()))
        free = sorted(symbols_left & set(variables), key=str)
        if free:
            # One free variable t parametrises the curve (ta, b/t); pick the
            # positive t with ‖a‖² = ‖b‖².
            t = free[0]
            a_vec = sp.Matrix([point[a1], point[a2]])
            b_vec = sp.Matrix([point[b1], point[b2]])
            balance = sp.Eq((a_vec.T * a_vec)[0, 0], (b_vec.T * b_vec)[0, 0])
            roots = [root for root in sp.solve(balance, t) if root.is_positive]
            point = {v: sp.simplify(e.subs(t, roots[0])) for v, e in point.items()}
        key = tuple(point[v] for v in variables)
        if key in seen:
            continue
        seen.add(key)
        eigenvalues = hessian.subs(point).eigenvals()
        points.append(
            SymbolicCriticalPoint(
                a=sp.Matrix([point[a1], point[a2]]),
                b=sp.Matrix([point[b1], point[b2]]),
                loss=sp.factor(loss.subs(point)),
                hessian_eigenvalues={sp.factor(k): v for k, v in eigenvalues.items()},
            )
        )
    # Order by decreasing loss (origin, bottom pair, top pair); any s1 > s2
    # gives the same order, so the sample values 3 and 1 decide it.
    points.sort(key=lambda p: p.loss.subs({s1: 3, s2: 1}), reverse=True)
    return EckartYoung2x2(
        s1=s1, s2=s2, variables=variables, loss=loss, solutions=solutions, points=points
    )


# ---------------------------------------------------------------------------
# 2(c): gradient flow conserves AᵀA − BBᵀ
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowInvariant:
    """d/dt (AᵀA − BBᵀ) along the gradient flow Ȧ = −∂f/∂A, Ḃ = −∂f/∂B.

    Attributes:
        A, B: symbol matrices, shapes (m, r) and (r, n).
        A_dot, B_dot: the flow, from differentiating f entry by entry.
        derivative: the r×r time derivative of AᵀA − BBᵀ, expanded; it is
            the zero matrix.
    """

    A: sp.Matrix
    B: sp.Matrix
    A_dot: sp.Matrix
    B_dot: sp.Matrix
    derivative: sp.Matrix


def gradient_flow_invariant(m: int = 3, n: int = 2, r: int = 2) -> FlowInvariant:
    """Differentiate AᵀA − BBᵀ along the gradient flow of f for symbolic X, A, B.

    With R = X − AB the flow is Ȧ = 2RBᵀ, Ḃ = 2AᵀR, and
    d/dt(AᵀA) = 2(BRᵀA + AᵀRBᵀ) = d/dt(BBᵀ), so the difference is constant.

    Raises:
        ValueError: m, n or r is not a positive integer.
    """
    _check_sizes(m=m, n=n, r=r)
    X, A, B = _factorization_symbols(m, n, r)
    loss = _frobenius_loss(X, A, B)
    A_dot = -A.applyfunc(lambda entry: sp.diff(loss, entry))
    B_dot = -B.applyfunc(lambda entry: sp.diff(loss, entry))
    derivative = (A_dot.T * A + A.T * A_dot - B_dot * B.T - B * B_dot.T).applyfunc(sp.expand)
    return FlowInvariant(A=A, B=B, A_dot=A_dot, B_dot=B_dot, derivative=derivative)
