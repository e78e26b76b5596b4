"""Shared fixtures: small MkDocs projects built for real, the chapter site, a local server.

Builds run ``python -m mkdocs build`` in a subprocess, exactly as
``nox -s docs`` does, with this repository's hooks, theme override and
assets. The chapter site is built once per test session; its pages come from
the execution cache under ``.cache/executed`` when earlier builds filled it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs"]
# Pages of a small project keep these shared files of the real docs folder.
SHARED_DOCS_FILES = ("javascripts", "stylesheets", "references.bib", "references.md")

NOTEBOOK_HEADER = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---
"""


def build_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def load_config() -> dict:
    # mkdocs.yml uses no custom YAML tags, so the safe loader reads it whole.
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def make_project(directory: Path, pages: Mapping[str, str], nav: list | None = None) -> Path:
    """Write a MkDocs project that uses the repository's configuration with other pages.

    ``pages`` maps paths under ``docs/`` to their text. The nav lists them in
    order (with the References page, which cited pages need) unless ``nav``
    is given. Hooks, the theme override and watched folders point back into
    the repository.
    """
    config = load_config()
    config["hooks"] = [str(ROOT / hook) for hook in config.get("hooks", [])]
    config["watch"] = [str(ROOT / path) for path in config.get("watch", [])]
    if "custom_dir" in config.get("theme", {}):
        config["theme"]["custom_dir"] = str(ROOT / config["theme"]["custom_dir"])
    if nav is None:
        nav = [{Path(name).stem: name} for name in pages]
        if "references.md" not in pages:
            nav.append({"References": "references.md"})
    config["nav"] = nav

    docs = directory / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name in SHARED_DOCS_FILES:
        source = ROOT / "docs" / name
        if source.is_dir():
            shutil.copytree(source, docs / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, docs / name)
    for name, text in pages.items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (directory / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def run_build(
    project: Path, site_dir: Path | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    """Run a strict MkDocs build of ``project`` and return the finished process."""
    site_dir = site_dir or project / "site"
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(site_dir)],
        cwd=project,
        env=build_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_report(project: Path) -> dict:
    """Return the execution report that the docs hook wrote for the last build of ``project``."""
    return json.loads((project / ".cache" / "executed" / "last-build.json").read_text())


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the repository's chapter once per session and return the site folder."""
    site = tmp_path_factory.mktemp("chapter-site") / "site"
    completed = run_build(ROOT, site, timeout=1800)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return site


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serve a built site; optionally rewrite sitemap.xml to the local address.

    Material's instant navigation (9.8) intercepts only links whose URL is
    in sitemap.xml, with the scheme and host replaced by the current ones but
    the port and path kept. MkDocs writes the published ``site_url`` there,
    so a site served on another port and path would reload on every click.
    """

    published_url: str | None = None

    def do_GET(self) -> None:
        if self.published_url and self.path.split("?")[0] == "/sitemap.xml":
            local_url = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}/"
            text = (Path(self.directory) / "sitemap.xml").read_text(encoding="utf-8")
            body = text.replace(self.published_url, local_url).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


class _LoopbackServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A browser that closes a connection mid-response (navigating away,
        # closing a context) is normal here and not worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve a built site over HTTP on 127.0.0.1 (a free port) and yield its base URL."""
    published_url = load_config().get("site_url")
    handler_class = type("Handler", (_SiteHandler,), {"published_url": published_url})
    handler = functools.partial(handler_class, directory=str(directory))
    server = _LoopbackServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def site_url(built_site: Path) -> Iterator[str]:
    """Base URL of the chapter site, served on the loopback interface."""
    with serve_directory(built_site) as url:
        yield url
