"""Execute the chapter's notebook pages, with a cache that notices every input.

Each page is a jupytext percent-format ``.py`` file. :func:`execute_pages`
runs the pages whose inputs changed and stores the executed notebooks as
``.ipynb`` files in a cache folder; mkdocs-jupyter then renders those
without executing anything.

A page's cache key is a SHA-256 over:

* the page's own bytes;
* every ``.py`` file of the ``hw2lib`` package, because pages import it;
* the results files under ``docs/results/`` when the page's source mentions
  ``results`` (the pages that show frozen experiment outputs all do);
* the Python version and the versions of the packages that shape outputs.

So an edit to ``hw2lib`` re-executes every page, an edit to one page
re-executes only that page, and an unchanged tree executes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

# Bumped when the way outputs are produced changes without any input changing.
CACHE_FORMAT = "1"

KEY_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "sympy",
    "matplotlib",
    "scikit-image",
    "nbclient",
    "ipykernel",
    "jupytext",
)

CELL_MARKER = re.compile(r"^# %%")


class NotebookExecutionError(RuntimeError):
    """A cell of a chapter page raised while the page was executed."""

    def __init__(self, page: str, cell: int, line: int, error: str) -> None:
        self.page = page
        self.cell = cell
        self.line = line
        self.error = error
        super().__init__(f"{page}: cell {cell} (starting at line {line}) raised {error}")


@dataclass(frozen=True)
class PageResult:
    """What happened to one page: where its executed notebook is and whether it ran."""

    source: Path
    executed: Path
    ran: bool
    seconds: float


def _sha256_files(paths: Iterable[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Return the Python version and the installed versions of :data:`KEY_PACKAGES`."""
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def library_digest(library_dir: Path) -> str:
    """Hash every ``.py`` file under the library folder."""
    return _sha256_files(library_dir.rglob("*.py"), library_dir)


def results_digest(results_dir: Path) -> str:
    """Hash every file under the results folder (an absent folder hashes as empty)."""
    if not results_dir.is_dir():
        return hashlib.sha256(b"no results").hexdigest()
    files = [path for path in results_dir.rglob("*") if path.is_file()]
    return _sha256_files(files, results_dir)


def page_reads_results(page: Path) -> bool:
    """Tell whether a page's source mentions the results folder or module."""
    return "results" in page.read_text(encoding="utf-8")


def cache_key(
    page: Path, *, library: str, results: str, versions: dict[str, str]
) -> str:
    """Combine a page's bytes with the digests of everything it depends on."""
    digest = hashlib.sha256()
    digest.update(f"format={CACHE_FORMAT}\0".encode())
    digest.update(page.read_bytes())
    digest.update(f"\0library={library}\0".encode())
    if page_reads_results(page):
        digest.update(f"results={results}\0".encode())
    digest.update(json.dumps(versions, sort_keys=True).encode())
    return digest.hexdigest()


def cell_start_lines(page: Path) -> list[int]:
    """Return the 1-based line number of each ``# %%`` cell marker, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return [number for number, text in enumerate(lines, start=1) if CELL_MARKER.match(text)]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(text)
        temporary = Path(handle.name)
    temporary.replace(path)


def execute_page(page: Path, *, display_name: str, cwd: Path, timeout: int) -> str:
    """Execute one page and return the executed notebook as ``.ipynb`` JSON text.

    Raises :class:`NotebookExecutionError` naming the page, the cell and the
    cell's first line when a cell raises.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from jupyter_client.manager import KernelManager

    notebook = jupytext.read(page)
    # IPC sockets keep the kernel's traffic off TCP, even on loopback. Their
    # socket files go to a private folder that is removed afterwards.
    socket_dir = tempfile.mkdtemp(prefix="hw2lib-kernel-")
    kernel_manager = KernelManager(
        kernel_name="python3", transport="ipc", ip=os.path.join(socket_dir, "kernel")
    )
    client = NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as error:
        index = _failed_cell_index(notebook)
        starts = cell_start_lines(page)
        line = starts[index] if index is not None and index < len(starts) else 0
        cell_number = index + 1 if index is not None else 0
        summary = _error_summary(notebook, index, error)
        raise NotebookExecutionError(display_name, cell_number, line, summary) from None
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    return nbformat.writes(notebook)


def _failed_cell_index(notebook) -> int | None:
    # The client stops at the first failing cell, so the last code cell with an
    # execution count or an error output is the one that raised.
    failed = None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return index
        if cell.get("execution_count") is not None or "execution" in cell.get("metadata", {}):
            failed = index
    return failed


def _error_summary(notebook, index: int | None, error: Exception) -> str:
    if index is not None:
        for output in notebook.cells[index].get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def execute_pages(
    pages: Sequence[Path],
    *,
    docs_dir: Path,
    cache_dir: Path,
    library_dir: Path,
    cwd: Path,
    workers: int | None = None,
    timeout: int = 600,
) -> list[PageResult]:
    """Execute the stale pages in parallel and return one result per page, in order.

    A page is stale when no executed notebook is cached for it under its
    current cache key. Executed notebooks are written atomically, so an
    interrupted build leaves either the old or the new notebook, never half
    of one. Raises :class:`NotebookExecutionError` for the first failing page.
    """
    versions = package_versions()
    library = library_digest(library_dir)
    results = results_digest(docs_dir / "results")

    plans = []
    for page in pages:
        relative = page.relative_to(docs_dir)
        executed = (cache_dir / relative).with_suffix(".ipynb")
        key_file = executed.with_suffix(".key")
        key = cache_key(page, library=library, results=results, versions=versions)
        fresh = executed.exists() and key_file.exists() and key_file.read_text() == key
        plans.append((page, relative, executed, key_file, key, fresh))

    stale = [plan for plan in plans if not plan[5]]
    if workers is None:
        workers = max(1, min(len(stale), os.cpu_count() or 1))
    # Each kernel gets an equal share of the cores, so parallel pages do not
    # oversubscribe the machine with torch's default of one thread per core.
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    def run(plan) -> tuple[Path, float]:
        page, relative, executed, key_file, key, _ = plan
        started = time.perf_counter()
        logger.info("Executing %s", relative.as_posix())
        text = execute_page(page, display_name=f"docs/{relative.as_posix()}", cwd=cwd, timeout=timeout)
        _write_atomically(executed, text)
        _write_atomically(key_file, key)
        seconds = time.perf_counter() - started
        logger.info("Executed %s in %.1f s", relative.as_posix(), seconds)
        return page, seconds

    timings: dict[Path, float] = {}
    if stale:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for page, seconds in pool.map(run, stale):
                timings[page] = seconds

    return [
        PageResult(
            source=page,
            executed=executed,
            ran=page in timings,
            seconds=timings.get(page, 0.0),
        )
        for page, _, executed, _, _, _ in plans
    ]
