"""Measure the docs build: cold, unchanged rebuild, and rebuild after editing one page.

Run it with ``nox -s bench-docs`` (or ``python -m hw2lib.bench_docs``). It
copies ``docs/`` and ``mkdocs.yml`` into a temporary folder with an empty
execution cache, so the repository's own cache and site are left alone, and
runs three strict ``mkdocs build`` commands there:

1. cold: every notebook page is executed;
2. unchanged: nothing changed, so no page may be executed;
3. one page edited: a comment line is appended to one page, so exactly that
   page may be executed.

It prints the wall-clock time of each build with the pages the build
executed, and exits with status 1 when step 2 or 3 executed other pages than
expected. The times are reported against targets (60 s, 5 s and 60 s) but
never fail the run, because they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

TARGET_SECONDS = {"cold": 60.0, "unchanged": 5.0, "one page edited": 60.0}


@dataclass
class Measurement:
    step: str
    seconds: float
    executed: dict[str, str]
    cached: list[str]


def copy_project(destination: Path) -> Path:
    """Copy mkdocs.yml and docs/ into ``destination``, pointing repository paths back at ROOT."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["hooks"] = [str(ROOT / hook) for hook in config.get("hooks", [])]
    config["watch"] = [str(ROOT / path) for path in config.get("watch", [])]
    if "custom_dir" in config.get("theme", {}):
        config["theme"]["custom_dir"] = str(ROOT / config["theme"]["custom_dir"])
    shutil.copytree(ROOT / "docs", destination / "docs")
    (destination / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def run_build(project: Path, step: str) -> Measurement:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env.setdefault("MPLBACKEND", "Agg")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(project / "site")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"The {step} build failed (exit {completed.returncode}); output above.")
    report = json.loads((project / ".cache" / "executed" / "last-build.json").read_text())
    return Measurement(step, seconds, report["executed"], report["cached"])


def first_notebook_page(config_path: Path) -> str:
    """Return the first ``.py`` page in the nav, relative to docs/."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    stack = list(config.get("nav", []))
    while stack:
        item = stack.pop(0)
        values = item.values() if isinstance(item, dict) else [item]
        for value in values:
            if isinstance(value, list):
                stack[:0] = value
            elif isinstance(value, str) and value.endswith(".py"):
                return value
    raise SystemExit("mkdocs.yml's nav lists no .py notebook page to edit.")


def print_table(measurements: list[Measurement]) -> None:
    print()
    print(
        f"Docs build benchmark on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(f"{'step':<18} {'seconds':>8} {'target':>7}  executed pages")
    for item in measurements:
        target = TARGET_SECONDS[item.step]
        flag = "" if item.seconds <= target else "  (over target)"
        executed = ", ".join(sorted(item.executed)) or "none"
        if len(item.executed) > 3:
            executed = f"{len(item.executed)} pages"
        print(f"{item.step:<18} {item.seconds:8.1f} {target:7.0f}  {executed}{flag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--page",
        help="page to edit in step 3, relative to docs/ (default: the first .py page in the nav)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary project and print its path"
    )
    args = parser.parse_args(argv)

    workspace = Path(tempfile.mkdtemp(prefix="hw2lib-bench-docs-"))
    try:
        project = copy_project(workspace / "project")
        page = args.page or first_notebook_page(project / "mkdocs.yml")
        measurements = [run_build(project, "cold")]
        measurements.append(run_build(project, "unchanged"))
        edited = project / "docs" / page
        with edited.open("a", encoding="utf-8") as handle:
            handle.write("\n# benchmark edit: this comment changes the page's bytes only\n")
        measurements.append(run_build(project, "one page edited"))
    finally:
        if args.keep:
            print(f"Kept the benchmark project in {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)

    print_table(measurements)
    problems = []
    if measurements[1].executed:
        problems.append(f"the unchanged rebuild executed {sorted(measurements[1].executed)}")
    if sorted(measurements[2].executed) != [page]:
        problems.append(
            f"editing {page} executed {sorted(measurements[2].executed)} instead of only that page"
        )
    for problem in problems:
        print(f"FAILED: {problem}")
    for item in measurements[1:]:
        for page_name, reason in sorted(item.executed.items()):
            print(f"  {item.step}: {page_name} ({reason})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
