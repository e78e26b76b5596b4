"""Build-time checks: they raise on a false claim and summarise long details."""

from __future__ import annotations

import math

import pytest

from hw2lib import checks
from hw2lib.checks import CheckFailed, check, check_close, check_equal


def test_check_passes_silently_outside_ipython() -> None:
    check("two is two", 2 == 2)


def test_check_raises_with_claim_and_detail() -> None:
    with pytest.raises(CheckFailed, match=r"Build-time check failed: one is two \(detail 7\)"):
        check("one is two", 1 == 2, "detail 7")


def test_check_failed_is_assertion_error() -> None:
    assert issubclass(CheckFailed, AssertionError)


def test_check_equal_raises_on_difference() -> None:
    with pytest.raises(CheckFailed, match="computed 3, expected 4"):
        check_equal("three is four", 3, 4)


def test_check_equal_failure_keeps_full_values() -> None:
    with pytest.raises(CheckFailed) as raised:
        check_equal("sets agree", set(range(100)), set(range(101)))
    assert "100}" in str(raised.value)


def test_check_equal_summarises_long_equal_values(monkeypatch: pytest.MonkeyPatch) -> None:
    displayed_details = []
    monkeypatch.setattr(checks, "_show", lambda claim, detail: displayed_details.append(detail))
    check_equal("lists agree", list(range(200)), list(range(200)))
    assert len(displayed_details) == 1
    assert displayed_details[0].startswith("computed value equals the expected list of 200 items")
    assert len(displayed_details[0]) <= checks.MAX_DETAIL_CHARS


def test_check_close_within_and_outside_tolerance() -> None:
    check_close("close", 1.0 + 1e-12, 1.0)
    with pytest.raises(CheckFailed, match=r"computed 1\.1, expected 1"):
        check_close("not close", 1.1, 1.0, rtol=1e-3)


def test_check_close_rejects_shape_mismatch() -> None:
    with pytest.raises(CheckFailed, match="shape"):
        check_close("shapes", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_check_close_rejects_nan() -> None:
    with pytest.raises(CheckFailed):
        check_close("nan is not a number", math.nan, math.nan)


def test_note_escapes_html() -> None:
    note = checks._note_html("a < b", "x & y")
    assert "a &lt; b" in note
    assert "x &amp; y" in note
    assert "Checked at build" in note
