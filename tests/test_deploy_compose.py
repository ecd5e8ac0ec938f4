"""The compose file (service + Label Studio + PostGIS), checked offline with pyyaml: services,
health checks, persistent volumes, pinned images, and a serve command the real CLI accepts."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy_support import (
    DEPLOY,
    REPO,
    Dockerfile,
    env_file,
    interpolate,
    required_variables,
    service_parser,
)

COMPOSE = DEPLOY / "compose" / "compose.yaml"
GPU_OVERRIDE = DEPLOY / "compose" / "compose.gpu.yaml"
ENV_EXAMPLE = DEPLOY / "compose" / "env.example"
PINNED = re.compile(r"^[\w.\-/]+:(?!latest$)[\w.\-]*\d[\w.\-]*$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env_file(ENV_EXAMPLE))


def test_services_and_their_health_checks(compose):
    services = compose["services"]
    assert {"asmspotter", "labelstudio", "postgis"} <= set(services)
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2, name
        assert service.get("restart") == "unless-stopped", name
    ls_depends = services["labelstudio"]["depends_on"]
    assert ls_depends["postgis"]["condition"] == "service_healthy"


def test_named_volumes_are_declared_and_keep_the_state(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"bind mount {source} is missing"
            else:
                assert source in declared, f"volume {source} is not declared"
                used.add(source)
    assert used == declared  # no stray declarations

    def target_of(service: str, volume: str) -> str:
        mounts = compose["services"][service]["volumes"]
        return [m.split(":")[1] for m in mounts if m.split(":")[0] == volume][0]

    assert target_of("postgis", "postgis-data") == "/var/lib/postgresql/data"
    assert target_of("labelstudio", "labelstudio-data") == "/label-studio/data"


def test_images_are_pinned_and_the_build_is_ours(compose):
    for name, service in compose["services"].items():
        assert PINNED.match(service["image"]), f"{name}: image {service['image']!r} is not pinned"
    build = compose["services"]["asmspotter"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()


def test_service_command_ports_and_healthcheck_agree(compose):
    service = compose["services"]["asmspotter"]
    args = service_parser().parse_args(service["command"])
    assert args.command == "serve" and args.address == "0.0.0.0:50051"
    grpc_port = int(args.address.rsplit(":", 1)[1])
    published = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert {grpc_port, args.metrics_port} <= published
    check = service["healthcheck"]["test"]
    assert check[check.index("--address") + 1] == f"127.0.0.1:{grpc_port}"
    dockerfile = Dockerfile.parse(REPO / service["build"]["dockerfile"])
    copied = {
        f"{d.rstrip('/')}/{s.split('/')[-1]}" for src, d, f in dockerfile.copies() for s in src
    }
    assert check[2] in copied  # the health script is in the image
    # The bundle defaults to the baked-in one; URIs are allowed under the tiles volume.
    assert args.bundle in {d for s, d, f in dockerfile.copies() if s == ["service/default_bundle"]}
    mounts = {m.split(":")[1] for m in service["volumes"]}
    assert args.allowed_root in mounts


def test_label_studio_uses_the_postgis_server(compose):
    env = compose["services"]["labelstudio"]["environment"]
    postgis = compose["services"]["postgis"]["environment"]
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_HOST"] == "postgis"
    assert env["POSTGRE_USER"] == postgis["POSTGRES_USER"]
    assert env["POSTGRE_PASSWORD"] == postgis["POSTGRES_PASSWORD"]
    initdb = "\n".join(p.read_text() for p in sorted((COMPOSE.parent / "initdb").glob("*.sql")))
    assert f"CREATE DATABASE {env['POSTGRE_NAME']}" in initdb
    assert "CREATE EXTENSION IF NOT EXISTS postgis" in initdb
    assert env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] == "true"
    files_root = env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"]
    assert files_root in {m.split(":")[1] for m in compose["services"]["labelstudio"]["volumes"]}


def test_every_required_variable_is_in_the_example_env():
    required = required_variables(COMPOSE.read_text())
    assert {"POSTGRES_PASSWORD", "LABEL_STUDIO_PASSWORD"} <= required
    assert required <= set(env_file(ENV_EXAMPLE))
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(yaml.safe_load(COMPOSE.read_text()), {})


def test_gpu_override_reserves_a_gpu_and_builds_the_gpu_image():
    override = interpolate(yaml.safe_load(GPU_OVERRIDE.read_text()), env_file(ENV_EXAMPLE))
    service = override["services"]["asmspotter"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert service["build"]["dockerfile"].endswith("gpu.Dockerfile")
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    args = service_parser().parse_args(service["command"])
    assert args.command == "serve" and args.device == "cuda"
    assert override["services"]["ml-backend"]["image"] == service["image"]  # no CPU image there


def test_ml_backend_command_is_the_real_label_backend(compose):
    import argparse

    from labeling import cli as label_cli

    parser = argparse.ArgumentParser(prog="asmspotter")
    label_cli.register(parser.add_subparsers(dest="command", required=True))
    backend = compose["services"]["ml-backend"]
    args = parser.parse_args(backend["command"])
    assert (args.command, args.label_command) == ("label", "backend")
    host, port = args.service.rsplit(":", 1)
    grpc_port = service_parser().parse_args(compose["services"]["asmspotter"]["command"]).address
    assert host == "asmspotter" and grpc_port.endswith(":" + port)  # the service's DNS name
    assert args.host == "0.0.0.0"
    assert f"http://127.0.0.1:{args.port}/health" in " ".join(backend["healthcheck"]["test"])
    ls_files = compose["services"]["labelstudio"]["environment"][
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
    ]
    assert str(args.files_root) == ls_files
    assert backend["image"] == compose["services"]["asmspotter"]["image"]  # built, not pulled
    assert backend["depends_on"]["asmspotter"]["condition"] == "service_healthy"
