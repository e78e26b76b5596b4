"""The trainer on tiny synthetic data: schedule, divergence, checkpoints and resumption."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from hw2lib import data, training
from hw2lib.training import CheckpointMismatchError, TrainConfig

TINY = {
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.1,
    "warmup_epochs": 0.5,
    "width": 4,
    "eval_batch_size": 64,
    "device": "cpu",
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def splits() -> tuple[data.Split, data.Split]:
    return data.synthetic_split(128, split="train"), data.synthetic_split(64, split="test")


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, **overrides})


# -----------------------------------------------------------------------------
# Learning-rate schedule


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_warmup_then_decay(schedule: str) -> None:
    config = _config(lr=0.4, schedule=schedule, final_lr_fraction=0.05)
    total, warmup = 100, 10
    rates = [training.learning_rate(step, total, warmup, config) for step in range(total)]
    assert rates[0] == pytest.approx(0.04)
    assert rates[warmup - 1] == pytest.approx(0.4)
    assert all(a < b for a, b in itertools.pairwise(rates[:warmup]))
    decay = rates[warmup:]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert rates[-1] == pytest.approx(0.4 * 0.05)


def test_schedule_rejects_unknown_shape() -> None:
    with pytest.raises(ValueError, match="cosine"):
        training.learning_rate(50, 100, 10, _config(schedule="step"))


# -----------------------------------------------------------------------------
# Training, evaluation and divergence


def test_train_records_epoch_metrics(splits, tmp_path: Path) -> None:
    result = training.train(_config(), *splits, checkpoint_path=tmp_path / "run.pt", progress=False)
    assert not result.diverged
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert math.isfinite(row[key]), key
        assert row["images_per_s"] > 0
        assert row["epoch_time_s"] >= row["train_time_s"] > 0
    assert result.num_threads == 1
    assert result.device == "cpu"
    assert result.precision == "float32"  # "auto" keeps the CPU in float32
    conv = result.model.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()


def test_bfloat16_autocast_on_cpu_trains(splits) -> None:
    result = training.train(_config(epochs=1, precision="bfloat16"), *splits, progress=False)
    assert result.precision == "bfloat16"
    assert not result.diverged
    assert math.isfinite(result.final["test_loss"])
    # Autocast computes in bfloat16 but the weights stay float32.
    assert result.model.conv1.weight.dtype == torch.float32


def test_precision_changes_the_training_key() -> None:
    assert _config().training_key() != _config(precision="bfloat16").training_key()


def test_unknown_precision_is_rejected(splits) -> None:
    with pytest.raises(ValueError, match=r"'float32'.*not 'fp16'"):
        training.train(_config(precision="fp16"), *splits, progress=False)


def test_checkpoint_loads_weights_only(splits, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    training.train(_config(epochs=1), *splits, checkpoint_path=path, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1
    assert "torch" in state["rng"]
    assert state["training_key"]["width"] == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_finished_checkpoint_returns_history(splits, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    first = training.train(_config(), *splits, checkpoint_path=path, progress=False)
    second = training.train(_config(), *splits, checkpoint_path=path, progress=False)
    assert second.resumed_from_epoch == 2
    assert second.history == first.history


def test_checkpoint_of_other_config_rejected(splits, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    training.train(_config(epochs=1), *splits, checkpoint_path=path, progress=False)
    with pytest.raises(CheckpointMismatchError, match="delete it"):
        training.train(_config(epochs=1, lr=0.3), *splits, checkpoint_path=path, progress=False)


def test_runtime_fields_do_not_block_resume(splits, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    training.train(_config(epochs=1), *splits, checkpoint_path=path, progress=False)
    resumed = training.train(
        _config(epochs=1, num_threads=2, eval_batch_size=16),
        *splits,
        checkpoint_path=path,
        progress=False,
    )
    assert resumed.resumed_from_epoch == 1


def test_divergence_stops_and_records_step(splits, tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    result = training.train(
        _config(epochs=3, lr=1e12, warmup_epochs=0.0, label_smoothing=0.0),
        *splits,
        checkpoint_path=path,
        progress=False,
    )
    assert result.diverged
    assert isinstance(result.diverged_step, int)
    steps_per_epoch = 128 // 32
    assert 0 <= result.diverged_step < 3 * steps_per_epoch
    # Only epochs that finished with finite losses are in the history.
    assert len(result.history) == result.diverged_step // steps_per_epoch
    again = training.train(
        _config(epochs=3, lr=1e12, warmup_epochs=0.0, label_smoothing=0.0),
        *splits,
        checkpoint_path=path,
        progress=False,
    )
    assert again.diverged_step == result.diverged_step


def test_eval_in_train_mode_keeps_running_stats(splits) -> None:
    result = training.train(_config(epochs=1), *splits, progress=False)
    model = result.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = data.DeviceLoader(splits[1].images, splits[1].labels, 16, train=False)
    batch_stats = training.evaluate(model, loader, mode="train")
    running_stats = training.evaluate(model, loader, mode="eval")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # evaluate() restores the mode the model was in
    model.eval()
    training.evaluate(model, loader, mode="train")
    assert not model.training
    assert 0.0 <= batch_stats["accuracy"] <= 1.0
    assert batch_stats != running_stats


# -----------------------------------------------------------------------------
# Kill and resume

RUN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from hw2lib import data, training

    config = training.TrainConfig(**json.loads(sys.argv[2]))
    train = data.synthetic_split(256, split="train")
    test = data.synthetic_split(64, split="test")
    # A pause after each epoch gives the test time to kill the run between checkpoints.
    pause = float(sys.argv[3])
    result = training.train(
        config, train, test, checkpoint_path=sys.argv[1], progress=False,
        on_epoch_end=lambda epoch, metrics: time.sleep(pause),
    )
    print(json.dumps({"history": result.history, "resumed": result.resumed_from_epoch}))
    """
)

TIMING_KEYS = {"train_time_s", "epoch_time_s", "images_per_s"}


def _run(script: Path, checkpoint: Path, config: dict, pause: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), json.dumps(config), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_killed_run_resumes_to_same_metrics(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT)
    config = {**TINY, "epochs": 4}

    reference = _run(script, tmp_path / "reference.pt", config, 0.0)
    out, err = reference.communicate(timeout=120)
    assert reference.returncode == 0, err
    expected = json.loads(out)

    checkpoint = tmp_path / "killed.pt"
    victim = _run(script, checkpoint, config, 1.0)
    deadline = time.monotonic() + 60
    while not checkpoint.exists():
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    stopped_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= stopped_at < 4

    resumed = _run(script, checkpoint, config, 0.0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    result = json.loads(out)
    assert result["resumed"] == stopped_at
    assert _without_timing(result["history"]) == _without_timing(expected["history"])
