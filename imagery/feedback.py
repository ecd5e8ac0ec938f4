"""What people see while a command works: progress bars, step lines and notices; one policy.

- Progress bars go to stderr, only when stderr is a terminal (logs and pipes stay clean; set
  ``ASMSPOTTER_PROGRESS=1`` to force them) and never with ``--quiet``.
- Step lines ("train: computing band statistics from 400 chips") go to stderr unless ``--quiet``.
- Notices (an input was adapted: "resampled from 5 m ...") and warnings always go to stderr,
  one line each, ``note: ...`` / ``warning: ...``.
- ``-v`` turns on INFO logging, ``-vv`` DEBUG. Servers (``serve``, ``label backend``) log at
  INFO by default: start-up and one line per request (``--quiet``: warnings only).

The CLI calls ``configure`` once from the global ``-v``/``--quiet`` flags; library code calls
``bar``, ``step``, ``notice`` and ``warn`` and never prints otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

_state = {"quiet": False, "verbose": 0}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(quiet: bool = False, verbose: int = 0) -> None:
    _state["quiet"], _state["verbose"] = bool(quiet), int(verbose)
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


def configure_server() -> None:
    """Long-running servers (``serve``, ``label backend``) log at INFO by default: start-up and
    one line per request; ``--quiet`` keeps warnings only, ``-v`` adds debug detail."""
    level = (
        logging.WARNING if _state["quiet"] else logging.DEBUG if _state["verbose"] else logging.INFO
    )
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


def quiet() -> bool:
    return _state["quiet"]


def verbose() -> int:
    return _state["verbose"]


def bars_enabled() -> bool:
    if _state["quiet"]:
        return False
    forced = os.environ.get("ASMSPOTTER_PROGRESS", "")
    if forced:
        return forced not in ("0", "false", "no")
    return sys.stderr.isatty()


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar on stderr following the policy above (disabled bars still iterate)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not (enabled and bars_enabled()),
        file=sys.stderr,
        dynamic_ncols=True,
    )


def step(message: str) -> None:
    """A line saying what a long step is doing now (not shown with --quiet)."""
    if not _state["quiet"]:
        print(message, file=sys.stderr, flush=True)


def notice(message: str) -> None:
    """An input was adapted or a default chosen for the user: always shown."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Something is probably not what the user meant: always shown."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
