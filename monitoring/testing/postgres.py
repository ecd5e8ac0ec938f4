"""A throwaway PostgreSQL + PostGIS cluster in a temporary folder (initdb, pg_ctl, unix socket).

Uses Debian's PostgreSQL binaries (``/usr/lib/postgresql/<v>/bin``); as root, the server runs
as the ``postgres`` system user (PostgreSQL refuses to run as root). No service is installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL bin folder that has PostGIS, or None."""
    for root in sorted(Path("/usr/lib/postgresql").glob("*"), reverse=True):
        ext = Path("/usr/share/postgresql") / root.name / "extension" / "postgis.control"
        if (root / "bin" / "initdb").exists() and ext.exists():
            return root / "bin"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    folder: Path
    socket_dir: Path
    port: int
    user: str
    bindir: Path

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        self._run("createdb", "-h", str(self.socket_dir), "-p", str(self.port), name)
        return self.url(name)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(port: int | None = None) -> Cluster:
    """initdb + pg_ctl start in a new temp folder, on 127.0.0.1:``port`` and a unix socket."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL with PostGIS is not installed (tests/setup/system_packages.sh)"
        )
    folder = Path(tempfile.mkdtemp(prefix="asm-pg-"))
    port = port or free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        user = "postgres"
        pw = pwd.getpwnam(user)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    folder.chmod(0o755)
    cluster = Cluster(folder, folder, port, user, bindir)
    cluster._run("initdb", "-D", str(folder / "data"), "-U", user, "-A", "trust", "--no-sync")
    cluster._run(
        "pg_ctl", "-D", str(folder / "data"), "-w", "-l", str(folder / "log.txt"),
        "-o", f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
    )  # fmt: skip
    return cluster
