"""A real gRPC server on 127.0.0.1: every RPC through a raw stub and the SDK, health, reflection,
metrics, and every bad input answered with its reason while the server stays up."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from shapely.geometry import Point, box, shape

from asmspotter.v1 import detection_pb2 as pb
from asmspotter.v1 import detection_pb2_grpc as pb_grpc
from imagery.geometry import iou
from service.client import AsyncDetectionClient, DetectionClient, DetectionError, TileError
from service.client.types import _status_of
from service.errors import error_info
from service.server import DetectionServer, ServerConfig
from tests.service_support import BANDS, WaterIndexModel, make_tile, write_raw

PONDS = [box(30, 8, 90, 40), Point(56, 100).buffer(10), Point(140, 140).buffer(6)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiles")


@pytest.fixture(scope="module")
def server(root):
    config = ServerConfig(
        address="127.0.0.1:0",
        allowed_root=str(root),
        metrics_port=0,
        max_tile_pixels=200 * 200,
        overlap=16,
    )
    srv = DetectionServer(config, model=WaterIndexModel(chip_size=64))
    srv.start()
    srv.load()
    yield srv
    srv.stop(grace=1)


@pytest.fixture(scope="module")
def good(root):
    return make_tile(root / "good.tif", 160, PONDS)


@pytest.fixture(scope="module")
def address(server):
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def stub(address):
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.DetectionServiceStub(channel)


@pytest.fixture(scope="module")
def client(address):
    with DetectionClient(address, timeout_s=30) as c:
        yield c


def _check_sites(sites, truth):
    assert len(sites) == len(truth)
    for site in sites:
        geom = shape(site.geometry) if isinstance(site.geometry, dict) else site.geometry
        assert max(iou(geom, t) for t in truth) >= 0.9


# -- every RPC, raw stub ---------------------------------------------------------------------------
def test_raw_stub_detect_tile(stub, good):
    path, truth = good
    request = pb.DetectTileRequest(
        tile=pb.Tile(content=path.read_bytes(), tile_id="t1"),
        options=pb.DetectionOptions(output_crs="EPSG:32630"),
    )
    response = stub.DetectTile(request, timeout=30)
    assert response.model.name == "water-index" and response.model.weights_sha256 == "0" * 64
    det = response.detections
    assert (det.tile_id, det.crs, det.width, det.height, det.window_count) == (
        "t1",
        "EPSG:32630",
        160,
        160,
        9,
    )
    assert [s.site_id for s in det.sites] == ["t1/0", "t1/1", "t1/2"]
    for s in det.sites:
        assert s.site_class == pb.SITE_CLASS_POND and s.tile_id == "t1"
        geom = shape(json.loads(s.geometry_geojson))
        assert (s.bbox.min_x, s.bbox.min_y, s.bbox.max_x, s.bbox.max_y) == pytest.approx(
            geom.bounds
        )
        assert s.area_m2 == pytest.approx(geom.area, rel=1e-6)
    _check_sites(
        [type("S", (), {"geometry": json.loads(s.geometry_geojson)}) for s in det.sites], truth
    )


def test_raw_stub_batch_partial_success(stub, good, root):
    path, _ = good
    requests = [
        pb.DetectTileRequest(tile=pb.Tile(uri="good.tif")),
        pb.DetectTileRequest(tile=pb.Tile(content=b"nope")),
        pb.DetectTileRequest(tile=pb.Tile(uri=f"file://{path}")),
    ]
    response = stub.BatchDetectTiles(pb.BatchDetectTilesRequest(requests=requests), timeout=30)
    kinds = [r.WhichOneof("outcome") for r in response.results]
    assert kinds == ["detections", "error", "detections"]
    assert error_info(response.results[1].error).reason == "NOT_A_GEOTIFF"
    assert response.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(response.results[0].detections.sites) == 3
    assert response.model.version == "0.0.1"


def test_raw_stub_detect_scene_and_get_model(stub, good):
    path, truth = good
    data = path.read_bytes()

    def requests():
        header = pb.SceneHeader(tile=pb.Tile(tile_id="scene"), total_bytes=len(data))
        yield pb.DetectSceneRequest(header=header)
        for i in range(0, len(data), 8192):
            yield pb.DetectSceneRequest(chunk=data[i : i + 8192])

    messages = list(stub.DetectScene(requests(), timeout=30))
    assert messages[-1].done and messages[-1].windows_done == messages[-1].windows_total == 9
    assert [m.windows_done for m in messages[:-1]] == sorted(m.windows_done for m in messages[:-1])
    sites = [s for m in messages for s in m.sites]
    assert len({s.site_id for s in sites}) == 3
    model = stub.GetModel(pb.GetModelRequest(), timeout=5).model
    assert model.band_names == list(BANDS) and model.chip_size == 64
    assert model.classes == ["pit", "pond"] and model.metrics["val/segm_ap50"] == 1.0
    assert model.device == "cpu"


# -- every RPC, SDK --------------------------------------------------------------------------------
def test_sdk_sync(client, good, root):
    path, truth = good
    result = client.detect_tile(path)
    assert result.crs == "EPSG:4326" and result.tile_id == "good"
    assert result.model.name == "water-index"
    _check_sites(result.sites, [_to4326(t) for t in truth])
    by_uri = client.detect_tile("good.tif", uri=True, output_crs="EPSG:32630")
    _check_sites(by_uri.sites, truth)
    outcomes = client.detect_tiles([path, b"garbage"])
    assert len(outcomes[0].sites) == 3
    assert isinstance(outcomes[1], TileError) and outcomes[1].reason == "NOT_A_GEOTIFF"
    info = client.get_model()
    assert info.name == "water-index" and info.chip_size == 64
    assert client.health() == "SERVING"


def test_sdk_streams_files_too_large_for_one_message(address, good):
    path, truth = good
    progress = []
    with DetectionClient(address, max_message_bytes=20_000, chunk_bytes=4096) as small:
        assert path.stat().st_size > 20_000
        result = small.detect_tile(
            path, output_crs="EPSG:32630", on_progress=lambda d, t: progress.append(d)
        )
    _check_sites(result.sites, truth)
    assert result.window_count == 9 and progress[-1] == 9


def test_sdk_async(address, good):
    path, truth = good

    async def run():
        async with AsyncDetectionClient(address) as aclient:
            results = await asyncio.gather(
                *(aclient.detect_tile(path, output_crs="EPSG:32630") for _ in range(3))
            )
            batch = await aclient.detect_tiles([path, b"x"])
            scene = await aclient.detect_scene(
                path, options=pb.DetectionOptions(output_crs="EPSG:32630")
            )
            info = await aclient.get_model()
            return results, batch, scene, info

    results, batch, scene, info = asyncio.run(run())
    for r in results:
        _check_sites(r.sites, truth)
    assert isinstance(batch[1], TileError)
    _check_sites(scene.sites, truth)
    assert info.version == "0.0.1"


def _to4326(geom):
    from imagery.geometry import reproject

    return reproject(geom, "EPSG:32630", "EPSG:4326")


# -- health, reflection, metrics -------------------------------------------------------------------
def test_health_and_reflection(address):
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "asmspotter.v1.DetectionService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for s in answer.list_services_response.service}
        assert {"asmspotter.v1.DetectionService", "grpc.health.v1.Health"} <= names
        [answer] = refl.ServerReflectionInfo(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="asmspotter.v1.DetectionService"
                    )
                ]
            ),
            timeout=5,
        )
        assert answer.file_descriptor_response.file_descriptor_proto


def test_metrics_endpoint(server, client, good):
    client.detect_tile(good[0])
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'asmspotter_requests_total{code="OK",method="DetectTile"}' in text
    assert "asmspotter_request_seconds_bucket" in text
    assert "asmspotter_queue_depth" in text and "asmspotter_windows_per_second" in text
    windows = [ln for ln in text.splitlines() if ln.startswith("asmspotter_windows_total")]
    assert float(windows[0].split()[-1]) >= 9


# -- bad inputs ------------------------------------------------------------------------------------
def _bad_inputs(root):
    rng = np.random.default_rng(1)
    dn = rng.integers(500, 3000, (6, 64, 64), dtype=np.uint16)
    make_tile(root / "nodata.tif", 64, [], nodata_all=True)
    make_tile(root / "huge.tif", 256, [])
    nan = np.full((6, 64, 64), 0.1, np.float32)
    nan[:, 5, 5] = np.nan
    s1 = rng.normal(-12, 2, (2, 64, 64)).astype(np.float32)
    return {
        "NOT_A_GEOTIFF": pb.Tile(content=b"\x89PNG\r\n\x1a\n not a tiff"),
        "CRS_MISSING": pb.Tile(content=write_raw(root / "nocrs.tif", dn, crs=None).read_bytes()),
        "BAND_MISMATCH": pb.Tile(content=write_raw(root / "4b.tif", dn[:4]).read_bytes()),
        "TILE_TOO_LARGE": pb.Tile(uri="huge.tif"),
        "ALL_NODATA": pb.Tile(uri="nodata.tif"),
        "URI_NOT_ALLOWED": pb.Tile(uri="../../etc/passwd"),
        "FILE_NOT_FOUND": pb.Tile(uri="missing.tif"),
        "NAN_VALUES": pb.Tile(content=write_raw(root / "nan.tif", nan).read_bytes()),
        "UNKNOWN_SENSOR": pb.Tile(
            content=write_raw(root / "ok.tif", dn).read_bytes(), sensor="landsat9"
        ),
        "INVALID_ARGUMENT": pb.Tile(),
        "WRONG_SENSOR": pb.Tile(
            content=write_raw(
                root / "s1.tif", s1, bands=("VV", "VH"), tags={"ASMSPOTTER_SENSOR": "sentinel1-grd"}
            ).read_bytes()
        ),
        "S3_URI": pb.Tile(uri="s3://bucket/tile.tif"),
    }


EXPECTED = {"WRONG_SENSOR": "BAND_MISMATCH", "S3_URI": "URI_NOT_ALLOWED"}


def test_every_bad_input_gets_its_reason_and_the_server_stays_up(stub, root, good):
    for case, tile in _bad_inputs(root).items():
        with pytest.raises(grpc.RpcError) as err:
            stub.DetectTile(pb.DetectTileRequest(tile=tile), timeout=30)
        info = error_info(_status_of(err.value))
        assert info is not None, case
        assert info.reason == EXPECTED.get(case, case), (case, err.value.details())
        assert info.domain == "asmspotter.org"
        assert err.value.code() != grpc.StatusCode.INTERNAL
        assert "spool" not in err.value.details() and "/tmp/asm-" not in err.value.details()
        ok = stub.DetectTile(pb.DetectTileRequest(tile=pb.Tile(uri="good.tif")), timeout=30)
        assert len(ok.detections.sites) == 3, case


def test_bad_options_are_invalid_argument(client, good):
    with pytest.raises(DetectionError) as err:
        client.detect_tile(good[0], min_score=2.0)
    assert err.value.code == "INVALID_ARGUMENT" and "min_score" in err.value.message
    with pytest.raises(DetectionError) as err:
        client.detect_tile(good[0], output_crs="EPSG:nope")
    assert err.value.reason == "INVALID_ARGUMENT"


def test_detect_scene_by_uri_and_its_errors(stub, good, server):
    header = pb.SceneHeader(tile=pb.Tile(uri="good.tif"))
    messages = list(stub.DetectScene(iter([pb.DetectSceneRequest(header=header)]), timeout=30))
    assert messages[-1].done and sum(len(m.sites) for m in messages) == 3
    with pytest.raises(grpc.RpcError) as err:
        list(stub.DetectScene(iter([pb.DetectSceneRequest(chunk=b"II*\x00")]), timeout=30))
    assert error_info(_status_of(err.value)).reason == "INVALID_ARGUMENT"
    too_big = pb.SceneHeader(tile=pb.Tile(tile_id="big"), total_bytes=2**50)
    with pytest.raises(grpc.RpcError) as err:
        list(stub.DetectScene(iter([pb.DetectSceneRequest(header=too_big)]), timeout=30))
    assert error_info(_status_of(err.value)).reason == "TILE_TOO_LARGE"
    assert server.admission.idle(timeout=5)
