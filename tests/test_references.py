"""Citations, the reference list, equation labels and folded solutions, up to a real build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import NOTEBOOK_HEADER, ROOT, load_config, make_project, run_build

from hw2lib import references

CHAPTER_KEYS = (
    "he2016deep",
    "he2016identity",
    "ioffe2015batch",
    "eckart1936approximation",
    "mirsky1960symmetric",
    "baldi1989neural",
    "loshchilov2019decoupled",
    "he2019bag",
    "goyal2017accurate",
    "vanlaarhoven2017l2",
    "arora2018optimization",
    "du2018algorithmic",
)


@pytest.fixture(scope="module")
def bibliography() -> dict[str, references.Entry]:
    return references.load_bibliography(ROOT / "docs" / "references.bib")


def test_bibliography_has_chapter_keys(bibliography) -> None:
    for key in CHAPTER_KEYS:
        assert key in bibliography, key


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("he2016deep", "He et al., 2016a"),
        ("he2016identity", "He et al., 2016b"),
        ("ioffe2015batch", "Ioffe & Szegedy, 2015"),
        ("mirsky1960symmetric", "Mirsky, 1960"),
        ("vanlaarhoven2017l2", "van Laarhoven, 2017"),
        ("he2019bag", "He et al., 2019"),
    ],
)
def test_citation_labels(bibliography, key: str, label: str) -> None:
    assert bibliography[key].label == label


def test_parser_reads_quoted_and_nested_values() -> None:
    entries = references.parse_bibtex(
        """
        @comment{ignored}
        @article{key1,
          author = "Doll{\\'a}r, Piotr and Jean van der Berg",
          title = {A {Nested} Title},
          year = 2001,
        }
        """
    )
    entry = entries["key1"]
    assert entry.fields["title"] == "A Nested Title"
    assert entry.year == "2001"
    assert entry.authors[0].surname == "Doll\u00e1r"
    assert entry.authors[1].surname == "van der Berg"
    assert entry.label == "Doll\u00e1r & van der Berg, 2001"


def test_parser_rejects_duplicate_keys() -> None:
    text = "@misc{same, author={A, B}, year={1}}\n@misc{same, author={C, D}, year={2}}"
    with pytest.raises(references.BibliographyError, match="duplicate citation key 'same'"):
        references.parse_bibtex(text)


def test_citation_group_formats_links(bibliography) -> None:
    html = references.format_citation(
        "@eckart1936approximation; -@mirsky1960symmetric, Theorem 3",
        bibliography,
        lambda key: f"../references/#{key}",
        page="docs/x.md",
    )
    assert html.startswith('<span class="citation-group">(')
    assert 'href="../references/#eckart1936approximation"' in html
    assert ">Eckart &amp; Young, 1936</a>" in html
    assert ">1960, Theorem 3</a>)" in html


def test_unknown_key_names_key_and_page(bibliography) -> None:
    with pytest.raises(references.BibliographyError) as raised:
        references.format_citation("@nosuch2020", bibliography, str, page="docs/part1/x.py")
    assert "nosuch2020" in str(raised.value)
    assert "docs/part1/x.py" in str(raised.value)


FEATURE_PAGE = (
    NOTEBOOK_HEADER
    + """
# %% [markdown]
# # Features of $f$
#
# A cited claim [@baldi1989neural] and an equation
#
# $$
# f(x) = x^2 \\tag{1} \\label{eq:square}
# $$

# %%
print("cell with `[@he2016deep]` in its output")

# %% [markdown] tags=["solution"]
# The solution text.

# %% tags=["solution"]
print("solution code")

# %% [markdown]
# Between the solutions.

