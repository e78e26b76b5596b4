"""The built site in a real browser: Chromium, headless, driven by Playwright.

The chapter is built once per session (``built_site`` in conftest.py) and
served on 127.0.0.1. Every request to another host is aborted before it
leaves the machine and counts as a failure, because a reader needs no
network. Each page is checked for console errors, failed requests, broken
images, typeset math with no TeX left over, notebook cells with their
outputs and a working notebook download. A screenshot of each page in both
palettes goes to ``test-artifacts/``.

A second, small site exercises the features that the chapter pages may not
all use yet: equation numbers and ``\\eqref`` links in notebook cells and
Markdown pages, and folded solutions.

Chromium comes from the system (``/usr/bin/chromium``, Debian's
``chromium`` package), because Playwright cannot download its own browsers
here. Without it the module is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from conftest import NOTEBOOK_HEADER, ROOT, load_config, make_project, run_build, serve_directory

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium contacts Google's update,
# sync and field-trial servers on start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers often mount a 64 MB /dev/shm, too small for long pages.
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 900}
TYPESET_TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=(
        "/usr/bin/chromium is missing; "
        "install Debian's chromium package (apt-get install -y chromium)"
    ),
)


def nav_paths() -> list[str]:
    """Return the site path of every page in mkdocs.yml's nav, in nav order."""
    paths: list[str] = []
    stack = list(load_config()["nav"])
    while stack:
        item = stack.pop(0)
        values = list(item.values()) if isinstance(item, dict) else [item]
        for value in values:
            if isinstance(value, list):
                stack[:0] = value
            elif isinstance(value, str):
                paths.append(_site_path(value))
    return paths


def _site_path(source: str) -> str:
    stem = source.rsplit(".", 1)[0]
    if stem == "index":
        return ""
    if stem.endswith("/index"):
        return stem[: -len("index")]
    return f"{stem}/"


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "_") or "index"


@dataclass
class Visit:
    """Problems the browser reported while one page was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _open(browser, base_url: str, path: str, *, color_scheme: str = "light"):
    """Open ``base_url + path`` in a fresh context and wait until MathJax has typeset it."""
    context = browser.new_context(color_scheme=color_scheme, viewport=VIEWPORT)
    visit = Visit()

    def route(route_request) -> None:
        url = route_request.request.url
        if url.startswith(base_url):
            route_request.continue_()
        else:
            visit.external_requests.append(url)
            route_request.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on(
        "console",
        lambda message: message.type == "error" and visit.console_errors.append(message.text),
    )
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    page.on(
        "requestfailed",
        lambda request: (
            request.url.startswith(base_url) and visit.failed_requests.append(request.url)
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and visit.failed_requests.append(f"{response.status} {response.url}")
        ),
    )
    page.goto(base_url + path, wait_until="load")
    _wait_for_typeset(page)
    return context, page, visit


def _wait_for_typeset(page) -> None:
    page.wait_for_function(
        "window.hw2libTypesetPath === window.location.pathname", timeout=TYPESET_TIMEOUT_MS
    )


# Visible text that still contains a TeX delimiter outside code, with where it is.
LEFTOVER_TEX_JS = r"""
() => {
  const skip = [
    "code", "pre", "script", "style", "textarea", "kbd", "mjx-container",
    ".clipboard-copy-txt", ".md-search", ".md-dialog",
  ].join(", ");
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    if (/\$|\\\(|\\\[|\\begin\{/.test(node.textContent)) {
      found.push(node.textContent.trim().slice(0, 120));
    }
  }
  return found;
}
"""

BROKEN_IMAGES_JS = """
() => Array.from(document.images)
  .filter((image) => !image.complete || image.naturalWidth === 0)
  .map((image) => image.currentSrc || image.src || image.outerHTML.slice(0, 80))
"""

# Outer code cells in page order (mkdocs-jupyter nests a second .jp-CodeCell
# div inside each one), each as whether it shows an output.
CODE_CELLS_JS = """
() => Array.from(document.querySelectorAll(".jp-CodeCell"))
  .filter((cell) => !cell.parentElement.closest(".jp-CodeCell"))
  .map((cell) => cell.querySelector(".jp-OutputArea-output") !== null)
"""


# Code blocks without a copy button: Material (9.8) adds a button with
# data-md-type="copy" (.md-clipboard in older releases) to Markdown
# code blocks, mkdocs-jupyter adds <clipboard-copy> to notebook code cells.
CODE_WITHOUT_COPY_JS = """
() => {
  const missing = [];
  for (const block of document.querySelectorAll(".md-content pre > code")) {
    const pre = block.parentElement;
    if (pre.closest(".jp-OutputArea")) continue;
    const notebookCell = pre.closest(".jp-CodeCell");
    const copy = notebookCell
      ? notebookCell.querySelector("clipboard-copy")
      : pre.querySelector("[data-md-type=copy], .md-clipboard");
    if (!copy) missing.push(block.textContent.slice(0, 60));
  }
  return missing;
}
"""


def _expects_math(html: str) -> bool:
    """Tell whether a page's static HTML contains TeX in the elements MathJax typesets."""
    soup = BeautifulSoup(html, "html.parser")
    for element in soup.select(".arithmatex, .jp-RenderedMarkdown, .jp-RenderedLatex"):
        for code in element.select("code, pre"):
            code.decompose()
        if re.search(r"\$|\\\(|\\\[", element.get_text()):
            return True
    return False


def _assert_clean(visit: Visit) -> None:
    assert visit.external_requests == [], "requests to other hosts"
    assert visit.failed_requests == [], "failed requests"
    assert visit.page_errors == [], "uncaught JavaScript errors"
    assert visit.console_errors == [], "console errors"


PAGES = nav_paths()


@pytest.mark.parametrize("path", PAGES, ids=[_slug(path) for path in PAGES])
def test_page_in_light_palette(browser, built_site: Path, site_url: str, path: str) -> None:
    html = (built_site / path / "index.html").read_text(encoding="utf-8")
    context, page, visit = _open(browser, site_url, path)
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"light-{_slug(path)}.png"), full_page=True)
        _assert_clean(visit)
        assert page.evaluate(BROKEN_IMAGES_JS) == [], "broken images"

        math_count = page.locator("mjx-container").count()
        if _expects_math(html):
            assert math_count > 0, "the page has TeX but MathJax typeset none of it"
        assert page.evaluate(LEFTOVER_TEX_JS) == [], "TeX left untypeset"
        assert page.locator("mjx-merror").count() == 0, "MathJax reported TeX errors"
        undefined_refs = [
            text for text in page.locator("mjx-container").all_text_contents() if "???" in text
        ]
        assert undefined_refs == [], "\\eqref to an undefined \\label"
        assert "$" not in page.title(), "TeX in the window title"

        assert page.evaluate(CODE_WITHOUT_COPY_JS) == [], "code blocks without a copy button"

        if "jupyter-wrapper" in html:
            _check_notebook_page(page, built_site, path)
    finally:
        context.close()


