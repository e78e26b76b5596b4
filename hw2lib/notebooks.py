"""Execute the chapter's notebook pages, with a cache that records what each page read.

Each page is a jupytext percent-format ``.py`` file. :func:`execute_pages`
runs the pages whose inputs changed and stores the executed notebooks as
``.ipynb`` files in a cache folder. mkdocs-jupyter then renders those
without executing anything.

While a page runs, an audit hook inside its kernel (:data:`KERNEL_TRACKER`)
records every file the page opens for reading and every folder it lists, and
a last, removed cell collects the files of all imported modules. After the
run, the inputs that lie under the tracked roots (the project folder and the
``hw2lib`` package folder) are stored in a manifest next to the executed
notebook, each with a SHA-256 of its contents. A page is executed again when

* its own bytes changed;
* a recorded input changed, disappeared, or a listed folder gained or lost
  an entry (so an edit to ``hw2lib/lowrank.py`` re-executes exactly the
  pages that imported it, and a new file in ``docs/results/`` re-executes the
  pages that listed that folder);
* the Python version, a version in :data:`KEY_PACKAGES` or an ``HW2LIB_*``
  environment variable changed, or :data:`CACHE_FORMAT` was bumped.

Files under ``.nox``, ``.cache``, ``.git``, ``node_modules``, the Python
environment and the files a page itself wrote are not inputs. An unchanged
tree executes nothing.

NOTE: only reads made through Python's ``open``/``io.open_code``/``os.open``
and listings made through ``os.listdir``/``os.scandir`` raise the audit
events that the tracker sees. A C extension that opens a project file by
itself would go unnoticed. Listings of folders on ``sys.path`` (the project
folder included) are never inputs, because the import machinery makes them
on every import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

# Bumped when the way outputs are produced changes without any input changing.
CACHE_FORMAT = "3"

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

# Folder names whose files never count as page inputs: environments, caches
# and version control. A page that reads a file there still runs correctly;
# a change to that file just does not re-execute it.
IGNORED_FOLDER_NAMES = frozenset(
    {".nox", ".cache", ".git", "node_modules", ".venv", "venv", ".tox", "__pycache__"}
)

CELL_MARKER = re.compile(r"^# %%")

# HW2LIB_* variables that do not change what a page computes: the noxfile's
# choice of where the shared environment lives.
UNTRACKED_SETTINGS = frozenset({"HW2LIB_ENV"})

# Runs in the page's kernel before the first cell (IPython's exec_files), so
# it is not a cell and takes no execution count. Everything lives inside a
# function, so the page's namespace gets no names from it.
KERNEL_TRACKER = """\
def _hw2lib_track_inputs():
    import importlib
    import os
    import sys
    import types

    importlib_dir = os.path.dirname(importlib.__file__) + os.sep

    state = types.ModuleType("_hw2lib_inputs")
    state.reads = set()
    state.writes = set()
    state.listings = set()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, bytes)):
                return
            if mode:
                writing = any(letter in mode for letter in "wax+")
            else:
                writing = bool(flags & write_flags)
            target = state.writes if writing else state.reads
            target.add(os.path.abspath(os.fsdecode(path)))
        elif event in ("os.listdir", "os.scandir"):
            # The import system and importlib.metadata list the folders on
            # sys.path (the project folder among them) to find modules and
            # package metadata. Those listings are not the page's inputs; the
            # imported modules are recorded instead.
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith("<frozen importlib") or caller.startswith(importlib_dir):
                return
            path = args[0]
            if path is None:
                path = "."
            if not isinstance(path, (str, bytes)):
                return
            path = os.path.abspath(os.fsdecode(path))
            if path in {os.path.abspath(entry) for entry in sys.path if isinstance(entry, str)}:
                return
            state.listings.add(path)

    sys.modules["_hw2lib_inputs"] = state
    sys.addaudithook(audit)


_hw2lib_track_inputs()
del _hw2lib_track_inputs
"""

# Appended as the last cell and removed from the executed notebook. It writes
# what the tracker saw, plus the imported modules' files, to a JSON file.
KERNEL_REPORT = """\
def _hw2lib_report_inputs(destination):
    import json
    import sys

    state = sys.modules["_hw2lib_inputs"]
    modules = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            modules.add(path)
    report = {
        "reads": sorted(state.reads),
        "writes": sorted(state.writes),
        "listings": sorted(state.listings),
        "modules": sorted(modules),
    }
    with open(destination, "w", encoding="utf-8") as handle:
        json.dump(report, handle)


