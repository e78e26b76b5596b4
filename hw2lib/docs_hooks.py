"""MkDocs hooks: execute the chapter's pages, resolve citations, fold solutions, serve MathJax.

mkdocs.yml loads this file with ``hooks:``. MkDocs runs hooks after the
plugins for each event, so :func:`on_files` receives the pages that
mkdocs-jupyter has already claimed as notebooks. It executes the stale ones
through :mod:`hw2lib.notebooks` and points each page at its executed
``.ipynb``. mkdocs-jupyter, configured with ``execute: false``, only renders it.

:func:`on_page_content` then works on each page's HTML:

* removes the MathJax 2 loader that mkdocs-jupyter puts into notebook pages
  (the site loads MathJax 3 once, from its own files);
* turns ``[@key]`` citations into "(Author, Year)" links to the References
  page (:mod:`hw2lib.references`), failing the build on an unknown key;
* folds consecutive notebook cells tagged ``solution`` into one collapsed
  ``<details class="solution">`` block;
* gives notebook pages the links that the theme override
  (``hw2lib/theme_overrides/main.html``) shows: download the executed
  notebook, and open it in Colab (a copy that first installs hw2lib).

Every build writes ``.cache/executed/last-build.json``, which lists the pages
it executed and why; the cache tests and the benchmark read it.
"""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

from hw2lib import notebooks, references

logger = logging.getLogger("mkdocs.hooks.hw2lib")

MATHJAX_VERSION = "3.2.2"
# Parts of MathJax's es5 bundle that tex-chtml.js loads at run time.
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y")

# The checkout that hw2lib is imported from (an editable install).
REPOSITORY_VENDOR_DIR = Path(__file__).resolve().parents[1] / ".cache" / "vendor"

# mkdocs-jupyter's template adds a MathJax 2 script to every notebook page.
# The site loads MathJax 3 once for all pages, so that block is removed.
NOTEBOOK_MATHJAX = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S
)

BIBLIOGRAPHY_FILE = "references.bib"
REFERENCES_PAGE = "references.md"
# references.md contains this comment where the reference list goes.
BIBLIOGRAPHY_MARKER = "<!-- bibliography -->"

# Colab opens notebooks from a GitHub branch. The deploy workflow publishes
# site/, executed notebooks included, to this branch; mkdocs.yml can name
# another with ``extra: {colab_branch: ...}``.
DEFAULT_COLAB_BRANCH = "gh-pages"
# The Colab copy of a page's notebook, written beside the downloadable one.
COLAB_SUFFIX = ".colab.ipynb"
GITHUB_REPO = re.compile(r"^https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$")

# Elements whose text is never scanned for citations.
NO_CITATION_PARENTS = {"code", "pre", "script", "style", "a", "textarea", "kbd", "samp"}

INLINE_MATH = re.compile(r"\$+([^$]*)\$+|\\\((.*?)\\\)")

# TeX equation labels and references. MathJax resolves them within one page,
# so every \eqref or \ref on a page needs a \label on the same page.
TEX_LABEL = re.compile(r"\\label\{([^}]*)\}")
TEX_REFERENCE = re.compile(r"\\(?:eq)?ref\{([^}]*)\}")
CODE_ELEMENT = re.compile(r"<(pre|code|script|style)\b.*?</\1>", re.S | re.I)

