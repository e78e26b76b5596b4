"""Results files of the experiments: provenance, writing, loading, tables and plots.

Every run of :mod:`hw2lib.experiments` writes one JSON file,
``<results>/<preset>/<experiment>/<configuration>-seed<k>.json``, with the
configuration, the data it saw and the provenance of the measurement (git
commit, hardware, library versions, start and wall time). Pages read these
files and never train: :func:`show_experiment` renders one experiment's table,
figure and provenance, or, when no results exist, the command that produces
them.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

SCHEMA_VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "docs" / "results"
# When several presets have results, pages show the largest scale.
PRESET_PREFERENCE = ("gpu", "cpu", "smoke")

# Shown above every smoke-preset table, because those numbers only check the pipeline.
SMOKE_NOTE = (
    "**Smoke results, not measurements.** These numbers come from the `smoke` preset: "
    "synthetic data and a tiny network, run only to check that the pipeline works. "
    "They say nothing about CIFAR-10 or about the claims of this chapter."
)

# The commands that produce each experiment's results, shown when they are missing.
PRODUCE_COMMANDS = {
    "gpu": "nox -s experiments -- run {name} --preset gpu --data-dir data --download",
    "cpu": "nox -s experiments -- run {name} --preset cpu --data-dir ../shared/data/cifar10-jpeg",
}


# -----------------------------------------------------------------------------
# Provenance


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """Return the commit and whether the tree is dirty, read once per process.

    A long run calls this at its start, so every results file names the code the
    process loaded, even when commits land while it runs.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return commit, None if status is None else bool(status)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str | None = None, num_threads: int | None = None) -> dict[str, Any]:
    """Describe the machine: CPU model and core count, GPU name, device and threads used."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "device": device,
        "num_threads": num_threads,
    }


def command_line() -> str:
    """Return the command line of this process, naming a ``python -m`` package by its name."""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        # python -m runs a package's __main__.py; name the package instead.
        program = f"python -m {Path(sys.argv[0]).parent.name}"
        if Path(sys.argv[0]).parent.parent.name == "hw2lib":
            program = f"python -m hw2lib.{Path(sys.argv[0]).parent.name}"
    return " ".join([program, *sys.argv[1:]])


def provenance(
    *,
    started_at: dt.datetime,
    wall_time_s: float,
    device: str | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Collect where, when and with what code a measurement was made."""
    import torch
    import torchvision

    commit, dirty = git_state()
    return {
        "git_commit": commit,
        # Uncommitted changes anywhere in the working tree, or None outside git.
        "git_dirty": dirty,
        "hardware": hardware(device, num_threads),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started_at": started_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": wall_time_s,
        "command": command_line(),
    }


# -----------------------------------------------------------------------------
# Files


def result_path(
    results_dir: Path, preset: str, experiment: str, configuration: str, seed: int
) -> Path:
    return Path(results_dir) / preset / experiment / f"{configuration}-seed{seed}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, sort_keys=False, allow_nan=True) + "\n"
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def append_log(results_dir: Path, line: str) -> None:
    """Append one line to ``<results>/runs.log``, the record of what was run."""
    path = Path(results_dir) / "runs.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"{stamp} {line}\n")


class RunLog:
    """The ``runs.log`` lines of one command, written only once it saves a result.

    A command that computes nothing (every results file exists, or the data is
    missing) leaves the log as it was, so a committed log records only runs
    that produced files.
    """

    def __init__(self, results_dir: Path, header: str) -> None:
        self.results_dir = Path(results_dir)
        self.header = header
        self.started = False

    def write(self, line: str) -> None:
        """Append ``line``, preceded by the command's header line the first time."""
        if not self.started:
            append_log(self.results_dir, self.header)
            self.started = True
        append_log(self.results_dir, line)

    def close(self, line: str) -> None:
        """Append the command's last line (``done`` or ``failed: ...``) if it wrote any."""
        if self.started:
            append_log(self.results_dir, line)


