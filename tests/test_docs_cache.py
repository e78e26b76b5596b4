"""The execution cache re-executes exactly the pages whose inputs changed.

Each test builds a small project for real, with the repository's hook. Its
pages import a throwaway module from the project folder or read a data file.
The test changes one input, builds again, and checks which pages the hook's
report says were executed and what the rebuilt site shows.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import NOTEBOOK_HEADER, build_report, load_config, make_project, run_build

MODULE = "cachetoy_values"

VALUE_PAGE = (
    NOTEBOOK_HEADER
    + f"""
# %% [markdown]
# # Value page

# %%
from {MODULE} import answer

print(f"the answer is {{answer()}}")
"""
)

PLAIN_PAGE = (
    NOTEBOOK_HEADER
    + """
# %% [markdown]
# # Plain page

# %%
print(f"two and two make {2 + 2}")
"""
)

DATA_PAGE = (
    NOTEBOOK_HEADER
    + """
# %% [markdown]
# # Data page

# %%
from pathlib import Path

folder = Path("docs/results")
names = sorted(path.name for path in folder.glob("*.txt"))
print("files:", ", ".join(names))
print("measured:", (folder / "measured.txt").read_text().strip())
"""
)


def _page_text(site: Path, page: str) -> str:
    html = (site / page / "index.html").read_text(encoding="utf-8")
    return re.sub(r"<[^>]+>", " ", html)


def _build(project: Path) -> dict:
    completed = run_build(project)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return build_report(project)


@pytest.fixture(scope="module")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built project with a page that prints a module's value, a plain page and a data page."""
    directory = tmp_path_factory.mktemp("cache-project")
    pages = {
        "index.md": "# Cache test\n\nThree pages follow.\n",
        "value.py": VALUE_PAGE,
        "plain.py": PLAIN_PAGE,
        "data.py": DATA_PAGE,
    }
    make_project(directory, pages)
    (directory / f"{MODULE}.py").write_text("def answer():\n    return 41\n")
    results = directory / "docs" / "results"
    results.mkdir()
    (results / "measured.txt").write_text("0.25\n")
    first = _build(directory)
    assert sorted(first["executed"]) == ["data.py", "plain.py", "value.py"]
    return directory


@pytest.fixture
def project(built_project: Path, tmp_path: Path) -> Path:
    """A copy of the built project, execution cache included, for one test to change.

    The cache names inputs relative to the project folder, so the copy starts
    with every page cached.
    """
    copy = tmp_path / "project"
    shutil.copytree(built_project, copy, symlinks=True)
    return copy


def test_unchanged_tree_executes_nothing(project: Path) -> None:
    report = _build(project)
    assert report["executed"] == {}
    assert sorted(report["cached"]) == ["data.py", "plain.py", "value.py"]
    assert "the answer is 41" in _page_text(project / "site", "value")


def test_unrelated_new_files_execute_nothing(project: Path) -> None:
    # Imports list the project folder, but a new file there, or a new module
    # that no page imports, is not an input of any page.
    (project / "notes.txt").write_text("not read by any page\n")
    (project / "cachetoy_unused.py").write_text("UNUSED = True\n")
    report = _build(project)
    assert report["executed"] == {}


def test_changed_function_reexecutes_its_page(project: Path) -> None:
    (project / f"{MODULE}.py").write_text("def answer():\n    return 42\n")
    report = _build(project)
    assert list(report["executed"]) == ["value.py"]
    assert report["executed"]["value.py"] == f"file {MODULE}.py changed"
    text = _page_text(project / "site", "value")
    assert "the answer is 42" in text
    assert "the answer is 41" not in text


def test_edited_page_reexecutes_only_itself(project: Path) -> None:
    page = project / "docs" / "plain.py"
    page.write_text(page.read_text().replace("2 + 2", "3 + 3"))
    report = _build(project)
    assert list(report["executed"]) == ["plain.py"]
    assert report["executed"]["plain.py"] == "page changed"
    assert "two and two make 6" in _page_text(project / "site", "plain")


def test_changed_data_file_reexecutes_reader(project: Path) -> None:
    (project / "docs" / "results" / "measured.txt").write_text("0.5\n")
    report = _build(project)
    assert list(report["executed"]) == ["data.py"]
    assert "measured: 0.5" in _page_text(project / "site", "data")


def test_new_file_in_listed_folder_reexecutes_lister(project: Path) -> None:
    (project / "docs" / "results" / "extra.txt").write_text("new\n")
    report = _build(project)
    assert list(report["executed"]) == ["data.py"]
    assert report["executed"]["data.py"] == "folder docs/results changed"
    assert "files: extra.txt, measured.txt" in _page_text(project / "site", "data")


def test_changed_setting_reexecutes_every_page(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HW2LIB_* variables choose data outside the tracked folders, such as
    # the CIFAR-10 copy of page 1(a), so a change re-executes every page.
    monkeypatch.setenv("HW2LIB_CIFAR10_JPEG", str(project / "elsewhere"))
    report = _build(project)
    assert sorted(report["executed"]) == ["data.py", "plain.py", "value.py"]


def test_executed_notebook_is_offered_for_download(project: Path) -> None:
    site = project / "site"
    notebook = site / "value" / "value.ipynb"
    assert notebook.is_file()
    assert "the answer is 41" in notebook.read_text(encoding="utf-8")
    assert "_hw2lib_report_inputs" not in notebook.read_text(encoding="utf-8")
    html = (site / "value" / "index.html").read_text(encoding="utf-8")
    assert 'href="value.ipynb"' in html
    repository = load_config()["repo_url"].removeprefix("https://github.com/").rstrip("/")
    colab_url = f"https://colab.research.google.com/github/{repository}/blob/gh-pages/value/value.colab.ipynb"
    assert colab_url in html
    colab_copy = json.loads((site / "value" / "value.colab.ipynb").read_text(encoding="utf-8"))
    install = "".join(colab_copy["cells"][0]["source"])
    assert f'%pip install --quiet "hw2lib @ git+https://github.com/{repository}"' in install
