"""The smoke preset end to end, the results files it writes, the site helpers and the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw2lib import results
from hw2lib.experiments import EXPERIMENTS, RunOptions, run_experiment
from hw2lib.experiments.runner import factorization_descent, noisy_low_rank_matrix

PROVENANCE_KEYS = {
    "git_commit",
    "git_dirty",
    "hardware",
    "torch",
    "torchvision",
    "python",
    "started_at",
    "wall_time_s",
    "command",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """Run every experiment with the smoke preset once; return the results folder."""
    root = tmp_path_factory.mktemp("smoke")
    options = RunOptions(
        preset="smoke",
        results_dir=root / "results",
        checkpoint_dir=root / "checkpoints",
        device="cpu",
        num_threads=1,
        progress=False,
    )
    for name in EXPERIMENTS:
        run_experiment(name, options)
    return root / "results"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_smoke_writes_every_result(smoke: Path) -> None:
    files = sorted(p.relative_to(smoke).as_posix() for p in smoke.rglob("*.json"))
    expected = []
    for name, experiment in EXPERIMENTS.items():
        configurations = list(experiment.configurations) or (
            ["bn_mode"] if name == "e3" else ["n32", "n64"]
        )
        for configuration in configurations:
            for seed in (0, 1):
                expected.append(f"smoke/{name}/{configuration}-seed{seed}.json")
    assert files == sorted(expected)
    assert not list(smoke.rglob("*.tmp"))


def test_training_result_has_provenance(smoke: Path) -> None:
    result = _load(smoke / "smoke" / "e1" / "after_relu-seed1.json")
    assert result["schema"] == results.SCHEMA_VERSION
    assert result["experiment"] == "e1"
    assert result["configuration"] == "after_relu"
    assert result["preset"] == "smoke"
    assert result["seed"] == 1
    assert result["status"] == "ok"
    assert result["config"]["norm_position"] == "after_relu"
    assert result["dataset"]["variant"] == "synthetic"
    assert result["dataset"]["train_images"] == 512
    assert PROVENANCE_KEYS <= set(result["provenance"])
    assert result["provenance"]["hardware"]["device"] == "cpu"
    assert result["provenance"]["hardware"]["num_threads"] == 1
    assert len(result["provenance"]["git_commit"]) == 40
    assert result["precision"] == "float32"  # "auto" on the CPU
    epochs = result["epochs"]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    assert {"train_loss", "test_accuracy", "images_per_s", "epoch_time_s"} <= set(epochs[0])


def test_smoke_training_learns(smoke: Path) -> None:
    result = _load(smoke / "smoke" / "e1" / "before_relu-seed0.json")
    # Chance is 10 %; the synthetic classes are easy to tell apart.
    assert result["epochs"][-1]["train_accuracy"] > 0.2


def test_e2_reuses_e1_checkpoint(smoke: Path) -> None:
    e1 = _load(smoke / "smoke" / "e1" / "before_relu-seed0.json")
    e2 = _load(smoke / "smoke" / "e2" / "exclude_bias_and_norm-seed0.json")
    assert e2["checkpoint"] == e1["checkpoint"]
    assert e2["resumed_from_epoch"] == 3
    assert e2["epochs"] == e1["epochs"]


def test_e3_result_covers_modes_and_orders(smoke: Path) -> None:
    result = _load(smoke / "smoke" / "e3" / "bn_mode-seed0.json")
    keys = {(row["mode"], row["order"], row["batch_size"]) for row in result["evaluations"]}
    for mode in ("eval", "train"):
        for batch_size in (1, 16, 256):
            assert (mode, "shuffled", batch_size) in keys
        assert (mode, "class-sorted", 256) in keys
    # With running statistics only floating-point ties can change a prediction
    # between batch sizes, so the accuracies agree to within one image.
    eval_accuracies = [r["accuracy"] for r in result["evaluations"] if r["mode"] == "eval"]
    images = result["dataset"]["test_images"]
    assert max(eval_accuracies) - min(eval_accuracies) <= 1 / images + 1e-12


def test_e4_matches_library_descent(smoke: Path) -> None:
    for seed in (0, 1):
        measured = _load(smoke / "smoke" / "e4" / f"n32-seed{seed}.json")["measurements"]
        assert measured["gd_converged"]
        assert measured["gd_steps"] == measured["library_gd_steps"]
        assert 0 <= measured["gd_excess"] <= 1e-6
        assert measured["svd_lowrank_excess"] >= -1e-9


def test_e4_description_names_matrices(smoke: Path) -> None:
    result = _load(smoke / "smoke" / "e4" / "n32-seed0.json")
    assert result["preset_description"] == "square float64 matrices of n = 32, 64, rank 3"
    assert "CIFAR" not in results.provenance_text([result])


def test_shared_runs_found_and_not_double_counted(smoke: Path) -> None:
    e1 = results.load_results(smoke, experiment="e1", preset="smoke")
    e2 = results.load_results(smoke, experiment="e2", preset="smoke")
    assert results.shared_runs(e2, e1) == [("exclude biases and BN", "Conv → BN → ReLU", [0, 1])]

    restored = [r for r in e2 if results.restored_in_full(r)]
    assert {r["configuration"] for r in restored} == {"exclude_bias_and_norm"}
    trained_wall = sum(r["provenance"]["wall_time_s"] for r in e2 if r not in restored)
    text = results.provenance_text(e2)
    assert f"{trained_wall / 60:.1f} min of wall time in total" in text
    assert "not counting the 2 runs restored in full" in text


def _one_seed_options(root: Path, **overrides) -> RunOptions:
    """Options for seed 0 on one CPU thread, with results and checkpoints under ``root``."""
    values = {
        "results_dir": root / "results",
        "checkpoint_dir": root / "checkpoints",
        "seeds": (0,),
        "device": "cpu",
        "num_threads": 1,
        "progress": False,
        **overrides,
    }
    return RunOptions(**values)


def _tiny_cifar_preset(monkeypatch) -> None:
    """Register preset "tiny": the smoke scale, but reading CIFAR-10 folders of 20 images."""
    from hw2lib.experiments import presets

    tiny = copy.deepcopy(presets.SMOKE)
    tiny["data"] = "cifar10"
    tiny["train"].update(epochs=1, batch_size=8)
    tiny["e3"]["test_size"] = None
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)


def test_checkpoint_differs_per_dataset(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    from tests.test_data import CLASSES, make_imagefolder

    _tiny_cifar_preset(monkeypatch)
    make_imagefolder(tmp_path / "a")
    make_imagefolder(tmp_path / "b")
    # Folder b differs from folder a in one training image only.
    replaced = tmp_path / "b" / "train" / CLASSES[0] / "0000.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(replaced)

    def run(data_dir: Path, out: str) -> dict:
        options = _one_seed_options(
            tmp_path,
            preset="tiny",
            data_dir=data_dir,
            results_dir=tmp_path / out,
            cache_dir=tmp_path / "cache",
        )
        run_experiment("e1", options)
        return _load(tmp_path / out / "tiny" / "e1" / "before_relu-seed0.json")

    first = run(tmp_path / "a", "results-a")
    second = run(tmp_path / "b", "results-b")
    again = run(tmp_path / "a", "results-a-again")
    assert first["resumed_from_epoch"] == 0
    assert second["resumed_from_epoch"] == 0
    assert second["checkpoint"] != first["checkpoint"]
    assert second["dataset"]["path"] == str((tmp_path / "b").resolve())
    # The same data and options find the first run's finished checkpoint.
    assert again["checkpoint"] == first["checkpoint"]
    assert again["resumed_from_epoch"] == 1


def test_precision_option_reaches_results(tmp_path: Path, monkeypatch) -> None:
    from hw2lib.experiments.__main__ import main
    from tests.test_data import make_imagefolder

    _tiny_cifar_preset(monkeypatch)
    make_imagefolder(tmp_path / "data")
    code = main(
        [
            "run",
            "e3",
            "--preset",
            "tiny",
            "--precision",
            "bfloat16",
            "--seeds",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--quiet",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    # E3 trains its model through E1, so both files exist and record the precision.
    e1 = _load(tmp_path / "out" / "tiny" / "e1" / "before_relu-seed0.json")
    e3 = _load(tmp_path / "out" / "tiny" / "e3" / "bn_mode-seed0.json")
    assert e1["config"]["precision"] == "bfloat16"
    assert e1["precision"] == "bfloat16"
    assert e3["precision"] == "bfloat16"
    assert "1 threads, bfloat16;" in results.provenance_text([e1])


def test_provenance_derives_precision_of_older_files(smoke: Path) -> None:
    older = _load(smoke / "smoke" / "e3" / "bn_mode-seed0.json")
    del older["precision"]
    assert older["config"]["precision"] == "auto"
    assert ", float32;" in results.provenance_text([older])
    older["provenance"]["hardware"].update(device="cuda:0", gpu="NVIDIA H200")
    assert "NVIDIA H200, bfloat16;" in results.provenance_text([older])


def test_force_trains_shared_checkpoints_once(tmp_path: Path) -> None:
    def command() -> RunOptions:
        return _one_seed_options(tmp_path, preset="smoke", force=True)

    def e2_shared_run() -> dict:
        return _load(tmp_path / "results" / "smoke" / "e2" / "exclude_bias_and_norm-seed0.json")

    options = command()
    run_experiment("e1", options)
    run_experiment("e2", options)
    # Within one command, E2 restores the checkpoint that E1 has just trained.
    assert e2_shared_run()["resumed_from_epoch"] == 3
    # A later command with force trains it again.
    run_experiment("e2", command())
    assert e2_shared_run()["resumed_from_epoch"] == 0


def test_existing_results_are_kept(smoke: Path, tmp_path: Path) -> None:
    before = (smoke / "smoke" / "e4" / "n32-seed0.json").read_text()
    options = RunOptions(
        preset="smoke", results_dir=smoke, checkpoint_dir=tmp_path, device="cpu", progress=False
    )
    run_experiment("e4", options)
    assert (smoke / "smoke" / "e4" / "n32-seed0.json").read_text() == before


def test_factorization_descent_reaches_floor() -> None:
    import torch

    matrix = noisy_low_rank_matrix(24, 2, seed=0)
    singular = torch.linalg.svdvals(matrix)
    floor = float(torch.sum(singular[2:] ** 2))
    start = (
        1e-3 * torch.randn(24, 2, dtype=torch.float64),
        1e-3 * torch.randn(2, 24, dtype=torch.float64),
    )
    _, _, steps, converged, loss = factorization_descent(
        matrix, start, step_size=0.1 / float(singular[0]), floor=floor, rtol=1e-8, max_steps=50_000
    )
    assert converged
    assert steps > 0
    assert loss == pytest.approx(floor, rel=1e-8)


# -----------------------------------------------------------------------------
# Aggregation, tables, figures and the page helper


def test_aggregate_training_mean_std(smoke: Path) -> None:
    rows = results.aggregate_training(results.load_results(smoke, experiment="e1", preset="smoke"))
    assert [row["configuration"] for row in rows] == [
        "before_relu",
        "after_relu",
        "after_relu_add_relu",
    ]
    for row in rows:
        assert row["seeds"] == 2
        mean, std = row["test_accuracy"]
        assert 0.0 <= mean <= 1.0
        assert std >= 0.0


def _row(name: str, mean: float, std: float, seeds: int = 3) -> dict:
    return {
        "configuration": name,
        "label": name.upper(),
        "seeds": seeds,
        "test_accuracy": (mean, std),
    }


def test_describe_difference_sets_gap_against_noise() -> None:
    rows = [_row("a", 0.504, 0.002), _row("b", 0.529, 0.007)]
    text = results.describe_difference(rows, "a", "b", "Switching")
    assert text == (
        "Switching: 50.4% (A) → 52.9% (B), +2.5 points, more than twice the larger seed "
        "standard deviation (0.7 points)."
    )
    close = results.describe_difference(
        [_row("a", 0.504, 0.02), _row("b", 0.51, 0.01)], "b", "a", "Back"
    )
    assert "-0.6 points, less than twice" in close
    assert "(2.0 points)" in close


def test_describe_e1_lists_isolating_pairs() -> None:
    rows = [
        _row("before_relu", 0.524, 0.008),
        _row("after_relu", 0.548, 0.014),
        _row("after_relu_add_relu", 0.476, 0.014),
    ]
    text = results.describe_e1(rows)
    overall, bullets = text.split("\n\n")
    assert overall.startswith("Mean final test accuracy runs from 47.6%")
    assert bullets.splitlines() == [
        "* Moving BN behind the ReLU and dropping the ReLU after the addition: 52.4% "
        "(BEFORE_RELU) → 54.8% (AFTER_RELU), +2.4 points, less than twice the larger seed "
        "standard deviation (1.4 points).",
        "* With BN after ReLU, adding a ReLU after the residual addition: 54.8% (AFTER_RELU) "
        "→ 47.6% (AFTER_RELU_ADD_RELU), -7.2 points, more than twice the larger seed "
        "standard deviation (1.4 points).",
        "* With a ReLU after the addition in both, moving BN behind the ReLU: 52.4% "
        "(BEFORE_RELU) → 47.6% (AFTER_RELU_ADD_RELU), -4.8 points, more than twice the "
        "larger seed standard deviation (1.4 points).",
    ]
    # Results from before the third design existed get the plain swap only.
    assert results.describe_e1(rows[:2]).count("\n* ") == 1


def _run(label: str, seed: int, resumed: int, accuracy: float = 0.5) -> dict:
    final = {"train_loss": 1.0, "test_loss": 1.2, "test_accuracy": accuracy}
    return {
        "configuration_label": label,
        "seed": seed,
        "resumed_from_epoch": resumed,
        "epochs": [final, final],
    }


@pytest.mark.parametrize(
    ("e2_resumed", "e1_resumed", "e1_accuracy", "expected"),
    [
        (2, 0, 0.5, "E2 restored E1's finished checkpoints"),
        (0, 2, 0.5, "E2 wrote the checkpoints that E1 then restored."),
        (0, 0, 0.5, "Their final losses and accuracies agree exactly."),
        (0, 0, 0.6, "Their final metrics differ"),
    ],
)
def test_describe_reuse_names_who_trained(e2_resumed, e1_resumed, e1_accuracy, expected) -> None:
    e2 = [_run("E2 row", seed, e2_resumed) for seed in (0, 1)]
    e1 = [_run("E1 row", seed, e1_resumed, e1_accuracy) for seed in (0, 1)]
    text = results.describe_reuse(e2, e1, "E2 row", "E1 row", [0, 1])
    assert expected in text
    if e2_resumed == e1_resumed == 0:
        assert text.startswith("Both experiments trained these runs from scratch")


def test_describe_difference_needs_finished_runs() -> None:
    rows = [_row("a", 0.5, 0.01), _row("b", float("nan"), 0.0, seeds=0)]
    assert results.describe_difference(rows, "a", "b", "Switching") is None
    assert results.describe_difference(rows, "a", "missing", "Switching") is None


def test_diverged_run_left_out_of_means(smoke: Path) -> None:
    runs = results.load_results(smoke, experiment="e1", preset="smoke")
    broken = copy.deepcopy(next(r for r in runs if r["configuration"] == "before_relu"))
    broken["seed"] = 7
    broken["status"] = "diverged"
    broken["diverged_step"] = 5
    broken["epochs"] = [dict(broken["epochs"][0], test_accuracy=float("nan"))]
    rows = results.aggregate_training([*runs, broken])
    before = next(row for row in rows if row["configuration"] == "before_relu")
    assert before["seeds"] == 2
    assert before["diverged"] == [{"seed": 7, "step": 5}]
    assert "seed 7 at step 5" in results.training_table(rows)
    figure = results.plot_training([*runs, broken], "test")
    lines = figure.axes[0].get_lines()
    assert all(not any(map(lambda y: y != y, line.get_ydata())) for line in lines)


@pytest.mark.parametrize("name", ["e1", "e2", "e3", "e4"])
def test_summary_has_table_figure_provenance(smoke: Path, name: str) -> None:
    summary = results.experiment_summary(name, smoke)
    assert summary is not None
    assert summary["preset"] == "smoke"
    assert summary["table"].startswith("|")
    assert "Preset `smoke`" in summary["provenance"]
    assert "commit" in summary["provenance"]
    assert summary["figure"].axes


def test_show_experiment_without_results_prints_command(tmp_path: Path, capsys) -> None:
    assert results.show_experiment("e1", tmp_path) is None
    text = capsys.readouterr().out
    assert "nox -s experiments -- run e1 --preset gpu" in text
    assert "--preset cpu" in text


def test_jpeg_copy_label_in_provenance(smoke: Path) -> None:
    runs = results.load_results(smoke, experiment="e1", preset="smoke")
    for run in runs:
        run["dataset"]["label"] = "CIFAR-10 (JPEG copy)"
    assert "Data: CIFAR-10 (JPEG copy)." in results.provenance_text(runs)


# -----------------------------------------------------------------------------
# Command line


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hw2lib.experiments", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_missing_data_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    completed = _cli(
        "run",
        "e1",
        "--preset",
        "cpu",
        "--data-dir",
        str(missing),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: CIFAR-10 not found")
    assert str(missing) in lines[0]
    assert "Traceback" not in completed.stderr
    # Nothing was computed, so the command leaves no runs.log behind.
    assert not (tmp_path / "out" / "runs.log").exists()


def _cli_cpu_e1_on_jpeg(tmp_path: Path) -> subprocess.CompletedProcess:
    """Run E1 of the cpu preset on ``tmp_path/jpeg``, writing under ``tmp_path``."""
    return _cli(
        "run",
        "e1",
        "--preset",
        "cpu",
        "--data-dir",
        str(tmp_path / "jpeg"),
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
        cwd=tmp_path,
    )


def test_cli_corrupt_image_one_line_error(tmp_path: Path) -> None:
    from tests.test_data import CLASSES, make_imagefolder

    make_imagefolder(tmp_path / "jpeg")
    bad = tmp_path / "jpeg" / "test" / CLASSES[1] / "0000.png"
    bad.write_bytes(b"broken")
    completed = _cli_cpu_e1_on_jpeg(tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert str(bad) in completed.stderr
    assert "Traceback" not in completed.stderr


def test_cli_too_few_images_one_line_error(tmp_path: Path) -> None:
    from tests.test_data import make_imagefolder

    make_imagefolder(tmp_path / "jpeg", per_class=3)
    completed = _cli_cpu_e1_on_jpeg(tmp_path)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"error: {tmp_path / 'jpeg'} has 30 training images")
    assert "the cpu preset trains on 8,000" in lines[0]
    assert "full CIFAR-10" in lines[0]
    assert "--preset smoke" in lines[0]


def test_cli_missing_default_data_dir(tmp_path: Path) -> None:
    completed = _cli("run", "e1", "--preset", "cpu", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "--data-dir was not given, and its default, data" in lines[0]
    assert str(tmp_path / "data") in lines[0]
    assert "--data-dir PATH" in lines[0]
    assert "--download" in lines[0]


def test_cli_smoke_results_outside_docs(tmp_path: Path) -> None:
    completed = _cli("run", "E4", "--preset", "smoke", "--seeds", "0", "--quiet", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    smoke_dir = tmp_path / ".cache" / "smoke-results"
    assert (smoke_dir / "smoke" / "e4" / "n32-seed0.json").exists()
    log = (smoke_dir / "runs.log").read_text()
    assert log.splitlines()[0].split(" ", 1)[1].startswith("start: ")
    assert log.splitlines()[-1].endswith(" done")
    assert not (results.RESULTS_DIR / "smoke").exists()
    # A second run finds every file and computes nothing, so the log stays as it was.
    again = _cli("run", "e4", "--preset", "smoke", "--seeds", "0", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (smoke_dir / "runs.log").read_text() == log


def test_cli_checks_data_dir_before_skipping(tmp_path: Path) -> None:
    # Every results file exists, but the mistyped folder must still fail.
    out = tmp_path / "out"
    for configuration in ("before_relu", "after_relu", "after_relu_add_relu"):
        path = out / "cpu" / "e1" / f"{configuration}-seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    completed = _cli(
        "run",
        "e1",
        "--preset",
        "cpu",
        "--seeds",
        "0",
        "--data-dir",
        str(tmp_path / "typo"),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: CIFAR-10 not found")
    assert str(tmp_path / "typo") in completed.stderr
    assert not (out / "runs.log").exists()


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("0,-1", "seeds must be 0 or greater, not -1"),
        ("0,1,0", "seed 0 is listed more than once"),
        ("a,b", "expected integers separated by commas"),
    ],
)
def test_cli_rejects_bad_seeds(tmp_path: Path, seeds: str, message: str) -> None:
    completed = _cli("run", "e4", "--seeds=" + seeds, cwd=tmp_path)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_cli_unknown_experiment(tmp_path: Path) -> None:
    completed = _cli("run", "e9", "--out", str(tmp_path), cwd=tmp_path)
    assert completed.returncode == 2
    assert "unknown experiment e9" in completed.stderr


def test_cli_list_and_help(tmp_path: Path) -> None:
    listing = _cli("list", cwd=tmp_path)
    assert listing.returncode == 0
    for name in EXPERIMENTS:
        assert name in listing.stdout
    assert "smoke" in listing.stdout
    help_text = _cli("run", "--help", cwd=tmp_path)
    assert help_text.returncode == 0
    assert "163 MB" in help_text.stdout
    assert "--seeds" in help_text.stdout


# -----------------------------------------------------------------------------
# The experiments page


@pytest.mark.parametrize("stored", ["none", "smoke"])
def test_page_runs_with_and_without_results(
    smoke: Path, tmp_path: Path, monkeypatch, capsys, stored: str
) -> None:
    import runpy

    page = Path(__file__).resolve().parents[1] / "docs" / "experiments.py"
    monkeypatch.setattr(results, "RESULTS_DIR", smoke if stored == "smoke" else tmp_path)
    runpy.run_path(str(page), run_name="experiments_page")
    text = capsys.readouterr().out
    if stored == "none":
        for name in EXPERIMENTS:
            assert f"nox -s experiments -- run {name} --preset gpu" in text
    else:
        assert "nox -s experiments -- run" not in text
        assert "Preset `smoke`" in text
        assert text.count(results.SMOKE_NOTE) == len(EXPERIMENTS)
