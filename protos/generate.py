"""Generate the Python gRPC code in ``asmspotter/v1/`` from ``protos/`` (``make protos``).

The generated files are committed; `tests/test_service_protos.py` regenerates them into a temporary
folder and checks they are byte-identical, so they are never stale or edited by hand.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PROTO_FILES = ("asmspotter/v1/detection.proto",)


def _include_dirs() -> list[str]:
    """Our protos, protobuf's well-known types, and googleapis-common-protos (google/rpc)."""
    import google.rpc.status_pb2 as status_pb2

    well_known = resources.files("grpc_tools") / "_proto"
    googleapis = Path(status_pb2.__file__).resolve().parents[2]
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def generate(out_dir: str | Path = REPO_ROOT) -> list[Path]:
    """Run protoc (grpc_tools) for every proto; returns the files written under ``out_dir``."""
    from grpc_tools import protoc

    out_dir = Path(out_dir)
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += list(PROTO_FILES)
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = []
    for proto in PROTO_FILES:
        stem = out_dir / proto.removesuffix(".proto")
        written += [Path(f"{stem}_pb2.py"), Path(f"{stem}_pb2.pyi"), Path(f"{stem}_pb2_grpc.py")]
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT):
        print(path)
