"""The ``asmspotter`` command: each package registers its own sub-commands.

One behaviour for every command: help shows defaults; a usage mistake, a refused input, an
unreachable server, an unwritable output or a library warning is one line on stderr
(``error [REASON]: message``, exit 2; ``warning: ...``), never a traceback; ``-v``/``--quiet``
(before or after the command name) set how much is shown (``imagery.feedback``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings
from collections.abc import Sequence

from asmspotter import __version__
from imagery import feedback
from imagery.errors import AsmSpotterError, Reason

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


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default unless it is empty or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS, [], ())
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``error [INVALID_ARGUMENT]: ...``, exit 2)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        print(
            f"error [{Reason.INVALID_ARGUMENT.value}]: {self.prog}: {message} "
            f"(see `{self.prog} --help`)",
            file=sys.stderr,
        )
        sys.exit(2)


def _feedback_flags(parser: argparse.ArgumentParser, top: bool) -> None:
    """-v/--verbose and -q/--quiet; a command that declares its own keeps it."""
    taken = parser._option_string_actions
    g = parser.add_argument_group("output")
    if not {"-v", "--verbose"} & taken.keys():
        g.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0 if top else argparse.SUPPRESS,  # a sub-command keeps what came before it
            help="more detail: -v logs requests and steps, -vv debug logs and tracebacks",
        )
    if not {"-q", "--quiet"} & taken.keys():
        g.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help="no progress bars or step lines (errors, warnings and results still shown)",
        )


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for a in subs for p in dict.fromkeys(a.choices.values()) for leaf in _leaves(p)]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="asmspotter", description="Find and monitor ASM sites in Sentinel imagery."
    )
    parser.add_argument("--version", action="version", version=f"asmspotter {__version__}")
    _feedback_flags(parser, top=True)
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
    for leaf in _leaves(parser):
        if leaf is not parser:
            _feedback_flags(leaf, top=False)
    return parser


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """A library's warning as one line of ours (the source location only with -vv)."""
    text = " ".join(str(message).split())
    where = f" ({filename}:{lineno})" if feedback.verbose() > 1 else ""
    print(f"warning: {text} [{category.__name__}]{where}", file=sys.stderr)


def _client_error(exc: BaseException) -> tuple[str, str] | None:
    """(reason, message) of a detection-service error raised by the client SDK."""
    try:
        from service.client.types import DetectionError
    except ImportError:
        return None
    if isinstance(exc, DetectionError):
        return exc.reason, exc.message
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return int(exc.code or 0)
    feedback.configure(quiet=args.quiet, verbose=args.verbose)
    warnings.showwarning = _one_line_warning
    try:
        return int(args.handler(args) or 0)
    except AsmSpotterError as exc:
        print(f"error [{exc.reason.value}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an unwritable output, a full disk, a vanished file
        if args.verbose > 1:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        reason = Reason.FILE_NOT_FOUND if isinstance(exc, FileNotFoundError) else "IO_ERROR"
        print(f"error [{reason}]: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        known = _client_error(exc)
        if known is not None:
            print(f"error [{known[0]}]: {known[1]}", file=sys.stderr)
            return 2
        if args.verbose > 1:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:300]
        print(
            f"error [INTERNAL]: unexpected {type(exc).__name__}: {text}; this is a bug: please "
            "report it with the output of the same command run with -vv",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