# %% tags=["solution"]
print("second solution")
"""
)


@pytest.fixture(scope="module")
def feature_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(
        tmp_path_factory.mktemp("features"),
        {
            "index.md": "# Home\n\nSee [@he2016deep, Fig. 2].\n\n`[@notakey]` in code.\n",
            "features.py": FEATURE_PAGE,
        },
        nav=[{"Home": "index.md"}, {"Features": "features.py"}, {"References": "references.md"}],
    )
    completed = run_build(project)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return project / "site"


def test_markdown_page_citation_links(feature_site: Path) -> None:
    html = (feature_site / "index.html").read_text(encoding="utf-8")
    assert '<a class="citation" href="references/#he2016deep"' in html
    assert ">He et al., 2016a, Fig. 2</a>" in html
    assert "<code>[@notakey]</code>" in html


def test_notebook_citation_links(feature_site: Path) -> None:
    html = (feature_site / "features" / "index.html").read_text(encoding="utf-8")
    assert 'href="../references/#baldi1989neural"' in html
    assert "[@baldi1989neural]" not in html
    # Outputs are <pre> text: a citation-like string there stays as printed.
    assert "[@he2016deep]" in html


def test_downloaded_notebook_has_citation_links(feature_site: Path) -> None:
    notebook = json.loads((feature_site / "features" / "features.ipynb").read_text("utf-8"))
    markdown = "".join("".join(cell["source"]) for cell in notebook["cells"][:1])
    site_url = load_config()["site_url"].rstrip("/")
    assert f"([Baldi & Hornik, 1989]({site_url}/references/#baldi1989neural))" in markdown
    assert "[@baldi1989neural]" not in markdown


def test_solution_cells_fold_into_details(feature_site: Path) -> None:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((feature_site / "features" / "index.html").read_text(), "html.parser")
    blocks = soup.select("details.solution")
    assert len(blocks) == 2
    assert blocks[0].summary.get_text(strip=True) == "Solution"
    assert blocks[0].get("open") is None
    assert "The solution text." in blocks[0].get_text()
    assert "solution code" in blocks[0].get_text()
    assert "second solution" in blocks[1].get_text()
    assert "Between the solutions." not in blocks[0].get_text() + blocks[1].get_text()


def test_title_with_math_uses_nav_title(feature_site: Path) -> None:
    html = (feature_site / "features" / "index.html").read_text(encoding="utf-8")
    assert "<title>Features - " in html
    assert "$f$" not in html.split("<title>")[1].split("</title>")[0]


def test_references_page_lists_entries(feature_site: Path) -> None:
    html = (feature_site / "references" / "index.html").read_text(encoding="utf-8")
    for key in CHAPTER_KEYS:
        assert f'id="{key}"' in html, key
    assert "(2016a)" in html
    assert "(2016b)" in html


@pytest.mark.parametrize(
    ("page_name", "text"),
    [
        ("bad.md", "# Bad\n\nA claim [@nosuch2020].\n"),
        ("bad.py", NOTEBOOK_HEADER + "\n# %% [markdown]\n# # Bad\n#\n# A claim [@nosuch2020].\n"),
    ],
)
def test_unknown_key_fails_build(tmp_path: Path, page_name: str, text: str) -> None:
    project = make_project(tmp_path, {"index.md": "# Home\n", page_name: text})
    completed = run_build(project)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert "nosuch2020" in output
    assert f"docs/{page_name}" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$$x \\label{eq:a}$$\n\nSee $\\eqref{eq:b}$.\n", "['eq:b']"),
        ("$$x \\label{eq:a}$$\n\n$$y \\label{eq:a}$$\n", "defined more than once: ['eq:a']"),
    ],
    ids=["undefined", "duplicate"],
)
def test_bad_equation_label_fails_build(tmp_path: Path, text: str, message: str) -> None:
    project = make_project(tmp_path, {"index.md": "# Home\n\n" + text})
    completed = run_build(project)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert message in output
    assert "docs/index.md" in output


def test_eqref_in_code_is_ignored(tmp_path: Path) -> None:
    text = "# Home\n\nWrite `\\eqref{eq:name}` to cite an equation.\n"
    completed = run_build(make_project(tmp_path, {"index.md": text}))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
