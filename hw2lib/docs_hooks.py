"""MkDocs hooks that execute the chapter's pages and serve MathJax from the site.

mkdocs.yml loads this file with ``hooks:``. MkDocs runs hooks after the
plugins for each event, so :func:`on_files` sees the pages that mkdocs-jupyter
has already claimed as notebooks. It executes the stale ones through
:mod:`hw2lib.notebooks` and points each page at its executed ``.ipynb``;
mkdocs-jupyter, configured with ``execute: false``, only renders it.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

from hw2lib import notebooks

logger = logging.getLogger("mkdocs.hooks.hw2lib")

MATHJAX_VERSION = "3.2.2"
# Parts of MathJax's es5 bundle that tex-chtml.js loads at run time.
MATHJAX_PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y")

# mkdocs-jupyter's template adds a MathJax 2 script to every notebook page.
# The site loads MathJax 3 once for all pages, so that block is removed.
NOTEBOOK_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)

_state: dict[str, object] = {}


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    root = _root(config)
    _state["root"] = root
    _state["cache_dir"] = root / ".cache" / "executed"
    _state["vendor_dir"] = root / ".cache" / "vendor"
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root: Path = _state["root"]  # type: ignore[assignment]
    docs_dir = Path(config.docs_dir).resolve()
    notebook_files = [
        file
        for file in files
        if type(file).__name__ == "NotebookFile" and file.src_path.endswith(".py")
    ]
    pages = [Path(file.abs_src_path) for file in notebook_files]
    try:
        results = notebooks.execute_pages(
            pages,
            docs_dir=docs_dir,
            cache_dir=_state["cache_dir"],  # type: ignore[arg-type]
            library_dir=Path(notebooks.__file__).resolve().parent,
            cwd=root,
        )
    except notebooks.NotebookExecutionError as error:
        raise PluginError(f"Executing a chapter page failed: {error}") from None

    ran = [result for result in results if result.ran]
    logger.info(
        "Chapter pages: %d executed, %d taken from the cache", len(ran), len(results) - len(ran)
    )
    _state["executed_pages"] = [result.source.relative_to(docs_dir).as_posix() for result in ran]
    by_source = {result.source: result.executed for result in results}
    for file in notebook_files:
        # NotebookFile forwards attribute reads to the File it wraps, so this
        # assignment changes only what mkdocs-jupyter renders (and offers for
        # download); the page keeps its URL and its .py source for MkDocs.
        file.abs_src_path = str(by_source[Path(file.abs_src_path)])
    return files


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return NOTEBOOK_MATHJAX.sub("", html)


def _mathjax_source(vendor_dir: Path) -> Path:
    es5 = vendor_dir / "node_modules" / "mathjax" / "es5"
    stamp = vendor_dir / "node_modules" / "mathjax" / "package.json"
    if es5.is_dir() and f'"version": "{MATHJAX_VERSION}"' in stamp.read_text(encoding="utf-8"):
        return es5
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            "npm not found: the site serves MathJax from its own files and installs it "
            f"with npm. Install Node.js and npm, or unpack mathjax@{MATHJAX_VERSION} "
            f"into {vendor_dir / 'node_modules' / 'mathjax'}."
        )
    vendor_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Installing mathjax@%s from the npm registry into %s", MATHJAX_VERSION, vendor_dir)
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(vendor_dir),
               f"mathjax@{MATHJAX_VERSION}"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not es5.is_dir():
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