_state: dict[str, object] = {}


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    # mkdocs-jupyter logs two INFO lines per page ("Converting notebook",
    # "Copied jupyter file"). This hook's own summary line reports the same.
    for name in ("mkdocs.plugins.mkdocs_jupyter", "mkdocs.mkdocs-jupyter"):
        logging.getLogger(name).setLevel(logging.WARNING)
    root = _root(config)
    _state["root"] = root
    _state["cache_dir"] = root / ".cache" / "executed"
    _state["vendor_dir"] = root / ".cache" / "vendor"
    _state["nav_titles"] = {}
    bib_path = Path(config.docs_dir) / BIBLIOGRAPHY_FILE
    try:
        entries = references.load_bibliography(bib_path) if bib_path.exists() else {}
    except references.BibliographyError as error:
        raise PluginError(f"Reading the bibliography failed: {error}") from None
    _state["bibliography"] = entries
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root: Path = _state["root"]  # type: ignore[assignment]
    cache_dir: Path = _state["cache_dir"]  # type: ignore[assignment]
    docs_dir = Path(config.docs_dir).resolve()
    notebook_files = [
        file
        for file in files
        if type(file).__name__ == "NotebookFile" and file.src_path.endswith(".py")
    ]
    pages = [Path(file.abs_src_path) for file in notebook_files]
    started = time.perf_counter()
    try:
        results = notebooks.execute_pages(pages, docs_dir=docs_dir, cache_dir=cache_dir, cwd=root)
    except notebooks.NotebookExecutionError as error:
        raise PluginError(f"Executing a chapter page failed: {error}") from None
    seconds = time.perf_counter() - started

    ran = [result for result in results if result.ran]
    for result in ran:
        logger.info(
            "Executed docs/%s in %.1f s (%s)",
            result.source.relative_to(docs_dir).as_posix(),
            result.seconds,
            result.reason,
        )
    logger.info(
        "Chapter pages: %d executed, %d taken from the cache", len(ran), len(results) - len(ran)
    )
    _write_build_report(cache_dir, results, docs_dir, seconds)

    by_source = {result.source: result.executed for result in results}
    for file in notebook_files:
        # NotebookFile forwards attribute reads to the File it wraps, so this
        # assignment changes only what mkdocs-jupyter renders and offers for
        # download. The page keeps its URL and its .py source for MkDocs.
        file.abs_src_path = str(by_source[Path(file.abs_src_path)])

    references_file = files.get_file_from_path(REFERENCES_PAGE)
    _state["references_url"] = references_file.url if references_file else None
    return files


