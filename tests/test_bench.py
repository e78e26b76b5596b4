"""The speed benchmark's command line on a tiny ImageFolder: both ways run and print a ratio."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hw2lib import bench
from tests.test_data import make_imagefolder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    make_imagefolder(root / "data", per_class=4)
    return root


def _args(folder: Path, *extra: str) -> list[str]:
    return [
        "--data-dir",
        str(folder / "data"),
        "--cache-dir",
        str(folder / "cache"),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--width",
        "2",
        "--threads",
        "1",
        "--workers",
        "0",
        *extra,
    ]


def test_bench_prints_both_ways_and_ratios(folder: Path, capsys) -> None:
    assert bench.main(_args(folder, "--precision", "float32,bfloat16")) == 0
    output = capsys.readouterr().out
    assert "width 2; batch 8; 2 steps; device cpu, 1 torch threads" in output
    baseline = r"DataLoader, ImageFolder, per-image transforms, float32, 0 workers: +\d"
    assert re.search(baseline, output)
    for precision in ("float32", "bfloat16"):
        line = next(row for row in output.splitlines() if row.startswith(f"trainer, {precision}:"))
        ratio = re.search(r"(\d+\.\d\d)x over 0 workers", line)
        assert ratio is not None, line
        assert float(ratio.group(1)) > 0


def test_bench_rejects_unknown_precision(folder: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(_args(folder, "--precision", "float32,fp8"))
    assert exit_info.value.code == 2
    assert "--precision takes auto, float32, bfloat16" in capsys.readouterr().err


def test_bench_missing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    assert bench.main(["--data-dir", str(tmp_path / "absent"), "--workers", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ")
    assert str(tmp_path / "absent") in error
    assert "\n" not in error
