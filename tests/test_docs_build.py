"""Real MkDocs builds: a failing cell must fail the build, and the chapter must carry its numbers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs"]

FAILING_PAGE = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A page that fails

# %%
total = 1 + 1

# %%
raise RuntimeError(f"deliberate failure with total={total}")
"""


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _load_config() -> dict:
    # mkdocs.yml uses no custom YAML tags, so the safe loader reads it whole.
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _small_project(tmp_path: Path, page_name: str, page_text: str) -> Path:
    """Copy the real configuration with a two-page nav and the given page into tmp_path."""
    config = _load_config()
    config["nav"] = [{"Overview": "index.md"}, {"Page": page_name}]
    config["hooks"] = [str(ROOT / hook) for hook in config.get("hooks", [])]
    config["watch"] = [str(ROOT / path) for path in config.get("watch", [])]
    if "custom_dir" in config.get("theme", {}):
        config["theme"]["custom_dir"] = str(ROOT / config["theme"]["custom_dir"])
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("part1", "part2", "*.py"))
    (docs / "index.md").write_text("# Overview\n\nA reduced copy of the chapter.\n")
    for markdown_page in docs.glob("*.md"):
        if markdown_page.name != "index.md":
            markdown_page.unlink()
    (docs / page_name).write_text(page_text, encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


def test_failing_cell_fails_build(tmp_path: Path) -> None:
    project = _small_project(tmp_path, "broken.py", FAILING_PAGE)
    completed = subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=project,
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert "docs/broken.py" in output
    assert "cell 3" in output
    assert "line 15" in output
    assert "RuntimeError: deliberate failure with total=2" in output
    assert not (tmp_path / "site" / "broken" / "index.html").exists()


def test_passing_page_renders_outputs(tmp_path: Path) -> None:
    page = FAILING_PAGE.replace(
        'raise RuntimeError(f"deliberate failure with total={total}")', "print(f'total is {total}')"
    )
    project = _small_project(tmp_path, "fine.py", page)
    completed = subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=project,
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    html = (tmp_path / "site" / "fine" / "index.html").read_text(encoding="utf-8")
    assert "total is 2" in html


@pytest.fixture(scope="module")
def chapter_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the repository's own docs, reusing the execution cache of earlier builds."""
    site = tmp_path_factory.mktemp("chapter") / "site"
    completed = subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return site


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_inventory_page_shows_totals(chapter_site: Path) -> None:
    text = _text((chapter_site / "part1" / "inventory" / "index.html").read_text(encoding="utf-8"))
    for number in ("11,689,512", "9,600", "1,000", "11,678,912"):
        assert number in text, number
    assert "Checked at build" in text


def test_nonconvex_page_shows_hessian(chapter_site: Path) -> None:
    html = (chapter_site / "part2" / "nonconvex" / "index.html").read_text(encoding="utf-8")
    text = _text(html)
    assert re.search(r"\[\s*\[\s*0\s*,\s*-2\s*\]\s*,\s*\[\s*-2\s*,\s*0\s*\]\s*\]", text), (
        "Hessian [[0, -2], [-2, 0]] not found"
    )
    assert re.search(r"eigenvalues?[^.]*-2[^.]*2|eigenvalues?[^.]*2[^.]*-2", text, re.I)
    assert "Checked at build" in text
