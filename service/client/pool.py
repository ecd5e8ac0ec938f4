"""Several servers behind one client: calls go round-robin over them, and a call that fails
because its server is gone or overloaded is sent to another one.

    with connect("10.0.0.5:50051,10.0.0.6:50051") as client:   # or a name with many addresses
        submit_batch(client, ["tiles/"], "out/")

Targets are ``HOST:PORT`` (several in a list or comma-separated). A host name is resolved to all
its addresses, one endpoint each, and resolved again every ``refresh_s``, so the headless Service
of a Kubernetes Deployment (one DNS record per Ready pod) gives one endpoint per pod and follows
scaling. A tile whose server dies mid-call (UNAVAILABLE, CANCELLED) or that is refused for
overload (RESOURCE_EXHAUSTED) is retried on the next endpoint; the dead endpoint rests for a
growing cool-down. Other errors (bad input) are final: they would fail the same anywhere. A retry
never duplicates a result: the client records a tile only when an answer arrives.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from imagery.errors import AsmSpotterError, Reason
from service.client.common import RetryPolicy
from service.client.sync import DetectionClient
from service.client.types import DetectionError, ModelInfo, TileResult

log = logging.getLogger(__name__)
T = TypeVar("T")
FAILOVER_CODES = ("UNAVAILABLE", "CANCELLED", "RESOURCE_EXHAUSTED")
SERVER_GONE = ("UNAVAILABLE", "CANCELLED")


def split_targets(targets: str | Sequence[str]) -> list[str]:
    items = [targets] if isinstance(targets, str) else list(targets)
    out = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if not out:
        raise ValueError("need at least one server address")
    return [t.removeprefix("dns:///") for t in out]


def _host_port(target: str) -> tuple[str, str]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"server address {target!r} is not HOST:PORT")
    return host.strip("[]"), port


def resolve(target: str) -> list[str]:
    """``HOST:PORT`` -> one ``IP:PORT`` per address of HOST (IPv4 preferred: a dual-stack name
    lists each server twice). Names that do not resolve give no address."""
    host, port = _host_port(target)
    try:
        ipaddress.ip_address(host)
        return [target]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [f"[{i[4][0]}]" for i in infos if i[0] == socket.AF_INET6]
    return [f"{a}:{port}" for a in dict.fromkeys(v4 or v6)]


@dataclass
class Endpoint:
    address: str  # IP:PORT (or the target as given when it is an address already)
    name: str  # the target it was resolved from
    client: DetectionClient
    down_until: float = 0.0
    strikes: int = 0  # failures in a row: the cool-down doubles with each
    calls_ok: int = 0
    failovers: int = 0  # calls that failed here and went elsewhere
    in_flight: int = 0
    retired: bool = False  # no longer in DNS: finish its calls, start none, then close


class ServerPool:
    """The calls ``submit_batch`` and the CLI make of a ``DetectionClient``, over many servers."""

    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        refresh_s: float = 30.0,
        cooldown_s: float = 1.0,
        max_cooldown_s: float = 30.0,
        **config: Any,
    ) -> None:
        self.targets = split_targets(targets)
        self.refresh_s = refresh_s
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.retry: RetryPolicy = config.pop("retry", None) or RetryPolicy()
        # Each endpoint fails fast; the pool decides where the next attempt goes.
        self._config = {**config, "retry": RetryPolicy(max_attempts=1)}
        self.timeout_s = float(config.get("timeout_s", 300.0))
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._next = 0
        self._resolved_at = 0.0
        self.refresh()  # nothing resolved yet (e.g. no Ready pod): calls resolve again

    # -- endpoints ------------------------------------------------------------------------------
    def _member(self, address: str, name: str) -> DetectionClient:
        client = DetectionClient(address, **self._config)
        creds = client.config.credentials()
        if creds is not None and address != name:
            # TLS to an address resolved from a name: verify the certificate against the name.
            host, _ = _host_port(name)
            options = client.config.channel_options() + [
                ("grpc.ssl_target_name_override", host),
                ("grpc.default_authority", name),
            ]
            client.channel.close()
            client.channel = grpc.secure_channel(address, creds, options)
            client.stub = pb_grpc.DetectionServiceStub(client.channel)
        return client

    def refresh(self) -> None:
        """Resolve the targets again: add new addresses, retire vanished ones."""
        found = {a: t for t in self.targets for a in resolve(t)}
        with self._lock:
            self._resolved_at = time.monotonic()
            if not found:
                return  # DNS hiccup: keep what we have
            for address, name in found.items():
                if address not in self._endpoints:
                    self._endpoints[address] = Endpoint(address, name, self._member(address, name))
            for address, ep in list(self._endpoints.items()):
                ep.retired = address not in found
                if ep.retired and ep.in_flight == 0:
                    ep.client.close()
                    del self._endpoints[address]

    @property
    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return [ep for ep in self._endpoints.values() if not ep.retired]

    def stats(self) -> dict[str, dict[str, int]]:
        """Per current address: calls answered there, calls moved away from it, calls running."""
        with self._lock:
            return {
                a: {"ok": ep.calls_ok, "failovers": ep.failovers, "in_flight": ep.in_flight}
                for a, ep in self._endpoints.items()
            }

    def _pick(self, tried: set[str]) -> Endpoint | None:
        """The next endpoint in turn that is up and not yet tried for this call."""
        if not self._endpoints or time.monotonic() - self._resolved_at > self.refresh_s:
            self.refresh()
        with self._lock:
            now = time.monotonic()
            ring = [ep for ep in self._endpoints.values() if not ep.retired]
            for step in range(len(ring)):
                ep = ring[(self._next + step) % len(ring)]
                if ep.address not in tried and ep.down_until <= now:
                    self._next = (self._next + step + 1) % len(ring)
                    ep.in_flight += 1
                    return ep
        return None

    def _earliest_recovery(self) -> float:
        with self._lock:
            downs = [ep.down_until for ep in self._endpoints.values() if not ep.retired]
        return max(0.0, min(downs, default=0.0) - time.monotonic())

    # -- calls ----------------------------------------------------------------------------------
    def _run(self, fn: Callable[[DetectionClient, float], T], timeout: float | None) -> T:
        """``fn(client, seconds_left)`` on endpoints in turn until one answers, the error is
        final, every endpoint has failed ``retry.max_attempts`` rounds, or time is up."""
        deadline = time.monotonic() + (timeout or self.timeout_s)
        tried: set[str] = set()
        rounds, last = 1, None
        while True:
            ep = self._pick(tried)
            if ep is None:  # every endpoint is tried or resting: back off, then a new round
                pause = max(self.retry.backoff(rounds), self._earliest_recovery())
                if rounds >= self.retry.max_attempts or time.monotonic() + pause >= deadline:
                    raise last or DetectionError(
                        "UNAVAILABLE", "UNAVAILABLE", f"no server answers among {self.targets}"
                    )
                time.sleep(pause)
                rounds, tried = rounds + 1, set()
                continue
            tried.add(ep.address)
            try:
                result = fn(ep.client, max(0.001, deadline - time.monotonic()))
            except DetectionError as err:
                self._done(ep)
                if not self._may_retry(err):
                    raise
                self._failed(ep, err)
                last = err
                continue
            except BaseException:
                self._done(ep)
                raise
            with self._lock:
                ep.calls_ok += 1
                ep.strikes = 0
            self._done(ep)
            return result

    def _done(self, ep: Endpoint) -> None:
        with self._lock:
            ep.in_flight -= 1

    @staticmethod
    def _may_retry(err: DetectionError) -> bool:
        too_big = err.code == "RESOURCE_EXHAUSTED" and "message larger than max" in err.message
        return err.code in FAILOVER_CODES and not too_big

    def _failed(self, ep: Endpoint, err: DetectionError) -> None:
        with self._lock:
            ep.failovers += 1
            if err.code in SERVER_GONE:
                ep.strikes += 1
                rest = min(self.max_cooldown_s, self.cooldown_s * 2 ** (ep.strikes - 1))
                ep.down_until = time.monotonic() + rest
        log.warning("%s: %s; trying another server", ep.address, err)

    def detect_tile(self, tile: Any, **kwargs: Any) -> TileResult:
        timeout = kwargs.pop("timeout", None)
        return self._run(lambda c, t: c.detect_tile(tile, timeout=t, **kwargs), timeout)

    def detect_tiles(self, tiles: Sequence[Any], **kwargs: Any) -> list:
        timeout = kwargs.pop("timeout", None)
        return self._run(lambda c, t: c.detect_tiles(tiles, timeout=t, **kwargs), timeout)

    def detect_scene(self, path: Any, **kwargs: Any) -> TileResult:
        timeout = kwargs.pop("timeout", None)
        return self._run(lambda c, t: c.detect_scene(path, timeout=t, **kwargs), timeout)

    def get_model(self, timeout: float | None = None) -> ModelInfo:
        return self._run(lambda c, t: c.get_model(timeout=t), timeout)

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        return self._run(lambda c, t: c.health(service, timeout=t), timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until at least one server accepts a connection."""
        end = time.monotonic() + timeout
        while True:
            if not self.endpoints:
                self.refresh()
            ready = threading.Event()
            futures = [grpc.channel_ready_future(ep.client.channel) for ep in self.endpoints]
            for f in futures:
                f.add_done_callback(lambda fut, ev=ready: None if fut.cancelled() else ev.set())
            left = end - time.monotonic()
            got = ready.wait(max(0.0, min(1.0, left)))
            for f in futures:
                f.cancel()
            if got:
                return
            if left <= 1.0:
                raise DetectionError(
                    "UNAVAILABLE", "UNAVAILABLE", f"no server at any of {self.targets}"
                )

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for ep in self._endpoints.values():
                ep.client.close()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(targets: str | Sequence[str], **config: Any) -> DetectionClient | ServerPool:
    """A plain client for one server, a ``ServerPool`` when the targets (after resolving names)
    name several."""
    try:
        items = split_targets(targets)
    except ValueError as exc:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, str(exc)) from None
    if len(items) == 1:
        try:
            several = len(resolve(items[0])) > 1
        except ValueError:  # not HOST:PORT (e.g. a unix: target): gRPC resolves it
            several = False
        if not several:
            return DetectionClient(items[0], **config)
    for item in items:
        try:
            _host_port(item)
        except ValueError as exc:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, str(exc)) from None
    return ServerPool(items, **config)
