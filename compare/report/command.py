"""``cnn-compare report DIR``: render the report of a results folder again."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_common.files import atomic_write_json
from compare.engine.layout import CONFIG_FILE
from compare.engine.options import read_config
from compare.report.outputs import write_outputs
from compare.stats.margins import margin_argument, margin_from, parse_margin

DESCRIPTION = (
    "Read a results folder (the --out of `cnn-compare run`) and write its results.json, "
    "history.csv, figures/, report.md and report.html again."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare report``."""
    parser.add_argument("dir", type=Path, help="the results folder")
    margin_argument(parser)


def main(args: argparse.Namespace) -> int:
    """Write the folder's report (with ``--margin``: the folder keeps the new margins);
    print one line per framework, the pairs' verdicts and the report's path."""
    if args.margin:
        parse_margin(args.margin)  # a bad one is refused before anything is read
    config_path = args.dir / CONFIG_FILE
    if args.margin and config_path.is_file():
        config = read_config(config_path)
        config["margin"] = margin_from(args, config).to_dict()
        atomic_write_json(config_path, config)
    for line in write_outputs(args.dir):
        print(line)
    return 0
