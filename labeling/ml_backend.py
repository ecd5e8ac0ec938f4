"""A Label Studio ML backend: the HTTP endpoint Label Studio itself calls for pre-annotations.

Routes (JSON): ``GET /health`` -> ``{"status": "UP"}``; ``POST /setup`` -> the model version;
``POST /predict`` with ``{"tasks": [...]}`` -> ``{"results": [one prediction per task]}``;
``GET /versions``. Connect it in Label Studio (Settings > Model, or ``ls.ml.create``) with the
URL printed by ``asmspotter label backend``; Label Studio then asks it for predictions when a
labeller opens a task or "Retrieve predictions" is run. Standard library only.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labeling.predict import Predictor, prediction_for

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.info("%s " + fmt, self.client_address[0], *args)  # one line per request

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "request too large"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, {"error": f"not JSON: {exc}"})
            return None
        if not isinstance(body, dict):
            self._send(400, {"error": "expected a JSON object"})
            return None
        return body

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        version = self.server.predictor.model_version
        if self.path.rstrip("/") in ("", "/health"):
            self._send(200, {"status": "UP", "model_class": "AsmSpotter", "model_version": version})
        elif self.path.startswith("/versions"):
            self._send(200, {"versions": [version]})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if body is None:
            return
        route = self.path.rstrip("/")
        version = self.server.predictor.model_version
        if route == "/setup":
            self._send(200, {"model_version": version})
        elif route == "/predict":
            tasks = body.get("tasks")
            if not isinstance(tasks, list):
                self._send(400, {"error": "'tasks' must be a list"})
                return
            self._send(200, {"results": [self.server.predict_task(t) for t in tasks]})
        elif route == "/webhook":
            self._send(200, {"status": "ignored"})
        elif route == "/train":
            self._send(501, {"error": "train with `asmspotter train` on an exported dataset"})
        else:
            self._send(404, {"error": f"no route {self.path}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], predictor: Predictor, files_root: Path) -> None:
        super().__init__(address, _Handler)
        self.predictor = predictor
        self.files_root = Path(files_root)
        self.lock = threading.Lock()  # one model call at a time
        self.requests = 0

    def predict_task(self, task: dict[str, Any]) -> dict[str, Any]:
        data = task.get("data") or {}
        with self.lock:
            self.requests += 1
            try:
                return prediction_for(self.predictor, data, self.files_root)
            except Exception as exc:  # one bad task must not fail the batch
                log.warning("ml-backend: task %s not predicted: %s", task.get("id"), exc)
                return {"result": [], "score": 0.0, "model_version": self.predictor.model_version}


class MLBackend:
    """Serve a predictor on ``host:port`` (port 0 picks a free one) in a background thread."""

    def __init__(
        self, predictor: Predictor, files_root: Path, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.server = _Server((host, port), predictor, files_root)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> int:
        return self.server.requests

    def start(self) -> MLBackend:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MLBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
