"""``cnn-compare run | parity | bench | report`` — thin: parsing here, work in the modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnn_common.cli import add_data_arguments, add_spec_arguments, specs_from_args
from cnn_common.data import dataset_info
from cnn_common.errors import UserError, run_cli

PROG = "cnn-compare"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train the frameworks side by side and write a report")
    run.add_argument(
        "--frameworks",
        default="numpy,keras,lightning",
        help="comma-separated subset of numpy,keras,lightning",
    )
    add_spec_arguments(run)
    add_data_arguments(run)
    run.add_argument("--seeds", type=int, default=1, help="repeat each framework over N seeds")
    run.add_argument(
        "--init",
        choices=["shared", "native"],
        default="shared",
        help="shared: identical starting weights; native: each framework's own",
    )
    run.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    run.add_argument("--out", type=Path, default=Path("runs/compare"), help="results folder")
    run.add_argument("--resume", action="store_true", help="run only what is missing in --out")
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the frameworks in this process instead of one process each",
    )
    run.add_argument("--threads", type=int, help="CPU threads per framework (default: all)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    parity = sub.add_parser("parity", help="one set of weights in all three: compare numerics")
    parity.add_argument("--frameworks", default="numpy,keras,lightning")
    add_spec_arguments(parity)
    add_data_arguments(parity)
    parity.add_argument("--steps", type=int, default=3, help="optimiser steps to compare")
    parity.add_argument("--out", type=Path, default=Path("runs/parity"))
    parity.add_argument("--in-process", action="store_true")

    bench = sub.add_parser("bench", help="training and inference throughput")
    bench.add_argument("--frameworks", default="numpy,keras,lightning")
    add_spec_arguments(bench)
    add_data_arguments(bench)
    bench.add_argument(
        "--train-images", type=int, default=12800, help="images per timed training epoch"
    )
    bench.add_argument("--repeats", type=int, default=3, help="timed repetitions (median)")
    bench.add_argument("--threads", type=int, help="CPU threads per framework (default: all)")
    bench.add_argument("--out", type=Path, default=Path("runs/bench"))

    report = sub.add_parser("report", help="render the report of a results folder again")
    report.add_argument("dir", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``cnn-compare: error: ...`` and return 2."""
    return run_cli(lambda: _main(argv), PROG)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        from compare.report import write_outputs

        for line in write_outputs(args.dir):
            print(line)
        return 0

    from compare.frameworks import parse_frameworks

    names = parse_frameworks(args.frameworks)
    dataset_info(args.dataset)  # an unknown dataset fails before anything starts
    model, train = specs_from_args(args)
    if args.command == "run":
        return _run(args, names, model, train)
    # What every subcommand's options share.
    common = {
        "frameworks": tuple(names),
        "model_spec": model,
        "train_spec": train,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "out": args.out,
    }
    if args.command == "parity":
        from compare.parity import ParityOptions, run_parity

        return run_parity(ParityOptions(**common, steps=args.steps, in_process=args.in_process))
    from compare.bench import BenchOptions, run_bench

    return run_bench(
        BenchOptions(
            **common, train_images=args.train_images, repeats=args.repeats, threads=args.threads
        )
    )


def _run(args: argparse.Namespace, names: list[str], model, train) -> int:  # noqa: ANN001
    from cnn_common.data import load_dataset
    from compare.runner import RunOptions, run

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}", "use --seeds 1 or more")
    # Missing or corrupt data fails here, once, before any framework starts.
    load_dataset(args.dataset, root=args.data_dir)
    options = RunOptions(
        frameworks=tuple(names),
        dataset=args.dataset,
        model_spec=model,
        train_spec=train,
        seeds=args.seeds,
        init=args.init,
        device=args.device,
        out=args.out,
        data_dir=args.data_dir,
        subset=args.subset,
        resume=args.resume,
        overwrite=args.overwrite,
        in_process=args.in_process,
        threads=args.threads,
        progress=not args.no_progress,
    )
    status = run(options)
    if status == 2:
        print(f"{PROG}: error: some frameworks could not run; see the report", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
