"""The documented commands: extracted from the docs, run as written from a clean copy.

Every ```bash block of the documents in ``DOCUMENTS`` is a sequence of commands (backslash
continuations joined, comment lines dropped); a ```python block is run with ``.venv/bin/python``
at that point. A doc author steers the test with an HTML comment on the line(s) right before a
block (invisible on GitHub):

    <!-- docs-test: skip: needs a Docker engine -->          the block is not run (say why)
    <!-- docs-test: omit "make test" runs the suite itself --> one command of the block is not run
    <!-- docs-test: append "asmspotter train" max_iter=20 --> extra arguments for the commands
                                                              of the block containing the text
    <!-- docs-test: replace "-n 64" "-n 8" -->               text replaced in the block's commands
    <!-- docs-test: before: COMMAND -->                      run COMMAND first (e.g. what a person
                                                              would do in a browser), not shown
    <!-- docs-test: timeout 300 -->                          seconds for the block (default 600)

Shortened or skipped commands are listed by the test. Ports written in the docs (50051 for the
detection service, 8080 for Label Studio, 9090 for the ML backend) are replaced by free ports
so that runs on a shared machine do not collide; nothing else is changed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/*.md", "labeling/README.md", "deploy/README.md")
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->", re.S)
FENCE = re.compile(r"^```(\w*)\s*$")
PORTS = (50051, 8080, 9090)


@dataclass
class Block:
    document: str
    line: int  # 1-based line of the opening fence
    language: str
    commands: list[str]
    skip: str | None = None
    timeout: float = 600.0
    before: list[str] = field(default_factory=list)
    changed: dict[int, str] = field(default_factory=dict)  # command index -> how it was altered
    omitted: dict[str, str] = field(default_factory=dict)  # command -> why it is not run


def documents(root: Path = REPO) -> list[Path]:
    out: list[Path] = []
    for pattern in DOCUMENTS:
        out += sorted(root.glob(pattern))
    return out


def commands_of(lines: list[str]) -> list[str]:
    """Shell lines -> commands: continuations joined, blank and comment-only lines dropped."""
    out, current = [], ""
    for raw in lines:
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        out.append((current + line.strip()) if current else line.strip())
        current = ""
    if current:
        out.append(current.strip())
    return out


def _apply(block: Block, directive: str) -> None:
    if directive.startswith("skip"):
        block.skip = directive.partition(":")[2].strip() or "skipped"
        return
    if directive.startswith("timeout"):
        block.timeout = float(directive.split()[1])
        return
    if directive.startswith("before:"):
        block.before.append(directive.partition(":")[2].strip())
        return
    words = shlex.split(directive)
    if words[0] == "omit":
        for cmd in [c for c in block.commands if words[1] in c]:
            block.commands.remove(cmd)
            block.omitted[cmd] = " ".join(words[2:]) or "omitted"
        return
    if words[0] == "append":
        target, extra = words[1], " ".join(shlex.quote(w) for w in words[2:])
        for i, cmd in enumerate(block.commands):
            if target in cmd:
                head, amp = (cmd[:-1].rstrip(), " &") if cmd.endswith("&") else (cmd, "")
                block.commands[i] = f"{head} {extra}{amp}"
                block.changed[i] = f"{block.changed.get(i, '')} +{extra}".strip()
        return
    if words[0] == "replace":
        old, new = words[1], words[2]
        for i, cmd in enumerate(block.commands):
            if old in cmd:
                block.commands[i] = cmd.replace(old, new)
                block.changed[i] = f"{block.changed.get(i, '')} {old!r}->{new!r}".strip()
        return
    raise ValueError(f"unknown docs-test directive {directive!r}")


def blocks(path: Path, root: Path = REPO) -> list[Block]:
    """The runnable blocks of one document, with their directives applied."""
    text = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(text):
        m = FENCE.match(text[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(text) and not text[j].startswith("```"):
            j += 1
        body = text[i + 1 : j]
        i = j + 1
        if lang not in ("bash", "sh", "python"):
            continue
        # directives: the comment lines right above the fence
        directives, k = [], start - 1
        while k >= 0 and text[k].strip().startswith("<!--"):
            directives += DIRECTIVE.findall(text[k])
            k -= 1
        if lang == "python":
            commands = [".venv/bin/python - <<'PYTHON'\n" + "\n".join(body) + "\nPYTHON"]
        else:
            commands = commands_of(body)
        block = Block(str(path.relative_to(root)), start + 1, lang, commands)
        directives.reverse()  # top to bottom; omissions first so indexes stay right
        for d in sorted(directives, key=lambda d: not d.startswith(("omit", "skip"))):
            _apply(block, d)
        out.append(block)
    return out


def asmspotter_commands(root: Path = REPO) -> list[tuple[str, list[str]]]:
    """(where, argv after `asmspotter`) of every documented CLI call, for the mistakes test."""
    out = []
    for doc in documents(root):
        for block in blocks(doc, root):
            if block.language == "python":
                continue
            for cmd in block.commands:
                for part in re.split(r"&&|\|\||;|\|", cmd):
                    try:
                        words = shlex.split(part.strip().rstrip("&"), comments=True)
                    except ValueError:
                        continue
                    if words and words[0].endswith("bin/asmspotter"):
                        out.append((f"{block.document}:{block.line}", words[1:]))
    return out