def _check_notebook_page(page, built_site: Path, path: str) -> None:
    download = page.locator("a.notebook-actions__download")
    assert download.count() == 1, "no download link"
    url = download.evaluate("link => link.href")
    notebook_name = url.rsplit("/", 1)[1]
    assert notebook_name.endswith(".ipynb")
    response = page.request.get(url)
    assert response.status == 200, f"download {url} returned {response.status}"
    notebook = json.loads(response.text())

    expected = [
        bool(cell.get("outputs")) for cell in notebook["cells"] if cell["cell_type"] == "code"
    ]
    page_outputs = page.evaluate(CODE_CELLS_JS)
    assert len(page_outputs) == len(expected), "code cells on the page differ from the notebook"
    assert page_outputs == expected, "outputs on the page differ from the notebook's"
    assert any(expected), "no code cell has an output"

    colab = page.locator("a.notebook-actions__colab")
    if colab.count():
        colab_href = colab.get_attribute("href")
        assert colab_href.startswith("https://colab.research.google.com/github/")
        colab_name = notebook_name.removesuffix(".ipynb") + ".colab.ipynb"
        assert colab_href.endswith(f"/blob/gh-pages/{path}{colab_name}")
        colab_copy = page.request.get(url.rsplit("/", 1)[0] + "/" + colab_name)
        assert colab_copy.status == 200, f"{colab_name} returned {colab_copy.status}"
        first_cell = json.loads(colab_copy.text())["cells"][0]
        assert "%pip install" in "".join(first_cell["source"])
        assert len(json.loads(colab_copy.text())["cells"]) == len(notebook["cells"]) + 1


@pytest.mark.parametrize("path", PAGES, ids=[_slug(path) for path in PAGES])
def test_page_in_dark_palette(browser, site_url: str, path: str) -> None:
    context, page, visit = _open(browser, site_url, path, color_scheme="dark")
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dark-{_slug(path)}.png"), full_page=True)
        _assert_clean(visit)
        scheme = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
        assert scheme == "slate"
        backgrounds = page.evaluate(
            """() => Array.from(document.querySelectorAll('.jp-OutputArea-output img'))
                 .map((image) => getComputedStyle(image).backgroundColor)"""
        )
        assert all(color == "rgb(255, 255, 255)" for color in backgrounds), backgrounds
    finally:
        context.close()


