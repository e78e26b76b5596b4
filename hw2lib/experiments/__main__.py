"""Command line: ``python -m hw2lib.experiments {list,run} ...``.

Examples::

    python -m hw2lib.experiments list
    python -m hw2lib.experiments run e1 e2 --preset cpu --data-dir ../shared/data/cifar10-jpeg
    python -m hw2lib.experiments run all --preset gpu --data-dir data --download

Errors in the data or the checkpoints are printed as one line, without a
traceback, and the command exits with status 2.

Results go to docs/results/, which the site reads, except for the smoke
preset: its numbers come from synthetic data, so they go to
.cache/smoke-results/ unless ``--out`` names another folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hw2lib import results as results_io
from hw2lib.data import DatasetError, DatasetNotFoundError, locate
from hw2lib.experiments.presets import PRESETS
from hw2lib.experiments.registry import EXPERIMENTS
from hw2lib.experiments.runner import DEFAULT_CHECKPOINT_DIR, RunOptions, run_experiment
from hw2lib.training import PRECISIONS, CheckpointMismatchError

logger = logging.getLogger("hw2lib.experiments")

DEFAULT_DATA_DIR = Path("data")
# Relative to the current folder, like the checkpoint folder; .cache/ is ignored by git.
SMOKE_RESULTS_DIR = Path(".cache") / "smoke-results"


# The experiments that train or evaluate on CIFAR-10; E4 builds its own matrices.
CIFAR_EXPERIMENTS = {"e1", "e2", "e3"}


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"invalid seeds {text!r}: expected integers separated by commas, e.g. 0,1,2"
        ) from error
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one integer, e.g. 0,1,2")
    negative = [seed for seed in seeds if seed < 0]
    if negative:
        raise argparse.ArgumentTypeError(
            f"invalid seeds {text!r}: seeds must be 0 or greater, not {negative[0]}"
        )
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"invalid seeds {text!r}: seed {repeated[0]} is listed more than once"
        )
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hw2lib.experiments",
        description="Run the chapter's experiments and write results files for the site.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the experiments and presets")

    run = commands.add_parser(
        "run",
        help="run experiments and write one JSON results file per configuration and seed",
        description=(
            "Run experiments. Existing results files are kept, so rerunning the command "
            "continues an interrupted run; training resumes from the last epoch checkpoint."
        ),
    )
    run.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"experiments to run: {', '.join(EXPERIMENTS)}, or 'all'",
    )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="smoke",
        help="scale of the run: smoke (synthetic data, seconds), cpu (CIFAR-10 subset; E1-E3 "
        "took 15 min on 2 Xeon cores), gpu (full CIFAR-10); default: smoke",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with cifar-10-batches-py/ or train/ and test/ class folders "
        f"(default: {DEFAULT_DATA_DIR}); not read by the smoke preset",
    )
    run.add_argument(
        "--download",
        action="store_true",
        help="download the official CIFAR-10 archive (163 MB) into --data-dir when missing",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results folder (default: {results_io.RESULTS_DIR}, which the site reads; "
        f"{SMOKE_RESULTS_DIR} for the smoke preset, whose numbers only check the pipeline)",
    )
    run.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        help="comma-separated seeds, e.g. 0,1,2 (default: the preset's seeds)",
    )
    run.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=DEFAULT_CHECKPOINT_DIR,
        help=f"folder for per-epoch training checkpoints (default: {DEFAULT_CHECKPOINT_DIR})",
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="folder for the decoded-dataset cache, about 180 MB for CIFAR-10 "
        "(default: $HW2LIB_CACHE_DIR or ~/.cache/hw2lib)",
    )
    run.add_argument(
        "--device", default="auto", help="torch device, e.g. cpu or cuda:0 (default: auto)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: the number of CPU cores)",
    )
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of training: auto (bfloat16 autocast on CUDA, float32 on a CPU), "
        "float32, or bfloat16 (autocast; fast only on CPUs with bfloat16 units such as AMX). "
        "It changes the results, so results files record it (default: auto)",
    )
    run.add_argument(
        "--force", action="store_true", help="recompute results files that already exist"
    )
    run.add_argument("--quiet", action="store_true", help="hide progress bars and INFO logs")
    return parser


def _list() -> None:
    print("experiments:")
    for experiment in EXPERIMENTS.values():
        print(f"  {experiment.name}  {experiment.title}: {experiment.description}")
        for name, (label, _) in experiment.configurations.items():
            print(f"        {name}: {label}")
    print("presets:")
    for name, preset in PRESETS.items():
        print(f"  {name}  {preset['description']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        _list()
        return 0

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The site writes experiments as E1 ... E4, so names are case-insensitive.
    requested = [name.lower() for name in args.names]
    names = list(EXPERIMENTS) if "all" in requested else list(dict.fromkeys(requested))
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        print(
            f"error: unknown experiment {', '.join(unknown)}; choose from "
            f"{', '.join(EXPERIMENTS)} or all",
            file=sys.stderr,
        )
        return 2
    if args.out is None:
        args.out = SMOKE_RESULTS_DIR if args.preset == "smoke" else results_io.RESULTS_DIR
    data_dir = DEFAULT_DATA_DIR if args.data_dir is None else args.data_dir
    commit, dirty = results_io.git_state()
    run_log = results_io.RunLog(
        args.out, f"start: {results_io.command_line()} (commit {commit}, dirty={dirty})"
    )
    options = RunOptions(
        preset=args.preset,
        data_dir=data_dir,
        results_dir=args.out,
        checkpoint_dir=args.checkpoint_dir,
        cache_dir=args.cache_dir,
        seeds=args.seeds,
        download=args.download,
        device=args.device,
        num_threads=args.threads,
        precision=args.precision,
        force=args.force,
        # Progress bars only on a terminal; a redirected log gets the per-epoch lines.
        progress=not args.quiet and sys.stderr.isatty(),
        run_log=run_log,
    )
    reads_cifar = PRESETS[args.preset]["data"] == "cifar10" and set(names) & CIFAR_EXPERIMENTS
    try:
        if reads_cifar and not args.download:
            # Checked before any existing results file is skipped, so a mistyped
            # --data-dir fails even when there is nothing left to compute.
            locate(data_dir)
        for name in names:
            paths = run_experiment(name, options)
            logger.info("%s: %d results files in %s", name, len(paths), args.out)
    except (DatasetError, CheckpointMismatchError) as error:
        message = str(error)
        defaulted = args.data_dir is None and not args.download
        if defaulted and isinstance(error, DatasetNotFoundError) and not data_dir.exists():
            message = (
                f"CIFAR-10 not found: --data-dir was not given, and its default, {data_dir} "
                f"({data_dir.resolve()}), does not exist; pass --data-dir PATH with a folder "
                "that holds cifar-10-batches-py/ or train/ and test/ class folders, or add "
                f"--download to fetch CIFAR-10 into {data_dir}"
            )
        run_log.close(f"failed: {message}")
        print(f"error: {message}", file=sys.stderr)
        return 2
    run_log.close("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