_hw2lib_report_inputs(DESTINATION)
del _hw2lib_report_inputs
"""


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
    """Outcome of one page in a build: its executed notebook, whether it ran, and why."""

    source: Path
    executed: Path
    ran: bool
    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class PageInputs:
    """The files and folders one execution of a page read, as reported by its kernel."""

    files: tuple[Path, ...]
    folders: tuple[Path, ...]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(path: Path) -> str:
    """Hash the sorted entry names of a folder (a listing, not the entries' contents)."""
    names = sorted(entry.name for entry in os.scandir(path))
    return sha256_bytes("\0".join(names).encode())


def package_versions() -> dict[str, str]:
    """Return the Python version and the installed versions of :data:`KEY_PACKAGES`."""
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment_digest(versions: dict[str, str]) -> str:
    """Hash the cache format, the package versions and the ``HW2LIB_*`` variables.

    ``HW2LIB_*`` variables choose data that pages read from outside the
    tracked roots (``HW2LIB_CIFAR10_JPEG`` picks the image folder of 1(a)),
    so setting or changing one re-executes every page.
    """
    settings = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("HW2LIB_") and name not in UNTRACKED_SETTINGS
    }
    payload = json.dumps({"versions": versions, "settings": settings}, sort_keys=True)
    return sha256_bytes(f"format={CACHE_FORMAT}\0{payload}".encode())


def default_tracked_roots(project_root: Path) -> list[Path]:
    """Return the project folder and the folder of the ``hw2lib`` package.

    The package folder is listed separately because a build of a copied docs
    tree (the tests and the benchmark do that) imports ``hw2lib`` from outside
    the copy.
    """
    package_dir = Path(__file__).resolve().parent
    roots = [project_root.resolve()]
    if not package_dir.is_relative_to(roots[0]):
        roots.append(package_dir)
    return roots


def _environment_folders() -> list[Path]:
    # Only the environment's own folders: a system Python's prefix (often
    # /usr) could contain the project itself.
    folders = set()
    if sys.prefix != sys.base_prefix:
        folders.add(Path(sys.prefix).resolve())
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        location = sysconfig.get_paths().get(key)
        if location:
            folders.add(Path(location).resolve())
    return sorted(folders)


class InputFilter:
    """Decide which paths a kernel reported are page inputs, and name them in manifests."""

    def __init__(self, roots: Sequence[Path], excluded: Sequence[Path] = ()) -> None:
        self.roots = [root.resolve() for root in roots]
        self.excluded = [path.resolve() for path in excluded] + _environment_folders()

    def accepts(self, path: Path) -> bool:
        root = self._root_of(path)
        if root is None:
            return False
        if any(path.is_relative_to(folder) for folder in self.excluded):
            return False
        return not IGNORED_FOLDER_NAMES.intersection(path.relative_to(root).parts)

    def _root_of(self, path: Path) -> Path | None:
        for root in self.roots:
            if path == root or path.is_relative_to(root):
                return root
        return None

    def name(self, path: Path) -> str:
        """Return ``path`` relative to its tracked root, prefixed with the root's index."""
        root = self._root_of(path)
        assert root is not None, path
        return f"{self.roots.index(root)}:{path.relative_to(root).as_posix()}"

    def resolve(self, name: str) -> Path:
        index, _, relative = name.partition(":")
        return self.roots[int(index)] / relative


def _source_of(path: Path) -> Path:
    """Map a cached ``__pycache__/*.pyc`` file to the module source it was compiled from."""
    if path.suffix == ".pyc" and path.parent.name == "__pycache__":
        try:
            return Path(importlib.util.source_from_cache(str(path)))
        except ValueError:
            return path
    return path


