"""HTML tables and figure output for the Part 1 pages.

The pages run as notebooks at build time, where these functions show their
result through IPython's display system. Run as plain scripts, they show nothing.
Figures are built as ``matplotlib.figure.Figure`` objects outside pyplot and
shown as PNG, so the output does not depend on the matplotlib backend
(``MPLBACKEND=Agg`` in the build environment included).
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence

from matplotlib.figure import Figure


def _display(obj: object) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(obj)


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    numeric: Sequence[bool] | None = None,
    bold_rows: Iterable[int] = (),
) -> str:
    """Return an HTML table with thousands separators in integers and right-aligned numeric columns.

    ``numeric`` marks right-aligned columns (default: columns whose first value
    is an int or float). ``bold_rows`` lists row indices to set in bold, such
    as a total row.
    """
    rows = [list(row) for row in rows]
    if numeric is None:
        first = rows[0] if rows else [""] * len(headers)
        numeric = [
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in first
        ]
    bold = set(bold_rows)

    def cell(value: object, right: bool, tag: str) -> str:
        text = (
            f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
        style = ' style="text-align:right"' if right else ""
        return f"<{tag}{style}>{html.escape(text)}</{tag}>"

    head = "".join(cell(h, r, "th") for h, r in zip(headers, numeric, strict=True))
    body = []
    for index, row in enumerate(rows):
        cells = "".join(cell(v, r, "td") for v, r in zip(row, numeric, strict=True))
        style = ' style="font-weight:bold"' if index in bold else ""
        body.append(f"<tr{style}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def show_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    numeric: Sequence[bool] | None = None,
    bold_rows: Iterable[int] = (),
) -> None:
    """Display :func:`html_table` in a notebook.

    The display helpers return None, so a call on a cell's last line adds no
    ``Out[n]`` repr under what it displays.
    """
    from IPython.display import HTML

    _display(HTML(html_table(headers, rows, numeric=numeric, bold_rows=bold_rows)))


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes, cropped to its content."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def show_figure(fig: Figure, *, dpi: int = 110) -> None:
    """Render ``fig`` to PNG and display it in a notebook."""
    from IPython.display import Image

    _display(Image(data=figure_png(fig, dpi=dpi), format="png"))


def math_html(latex: str) -> str:
    """Return a LaTeX formula as display-math HTML for the site's MathJax.

    The formula goes into a ``<div class="arithmatex">`` between ``\\[`` and
    ``\\]``. That is the markup pymdownx.arithmatex gives display math on
    Markdown pages, so the site's MathJax set-up renders both the same way.
    """
    return f'<div class="arithmatex">\\[{html.escape(latex, quote=False)}\\]</div>'


def show_math(latex: str) -> None:
    """Display a LaTeX formula as display math in a notebook (see :func:`math_html`)."""
    from IPython.display import HTML

    _display(HTML(math_html(latex)))
