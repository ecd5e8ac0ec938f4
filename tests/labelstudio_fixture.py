"""One real Label Studio server per test session, from its own venv (.venv-labelstudio).

The first start on a fresh database migrates for ~20 s; the migrated data dir (SQLite database,
secret key, the admin user with a fixed token) is kept as a template under .cache/ keyed by the
Label Studio version, and each session copies it into a throwaway dir (~2 s start).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.real_parts import missing

REPO = Path(__file__).resolve().parents[1]
LS_VENV = REPO / ".venv-labelstudio"
LS_BIN = LS_VENV / "bin" / "label-studio"
LS_REQUIREMENTS = REPO / "labeling" / "requirements-labelstudio.txt"
USERNAME = "labeller@asmspotter.test"
PASSWORD = "asmspotter-test-password"
TOKEN = "asmspotter0test0token0000000000000000000"


@dataclass
class LabelStudioServer:
    url: str
    token: str
    document_root: Path
    data_dir: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned_version() -> str:
    for line in LS_REQUIREMENTS.read_text().splitlines():
        if line.strip().startswith("label-studio=="):
            return line.split("==", 1)[1].strip()
    return "unpinned"


def _environment(data_dir: Path, document_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=USERNAME,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false",
        LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        PYTHONUNBUFFERED="1",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/projects/", timeout=2) as resp:  # noqa: S310
            return resp.status in (200, 401, 403)
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except OSError:
        return False


def _authorised(url: str) -> bool:
    req = urllib.request.Request(
        f"{url}/api/projects/", headers={"Authorization": f"Token {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def start_server(data_dir: Path, document_root: Path, timeout: float = 180) -> tuple:
    """Start Label Studio on a free loopback port; returns (process, url, log path)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir.parent / f"{data_dir.name}.log"
    cmd = [
        str(LS_BIN),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-legacy-api-token",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            env=_environment(data_dir, document_root),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited ({proc.returncode}); log: {log}")
        if b"is in use" in log.read_bytes():  # it moved to another port: not ours to use
            stop_server(proc)
            raise RuntimeError(f"port {port} was taken before Label Studio bound it; log: {log}")
        if _answers(url):
            if not _authorised(url):
                stop_server(proc)
                raise RuntimeError(f"Label Studio on {url} refuses the test token; log: {log}")
            return proc, url, log
        time.sleep(0.5)
    stop_server(proc)
    # A busy port makes Label Studio take the next one silently: say so rather than hang.
    raise RuntimeError(f"Label Studio did not answer on {url} within {timeout:.0f} s; log: {log}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _template_dir() -> Path:
    """A migrated data dir for this Label Studio version (built once, then reused)."""
    template = REPO / ".cache" / f"labelstudio-{_pinned_version()}-template"
    if (template / "label_studio.sqlite3").is_file():
        return template
    building = template.with_name(template.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    docroot = building.with_name(building.name + "-docroot")
    docroot.mkdir(exist_ok=True)
    proc, _, _ = start_server(building, docroot, timeout=300)
    stop_server(proc)
    shutil.rmtree(docroot, ignore_errors=True)
    for scratch in ("media", "export", "test_data"):
        shutil.rmtree(building / scratch, ignore_errors=True)
    try:
        building.rename(template)
    except OSError:  # another session won the race
        shutil.rmtree(building, ignore_errors=True)
    return template


def require_labelstudio() -> None:
    """Fail in CI (which installs it with `make test`), skip elsewhere, when the venv is absent."""
    if LS_BIN.is_file():
        return
    msg = (
        f"Label Studio is not installed at {LS_VENV}; run `make .venv-labelstudio/.installed` "
        "(it installs labeling/requirements-labelstudio.txt into its own venv)"
    )
    missing(msg)


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A running Label Studio (SQLite, 127.0.0.1, free port, token auth, local files served)."""
    require_labelstudio()
    base = tmp_path_factory.mktemp("labelstudio")
    data_dir, document_root = base / "data", base / "files"
    shutil.copytree(_template_dir(), data_dir)
    document_root.mkdir()
    proc, url, log = start_server(data_dir, document_root)
    atexit.register(stop_server, proc)  # also when the session is interrupted
    try:
        yield LabelStudioServer(url, TOKEN, document_root, data_dir, log)
    finally:
        stop_server(proc)
        if proc.returncode not in (0, -15, None):
            print(f"Label Studio exited with {proc.returncode}; log {log}", file=sys.stderr)