def collect_inputs(report: dict[str, list[str]], input_filter: InputFilter) -> PageInputs:
    """Turn a kernel's report into the set of inputs to record for the page."""
    written = {Path(path).resolve() for path in report["writes"]}
    files: set[Path] = set()
    for raw in [*report["reads"], *report["modules"]]:
        path = _source_of(Path(raw)).resolve()
        if path in written or not path.is_file():
            continue
        if input_filter.accepts(path):
            files.add(path)
    folders = set()
    for raw in report["listings"]:
        path = Path(raw).resolve()
        if path.is_dir() and input_filter.accepts(path):
            folders.add(path)
    return PageInputs(files=tuple(sorted(files)), folders=tuple(sorted(folders)))


def build_manifest(
    page: Path, inputs: PageInputs, *, environment: str, input_filter: InputFilter
) -> dict:
    """Describe one execution of a page: its digest, the environment and every input's digest."""
    recorded = {}
    for path in inputs.files:
        recorded[f"file {input_filter.name(path)}"] = sha256_file(path)
    for path in inputs.folders:
        recorded[f"folder {input_filter.name(path)}"] = folder_digest(path)
    return {
        "format": CACHE_FORMAT,
        "page": sha256_file(page),
        "environment": environment,
        # Names are relative to the tracked roots, so a moved checkout (or a
        # cache restored into another path) keeps its cached runs.
        "root_count": len(input_filter.roots),
        "inputs": recorded,
    }


