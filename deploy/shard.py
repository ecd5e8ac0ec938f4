#!/usr/bin/env python3
"""Run a command over one shard of a scene list (the worker of the Kubernetes Indexed Job).

Pod ``i`` of an Indexed Job with ``n`` completions gets ``JOB_COMPLETION_INDEX=i``; it takes every
scene whose line number (0-based, blank lines and ``#`` comments skipped) is ``i`` modulo ``n``,
so the shards are disjoint and together cover the list. ``{index}`` in the command is replaced by
``i``; the shard's scenes are appended as arguments, and the command replaces this process.

    python shard.py --list scenes.txt --count 4 [--index 2] -- \
        asmspotter submit -o /results/shard-{index} --no-progress
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


class ShardError(ValueError):
    """The shard cannot be chosen (bad index, count or list)."""


def read_scene_list(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def shard(scenes: Sequence[str], index: int, count: int) -> list[str]:
    """The scenes of shard ``index`` out of ``count`` (round-robin by position)."""
    if count < 1:
        raise ShardError(f"shard count must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ShardError(f"shard index {index} is outside 0..{count - 1}")
    return list(scenes[index::count])


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", required=True, type=Path, help="scene list, one per line")
    parser.add_argument("--index", type=int, default=_env_int("JOB_COMPLETION_INDEX"))
    parser.add_argument("--count", type=int, default=_env_int("JOB_COMPLETIONS"))
    args = parser.parse_args(argv)
    if args.index is None or args.count is None:
        parser.error("set --index/--count or JOB_COMPLETION_INDEX/JOB_COMPLETIONS")
    try:
        mine = shard(read_scene_list(args.list), args.index, args.count)
    except (ShardError, OSError) as exc:
        print(f"error [INVALID_ARGUMENT]: {exc}", file=sys.stderr)
        return 2
    print(f"shard {args.index}/{args.count}: {len(mine)} scene(s)", file=sys.stderr, flush=True)
    if not command:
        print("\n".join(mine))
        return 0
    if not mine:
        return 0  # more shards than scenes: nothing to do, and that is a success
    final = [part.replace("{index}", str(args.index)) for part in command] + mine
    os.execvp(final[0], final)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
