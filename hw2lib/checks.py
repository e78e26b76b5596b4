"""Build-time checks that chapter pages show next to the claims they verify.

A page calls :func:`check` (or one of its numeric forms) right after the code
that computes a claim. When the claim holds, the page shows a small
"Checked at build" note with the claim and the measured values. When it does
not, :class:`CheckFailed` is raised, the notebook cell fails, and so does the
site build, which executes every page with errors disallowed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np


class CheckFailed(AssertionError):
    """A claim stated on a chapter page no longer holds."""


def _note_html(claim: str, detail: str) -> str:
    body = html.escape(claim)
    if detail:
        body += f'<br><span class="build-check-detail">{html.escape(detail)}</span>'
    return (
        '<div class="admonition success build-check">'
        '<p class="admonition-title">Checked at build</p>'
        f"<p>{body}</p></div>"
    )


def _show(claim: str, detail: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # IPython is a docs dependency; plain Python skips the note.
        return
    if get_ipython() is None:
        return
    display(HTML(_note_html(claim, detail)))


def check(claim: str, condition: bool, detail: str = "") -> None:
    """Raise :class:`CheckFailed` unless ``condition`` holds; otherwise show the claim.

    ``claim`` is the sentence the page asserts, written so that a reader can
    match it to the prose. ``detail`` adds the measured values to the note and
    to the error message.
    """
    if not bool(condition):
        message = f"Build-time check failed: {claim}"
        if detail:
            message += f" ({detail})"
        raise CheckFailed(message)
    _show(claim, detail)


# Maximum length of a detail shown in full in a passing note. A longer one
# (a list of 62 names, a set of ids) is summarised to keep the note readable.
MAX_DETAIL_CHARS = 240


def _shorten(value: object) -> str:
    text = repr(value)
    if len(text) <= MAX_DETAIL_CHARS // 2:
        return text
    size = f" of {len(value)} items" if hasattr(value, "__len__") else ""
    return f"{type(value).__name__}{size}: {text[: MAX_DETAIL_CHARS // 2 - 20]}…"


def check_equal(claim: str, actual: object, expected: object) -> None:
    """Check that ``actual == expected`` exactly (integers, strings, tuples, sets)."""
    equal = actual == expected
    detail = f"computed {actual!r}, expected {expected!r}"
    # A failure keeps the full values: its message goes to the build log.
    if equal and len(detail) > MAX_DETAIL_CHARS:
        detail = f"computed value equals the expected {_shorten(expected)}"
    check(claim, equal, detail)


def check_close(
    claim: str,
    actual: float | Sequence[float] | np.ndarray,
    expected: float | Sequence[float] | np.ndarray,
    *,
    rtol: float = 1e-9,
    atol: float = 0.0,
) -> None:
    """Check that ``actual`` matches ``expected`` elementwise within ``rtol`` and ``atol``."""
    actual_array = np.asarray(actual, dtype=float)
    expected_array = np.asarray(expected, dtype=float)
    if actual_array.shape != expected_array.shape:
        check(claim, False, f"shape {actual_array.shape} differs from {expected_array.shape}")
    close = bool(np.allclose(actual_array, expected_array, rtol=rtol, atol=atol))
    if actual_array.size == 1:
        detail = f"computed {actual_array.item():.6g}, expected {expected_array.item():.6g}"
    else:
        worst = float(np.max(np.abs(actual_array - expected_array))) if actual_array.size else 0.0
        detail = f"largest difference {worst:.3g}"
    tolerance = f"rtol={rtol:g}" + (f", atol={atol:g}" if atol else "")
    if not math.isfinite(float(np.sum(actual_array))) and actual_array.size:
        close = False
    check(claim, close, f"{detail}; {tolerance}")
