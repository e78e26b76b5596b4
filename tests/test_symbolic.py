"""Tests for hw2lib.symbolic: each derivation is checked on the SymPy objects it returns."""

from __future__ import annotations

import pytest
import sympy as sp

from hw2lib import symbolic as sy


def test_scalar_values_break_convexity():
    example = sy.scalar_counterexample()
    assert example.values == {(1, 1): 0, (-1, -1): 0, (0, 0): 1}
    # The midpoint of two minima lies above the chord between them.
    midpoint_value = example.values[(0, 0)]
    chord_value = (example.values[(1, 1)] + example.values[(-1, -1)]) / 2
    assert midpoint_value > chord_value


def test_scalar_hessian_at_origin():
    hessian, eigenvalues = sy.scalar_hessian_at_origin()
    assert isinstance(hessian, sp.MatrixBase)
    assert hessian == sp.Matrix([[0, -2], [-2, 0]])
    assert eigenvalues == {2: 1, -2: 1}


def test_scalar_hessian_formula():
    example = sy.scalar_counterexample()
    a, b = example.a, example.b
    expected = sp.Matrix([[2 * b**2, 4 * a * b - 2], [4 * a * b - 2, 2 * a**2]])
    assert (example.hessian - expected).applyfunc(sp.expand) == sp.zeros(2, 2)


def test_origin_gradient_vanishes_symbolically():
    origin = sy.origin_hessian(2, 3, 2)
    assert origin.gradient_at_origin == sp.zeros(2 * 2 + 2 * 3, 1)
    hessian = origin.hessian_at_origin
    assert hessian[:4, :4] == sp.zeros(4, 4)
    assert hessian[4:, 4:] == sp.zeros(6, 6)
    assert hessian == hessian.T


def test_origin_hessian_2x2_entries():
    origin = sy.origin_hessian(2, 2, 1)
    x = origin.X
    expected_block = -2 * x
    assert origin.hessian_at_origin[:2, 2:] == expected_block


def test_origin_charpoly_is_product_over_sigmas():
    spectrum = sy.origin_spectrum_2x2()
    lam = spectrum.lam
    assert sp.expand(spectrum.characteristic_polynomial - spectrum.expected) == 0

    # Substituting σ1² + σ2² = tr(XᵀX) and σ1²σ2² = det(X)² into the σ form
    # gives the same polynomial, so the roots are ±2σ1 and ±2σ2.
    sigma_1, sigma_2 = spectrum.sigmas
    x = spectrum.origin.X
    p, q = sp.symbols("p q")
    sigma_poly = sp.Poly(sp.expand(spectrum.sigma_form), lam)
    in_p_q = (
        sigma_poly.as_expr().subs({sigma_1**2 * sigma_2**2: q}).subs({sigma_1**2: p - sigma_2**2})
    )
    in_x = sp.expand(in_p_q.subs({p: (x.T * x).trace(), q: x.det() ** 2}))
    assert sp.expand(in_x - spectrum.characteristic_polynomial) == 0
    assert set(sp.solve(spectrum.sigma_form, lam)) == {
        2 * sigma_1,
        -2 * sigma_1,
        2 * sigma_2,
        -2 * sigma_2,
    }


def test_origin_spectrum_on_a_diagonal_x():
    spectrum = sy.origin_spectrum_2x2()
    x = spectrum.origin.X
    values = {x[0, 0]: 3, x[0, 1]: 0, x[1, 0]: 0, x[1, 1]: 1}
    eigenvalues = spectrum.origin.hessian_at_origin.subs(values).eigenvals()
    assert eigenvalues == {6: 1, -6: 1, 2: 1, -2: 1}


@pytest.mark.parametrize(("m", "n", "r"), [(2, 2, 2), (3, 2, 1), (2, 3, 2)])
def test_hessian_in_a_is_kronecker(m, n, r):
    result = sy.convexity_in_A(m, n, r)
    assert result.hessian_A == result.expected
    assert sp.expand(result.quadratic_form - result.sum_of_squares) == 0


def test_eckart_young_2x2_critical_points():
    result = sy.eckart_young_2x2()
    s1, s2 = result.s1, result.s2
    assert len(result.points) == 3
    origin, bottom, top = result.points

    assert origin.a == sp.zeros(2, 1)
    assert origin.b == sp.zeros(2, 1)
    assert sp.expand(origin.loss - (s1**2 + s2**2)) == 0
    assert origin.hessian_eigenvalues == {2 * s1: 1, -2 * s1: 1, 2 * s2: 1, -2 * s2: 1}

    assert bottom.a == sp.Matrix([0, sp.sqrt(s2)])
    assert bottom.b == sp.Matrix([0, sp.sqrt(s2)])
    assert sp.expand(bottom.loss - s1**2) == 0
    assert sp.factor(-2 * (s1 - s2)) in bottom.hessian_eigenvalues

    assert top.a == sp.Matrix([sp.sqrt(s1), 0])
    assert top.b == sp.Matrix([sp.sqrt(s1), 0])
    assert sp.expand(top.loss - s2**2) == 0
    # With s1 > s2 every eigenvalue at the top pair is ≥ 0, with one zero:
    # the rescaling direction.
    sample = {s1: sp.Rational(3), s2: sp.Rational(1)}
    values = [sp.sympify(k).subs(sample) for k in top.hessian_eigenvalues]
    assert all(value >= 0 for value in values)
    assert top.hessian_eigenvalues.get(0) == 1


def test_eckart_young_2x2_solutions_satisfy_gradient():
    result = sy.eckart_young_2x2()
    gradient = [sp.diff(result.loss, v) for v in result.variables]
    for solution in result.solutions:
        for component in gradient:
            assert sp.simplify(component.subs(solution)) == 0


@pytest.mark.parametrize(("m", "n", "r"), [(3, 2, 2), (2, 2, 1), (2, 3, 2)])
def test_gradient_flow_conserves_imbalance(m, n, r):
    result = sy.gradient_flow_invariant(m, n, r)
    assert result.derivative == sp.zeros(r, r)
    # The flow is the negative gradient, 2RBᵀ for A.
    x = sp.Matrix(m, n, lambda i, j: sp.Symbol(f"x_{i + 1}{j + 1}", real=True))
    residual = x - result.A * result.B
    assert (result.A_dot - 2 * residual * result.B.T).applyfunc(sp.expand) == sp.zeros(m, r)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_symbolic_sizes_are_checked(bad):
    with pytest.raises(ValueError, match="must be a positive integer"):
        sy.origin_hessian(bad, 2, 1)