def load_results(
    results_dir: str | os.PathLike[str] | None = None,
    *,
    experiment: str | None = None,
    preset: str | None = None,
) -> list[dict[str, Any]]:
    """Read every result file under ``results_dir``, optionally of one experiment or preset."""
    root = Path(results_dir) if results_dir is not None else RESULTS_DIR
    pattern = f"{preset or '*'}/{experiment or '*'}/*.json"
    results = []
    for path in sorted(root.glob(pattern)):
        with open(path, encoding="utf-8") as file:
            result = json.load(file)
        if result.get("schema") != SCHEMA_VERSION:
            continue
        result["_path"] = str(path)
        results.append(result)
    return results


def available_preset(
    experiment: str, results_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """Return the largest-scale preset with results for ``experiment``, or None."""
    root = Path(results_dir) if results_dir is not None else RESULTS_DIR
    for preset in PRESET_PREFERENCE:
        if any((root / preset / experiment).glob("*.json")):
            return preset
    return None


# -----------------------------------------------------------------------------
# Aggregation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std


def _ordered(results: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in sorted(results, key=lambda r: (r.get("configuration_index", 0), r["seed"])):
        grouped[result["configuration"]].append(result)
    return grouped


def aggregate_training(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summarize training runs per configuration: mean and std of the final metrics.

    Diverged runs are counted but left out of every mean.
    """
    rows = []
    for configuration, runs in _ordered(results).items():
        finished = [r for r in runs if r["status"] == "ok"]
        row: dict[str, Any] = {
            "configuration": configuration,
            "label": runs[0].get("configuration_label", configuration),
            "seeds": len(finished),
            "diverged": [
                {"seed": r["seed"], "step": r["diverged_step"]}
                for r in runs
                if r["status"] == "diverged"
            ],
        }
        for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "images_per_s"):
            row[key] = mean_std([r["epochs"][-1][key] for r in finished])
        rows.append(row)
    return rows


def aggregate_e3(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summarize E3 per (mode, batch order, batch size): mean and std of test accuracy."""
    values: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for result in results:
        for row in result["evaluations"]:
            values[(row["mode"], row["order"], row["batch_size"])].append(row["accuracy"])
    rows = []
    for (mode, order, batch_size), accuracies in values.items():
        rows.append(
            {
                "mode": mode,
                "order": order,
                "batch_size": batch_size,
                "seeds": len(accuracies),
                "accuracy": mean_std(accuracies),
            }
        )
    rows.sort(key=lambda r: (r["order"] != "shuffled", r["mode"] != "eval", r["batch_size"]))
    return rows


def aggregate_e4(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summarize E4 per matrix size: mean and std of every timing and step count."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        grouped[result["measurements"]["size"]].append(result["measurements"])
    rows = []
    for size in sorted(grouped):
        runs = grouped[size]
        converged = [r for r in runs if r["gd_converged"]]
        row: dict[str, Any] = {"size": size, "seeds": len(runs), "converged": len(converged)}
        for key in (
            "gd_steps",
            "gd_time_per_step_s",
            "gd_time_s",
            "svd_time_s",
            "svd_lowrank_time_s",
            "svd_lowrank_excess",
            "gd_excess",
        ):
            row[key] = mean_std([r[key] for r in runs])
        rows.append(row)
    return rows


# -----------------------------------------------------------------------------
# Text: tables and provenance


def _pm(pair: tuple[float, float], scale: float = 1.0, digits: int = 1) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _sci(pair: tuple[float, float]) -> str:
    mean, std = pair
    return f"{mean:.3g} ± {std:.2g}"


def training_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format :func:`aggregate_training` rows as a Markdown table (accuracies in %)."""
    lines = [
        "| configuration | seeds | test accuracy (%) | test loss | train accuracy (%) "
        "| train loss | images/s | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        diverged = ", ".join(f"seed {d['seed']} at step {d['step']}" for d in row["diverged"])
        lines.append(
            f"| {row['label']} | {row['seeds']} | {_pm(row['test_accuracy'], 100)} "
            f"| {_pm(row['test_loss'], digits=3)} | {_pm(row['train_accuracy'], 100)} "
            f"| {_pm(row['train_loss'], digits=3)} | {_pm(row['images_per_s'], digits=0)} "
            f"| {diverged or 'none'} |"
        )
    return "\n".join(lines)


def e3_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format :func:`aggregate_e3` rows as a Markdown table (accuracies in %)."""
    lines = [
        "| BatchNorm mode | batch order | batch size | seeds | test accuracy (%) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        mode = "model.eval()" if row["mode"] == "eval" else "model.train()"
        lines.append(
            f"| {mode} | {row['order']} | {row['batch_size']} | {row['seeds']} "
            f"| {_pm(row['accuracy'], 100)} |"
        )
    return "\n".join(lines)


def e4_table(rows: Sequence[dict[str, Any]]) -> str:
    """Format :func:`aggregate_e4` rows as a Markdown table (times in seconds)."""
    lines = [
        "| m = n | seeds | GD steps | GD time/step (ms) | GD total (s) | exact SVD (s) "
        "| svd_lowrank (s) | svd_lowrank excess loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        steps = _pm(row["gd_steps"], digits=0)
        if row["converged"] < row["seeds"]:
            steps += f" ({row['seeds'] - row['converged']} hit max_steps)"
        lines.append(
            f"| {row['size']} | {row['seeds']} | {steps} "
            f"| {_pm(row['gd_time_per_step_s'], 1000, 2)} | {_pm(row['gd_time_s'], digits=2)} "
            f"| {_pm(row['svd_time_s'], digits=3)} | {_pm(row['svd_lowrank_time_s'], digits=3)} "
            f"| {_sci(row['svd_lowrank_excess'])} |"
        )
    return "\n".join(lines)


def scale_description(results: Sequence[dict[str, Any]]) -> str:
    """Describe the scale of one experiment's results: data, model and sizes it used.

    The preset description states the training scale. E4 uses none of it, so
    its description lists the matrix sizes and the rank. E3 evaluates E1's
    models on its own number of test images, which is added.
    """
    first = results[0]
    if "measurements" in first:
        sizes = sorted({r["measurements"]["size"] for r in results})
        return (
            f"square float64 matrices of n = {', '.join(map(str, sizes))}, "
            f"rank {first['config']['rank']}"
        )
    scale = first["preset_description"]
    if "evaluations" in first:
        counts = sorted({r["dataset"]["test_images"] for r in results})
        scale += f"; E3 evaluates on {', '.join(f'{n:,}' for n in counts)} test images"
    return scale


def restored_in_full(result: dict[str, Any]) -> bool:
    """Return whether a training run restored every epoch from an existing checkpoint.

    Such a run trained nothing in its own process: its recorded wall time is the
    training time of the run that wrote the checkpoint.
    """
    resumed = result.get("resumed_from_epoch") or 0
    return resumed > 0 and resumed >= len(result.get("epochs", []))


def shared_runs(
    results: Iterable[dict[str, Any]], other: Iterable[dict[str, Any]]
) -> list[tuple[str, str, list[int]]]:
    """Find configurations of ``results`` that used the checkpoints of ``other``.

    Returns ``(label, other_label, seeds)`` per configuration, where the two
    results files of each listed seed name the same checkpoint file, so they
    report the same trained model.
    """
    owners = {r["checkpoint"]: r for r in other if r.get("checkpoint")}
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for result in results:
        owner = owners.get(result.get("checkpoint"))
        if owner is not None:
            labels = (result["configuration_label"], owner["configuration_label"])
            found[labels].append(result["seed"])
    return [(label, other_label, sorted(seeds)) for (label, other_label), seeds in found.items()]


def describe_reuse(
    results: Sequence[dict[str, Any]],
    other: Sequence[dict[str, Any]],
    label: str,
    other_label: str,
    seeds: Sequence[int],
) -> str:
    """Say which of E2 and E1 trained the checkpoints they share, for the listed seeds.

    ``results`` are E2's results and ``other`` E1's; ``label`` and
    ``other_label`` are the configuration labels that :func:`shared_runs` paired.
    """
    chosen = set(seeds)
    ours = {r["seed"]: r for r in results if r["configuration_label"] == label}
    theirs = {r["seed"]: r for r in other if r["configuration_label"] == other_label}
    pairs = [(ours[seed], theirs[seed]) for seed in sorted(chosen)]
    if all(restored_in_full(mine) for mine, _ in pairs):
        return (
            "E2 restored E1's finished checkpoints, and the wall-time total under the E2 "
            "table leaves these runs out."
        )
    if all(restored_in_full(other_run) for _, other_run in pairs):
        return "E2 wrote the checkpoints that E1 then restored."
    keys = ("train_loss", "test_loss", "test_accuracy")
    agree = all(
        [mine["epochs"][-1][key] for key in keys] == [theirs_run["epochs"][-1][key] for key in keys]
        for mine, theirs_run in pairs
    )
    outcome = (
        "Their final losses and accuracies agree exactly"
        if agree
        else "Their final metrics differ, because the trained models differ"
    )
    return (
        "Both experiments trained these runs from scratch, because the command that "
        "wrote them recomputed existing checkpoints, so both wall-time totals count "
        f"them. {outcome}."
    )


def _run_precision(result: dict[str, Any]) -> str | None:
    """Return the arithmetic a training result ran in, or None for runs that train nothing."""
    if "precision" in result:
        return result["precision"]
    requested = result.get("config", {}).get("precision")
    if requested is None:
        return None
    # Files written before the resolved precision was recorded: "auto" means
    # bfloat16 autocast on CUDA and float32 elsewhere.
    if requested == "auto":
        on_cuda = result["provenance"]["hardware"].get("device", "").startswith("cuda")
        return "bfloat16" if on_cuda else "float32"
    return requested


def provenance_text(results: Sequence[dict[str, Any]]) -> str:
    """Summarize the provenance of a set of results in one paragraph."""
    if not results:
        return "No results."
    first = results[0]
    commits = sorted({str(r["provenance"]["git_commit"])[:10] for r in results})
    dirty = any(r["provenance"]["git_dirty"] for r in results)
    hardware_info = first["provenance"]["hardware"]
    machine = hardware_info["gpu"] or hardware_info["cpu"]
    if hardware_info.get("device") == "cpu" or not hardware_info["gpu"]:
        machine = f"{hardware_info['cpu']}, {hardware_info['num_threads']} threads"
    precisions = sorted({p for p in map(_run_precision, results) if p is not None})
    if precisions:
        machine += f", {' and '.join(precisions)}"
    started = sorted(r["provenance"]["started_at"] for r in results)
    restored = [r for r in results if restored_in_full(r)]
    wall = sum(r["provenance"]["wall_time_s"] for r in results if not restored_in_full(r))
    wall_text = f"{wall / 60:.1f} min of wall time in total"
    if restored:
        wall_text += (
            f", not counting the {len(restored)} runs restored in full from checkpoints "
            "that earlier runs trained"
        )
    seeds = sorted({r["seed"] for r in results})
    dataset = first.get("dataset", {}).get("label", "no dataset")
    return (
        f"Data: {dataset}. Preset `{first['preset']}` ({scale_description(results)}); "
        f"seeds {', '.join(map(str, seeds))}; {len(results)} result files. "
        f"Code: commit {', '.join(commits)}{' with uncommitted changes' if dirty else ''}. "
        f"Hardware: {machine}; torch {first['provenance']['torch']}. "
        f"Run from {started[0]} to {started[-1]} (start times), {wall_text}. "
        f"Files: docs/results/{first['preset']}/{first['experiment']}/."
    )


def produce_note(experiment: str) -> str:
    """Return Markdown with the commands that produce the results of ``experiment``."""
    return (
        f"No results for `{experiment}` are stored in docs/results/ yet, so this section "
        "shows none. Produce them on a GPU with\n\n"
        f"    {PRODUCE_COMMANDS['gpu'].format(name=experiment)}\n\n"
        "or, at a reduced scale on a CPU, with\n\n"
        f"    {PRODUCE_COMMANDS['cpu'].format(name=experiment)}\n\n"
        "and rebuild the site."
    )


# -----------------------------------------------------------------------------
# Figures


def _band(ax: Any, x: np.ndarray, runs: np.ndarray, label: str) -> None:
    mean = runs.mean(axis=0)
    std = runs.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
    (line,) = ax.plot(x, mean, marker="o", label=label)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def plot_training(results: Sequence[dict[str, Any]], title: str) -> Figure:
    """Plot test accuracy and training loss per epoch, mean ± std over seeds.

    Diverged runs are left out of the figure.
    """
    figure = Figure(figsize=(10, 3.8))
    left, right = figure.subplots(1, 2)
    for configuration, runs in _ordered(results).items():
        finished = [r for r in runs if r["status"] == "ok"]
        if not finished:
            continue
        epochs = np.array([row["epoch"] for row in finished[0]["epochs"]])
        label = finished[0].get("configuration_label", configuration)
        accuracy = np.array([[row["test_accuracy"] * 100 for row in r["epochs"]] for r in finished])
        loss = np.array([[row["train_loss"] for row in r["epochs"]] for r in finished])
        _band(left, epochs, accuracy, label)
        _band(right, epochs, loss, label)
    for axis in (left, right):
        axis.xaxis.get_major_locator().set_params(integer=True)
    left.set(xlabel="epoch", ylabel="test accuracy (%)")
    right.set(xlabel="epoch", ylabel="training loss (with label smoothing)")
    left.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_e3(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """Bar chart of E3: test accuracy per BatchNorm mode, batch order and batch size."""
    figure = Figure(figsize=(8, 3.8))
    ax = figure.subplots()
    labels = [f"{r['order']}\nbatch {r['batch_size']}" for r in rows if r["mode"] == "eval"]
    for offset, mode in ((-0.2, "eval"), (0.2, "train")):
        selected = [r for r in rows if r["mode"] == mode]
        means = [r["accuracy"][0] * 100 for r in selected]
        stds = [r["accuracy"][1] * 100 for r in selected]
        positions = np.arange(len(selected)) + offset
        ax.bar(positions, means, width=0.4, yerr=stds, capsize=3, label=f"model.{mode}()")
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="small")
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_e4(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """Log-log plot of E4: time of gradient descent and of the two SVDs against matrix size."""
    figure = Figure(figsize=(10, 3.8))
    left, right = figure.subplots(1, 2)
    sizes = np.array([r["size"] for r in rows])
    for key, label in (
        ("gd_time_s", "gradient descent to tolerance"),
        ("svd_time_s", "exact SVD"),
        ("svd_lowrank_time_s", "torch.svd_lowrank"),
        ("gd_time_per_step_s", "one gradient step"),
    ):
        means = np.array([r[key][0] for r in rows])
        stds = np.array([r[key][1] for r in rows])
        left.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=label)
    left.set(yscale="log", ylabel="time (s)")
    left.legend(fontsize="small")
    steps = np.array([r["gd_steps"][0] for r in rows])
    step_std = np.array([r["gd_steps"][1] for r in rows])
    right.errorbar(sizes, steps, yerr=step_std, marker="o", capsize=3)
    right.set(ylabel="gradient steps to tolerance")
    right.set_ylim(bottom=0)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel("m = n")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


# -----------------------------------------------------------------------------
# Page helper


def _display_markdown(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


def _display_figure(figure: Figure) -> None:
    # A PNG rendered here shows the same under every matplotlib backend,
    # including the Agg backend that the docs build sets.
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    display(Image(data=buffer.getvalue(), format="png"))


def experiment_summary(
    experiment: str,
    results_dir: str | os.PathLike[str] | None = None,
    preset: str | None = None,
) -> dict[str, Any] | None:
    """Load and aggregate one experiment; None when it has no results.

    Returns a dict with ``preset``, ``results``, ``rows`` (aggregated), ``table``
    (Markdown), ``figure`` (matplotlib) and ``provenance`` (text).
    """
    from hw2lib.experiments import EXPERIMENTS

    chosen = preset or available_preset(experiment, results_dir)
    if chosen is None:
        return None
    results = load_results(results_dir, experiment=experiment, preset=chosen)
    if not results:
        return None
    dataset = results[0]["dataset"]["label"]
    title = f"{EXPERIMENTS[experiment].title} ({dataset}, preset {chosen})"
    if experiment in ("e1", "e2"):
        rows = aggregate_training(results)
        table, figure = training_table(rows), plot_training(results, title)
    elif experiment == "e3":
        rows = aggregate_e3(results)
        table, figure = e3_table(rows), plot_e3(rows, title)
    elif experiment == "e4":
        rows = aggregate_e4(results)
        table, figure = e4_table(rows), plot_e4(rows, title)
    else:
        raise KeyError(f"unknown experiment {experiment!r}")
    return {
        "preset": chosen,
        "results": results,
        "rows": rows,
        "table": table,
        "figure": figure,
        "provenance": provenance_text(results),
    }


def show_experiment(
    experiment: str,
    results_dir: str | os.PathLike[str] | None = None,
    preset: str | None = None,
) -> dict[str, Any] | None:
    """Display one experiment's table, figure and provenance on a page.

    Without results, displays the commands that produce them instead and
    returns None; the page still builds. Outside IPython the text is printed.
    """
    summary = experiment_summary(experiment, results_dir, preset)
    if summary is None:
        _display_markdown(produce_note(experiment))
        return None
    if summary["preset"] == "smoke":
        _display_markdown(SMOKE_NOTE)
    _display_markdown(summary["table"])
    _display_figure(summary["figure"])
    _display_markdown(f"*Provenance of the figure above.* {summary['provenance']}")
    return summary


# -----------------------------------------------------------------------------
# Sentences computed from the aggregated rows, for the prose of a page


def describe_training(rows: Sequence[dict[str, Any]]) -> str:
    """Describe the spread of final test accuracy across configurations against the seed noise."""
    finished = [row for row in rows if row["seeds"] > 0]
    if not finished:
        return "Every run diverged, so there is no accuracy to compare."
    best = max(finished, key=lambda row: row["test_accuracy"][0])
    worst = min(finished, key=lambda row: row["test_accuracy"][0])
    # The spread is taken between the rounded means that the sentence prints,
    # so that the three numbers in it agree.
    spread = round(best["test_accuracy"][0] * 100, 1) - round(worst["test_accuracy"][0] * 100, 1)
    noise = max(row["test_accuracy"][1] for row in finished) * 100
    verdict = (
        "larger than"
        if spread > 2 * noise
        else "within about twice"
        if spread > noise
        else "within"
    )
    return (
        f"Mean final test accuracy runs from {worst['test_accuracy'][0] * 100:.1f}% "
        f"({worst['label']}) to {best['test_accuracy'][0] * 100:.1f}% ({best['label']}), "
        f"a spread of {spread:.1f} points. The largest standard deviation over seeds is "
        f"{noise:.1f} points, so the spread is {verdict} the seed-to-seed noise."
    )


def loglog_slope(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Return the least-squares slope of log(time) against log(size)."""
    slope, _ = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)
    return float(slope)


def describe_difference(
    rows: Sequence[dict[str, Any]], first: str, second: str, change: str
) -> str | None:
    """Describe how far configuration ``second`` ends from ``first`` in final test accuracy.

    ``change`` names what differs between the two, and opens the sentence.
    Returns None when either configuration has no finished run. The difference
    is taken between the rounded means that the sentence prints, and it is set
    against the larger of the two seed standard deviations.
    """
    by_name = {row["configuration"]: row for row in rows if row["seeds"] > 0}
    if first not in by_name or second not in by_name:
        return None
    a, b = by_name[first], by_name[second]
    mean_a = round(a["test_accuracy"][0] * 100, 1)
    mean_b = round(b["test_accuracy"][0] * 100, 1)
    difference = mean_b - mean_a
    noise = max(a["test_accuracy"][1], b["test_accuracy"][1]) * 100
    verdict = "more than twice" if abs(difference) > 2 * noise else "less than twice"
    return (
        f"{change}: {mean_a:.1f}% ({a['label']}) → {mean_b:.1f}% ({b['label']}), "
        f"{difference:+.1f} points, {verdict} the larger seed standard deviation "
        f"({noise:.1f} points)."
    )


# The E1 pairs. The first is the plain swap of BN and ReLU, which also drops
# the ReLU after the addition. Each of the other two isolates one change: the
# ReLU after the addition, or the place of BN with that ReLU kept.
E1_PAIRS = (
    (
        "before_relu",
        "after_relu",
        "Moving BN behind the ReLU and dropping the ReLU after the addition",
    ),
    (
        "after_relu",
        "after_relu_add_relu",
        "With BN after ReLU, adding a ReLU after the residual addition",
    ),
    (
        "before_relu",
        "after_relu_add_relu",
        "With a ReLU after the addition in both, moving BN behind the ReLU",
    ),
)


def describe_e1(rows: Sequence[dict[str, Any]]) -> str:
    """Describe E1: the spread over all block designs, then the difference of each pair."""
    sentences = [describe_difference(rows, *pair) for pair in E1_PAIRS]
    bullets = "\n".join(f"* {text}" for text in sentences if text is not None)
    return describe_training(rows) + ("\n\n" + bullets if bullets else "")
