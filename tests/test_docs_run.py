"""Every command in the docs runs as written, from a clean copy of the repository after `make demo`.

The copy holds exactly the files a clone would (tracked and not-ignored files), with
``../shared`` beside it and the already built ``.venv``/``.venv-labelstudio`` linked in (their
Makefile prerequisites are dated before the install markers, so `make demo` does not reinstall).
Each document's blocks run in order in one bash process (``tests/docs_support.py`` says how,
and how a doc author marks a block to skip or shorten); a failing command fails the test with
its document, line and stderr. HOME is a fresh folder and PATH holds only the system folders:
a doc that calls ``asmspotter`` instead of ``.venv/bin/asmspotter`` fails.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.docs_support import PORTS, REPO, Block, blocks, documents
from tests.real_parts import missing

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_copy(dest: Path) -> Path:
    """The files a clone holds, mtimes kept; ../shared and the built environments linked."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = dest / "repo"
    for name in filter(None, listing.split("\0")):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)
    for env in (".venv", ".venv-labelstudio"):
        if (REPO / env).is_dir():
            (clone / env).symlink_to(REPO / env)
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
    """Run a document's blocks; returns one record per command (and raises on a failure)."""
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
        return records
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
    failed = [r for r in records if r.get("rc") not in (None, 0)]
    unfinished = [r for r in records if r.get("started") and r.get("rc") is None]
    for r in failed + unfinished:
        i = records.index(r)
        err = (logs / f"{i}.err").read_text()[-3000:] if (logs / f"{i}.err").exists() else ""
        out = (logs / f"{i}.out").read_text()[-1500:] if (logs / f"{i}.out").exists() else ""
        state = "timed out" if r in unfinished else f"exit {r['rc']}"
        pytest.fail(f"{r['where']} {state}: {r['command']}\n--- stdout\n{out}\n--- stderr\n{err}")
    return records


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


@pytest.mark.timeout(2400)
def test_documented_commands_run_as_written(tmp_path_factory):
    if not (REPO / ".venv" / "bin" / "asmspotter").exists():
        missing("the project's .venv is not built (make install)")
    root = tmp_path_factory.mktemp("docs")
    clone = clean_copy(root)
    ports = {p: _free_port() for p in PORTS}
    summary = []
    for doc in documents(clone):
        logs = root / "logs" / doc.relative_to(clone).as_posix().replace("/", "_")
        logs.mkdir(parents=True)
        summary += run_document(doc, clone, logs, ports)
    ran = [r for r in summary if r.get("rc") == 0 and not r["extra"]]
    assert len(ran) >= 20, summary  # the docs hold commands and they ran
    times = os.environ.get("ASMSPOTTER_DOCS_TIMES")
    if times:
        Path(times).write_text(json.dumps(summary, indent=1))
