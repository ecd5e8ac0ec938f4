"""The ``asmspotter`` command: each package registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from asmspotter import __version__
from imagery.errors import AsmSpotterError

# Packages whose ``cli.register(subparsers)`` adds sub-commands; a missing optional extra
# (e.g. torch for training) only hides that package's commands.
COMMAND_MODULES = (
    "asmspotter.demo",
    "imagery.cli",
    "imagery.synthetic.cli",
    "training.cli",
    "service.cli",
    "labeling.cli",
    "monitoring.cli",
)


OWN_PACKAGES = {"asmspotter", "imagery", "training", "service", "labeling", "monitoring"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asmspotter", description="Find and monitor ASM sites in Sentinel imagery."
    )
    parser.add_argument("--version", action="version", version=f"asmspotter {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A missing optional dependency (an extra not installed) or package hides its commands;
            # a missing module of our own inside a present package is a bug and is raised.
            top = (exc.name or "").split(".")[0]
            if top not in OWN_PACKAGES or name.startswith(exc.name or "\0"):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AsmSpotterError as exc:
        print(f"error [{exc.reason.value}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
