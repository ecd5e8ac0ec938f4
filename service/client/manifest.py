"""A resumable batch manifest: one JSON line per finished tile, appended and fsynced.

A tile's result file is written (atomically) before its manifest line, so after a crash or SIGKILL
every line points at a complete result; a torn last line is ignored and that tile runs again.
Reading keeps the last record per tile key, so nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

# Errors that will not go away by trying again; other failures are retried on the next run.
PERMANENT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "FAILED_PRECONDITION"}


class Manifest:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # torn by a crash mid-write
            if isinstance(record, dict) and "key" in record:
                self.records[record["key"]] = record
        if raw and not raw.endswith(b"\n"):  # start the next record on a line of its own
            with open(self.path, "ab") as f:
                f.write(b"\n")

    def done(self, key: str, retry_errors: bool = False) -> bool:
        """Has this tile a final outcome (a result, or a permanent error unless retrying)?"""
        record = self.records.get(key)
        if record is None:
            return False
        if record["status"] == "ok":
            return True
        return not retry_errors and record.get("code") in PERMANENT_CODES

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            with open(self.path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.records[record["key"]] = record
