"""Hostile input against a real server: fuzzed TIFFs, degenerate geotransforms, control
characters in URIs, idle streams, int16 tiles, cancelled streams. Every answer is a precise status
with an ErrorInfo reason naming the caller's tile, never INTERNAL, and the server stays up."""

from __future__ import annotations

import collections
import logging
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shapely.geometry import Point, box

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from service.errors import error_info
from service.server import DetectionServer, ServerConfig
from tests.service_support import WaterIndexModel, make_tile

PONDS = [box(10, 8, 30, 24), Point(44, 44).buffer(6)]
FUZZ_VARIANTS = 300
FUZZ_SEED = 15


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def spool(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(root, spool):
    config = ServerConfig(
        address="127.0.0.1:0",
        allowed_root=str(root),
        metrics_port=0,
        max_active=1,
        max_queued=2,
        spool_dir=str(spool),
        stream_idle_s=1.0,
    )
    srv = DetectionServer(config, model=WaterIndexModel(chip_size=64))
    srv.start()
    srv.load()
    yield srv
    srv.stop(grace=1)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.DetectionServiceStub(channel)


@pytest.fixture(scope="module")
def good(root):
    path, _ = make_tile(root / "good.tif", 64, PONDS)
    return path


def _detect(stub, content: bytes, tile_id: str = "fuzzed", timeout: float = 20):
    req = pb.DetectTileRequest(tile=pb.Tile(content=content, tile_id=tile_id))
    return stub.DetectTile(req, timeout=timeout)


def _refusal(err: grpc.RpcError) -> tuple[str, str, str]:
    """(status code, ErrorInfo reason, message) of a refused call."""
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    info = error_info(status)
    return err.code().name, info.reason if info else "", err.details() or ""


def _serving(server) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_fuzzed_tiffs_get_clean_statuses(stub, server, good, spool):
    """A few hundred byte-flipped variants of a small tile (magic kept): each is answered OK or
    with a precise reason; none is INTERNAL, none names the server's spool file."""
    data = good.read_bytes()
    rng = np.random.default_rng(FUZZ_SEED)
    outcomes: collections.Counter = collections.Counter()
    for n in range(FUZZ_VARIANTS):
        raw = bytearray(data)
        for pos in rng.integers(4, min(len(raw), 1024 if n % 2 else len(raw)), rng.integers(1, 5)):
            raw[pos] = int(rng.integers(256))
        try:
            _detect(stub, bytes(raw), tile_id=f"fuzz-{n}")
            outcomes["OK"] += 1
        except grpc.RpcError as err:
            code, reason, message = _refusal(err)
            assert code not in ("INTERNAL", "UNKNOWN"), (n, code, message)
            assert reason, (n, code, message)
            assert str(spool) not in message and "asm-" not in message, message
            assert f"fuzz-{n}" in message, message
            outcomes[f"{code}/{reason}"] += 1
    print(f"\nfuzz: {FUZZ_VARIANTS} variants (seed {FUZZ_SEED}): {dict(sorted(outcomes.items()))}")
    assert sum(outcomes.values()) == FUZZ_VARIANTS and len(outcomes) >= 2
    assert _serving(server)
    sites = _detect(stub, data, tile_id="good").detections.sites
    assert len(sites) == 2


def _write(path, data, transform=None, dtype=None, scales=None, **profile):
    """A 6-band tile as given (see service_support.write_raw) with a chosen transform and tags."""
    import rasterio
    from rasterio.transform import from_origin

    from tests.service_support import BANDS, UTM

    count, h, w = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype=dtype or data.dtype,
        crs=UTM,
        transform=transform or from_origin(600_000, 700_000, 10, 10),
        **profile,
    ) as dst:
        dst.write(data.astype(dtype or data.dtype))
        for i, name in enumerate(BANDS[:count], start=1):
            dst.set_band_description(i, name)
        if scales is not None:
            dst.scales = scales
    return path


@pytest.mark.parametrize(
    "transform",
    [
        (10.0, 0.0, 600_000.0, 0.0, 0.0, 700_000.0),  # zero-height pixels
        (float("inf"), 0.0, 600_000.0, 0.0, -10.0, 700_000.0),  # infinite pixels
        (10.0, 0.0, float("nan"), 0.0, -10.0, 700_000.0),  # non-finite origin
        (10.0, 10.0, 600_000.0, 10.0, 10.0, 700_000.0),  # collinear axes: zero area
    ],
)
def test_degenerate_geotransform_is_refused(stub, server, good, tmp_path, transform):
    """Once accepted, returning sites of zero area."""
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(good) as src:
        data = src.read()
    path = _write(tmp_path / "degenerate.tif", data, Affine(*transform), nodata=0)
    with pytest.raises(grpc.RpcError) as err:
        _detect(stub, path.read_bytes(), tile_id="degenerate")
    code, reason, message = _refusal(err.value)
    assert (code, reason) == ("INVALID_ARGUMENT", "GEOTRANSFORM_INVALID"), message
    assert message.startswith("degenerate: degenerate geotransform")
    assert _serving(server)