class DigestMemo:
    """Digests of files and folders, computed once per build and shared across pages."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, Path], str | None] = {}

    def get(self, kind: str, path: Path) -> str | None:
        key = (kind, path)
        if key not in self._values:
            self._values[key] = self._compute(kind, path)
        return self._values[key]

    @staticmethod
    def _compute(kind: str, path: Path) -> str | None:
        try:
            if kind == "file":
                return sha256_file(path) if path.is_file() else None
            return folder_digest(path) if path.is_dir() else None
        except OSError:
            return None


def staleness_reason(
    page: Path,
    manifest: dict | None,
    *,
    environment: str,
    input_filter: InputFilter,
    memo: DigestMemo,
) -> str | None:
    """Return why a page must run again, or ``None`` when its cached run is still valid."""
    if manifest is None:
        return "no cached run"
    if manifest.get("format") != CACHE_FORMAT:
        return "cache format changed"
    if manifest.get("environment") != environment:
        return "Python or package versions changed"
    if manifest.get("root_count") != len(input_filter.roots):
        return "tracked folders changed"
    if manifest.get("page") != memo.get("file", page.resolve()):
        return "page changed"
    for entry, recorded in sorted(manifest.get("inputs", {}).items()):
        kind, _, name = entry.partition(" ")
        try:
            path = input_filter.resolve(name)
        except (ValueError, IndexError):
            return "cache manifest invalid"
        if memo.get(kind, path) != recorded:
            return f"{kind} {name.partition(':')[2]} changed"
    return None


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


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def kernel_environment(threads: int) -> dict[str, str]:
    """Return the environment for a page's kernel.

    Figures are part of a page's output, so the kernel always gets the inline
    matplotlib backend, whatever ``MPLBACKEND`` the build runs under (the nox
    sessions set ``Agg`` for the test suite). ``OMP_NUM_THREADS`` gives each
    parallel kernel its share of the cores.
    """
    environment = dict(os.environ)
    environment["MPLBACKEND"] = INLINE_BACKEND
    environment["OMP_NUM_THREADS"] = str(threads)
    return environment


def execute_page(
    page: Path, *, display_name: str, cwd: Path, timeout: int, threads: int = 1
) -> tuple[str, dict[str, list[str]]]:
    """Execute one page and return the executed ``.ipynb`` JSON text and the kernel's input report.

    Raises :class:`NotebookExecutionError` naming the page, the cell and the
    cell's first line when a cell raises.
    """
    import jupytext
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    notebook = jupytext.read(page)
    page_cells = len(notebook.cells)
    # IPC sockets keep the kernel's traffic off TCP, even on loopback. Their
    # socket files, the tracker script and the input report go to a private
    # folder that is removed afterwards.
    work_dir = Path(tempfile.mkdtemp(prefix="hw2lib-kernel-"))
    tracker = work_dir / "track_inputs.py"
    tracker.write_text(KERNEL_TRACKER, encoding="utf-8")
    report_path = work_dir / "inputs.json"
    notebook.cells.append(
        nbformat.v4.new_code_cell(KERNEL_REPORT.replace("DESTINATION", repr(str(report_path))))
    )
    kernel_manager = KernelManager(
        kernel_name="python3", transport="ipc", ip=str(work_dir / "kernel")
    )
    client = NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        extra_arguments=[f"--IPKernelApp.exec_files={tracker}"],
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute(env=kernel_environment(threads))
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (CellExecutionError, CellTimeoutError) as error:
        index = _failed_cell_index(notebook)
        starts = cell_start_lines(page)
        line = starts[index] if index is not None and index < len(starts) else 0
        cell_number = index + 1 if index is not None else 0
        summary = _error_summary(notebook, index, error)
        raise NotebookExecutionError(display_name, cell_number, line, summary) from None
    finally:
        # nbclient leaves a kernel it did not start (km= given) running, so it
        # is shut down here; otherwise each page's kernel lives until MkDocs exits.
        if kernel_manager.has_kernel:
            kernel_manager.shutdown_kernel(now=False)
        shutil.rmtree(work_dir, ignore_errors=True)
    del notebook.cells[page_cells:]
    return nbformat.writes(notebook), report


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


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Plan:
    page: Path
    relative: Path
    executed: Path
    manifest: Path
    reason: str | None


def execute_pages(
    pages: Sequence[Path],
    *,
    docs_dir: Path,
    cache_dir: Path,
    cwd: Path,
    tracked_roots: Iterable[Path] | None = None,
    workers: int | None = None,
    timeout: int = 600,
) -> list[PageResult]:
    """Execute the stale pages in parallel and return one result per page, in order.

    ``tracked_roots`` are the folders whose files count as page inputs; they
    default to :func:`default_tracked_roots` of ``cwd``. A page is stale when
    :func:`staleness_reason` gives a reason. Executed notebooks and manifests
    are written atomically, the notebook first, so an interrupted build leaves
    a notebook whose manifest (old or missing) marks it stale, never half a
    file. Raises :class:`NotebookExecutionError` for the first failing page.
    """
    roots = list(tracked_roots) if tracked_roots is not None else default_tracked_roots(cwd)
    input_filter = InputFilter(roots, excluded=[cache_dir])
    environment = environment_digest(package_versions())
    memo = DigestMemo()

    plans = []
    for page in pages:
        relative = page.relative_to(docs_dir)
        executed = (cache_dir / relative).with_suffix(".ipynb")
        manifest_path = executed.with_suffix(".inputs.json")
        manifest = _read_manifest(manifest_path) if executed.exists() else None
        reason = staleness_reason(
            page, manifest, environment=environment, input_filter=input_filter, memo=memo
        )
        plans.append(_Plan(page, relative, executed, manifest_path, reason))

    stale = [plan for plan in plans if plan.reason is not None]
    if workers is None:
        workers = max(1, min(len(stale), os.cpu_count() or 1))
    # Each kernel gets an equal share of the cores, so parallel pages do not
    # oversubscribe the machine with torch's default of one thread per core.
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))

    def run(plan: _Plan) -> tuple[Path, float]:
        started = time.perf_counter()
        name = plan.relative.as_posix()
        logger.info("Executing %s (%s)", name, plan.reason)
        text, report = execute_page(
            plan.page, display_name=f"docs/{name}", cwd=cwd, timeout=timeout, threads=threads
        )
        inputs = collect_inputs(report, input_filter)
        manifest = build_manifest(
            plan.page, inputs, environment=environment, input_filter=input_filter
        )
        _write_atomically(plan.executed, text)
        _write_atomically(plan.manifest, json.dumps(manifest, indent=1, sort_keys=True))
        seconds = time.perf_counter() - started
        logger.info("Executed %s in %.1f s", name, seconds)
        return plan.page, seconds

    timings: dict[Path, float] = {}
    if stale:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for page, seconds in pool.map(run, stale):
                timings[page] = seconds

    return [
        PageResult(
            source=plan.page,
            executed=plan.executed,
            ran=plan.page in timings,
            seconds=timings.get(plan.page, 0.0),
            reason=plan.reason or "",
        )
        for plan in plans
    ]
