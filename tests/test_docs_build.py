"""Real MkDocs builds: a failing cell fails the build, and the chapter carries its numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import NOTEBOOK_HEADER, make_project, run_build

FAILING_PAGE = (
    NOTEBOOK_HEADER
    + """
# %% [markdown]
# # A page that fails

# %%
total = 1 + 1

# %%
raise RuntimeError(f"deliberate failure with total={total}")
"""
)

PLOTTING_CELL = """
import matplotlib.pyplot as plt
plt.plot([0, 1], [1, 0])
plt.show()
"""


def test_failing_cell_fails_build(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"index.md": "# Overview\n", "broken.py": FAILING_PAGE})
    completed = run_build(project)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert "docs/broken.py" in output
    assert "cell 3" in output
    assert "line 15" in output
    assert "RuntimeError: deliberate failure with total=2" in output
    assert not (project / "site" / "broken" / "index.html").exists()


def test_passing_page_renders_outputs(tmp_path: Path) -> None:
    # The build runs with MPLBACKEND=Agg (see conftest.build_env), as under
    # nox; the page's kernel must still use the inline backend so that the
    # figure appears on the page.
    page = FAILING_PAGE.replace(
        'raise RuntimeError(f"deliberate failure with total={total}")',
        "print(f'total is {total}')\n\n# %%" + PLOTTING_CELL,
    )
    project = make_project(tmp_path, {"index.md": "# Overview\n", "fine.py": page})
    completed = run_build(project)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    html = (project / "site" / "fine" / "index.html").read_text(encoding="utf-8")
    assert "total is 2" in html
    assert 'src="data:image/png;base64,' in html


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_inventory_page_shows_totals(built_site: Path) -> None:
    text = _text((built_site / "part1" / "inventory" / "index.html").read_text(encoding="utf-8"))
    for number in ("11,689,512", "9,600", "1,000", "11,678,912"):
        assert number in text, number
    assert "Checked at build" in text


def test_nonconvex_page_shows_hessian(built_site: Path) -> None:
    html = (built_site / "part2" / "nonconvex" / "index.html").read_text(encoding="utf-8")
    text = _text(html)
    assert re.search(r"\[\s*\[\s*0\s*,\s*-2\s*\]\s*,\s*\[\s*-2\s*,\s*0\s*\]\s*\]", text), (
        "Hessian [[0, -2], [-2, 0]] not found"
    )
    assert re.search(r"eigenvalues?[^.]*-2[^.]*2|eigenvalues?[^.]*2[^.]*-2", text, re.I)
    assert "Checked at build" in text


# Reprs that show up when a cell ends in a call whose return value was meant
# to be discarded: PNG bytes, an HTML string, a results dict, a matplotlib artist.
STRAY_REPR = re.compile(r"^(b'|'<|\{'|\[?<matplotlib|Text\()")


def test_pages_show_no_stray_return_values(built_site: Path) -> None:
    notebooks = [
        path for path in built_site.rglob("*.ipynb") if not path.name.endswith(".colab.ipynb")
    ]
    assert notebooks, "no executed notebooks were copied into the site"
    stray = []
    for path in notebooks:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for number, cell in enumerate(cells, start=1):
            for output in cell.get("outputs", []):
                if output["output_type"] != "execute_result":
                    continue
                text = "".join(output["data"].get("text/plain", ""))
                if STRAY_REPR.match(text):
                    stray.append(f"{path.relative_to(built_site)} cell {number}: {text[:60]!r}")
    assert stray == []
