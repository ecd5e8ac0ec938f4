"""A real HTTP webhook receiver on 127.0.0.1 for tests and demos (standard library server).

It records every POST (headers, JSON body, the answer given) and can misbehave on purpose:
``fail_first=N`` answers 503 to the first N requests, ``hold_s`` waits that long before
answering. ``accepted`` keeps one entry per ``Idempotency-Key`` answered 2xx, the way a receiver
that drops repeats would; ``received`` keeps everything.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    key: str
    body: dict[str, Any]
    status: int
    at: float


@dataclass
class WebhookReceiver:
    fail_first: int = 0
    hold_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)

    def __post_init__(self) -> None:
        receiver = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                with receiver._lock:
                    failing = len(receiver.received) < receiver.fail_first
                    status = 503 if failing else 200
                    entry = Received(key, body, status, time.time())
                    receiver.received.append(entry)
                if receiver.hold_s:
                    time.sleep(receiver.hold_s)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")
                if status == 200:
                    with receiver._lock:
                        receiver.accepted.setdefault(key, entry)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def keys(self, status: int | None = None) -> list[str]:
        with self._lock:
            return [r.key for r in self.received if status is None or r.status == status]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
