"""The SDK over several servers: two real servers (separate processes on 127.0.0.1) share a batch,
and when one is killed mid-batch its tiles are retried on the other, none lost or duplicated."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from shapely.geometry import Point

from service.client.batch import submit_batch
from service.client.pool import ServerPool, connect, resolve, split_targets
from service.client.sync import DetectionClient
from tests.deploy_support import REPO
from tests.real_parts import missing
from tests.service_support import make_tile

# A real DetectionServer with the rule model of the service tests (no torch), in its own process
# so it can be killed like a crashed pod. It prints "GRPC_PORT METRICS_PORT" once SERVING.
SERVER_CODE = """
import sys, threading
sys.path.insert(0, {repo!r})
from service.server import DetectionServer, ServerConfig
from tests.service_support import WaterIndexModel
config = ServerConfig(address={address!r}, metrics_port=0, max_active=2, max_queued=32)
server = DetectionServer(config, model=WaterIndexModel(delay_s={delay}))
port = server.start()
server.load()
print(port, server.metrics_port, flush=True)
threading.Event().wait()
"""


class ServerProcess:
    def __init__(self, delay_s: float, address: str = "127.0.0.1:0") -> None:
        code = SERVER_CODE.format(repo=str(REPO), delay=delay_s, address=address)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.proc.kill()
            raise RuntimeError("server process did not start")
        self.port, self.metrics_port = int(line[0]), int(line[1])
        self.address = f"{address.rsplit(':', 1)[0]}:{self.port}"

    def ok_tiles(self) -> int:
        """DetectTile calls this server answered OK, from its Prometheus endpoint."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        pattern = r'^asmspotter_requests_total\{(?=[^}]*code="OK")(?=[^}]*method="DetectTile")'
        found = re.search(pattern + r"[^}]*\}\s+([0-9.e+]+)$", text, re.M)
        return int(float(found.group(1))) if found else 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def servers(request):
    delay = getattr(request, "param", 0.05)
    started = [ServerProcess(delay), ServerProcess(delay)]
    yield started
    for s in started:
        s.kill()


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pool-tiles")
    return [
        make_tile(folder / f"tile-{i:02d}.tif", 64, [Point(32, 32).buffer(8)])[0] for i in range(12)
    ]


def _manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x]


def _check_exactly_once(out: Path, tiles: list[Path], report) -> None:
    assert report.failed == 0 and report.succeeded == len(tiles)
    records = _manifest(out)
    keys = [r["key"] for r in records]
    assert sorted(keys) == sorted(str(t.resolve()) for t in tiles)  # none lost, none twice
    assert all(r["status"] == "ok" and r["sites"] == 1 for r in records)
    features = json.loads((out / "sites.geojson").read_text())["features"]
    sources = [f["properties"]["source"] for f in features]
    assert sorted(sources) == sorted(keys)  # one site per tile in the combined output


def test_targets_and_resolution():
    assert split_targets("a:1, b:2") == ["a:1", "b:2"]
    assert split_targets(["dns:///svc:50051"]) == ["svc:50051"]
    assert resolve("127.0.0.1:5") == ["127.0.0.1:5"]
    assert resolve("localhost:7") == ["127.0.0.1:7"]  # IPv4 preferred: one entry per server
    assert resolve("no-such-host.invalid:1") == []
    with pytest.raises(ValueError):
        split_targets(" , ")
    with pytest.raises(ValueError):
        resolve("hostwithoutport")
    single = connect("127.0.0.1:1")
    assert isinstance(single, DetectionClient)
    single.close()
    with connect("127.0.0.1:1,127.0.0.1:2") as pool:
        assert isinstance(pool, ServerPool)
        assert [e.address for e in pool.endpoints] == ["127.0.0.1:1", "127.0.0.1:2"]


def test_batch_is_split_between_two_servers(servers, tiles, tmp_path):
    out = tmp_path / "out"
    with ServerPool([s.address for s in servers], timeout_s=60) as pool:
        pool.wait_ready(timeout=30)
        report = submit_batch(pool, tiles, out, concurrency=4, progress=False)
        stats = pool.stats()
    _check_exactly_once(out, tiles, report)
    served = [s.ok_tiles() for s in servers]
    assert sum(served) == len(tiles)
    assert min(served) >= len(tiles) // 4, served  # round-robin: both take a real share
    assert [stats[s.address]["ok"] for s in servers] == served


