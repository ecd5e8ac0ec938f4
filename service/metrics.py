"""Prometheus metrics of the server: requests, latency, queue depth, windows per second.

A registry of its own (so tests can run several servers in one process), served over HTTP by
``start_http``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "asmspotter_requests", "RPCs answered", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "asmspotter_request_seconds",
            "RPC latency",
            ["method"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = Gauge("asmspotter_queue_depth", "requests waiting to run", registry=r)
        self.in_flight = Gauge("asmspotter_in_flight", "requests running", registry=r)
        self.windows = Counter("asmspotter_windows", "model windows processed", registry=r)
        self.windows_per_second = Gauge(
            "asmspotter_windows_per_second", "model throughput of the last batch", registry=r
        )
        self.batch_size = Histogram(
            "asmspotter_batch_windows",
            "windows per model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.sites = Counter("asmspotter_sites", "sites returned", registry=r)

    def on_batch(self, windows: int, seconds: float) -> None:
        self.windows.inc(windows)
        self.batch_size.observe(windows)
        if seconds > 0:
            self.windows_per_second.set(windows / seconds)

    def observe(self, method: str, code: str, started: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(time.perf_counter() - started)

    def start_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics; returns the bound port (``port`` 0 picks a free one)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_port

    def stop_http(self) -> None:
        if getattr(self, "_http", None) is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