@pytest.mark.parametrize(
    "uri", ["good\x00.tif", "file:///x%00y.tif", "good.tif\n", "a/" * 3000 + "good.tif"]
)
def test_hostile_uris_are_invalid_argument(stub, server, good, uri):
    """A NUL byte once ended in INTERNAL inside the path resolution."""
    req = pb.DetectTileRequest(tile=pb.Tile(uri=uri, tile_id="u"))
    with pytest.raises(grpc.RpcError) as err:
        stub.DetectTile(req, timeout=10)
    code, reason, _ = _refusal(err.value)
    assert (code, reason) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert _serving(server)


def test_int16_tiles_are_read_by_their_tags_or_refused(stub, server, good, tmp_path):
    """The same DNs as int16: with a scale tag the same sites as the uint16 tile; without one a
    refusal with a reason (they once silently gave no site: 1e-4 was applied to unsigned only)."""
    import rasterio

    with rasterio.open(good) as src:
        dns = src.read()
    want = len(_detect(stub, good.read_bytes(), tile_id="uint16").detections.sites)
    assert want == 2
    tagged = _write(tmp_path / "tagged.tif", dns, dtype="int16", nodata=0, scales=[1e-4] * 6)
    assert len(_detect(stub, tagged.read_bytes(), tile_id="tagged").detections.sites) == want
    bare = _write(tmp_path / "bare.tif", dns, dtype="int16", nodata=0)
    with pytest.raises(grpc.RpcError) as err:
        _detect(stub, bare.read_bytes(), tile_id="bare")
    code, reason, message = _refusal(err.value)
    assert (code, reason) == ("INVALID_ARGUMENT", "UNITS_UNKNOWN")
    assert message.startswith("bare: int16 bands without scale/offset tags")
    assert _serving(server)


def _stalled_stream(stub, content: bytes, release: threading.Event, tile_id: str):
    """A DetectScene call that sends the header and half the bytes, then waits for ``release``."""

    def requests():
        yield pb.DetectSceneRequest(header=pb.SceneHeader(tile=pb.Tile(tile_id=tile_id)))
        yield pb.DetectSceneRequest(chunk=content[: len(content) // 2])
        release.wait(30)

    return stub.DetectScene(requests())


def test_stalled_streams_hold_no_inference_capacity(stub, server, good):
    """Two streams that open and stall (no deadline) once took the only admission slots, and a
    good DetectTile waited behind them until its deadline. Now it is answered at once, and the
    stalled streams end after ``stream_idle_s`` with STREAM_IDLE."""
    release = threading.Event()
    content = good.read_bytes()
    calls = [_stalled_stream(stub, content, release, f"stalled-{k}") for k in range(2)]
    try:
        time.sleep(0.3)  # both streams are open and stalled
        started = time.monotonic()
        sites = _detect(stub, content, tile_id="meanwhile", timeout=5).detections.sites
        assert len(sites) == 2 and time.monotonic() - started < 5
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                list(call)
            code, reason, _ = _refusal(err.value)
            assert (code, reason) == ("DEADLINE_EXCEEDED", "STREAM_IDLE")
    finally:
        release.set()
    assert _serving(server)


def _requests_count(server, method: str) -> dict[str, float]:
    out = {}
    for metric in server.metrics.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["method"] == method:
                out[sample.labels["code"]] = sample.value
    return out


def test_a_cancelled_stream_is_no_server_error(stub, server, good, caplog):
    """A caller cancelling DetectScene mid-upload was logged as ERROR with a traceback and counted
    as INTERNAL or INVALID_ARGUMENT; it is a CANCELLED call, logged at INFO."""
    before = _requests_count(server, "DetectScene")
    release = threading.Event()
    with caplog.at_level(logging.INFO):
        call = _stalled_stream(stub, good.read_bytes(), release, "cancelled")
        time.sleep(0.3)
        call.cancel()
        release.set()
        deadline = time.monotonic() + 10
        while _requests_count(server, "DetectScene") == before and time.monotonic() < deadline:
            time.sleep(0.05)
    after = _requests_count(server, "DetectScene")
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in grown.items() if v} == {"CANCELLED": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert _serving(server)


def test_detect_scene_honours_max_detections(stub, good):
    """The proto promises at most max_detections sites, best first; raw-stub streams got all."""

    def requests(limit: int):
        options = pb.DetectionOptions(max_detections=limit)
        tile = pb.Tile(tile_id="capped")
        yield pb.DetectSceneRequest(header=pb.SceneHeader(tile=tile, options=options))
        yield pb.DetectSceneRequest(chunk=good.read_bytes())

    every = [s for r in stub.DetectScene(requests(0), timeout=30) for s in r.sites]
    capped = [s for r in stub.DetectScene(requests(1), timeout=30) for s in r.sites]
    assert len(every) == 2 and len(capped) == 1
    assert capped[0].score == max(s.score for s in every) and capped[0].site_id == "capped/0"


def test_half_precision_on_a_cpu_is_refused():
    """`--precision fp16` on a CPU once ran fp32 without a word."""
    from imagery.errors import AsmSpotterError, Reason
    from service.batching import resolve_precision

    assert resolve_precision("auto", "cpu") == "fp32"
    for precision in ("fp16", "bf16"):
        with pytest.raises(AsmSpotterError) as err:
            resolve_precision(precision, "cpu")
        assert err.value.reason == Reason.INVALID_ARGUMENT and "needs a CUDA device" in str(
            err.value
        )
