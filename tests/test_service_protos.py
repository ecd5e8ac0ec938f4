"""The generated gRPC code is fresh (byte-identical to a regeneration) and the API follows the
naming rules it claims (buf STANDARD style, Google AIP request/response messages)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.real_parts import require_module

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "protos_generate", REPO / "protos" / "generate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path):
    require_module("grpc_tools", "grpcio-tools regenerates the code")
    for fresh in _generator().generate(tmp_path):
        committed = REPO / fresh.relative_to(tmp_path)
        assert committed.is_file(), f"{committed} is missing: run `make protos`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} is stale: `make protos`"


def test_api_naming_rules():
    from asmspotter.v1 import detection_pb2 as pb

    fd = pb.DESCRIPTOR
    assert fd.package == "asmspotter.v1"
    service = fd.services_by_name["DetectionService"]
    names = {m.name for m in service.methods}
    assert names == {"DetectTile", "BatchDetectTiles", "DetectScene", "GetModel"}
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    scene = service.methods_by_name["DetectScene"]
    assert scene.client_streaming and scene.server_streaming
    for enum in fd.enum_types_by_name.values():
        prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper()
        assert enum.values[0].name == f"{prefix}_UNSPECIFIED" and enum.values[0].number == 0
        assert all(v.name.startswith(prefix + "_") for v in enum.values)
    for message in fd.message_types_by_name.values():
        for field in message.fields:
            assert field.name == field.name.lower(), f"{message.name}.{field.name}"
    result = fd.message_types_by_name["BatchDetectTilesResult"]
    assert result.fields_by_name["error"].message_type.full_name == "google.rpc.Status"
