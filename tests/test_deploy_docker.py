"""Container files, linted offline (no Docker engine here): pinned bases, non-root user, a health
check that really answers, COPY sources present in the build context, the real entry point."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy_support import (
    DEPLOY,
    REPO,
    Dockerfile,
    dockerignore_excludes,
    dockerignore_patterns,
    service_parser,
)
from tests.real_parts import require_module

DOCKERFILES = {
    "cpu": DEPLOY / "docker" / "cpu.Dockerfile",
    "gpu": DEPLOY / "docker" / "gpu.Dockerfile",
}
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)[\w.\-]*\d[\w.\-]*(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request) -> Dockerfile:
    return Dockerfile.parse(DOCKERFILES[request.param])


def test_base_images_are_pinned(dockerfile):
    stages = {alias for _, alias in dockerfile.from_images() if alias}
    for image, _ in dockerfile.from_images():
        if image in stages:
            continue  # an earlier stage of this file
        assert PINNED.match(image), f"{dockerfile.path.name}: base image {image!r} is not pinned"
    if dockerfile.path.name.startswith("gpu"):
        assert any("nvidia/cuda:" in i and "runtime" in i for i, _ in dockerfile.from_images())


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile):
    users = dockerfile.of("USER", dockerfile.final_stage)
    assert users, "the final stage sets no USER"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes runAsNonRoot can verify it
    last_user_at = dockerfile.instructions.index(users[-1])
    later = dockerfile.instructions[last_user_at + 1 :]
    assert not [i for i in later if i.keyword == "RUN"], "RUN after USER would run as the user"


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    ignore = dockerignore_patterns(Path(str(dockerfile.path) + ".dockerignore"))
    stages = {alias for _, alias in dockerfile.from_images() if alias}
    copied = 0
    for sources, _dest, flags in dockerfile.copies():
        if "from" in flags:
            assert flags["from"] in stages, f"COPY --from={flags['from']}: no such stage"
            continue
        for src in sources:
            path = REPO / src
            assert path.exists(), f"{dockerfile.path.name}: COPY {src}: not in the repository"
            if src != ".":
                assert not dockerignore_excludes(ignore, src.rstrip("/")), f"{src} is ignored"
            copied += 1
    assert copied >= 4
    # `COPY . .` sends what the whitelist keeps: every package the project installs.
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packages["packages"]["find"]["include"]:
        for top in REPO.glob(pattern.rstrip("*")):
            if (top / "__init__.py").is_file():
                assert not dockerignore_excludes(ignore, top.name), f"{top.name} left out"
                assert not dockerignore_excludes(ignore, f"{top.name}/cli.py")
    for needed in ("pyproject.toml", "third_party/detectron2/install.sh", "protos"):
        assert not dockerignore_excludes(ignore, needed), needed
    for junk in (".venv/bin/python", "out/x.tif", "tests/test_x.py", "service/__pycache__/a.pyc"):
        assert dockerignore_excludes(ignore, junk), junk


def test_entry_point_is_the_real_serve_command(dockerfile):
    final = dockerfile.final_stage
    (entry,) = dockerfile.of("ENTRYPOINT", final)
    assert entry.exec_form() == ["asmspotter"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["asmspotter"] == "asmspotter.cli:main"
    (cmd,) = dockerfile.of("CMD", final)
    args = service_parser().parse_args(cmd.exec_form())
    assert args.command == "serve" and args.address == "0.0.0.0:50051"
    exposed = {int(p) for e in dockerfile.of("EXPOSE", final) for p in e.args.split()}
    assert {50051, args.metrics_port} <= exposed
    # The baked-in bundle is what the command loads, and it is copied from the repository.
    bundle_copies = [d for s, d, f in dockerfile.copies() if s == ["service/default_bundle"]]
    assert bundle_copies == [args.bundle]
    if dockerfile.path.name.startswith("gpu"):
        assert args.device == "cuda"


def test_healthcheck_runs_a_script_the_image_contains(dockerfile):
    final = dockerfile.final_stage
    (check,) = dockerfile.of("HEALTHCHECK", final)
    command = check.args.split("CMD", 1)[1].strip()
    argv = __import__("json").loads(command)
    assert argv[0] == "/opt/venv/bin/python"
    copied_to = {
        f"{dest.rstrip('/')}/{Path(s).name}"
        for sources, dest, flags in dockerfile.copies()
        if "from" not in flags
        for s in sources
    }
    assert argv[1] in copied_to
    assert "--start-period" in check.args  # model loading is not a failure
    # The venv the health check runs is the one built and copied into the final stage.
    assert any(d == "/opt/venv" for s, d, f in dockerfile.copies() if f.get("from") == "build")


def test_requirements_layer_lists_the_extras():
    script = DEPLOY / "docker" / "requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), str(REPO / "pyproject.toml"), "server,train"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    reqs = out.stdout.split()
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in reqs}
    assert {"numpy", "rasterio", "grpcio", "grpcio-health-checking", "torch", "fvcore"} <= names
    assert not [r for r in reqs if r.startswith("asmspotter")]
    everything = subprocess.run(
        [sys.executable, str(script), str(REPO / "pyproject.toml"), "all"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert everything.returncode == 0 and "pytest" in everything.stdout  # self-reference expanded
    bad = subprocess.run(
        [sys.executable, str(script), str(REPO / "pyproject.toml"), "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "no extra 'nope'" in bad.stderr


def _healthcheck(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_script_follows_the_server_status():
    grpc = require_module("grpc")
    health_mod = require_module("grpc_health.v1.health")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health_mod.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        out = _healthcheck(port)
        assert out.returncode == 1 and "NOT_SERVING" in out.stdout
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        out = _healthcheck(port)
        assert out.returncode == 0 and "SERVING" in out.stdout
    finally:
        server.stop(0).wait()
    out = _healthcheck(port)
    assert out.returncode == 1 and "UNAVAILABLE" in out.stdout and "Traceback" not in out.stderr


def test_the_image_install_keeps_every_cli_package():
    """The image runs `pip install .` (not editable): a package the CLI registers but
    setuptools does not find would silently lose its commands in the container."""
    from setuptools import find_packages

    from asmspotter.cli import COMMAND_MODULES

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = set(find_packages(str(REPO), include=config["packages"]["find"]["include"]))
    for module in COMMAND_MODULES:
        package = module.rsplit(".", 1)[0]
        if (REPO / package.replace(".", "/") / "__init__.py").is_file():
            assert package in installed, f"{package} is not installed by `pip install .`"
