"""Sessions for building the chapter, testing hw2lib and running the experiments.

All sessions share one virtual environment, ``.nox/shared``. torch with
torchvision is a 5-6 GB install, and nox's default of one environment per
session would copy it once for every session and reinstall it whenever a
session is recreated. The shared environment is built on first use and
rebuilt only when ``pyproject.toml`` changes (a hash of it is stored next to
the environment), so a warm ``nox -s docs`` or ``nox -s tests`` starts at once.

Set ``HW2LIB_ENV`` to use an environment somewhere else, for example one that
several clones share.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
SHARED_ENV = Path(os.environ.get("HW2LIB_ENV", ROOT / ".nox" / "shared"))
EXTRAS = "docs,test"

nox.options.sessions = ["docs", "tests"]
nox.options.default_venv_backend = "none"


def _requirements_hash() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(EXTRAS.encode())
    return digest.hexdigest()


def shared_env(session: nox.Session) -> dict[str, str]:
    """Create or update the shared environment and return the variables that activate it."""
    bin_dir = SHARED_ENV / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / "python"
    stamp = SHARED_ENV / "requirements.sha256"
    expected_hash = _requirements_hash()

    if not python.exists():
        session.log(f"Creating the shared environment in {SHARED_ENV}")
        session.run(sys.executable, "-m", "venv", str(SHARED_ENV), external=True)
    if not stamp.exists() or stamp.read_text().strip() != expected_hash:
        session.log("Installing hw2lib and its dependencies into the shared environment")
        session.run(str(python), "-m", "pip", "install", "--upgrade", "pip", external=True)
        session.run(str(python), "-m", "pip", "install", "-e", f".[{EXTRAS}]", external=True)
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(expected_hash + "\n")
        tmp.replace(stamp)

    return {
        "VIRTUAL_ENV": str(SHARED_ENV),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # Pages plot with matplotlib; a file backend needs no display.
        "MPLBACKEND": "Agg",
        # MkDocs 1.6 prints a banner about its successor on every build.
        "NO_MKDOCS_2_WARNING": "1",
    }


def _run(session: nox.Session, env: dict[str, str], program: str, *args: str) -> None:
    # nox looks programs up on its own PATH, not on the PATH in ``env``, so the
    # shared environment's executables are resolved to full paths here.
    resolved = shutil.which(program, path=env["PATH"]) or program
    session.run(resolved, *args, env=env, external=True)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site into site/, executing every notebook page (fails on any error)."""
    env = shared_env(session)
    _run(session, env, "mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Preview the site with live reload at http://127.0.0.1:8000/ plus the site_url path."""
    env = shared_env(session)
    _run(session, env, "mkdocs", "serve", "--dev-addr", "127.0.0.1:8000", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; extra arguments go to pytest (e.g. nox -s tests -- -k lowrank)."""
    env = shared_env(session)
    _run(session, env, "python", "-m", "pytest", *session.posargs)


@nox.session
def experiments(session: nox.Session) -> None:
    """Run experiments and write their results (docs/results/; smoke runs: .cache/smoke-results/).

    Example: ``nox -s experiments -- run all --preset gpu --download``.
    Without arguments, lists the experiments and presets. Arguments go to
    ``python -m hw2lib.experiments``; ``-- run --help`` describes them.
    """
    env = shared_env(session)
    _run(session, env, "python", "-m", "hw2lib.experiments", *(session.posargs or ["list"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Compare the trainer's images/s with a DataLoader of per-image transforms (not a test)."""
    env = shared_env(session)
    _run(session, env, "python", "-m", "hw2lib.bench", *session.posargs)


@nox.session(name="bench-docs")
def bench_docs(session: nox.Session) -> None:
    """Time a cold docs build, an unchanged rebuild and a rebuild after editing one page."""
    env = shared_env(session)
    _run(session, env, "python", "-m", "hw2lib.bench_docs", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check formatting and lint rules with ruff (configured in pyproject.toml)."""
    env = shared_env(session)
    _run(session, env, "ruff", "format", "--check", "hw2lib", "tests", "docs", "noxfile.py")
    _run(session, env, "ruff", "check", "hw2lib", "tests", "docs", "noxfile.py")


@nox.session(name="clean-env")
def clean_env(session: nox.Session) -> None:
    """Delete the shared environment so that the next session rebuilds it."""
    if SHARED_ENV.exists():
        shutil.rmtree(SHARED_ENV)
        session.log(f"Removed {SHARED_ENV}")