def test_instant_navigation_typesets_math(browser, built_site: Path, site_url: str) -> None:
    targets = [
        path
        for path in PAGES[1:]
        if _expects_math((built_site / path / "index.html").read_text(encoding="utf-8"))
    ]
    assert targets, "no page besides the first has math"
    target = targets[0]
    context, page, visit = _open(browser, site_url, PAGES[0])
    try:
        # Instant navigation intercepts only links listed in sitemap.xml, which
        # the theme fetches after the page has loaded.
        page.wait_for_load_state("networkidle")
        page.evaluate("window.hw2libSamePage = true")
        clicked = page.evaluate(
            """(url) => {
                 const links = document.querySelectorAll('.md-nav--primary a.md-nav__link');
                 const link = Array.from(links).find((candidate) => candidate.href === url);
                 if (!link) return false;
                 link.click();
                 return true;
               }""",
            site_url + target,
        )
        assert clicked, f"no navigation link to {target}"
        page.wait_for_url(site_url + target)
        _wait_for_typeset(page)
        assert page.evaluate("window.hw2libSamePage === true"), "the click reloaded the page"
        assert page.locator("mjx-container").count() > 0
        assert page.evaluate(LEFTOVER_TEX_JS) == []
        _assert_clean(visit)
    finally:
        context.close()


def test_search_finds_pages(browser, site_url: str) -> None:
    context, page, visit = _open(browser, site_url, "")
    try:
        # The search worker loads search_index.json after the page.
        page.wait_for_load_state("networkidle")
        page.locator(".md-search__input").click()
        page.keyboard.type("BatchNorm")
        results = page.locator(".md-search-result__item")
        results.first.wait_for(timeout=15_000)
        assert results.count() > 0
        page.screenshot(path=str(ARTIFACTS / "light-search.png"))
        _assert_clean(visit)
    finally:
        context.close()


FEATURE_NOTEBOOK = (
    NOTEBOOK_HEADER
    + r"""
# %% [markdown]
# # Equation features
#
# $$
# f(A, B) = \lVert X - AB \rVert_F^2 \tag{2.1} \label{eq:objective}
# $$

# %%
print("objective defined")

# %% [markdown]
# By \eqref{eq:objective} and $\eqref{eq:objective}$, $f \ge 0$.
#
# \begin{equation}
# g(x) = x^2 \label{eq:numbered}
# \end{equation}
#
# Equation \eqref{eq:numbered} is numbered automatically.

# %% [markdown] tags=["solution"]
# The solution: $x = 0$.

# %% tags=["solution"]
print("solution output")
"""
)

FEATURE_MARKDOWN = r"""# Markdown equations

$$
h(t) = e^{-t} \tag{7} \label{eq:decay}
$$

The decay law $\eqref{eq:decay}$ is cited here [@he2016deep].
"""


@pytest.fixture(scope="module")
def feature_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    project = make_project(
        tmp_path_factory.mktemp("browser-features"),
        {"index.md": FEATURE_MARKDOWN, "equations.py": FEATURE_NOTEBOOK},
    )
    completed = run_build(project)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with serve_directory(project / "site") as url:
        yield url


def _equation_references(page) -> list[tuple[str, str]]:
    """Return each typeset \\eqref as (link target, text read from its assistive MathML)."""
    return [
        (target, text)
        for target, text in page.evaluate(
            """() => Array.from(document.querySelectorAll('mjx-container'))
                 .filter((math) => math.querySelector('a[href^="#mjx-eqn"]'))
                 .map((math) => [
                   math.querySelector('a').getAttribute('href'),
                   math.querySelector('mjx-assistive-mml').textContent.trim(),
                 ])"""
        )
    ]


def test_eqref_in_notebook_cells(browser, feature_url: str) -> None:
    context, page, visit = _open(browser, feature_url, "equations/")
    try:
        _assert_clean(visit)
        assert _equation_references(page) == [
            ("#mjx-eqn%3Aeq%3Aobjective", "(2.1)"),
            ("#mjx-eqn%3Aeq%3Aobjective", "(2.1)"),
            ("#mjx-eqn%3Aeq%3Anumbered", "(1)"),
        ]
        assert page.evaluate(LEFTOVER_TEX_JS) == []
    finally:
        context.close()


def test_eqref_in_markdown_page(browser, feature_url: str) -> None:
    context, page, visit = _open(browser, feature_url, "")
    try:
        _assert_clean(visit)
        assert _equation_references(page) == [("#mjx-eqn%3Aeq%3Adecay", "(7)")]
        assert page.locator("a.citation").count() == 1
    finally:
        context.close()


def test_solution_folds_and_opens(browser, feature_url: str) -> None:
    context, page, visit = _open(browser, feature_url, "equations/")
    try:
        solution = page.locator("details.solution")
        assert solution.count() == 1
        output = solution.locator(".jp-OutputArea-output pre")
        assert not output.is_visible()
        solution.locator("summary").click()
        assert output.is_visible()
        assert solution.locator("mjx-container").count() == 1
        _assert_clean(visit)
    finally:
        context.close()