@pytest.mark.parametrize("servers", [0.3], indirect=True)
def test_server_killed_mid_batch_loses_and_duplicates_nothing(servers, tiles, tmp_path):
    out = tmp_path / "out"
    victim, survivor = servers
    finished: list[Path] = []

    def on_tile(path, outcome):
        finished.append(path)
        if len(finished) == 3:  # both servers are busy with tiles now
            victim.kill()

    with ServerPool([s.address for s in servers], timeout_s=60) as pool:
        report = submit_batch(pool, tiles, out, concurrency=4, progress=False, on_tile=on_tile)
        stats = pool.stats()
    assert victim.proc.returncode == -signal.SIGKILL
    _check_exactly_once(out, tiles, report)
    # Tiles answered by the victim before it died, plus everything the survivor did, make the
    # whole batch; the calls cut off by the kill were moved to the survivor.
    assert stats[victim.address]["failovers"] >= 1
    assert stats[victim.address]["ok"] + survivor.ok_tiles() == len(tiles)
    assert survivor.ok_tiles() == stats[survivor.address]["ok"] > len(tiles) // 2


def test_submit_command_spreads_over_comma_separated_servers(servers, tiles, tmp_path, capsys):
    from tests.deploy_support import service_parser

    out = tmp_path / "cli-out"
    server_list = ",".join(s.address for s in servers)
    args = service_parser().parse_args(
        ["submit", *map(str, tiles), "--server", server_list, "-o", str(out), "--no-progress"]
    )
    assert args.handler(args) == 0
    assert f"{len(tiles)} tiles done" in capsys.readouterr().out
    served = [s.ok_tiles() for s in servers]
    assert sum(served) == len(tiles) and min(served) > 0, served
    assert len(_manifest(out)) == len(tiles)


def test_a_name_with_several_addresses_follows_dns(tiles, tmp_path, monkeypatch):
    """A headless Service name: one address per pod, re-resolved as pods come. DNS with several
    records cannot be served here, so getaddrinfo answers for the name (the servers are real,
    on two loopback addresses with the same port, as pods are)."""
    import socket

    first = ServerProcess(0.05, "127.0.0.1:0")
    second = ServerProcess(0.05, f"127.0.0.2:{first.port}")
    pods = ["127.0.0.1"]
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host != "asmspotter-grpc.test":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in pods]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        name = f"asmspotter-grpc.test:{first.port}"
        with ServerPool(name, timeout_s=60, refresh_s=0.0) as pool:
            submit_batch(pool, tiles[:4], tmp_path / "a", concurrency=2, progress=False)
            assert (first.ok_tiles(), second.ok_tiles()) == (4, 0)
            pods.append("127.0.0.2")  # scaled up: the new pod gets calls
            report = submit_batch(pool, tiles[4:], tmp_path / "b", concurrency=2, progress=False)
            assert report.succeeded == len(tiles) - 4
            assert second.ok_tiles() > 0 and first.ok_tiles() + second.ok_tiles() == len(tiles)
            pods.remove("127.0.0.1")  # scaled down: the old pod gets no new calls
            before = first.ok_tiles()
            submit_batch(pool, tiles[:4], tmp_path / "c", concurrency=2, progress=False)
            assert first.ok_tiles() == before
            assert [e.address for e in pool.endpoints] == [second.address]  # closed and dropped
            assert all(s["in_flight"] == 0 for s in pool.stats().values())
        single = connect(name)  # one address left: a plain client
        assert isinstance(single, DetectionClient)
        single.close()
        pods.append("127.0.0.1")
        with connect(name) as several:
            assert isinstance(several, ServerPool) and len(several.endpoints) == 2
    finally:
        first.kill()
        second.kill()


def test_tls_to_resolved_addresses_checks_the_name(tiles, tmp_path):
    """Resolving a name to addresses must not break TLS: the certificate names the host only."""
    import shutil

    from service.client.common import RetryPolicy
    from service.client.types import DetectionError
    from service.server import DetectionServer, ServerConfig
    from tests.service_support import WaterIndexModel

    if shutil.which("openssl") is None:
        missing("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server = DetectionServer(
        ServerConfig(address="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key)),
        model=WaterIndexModel(),
    )
    port = server.start()
    server.load()
    ca = cert.read_bytes()
    try:
        with ServerPool(f"localhost:{port}", tls_root_cert=ca, timeout_s=30) as pool:
            assert [e.address for e in pool.endpoints] == [f"127.0.0.1:{port}"]
            assert len(pool.detect_tile(tiles[0]).sites) == 1
        no_retry = RetryPolicy(max_attempts=1)
        with DetectionClient(f"127.0.0.1:{port}", tls_root_cert=ca, retry=no_retry) as bare:
            with pytest.raises(DetectionError):  # the address alone fails the name check
                bare.get_model(timeout=5)
    finally:
        server.stop(grace=0)
