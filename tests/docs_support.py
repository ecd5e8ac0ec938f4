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

Every command, run, skipped or shortened, is listed with its wall time at the end of the test
(``times_table``; ``pytest -s`` shows it, and a failing run shows it with the captured output),
and written as JSON to ``$ASMSPOTTER_DOCS_TIMES`` when set, whether the run passed or not.
Ports written in the docs (50051 for the detection service, 8080 for Label Studio, 9090 for the
ML backend) are replaced by free ports so that runs on a shared machine do not collide; nothing
else is changed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
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


# ---- running a document ----

RUNNER = r"""
set -u
cd "$CLONE"
trap 'kill $(jobs -p) 2>/dev/null; sleep 1; kill -9 $(jobs -p) 2>/dev/null' EXIT
__run() {  # __run INDEX COMMAND
  local t0=$EPOCHREALTIME
  echo "$1 start $t0" >> "$LOGS/times"
  eval "$2" > "$LOGS/$1.out" 2> "$LOGS/$1.err" < /dev/null
  local rc=$?
  echo "$1 $rc $t0 $EPOCHREALTIME" >> "$LOGS/times"
  if [ "$rc" -ne 0 ]; then exit 97; fi
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_copy(dest: Path, repo: Path = REPO) -> Path:
    """The files a clone holds (tracked files only: never untracked work in progress), mtimes
    kept; ../shared and the built environments linked."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached"], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    clone = dest / "repo"
    clone.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listing.split("\0")):
        src = repo / name
        if src.is_file() and not src.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    shared = repo.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)
    for env in (".venv", ".venv-labelstudio"):
        if (repo / env).is_dir():
            (clone / env).symlink_to(repo / env)
    old = time.time() - 10 * 365 * 86400  # the environments are built: make must not rebuild
    for prereq in (
        "pyproject.toml",
        "third_party/detectron2/install.sh",
        "third_party/detectron2/detectron2-0.6.patch",
        "labeling/requirements-labelstudio.txt",
    ):
        if (clone / prereq).exists():
            os.utime(clone / prereq, (old, old))
    return clone


def _with_ports(command: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        command = command.replace(f":{old}", f":{new}").replace(f"--port {old}", f"--port {new}")
    return command


def run_document(doc: Path, clone: Path, logs: Path, ports: dict[int, int]) -> list[dict]:
    """Run a document's blocks; one record per command, with its exit status and wall time.
    Never raises for a failing command: ``failure`` says what failed."""
    parts = [RUNNER]
    records: list[dict] = []
    timeout = 0.0
    for block in blocks(doc, clone):
        records += [_record(block, c, skipped=why) for c, why in block.omitted.items()]
        if block.skip:
            records += [_record(block, c, skipped=block.skip) for c in block.commands]
            continue
        timeout += block.timeout
        listed = [(c, True, None) for c in block.before]
        listed += [(c, False, block.changed.get(i)) for i, c in enumerate(block.commands)]
        for cmd, extra, changed in listed:
            records.append(_record(block, cmd, extra=extra, changed=changed))
            index = len(records) - 1
            parts.append(f"__run {index} {shlex.quote(_with_ports(cmd, ports))}")
    if timeout == 0:
        return _with_status(records)
    home = logs / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CLONE": str(clone),
        "LOGS": str(logs),
        "OMP_NUM_THREADS": "2",
    }
    script = logs / "run.sh"
    script.write_text("\n".join(parts) + "\n")
    proc = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(3)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # servers the document left running
        except ProcessLookupError:
            pass
        proc.wait()
    _read_times(records, logs)
    return _with_status(records)


def failure(records: list[dict], logs: Path) -> str | None:
    """The first failed or unfinished command of a document's records, with its output."""
    for i, r in enumerate(records):
        if r["status"] not in ("timed out",) and not r["status"].startswith("failed"):
            continue
        err = (logs / f"{i}.err").read_text()[-3000:] if (logs / f"{i}.err").exists() else ""
        out = (logs / f"{i}.out").read_text()[-1500:] if (logs / f"{i}.out").exists() else ""
        state = "timed out" if r["status"] == "timed out" else f"exit {r['rc']}"
        return f"{r['where']} {state}: {r['command']}\n--- stdout\n{out}\n--- stderr\n{err}"
    return None


def _record(
    block: Block,
    command: str,
    skipped: str | None = None,
    extra: bool = False,
    changed: str | None = None,
) -> dict:
    return {
        "where": f"{block.document}:{block.line}",
        "command": command,
        "skipped": skipped,
        "extra": extra,  # run by the test, not written in the document
        "changed": changed,  # shortened by a docs-test directive
    }


def _read_times(records: list[dict], logs: Path) -> None:
    path = logs / "times"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        index, status, *rest = line.split()
        r = records[int(index)]
        if status == "start":
            r["started"] = True
            continue
        r["rc"] = int(status)
        r["seconds"] = round(float(rest[1]) - float(rest[0]), 1)


def _with_status(records: list[dict]) -> list[dict]:
    """status: run, changed (run shortened), extra (run, not in the document), skipped, and for a
    failed document failed (N), timed out, or not run (after the failure)."""
    for r in records:
        if r["skipped"]:
            r["status"] = "skipped"
        elif r.get("rc") is None:
            r["status"] = "timed out" if r.get("started") else "not run"
        elif r["rc"] != 0:
            r["status"] = f"failed ({r['rc']})"
        elif r["changed"]:
            r["status"] = "changed"
        else:
            r["status"] = "extra" if r["extra"] else "run"
    return records


def times_table(records: list[dict]) -> str:
    """document, seconds, status, command: one line per command, then the totals."""
    rows = [("document", "seconds", "status", "command")]
    for r in records:
        seconds = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
        command = r["command"].splitlines()[0]
        command = command if len(command) <= 110 else command[:107] + "..."
        rows.append((r["where"], seconds, r["status"], command))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows
    ]
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    total = sum(r.get("seconds") or 0.0 for r in records)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    lines.append(f"{len(records)} commands ({summary}); {total:.1f} s in commands")
    return "\n".join(lines)


def report_times(records: list[dict], *paths: str | Path | None) -> None:
    """Print the table and write the records as JSON to each given path (None: not written)."""
    print("\ndocumented commands and their wall times:\n" + times_table(records), flush=True)
    for path in filter(None, paths):
        Path(path).write_text(json.dumps(records, indent=1))
