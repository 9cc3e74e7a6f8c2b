"""``lightning-cnn``: LightningCLI subcommands, plus ``train`` with the flags every trainer shares.

- ``lightning-cnn fit | validate | test | predict [--config FILE] [--print_config] ...``:
  the LightningCLI (``lightning_cnn.cli``).
- ``lightning-cnn train [--spec FILE] [--epochs N] [--out DIR] [--resume] ...``: the contract's
  ``train``, writing the run record ``compare`` reads (the same flags as ``numpy-cnn train``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnn_common.cli import add_train_arguments, data_from_args, init_from_args, specs_from_args
from cnn_common.errors import run_cli

PROG = "lightning-cnn"


def train_main(argv: list[str]) -> int:
    """``lightning-cnn train ...``: one contract run; prints where the record went."""
    from lightning_cnn.train import DEVICES, train

    parser = argparse.ArgumentParser(
        prog=f"{PROG} train", description=train.__doc__.splitlines()[0]
    )
    add_train_arguments(parser)
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)
    model_spec, train_spec = specs_from_args(args)
    data = data_from_args(args, train_spec)
    out = args.out or Path("runs") / "lightning"
    result = train(
        model_spec,
        train_spec,
        data,
        out,
        init_weights=init_from_args(args, model_spec, train_spec),
        resume=args.resume,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"test accuracy {result.test_accuracy:.4f}, loss {result.test_loss:.4f}; wrote {out}")
    return 0


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["train"]:
        return train_main(args[1:])
    from lightning_cnn.cli import cli_main

    # None: LightningCLI reads sys.argv itself (as DDP's re-launched processes do).
    cli_main(None if argv is None else args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
