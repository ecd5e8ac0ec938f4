"""Operational behaviour of the real server: bounded load, deadlines, graceful shutdown, bearer
token and TLS. Loopback only, bounded in count and time."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shapely.geometry import Point

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from service.client import DetectionClient, DetectionError
from service.client.types import _status_of
from service.errors import error_info
from service.server import DetectionServer, ServerConfig
from tests.real_parts import missing
from tests.service_support import WaterIndexModel, make_tile


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    path, _ = make_tile(tmp_path_factory.mktemp("ops") / "t.tif", 60, [Point(30, 30).buffer(8)])
    return path


def _start(delay_s: float = 0.0, address: str = "127.0.0.1:0", **config) -> DetectionServer:
    srv = DetectionServer(
        ServerConfig(address=address, **config),
        model=WaterIndexModel(chip_size=64, delay_s=delay_s),
    )
    srv.start()
    srv.load()
    return srv


def _call(address: str, tile_bytes: bytes, timeout: float = 30) -> tuple[str, str, int]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DetectionServiceStub(channel)
        try:
            r = stub.DetectTile(
                pb.DetectTileRequest(tile=pb.Tile(content=tile_bytes)), timeout=timeout
            )
            return "OK", "", len(r.detections.sites)
        except grpc.RpcError as exc:
            info = error_info(_status_of(exc))
            return exc.code().name, info.reason if info else "", -1


def test_load_beyond_capacity_is_refused_at_once(tile):
    srv = _start(delay_s=0.8, max_active=1, max_queued=1)
    try:
        address, data = f"127.0.0.1:{srv.port}", tile.read_bytes()
        clients = 6
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(lambda _: _call(address, data), range(clients)))
        elapsed = time.monotonic() - started
        ok = [o for o in outcomes if o[0] == "OK"]
        refused = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
        assert len(ok) + len(refused) == clients, outcomes
        assert len(ok) >= 2 and len(refused) >= 1, outcomes  # capacity is 1 running + 1 queued
        assert all(o[2] == 1 for o in ok)  # correct answers for the admitted
        assert all(o[1] == "OVERLOADED" for o in refused)
        assert elapsed < 15
        # the SDK retries overload with backoff: all succeed
        with DetectionClient(address, timeout_s=60) as client, ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: client.detect_tile(tile), range(4)))
        assert [len(r.sites) for r in results] == [1, 1, 1, 1]
        assert _call(address, data)[0] == "OK"
    finally:
        srv.stop(grace=5)


def test_deadline_is_honoured(tile):
    srv = _start(delay_s=1.0, max_active=1, max_queued=2)
    try:
        address, data = f"127.0.0.1:{srv.port}", tile.read_bytes()
        started = time.monotonic()
        assert _call(address, data, timeout=0.3)[0] == "DEADLINE_EXCEEDED"
        assert time.monotonic() - started < 1.0
        with DetectionClient(address) as client:
            with pytest.raises(DetectionError) as err:
                client.detect_tile(tile, timeout=0.3)
            assert err.value.code == "DEADLINE_EXCEEDED"
        assert srv.admission.idle(timeout=5)  # abandoned work releases its slot
        assert _call(address, data)[0] == "OK"
    finally:
        srv.stop(grace=5)


def test_graceful_shutdown_finishes_in_flight_work(tile):
    srv = _start(delay_s=0.8, max_active=2, max_queued=2)
    address, data = f"127.0.0.1:{srv.port}", tile.read_bytes()
    with ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(_call, address, data)
        deadline = time.monotonic() + 10
        while srv.admission.active == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.admission.active == 1
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 10})
        stopper.start()
        assert in_flight.result(timeout=15) == ("OK", "", 1)
        stopper.join(timeout=15)
    assert _call(address, data, timeout=2)[0] == "UNAVAILABLE"


def test_not_serving_until_the_model_is_warm(tile):
    srv = DetectionServer(ServerConfig(address="127.0.0.1:0"), model=WaterIndexModel(chip_size=64))
    srv.start()
    try:
        address = f"127.0.0.1:{srv.port}"
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="asmspotter.v1.DetectionService")
            assert (
                health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            assert _call(address, tile.read_bytes())[:2] == ("UNAVAILABLE", "NOT_READY")
            srv.load()
            assert health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop(grace=1)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        missing("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_and_bearer_token(tile, certs):
    cert, key = certs
    srv = _start(token="s3cret", tls_cert=str(cert), tls_key=str(key))
    try:
        address = f"localhost:{srv.port}"
        ca = cert.read_bytes()
        with DetectionClient(address, tls_root_cert=ca, token="s3cret") as client:
            assert len(client.detect_tile(tile).sites) == 1
            assert client.health() == "SERVING"
        for token in (None, "wrong"):
            with DetectionClient(address, tls_root_cert=ca, token=token) as client:
                with pytest.raises(DetectionError) as err:
                    client.get_model()
                assert (err.value.code, err.value.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")
                with pytest.raises(DetectionError) as err:
                    list(client.stream_scene(tile))
                assert err.value.code == "UNAUTHENTICATED"
                assert client.health() == "SERVING"  # probes need no token
        with DetectionClient(address, token="s3cret", retry=_no_retry()) as plain:
            with pytest.raises(DetectionError) as err:
                plain.get_model(timeout=3)
            assert err.value.code == "UNAVAILABLE"  # a plaintext client cannot talk to TLS
    finally:
        srv.stop(grace=1)


def _no_retry():
    from service.client import RetryPolicy

    return RetryPolicy(max_attempts=1)


def test_windows_of_concurrent_requests_share_batches(tmp_path):
    path, _ = make_tile(tmp_path / "four.tif", 100, [Point(50, 50).buffer(6)])  # 4 windows
    srv = _start(delay_s=0.3, max_active=3, max_queued=3, max_batch=8, max_wait_ms=50, overlap=16)
    model = srv.servicer.predictor.model
    try:
        model.calls.clear()
        address, data = f"127.0.0.1:{srv.port}", path.read_bytes()
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda _: _call(address, data), range(3)))
        assert [o[0] for o in outcomes] == ["OK"] * 3 and all(o[2] == 1 for o in outcomes)
        assert sum(model.calls) == 12 and max(model.calls) == 8  # two requests in one batch
    finally:
        srv.stop(grace=5)


def test_client_retries_until_the_server_is_up(tile):
    from service.client import RetryPolicy
    from tests.service_support import free_port

    port = free_port()
    servers = []

    def start_later():
        time.sleep(0.7)
        servers.append(_start(address=f"127.0.0.1:{port}"))

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        retry = RetryPolicy(max_attempts=40, initial_backoff_s=0.1, max_backoff_s=0.4)
        with DetectionClient(f"127.0.0.1:{port}", retry=retry, timeout_s=30) as client:
            started = time.monotonic()
            result = client.detect_tile(tile)
            assert len(result.sites) == 1 and time.monotonic() - started >= 0.5
    finally:
        starter.join()
        for srv in servers:
            srv.stop(grace=1)