def _write_build_report(
    cache_dir: Path, results: list[notebooks.PageResult], docs_dir: Path, seconds: float
) -> None:
    report = {
        "executed": {
            result.source.relative_to(docs_dir).as_posix(): result.reason
            for result in results
            if result.ran
        },
        "cached": [
            result.source.relative_to(docs_dir).as_posix() for result in results if not result.ran
        ],
        "execution_seconds": round(seconds, 3),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "last-build.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


def on_pre_page(page: Page, config: MkDocsConfig, files: Files) -> Page:
    # A title given in mkdocs.yml's nav is stored on the instance; mkdocs-jupyter
    # later replaces it with the notebook's first heading.
    nav_title = page.__dict__.get("title")
    if nav_title:
        _state["nav_titles"][page.file.src_uri] = nav_title  # type: ignore[index]
    return page


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != REFERENCES_PAGE:
        return markdown
    if BIBLIOGRAPHY_MARKER not in markdown:
        raise PluginError(
            f"docs/{REFERENCES_PAGE} must contain {BIBLIOGRAPHY_MARKER} where the reference "
            "list goes"
        )
    entries = _state["bibliography"]
    listing = references.format_bibliography(entries)  # type: ignore[arg-type]
    return markdown.replace(BIBLIOGRAPHY_MARKER, listing)


def on_page_content(html_text: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    html_text = NOTEBOOK_MATHJAX.sub("", html_text)
    _check_equation_labels(html_text, f"docs/{page.file.src_uri}")
    if references.CITATION.search(html_text) or "celltag_solution" in html_text:
        html_text = _transform_html(html_text, page, files)
    if type(page.file).__name__ == "NotebookFile":
        page.notebook_links = _notebook_links(page, config)  # type: ignore[attr-defined]
    _replace_title_with_math(page)
    return html_text


def _check_equation_labels(html_text: str, page_name: str) -> None:
    """Fail the build on a duplicate ``\\label`` or an ``\\eqref`` with no ``\\label`` on the page.

    MathJax would render the first as an error and the second as "(???)".
    Code, preformatted outputs and scripts are not searched.
    """
    text = CODE_ELEMENT.sub(" ", html_text)
    labels = TEX_LABEL.findall(text)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise PluginError(f"{page_name}: equation labels defined more than once: {duplicates}")
    undefined = sorted(set(TEX_REFERENCE.findall(text)) - set(labels))
    if undefined:
        raise PluginError(
            f"{page_name}: \\eqref or \\ref to labels not defined on this page: {undefined}. "
            "Add \\label{...} to the equation, or fix the name."
        )


def _transform_html(html_text: str, page: Page, files: Files) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_text, "html.parser")
    _link_citations(soup, page, files)
    _fold_solutions(soup)
    return str(soup)


def _link_citations(soup, page: Page, files: Files) -> None:
    from bs4 import BeautifulSoup, NavigableString
    from bs4.element import Comment

    entries = _state["bibliography"]
    references_file = files.get_file_from_path(REFERENCES_PAGE)
    page_name = f"docs/{page.file.src_uri}"

    def href_for_key(key: str) -> str:
        if references_file is None:
            raise PluginError(
                f"{page_name} cites [@{key}], but docs/{REFERENCES_PAGE} does not exist"
            )
        return f"{get_relative_url(references_file.url, page.file.url)}#{key}"

    for text in list(soup.find_all(string=references.CITATION)):
        if not isinstance(text, NavigableString) or isinstance(text, Comment):
            continue
        if any(parent.name in NO_CITATION_PARENTS for parent in text.parents):
            continue
        pieces, position = [], 0
        for match in references.CITATION.finditer(text):
            pieces.append(html.escape(text[position : match.start()], quote=False))
            try:
                pieces.append(
                    references.format_citation(
                        match.group(1),
                        entries,
                        href_for_key,
                        page=page_name,  # type: ignore[arg-type]
                    )
                )
            except references.BibliographyError as error:
                raise PluginError(str(error)) from None
            position = match.end()
        pieces.append(html.escape(text[position:], quote=False))
        fragment = BeautifulSoup("".join(pieces), "html.parser")
        text.replace_with(*list(fragment.contents))


def _is_solution_cell(cell) -> bool:
    # nbconvert puts a cell's tags as celltag_<tag> classes on the cell div of
    # a code cell, and on the rendered-markdown div inside a markdown cell.
    if "celltag_solution" in cell.get("class", []):
        return True
    return cell.select_one(".jp-MarkdownOutput.celltag_solution") is not None


def _fold_solutions(soup) -> None:
    for cell in soup.select("div.jp-Cell"):
        # mkdocs-jupyter wraps each code cell's div in a second div with the
        # same classes; only the outer one is a sibling of the other cells.
        if cell.find_parent("div", class_="jp-Cell") is not None:
            continue
        if not _is_solution_cell(cell):
            continue
        previous = cell.find_previous_sibling()
        if (
            previous is not None
            and previous.name == "details"
            and "solution" in previous.get("class", [])
        ):
            previous.append(cell.extract())
            continue
        details = soup.new_tag("details", attrs={"class": "solution"})
        summary = soup.new_tag("summary")
        summary.string = "Solution"
        details.append(summary)
        cell.insert_before(details)
        details.append(cell.extract())


def _notebook_links(page: Page, config: MkDocsConfig) -> dict[str, str]:
    """Return the download URL (relative to the page) and, for GitHub repos, the Colab URL.

    mkdocs-jupyter's ``include_source`` copies the executed notebook into the
    folder of the page's ``index.html`` under the source's file name.
    :func:`on_post_page` writes the Colab copy (:data:`COLAB_SUFFIX`) beside it.
    """
    notebook_name = Path(page.file.abs_src_path).name
    links = {"download": notebook_name, "name": notebook_name}
    match = GITHUB_REPO.match(config.repo_url or "")
    if match:
        owner, repo = match.groups()
        branch = (config.extra or {}).get("colab_branch", DEFAULT_COLAB_BRANCH)
        folder = PurePosixPath(page.file.dest_uri).parent
        path = (folder / _colab_name(notebook_name)).as_posix()
        links["colab"] = (
            f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/{path}"
        )
        links["install"] = f"hw2lib @ git+https://github.com/{owner}/{repo}"
    return links


def _colab_name(notebook_name: str) -> str:
    return notebook_name.removesuffix(".ipynb") + COLAB_SUFFIX


def on_post_page(output: str, page: Page, config: MkDocsConfig) -> str:
    links = getattr(page, "notebook_links", None)
    if links and "colab" in links:
        _write_colab_notebook(page, links["install"])
    if links:
        _cite_in_downloads(page, config)
    return output


def _cite_in_downloads(page: Page, config: MkDocsConfig) -> None:
    """Turn ``[@key]`` into Markdown links in the notebooks offered for download.

    mkdocs-jupyter copies the executed notebook next to the page before this
    hook runs (plugins run first). The links are absolute, built from
    ``site_url``, so they work in a notebook opened anywhere.
    """
    import nbformat

    references_url = _state.get("references_url")
    if references_url is None:
        return
    base = (config.site_url or "").rstrip("/") + "/" + str(references_url)
    name = Path(page.file.abs_src_path).name
    folder = Path(page.file.abs_dest_path).parent
    page_name = f"docs/{page.file.src_uri}"
    for path in (folder / name, folder / _colab_name(name)):
        if not path.is_file():
            continue
        notebook = nbformat.read(str(path), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type != "markdown":
                continue
            try:
                cell.source = references.cite_markdown(
                    cell.source, _state["bibliography"], lambda key: f"{base}#{key}", page=page_name
                )
            except references.BibliographyError as error:
                raise PluginError(str(error)) from None
        nbformat.write(notebook, str(path))


def _write_colab_notebook(page: Page, requirement: str) -> None:
    """Write the executed notebook with a first cell that installs hw2lib, for Colab.

    Colab runs a notebook on a fresh machine without this repository, so the
    pages' ``import hw2lib`` would fail there. The downloadable notebook stays
    as executed; only this copy gets the install cell.
    """
    import nbformat

    notebook = nbformat.read(page.file.abs_src_path, as_version=4)
    setup = nbformat.v4.new_code_cell(
        "# Colab starts without hw2lib, the library these pages import; this installs it\n"
        "# from the chapter's repository.\n"
        f'%pip install --quiet "{requirement}"'
    )
    setup.metadata["tags"] = ["colab-setup"]
    notebook.cells.insert(0, setup)
    destination = Path(page.file.abs_dest_path).parent / _colab_name(
        Path(page.file.abs_src_path).name
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(destination))


def _replace_title_with_math(page: Page) -> None:
    """Keep TeX out of the window title and the navigation, which MathJax does not typeset.

    mkdocs-jupyter titles a page with its notebook's first heading, and MkDocs
    titles a Markdown page without a nav title with its first heading. When
    that heading contains math, the page takes its title from mkdocs.yml's
    nav, or else the heading with the math delimiters and backslashes removed.
    """
    title = page.title or ""
    if "$" not in title and "\\(" not in title:
        return
    nav_title = _state["nav_titles"].get(page.file.src_uri)  # type: ignore[union-attr]
    if nav_title:
        page.title = nav_title
        return

    def plain(match: re.Match) -> str:
        tex = match.group(1) if match.group(1) is not None else match.group(2)
        return re.sub(r"\\([A-Za-z]+)", r"\1", tex).replace("{", "").replace("}", "")

    page.title = INLINE_MATH.sub(plain, title)


def _installed_mathjax(vendor_dir: Path) -> Path | None:
    package = vendor_dir / "node_modules" / "mathjax"
    stamp = package / "package.json"
    if not (package / "es5").is_dir() or not stamp.is_file():
        return None
    if json.loads(stamp.read_text(encoding="utf-8")).get("version") != MATHJAX_VERSION:
        return None
    return package / "es5"


def _mathjax_source(vendor_dir: Path) -> Path:
    # A build of a copied docs tree (tests, benchmark) reuses the MathJax that
    # a build of the repository installed, instead of calling npm again.
    for candidate in (vendor_dir, REPOSITORY_VENDOR_DIR):
        es5 = _installed_mathjax(candidate)
        if es5 is not None:
            return es5
    es5 = vendor_dir / "node_modules" / "mathjax" / "es5"
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            "npm not found: the site serves MathJax from its own files and installs it "
            f"with npm. Install Node.js and npm, or unpack mathjax@{MATHJAX_VERSION} "
            f"into {vendor_dir / 'node_modules' / 'mathjax'}."
        )
    vendor_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Installing mathjax@%s from the npm registry into %s", MATHJAX_VERSION, vendor_dir)
    command = [
        npm,
        "install",
        "--no-save",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(vendor_dir),
        f"mathjax@{MATHJAX_VERSION}",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or _installed_mathjax(vendor_dir) is None:
        raise PluginError(
            f"Installing mathjax@{MATHJAX_VERSION} with npm failed (exit {completed.returncode}): "
            f"{completed.stderr.strip()[-500:]}"
        )
    return es5


def on_post_build(config: MkDocsConfig) -> None:
    source = _mathjax_source(_state["vendor_dir"])  # type: ignore[arg-type]
    target = Path(config.site_dir) / "assets" / "vendor" / "mathjax"
    for part in MATHJAX_PARTS:
        origin = source / part
        destination = target / part
        destination.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, destination, dirs_exist_ok=True)
        else:
            shutil.copy2(origin, destination)
