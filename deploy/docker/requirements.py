"""Print the project's requirements (base + extras) from pyproject.toml, one per line.

The container builds install these in a layer of their own before copying the source, so editing
code does not reinstall torch:  python requirements.py pyproject.toml server,train
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path


def requirements(pyproject: Path, extras: Sequence[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    wanted, seen, result = list(extras), set(), list(project.get("dependencies", []))
    while wanted:
        extra = wanted.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"error [INVALID_ARGUMENT]: no extra {extra!r} in {pyproject}")
        seen.add(extra)
        for req in optional[extra]:
            self_ref = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if self_ref:  # e.g. "asmspotter[server,train]" inside the `all` extra
                wanted += [e.strip() for e in self_ref.group(1).split(",")]
            else:
                result.append(req)
    return list(dict.fromkeys(result))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: requirements.py PYPROJECT EXTRA[,EXTRA...]", file=sys.stderr)
        return 2
    extras = [e for e in args[1].split(",") if e.strip()]
    print("\n".join(requirements(Path(args[0]), extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
