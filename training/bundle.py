"""Model bundles: export a training checkpoint to a versioned folder, load one for inference.

A bundle folder holds ``bundle.json`` (format ``asmspotter-bundle/1``, see docs/design.md), the
weights (a plain state dict, fp16 by default) and ``model_card.md``. ``load_bundle`` checks the
format, the weights' sha256 and dispatches on ``engine``; the service loads any bundle unchanged.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagery import feedback
from imagery.errors import AsmSpotterError, Reason
from training.engines.base import DetectionModel, get_engine

FORMAT = "asmspotter-bundle/1"
WEIGHTS = "model.pt"
RUN_INFO = "run.json"  # written next to the checkpoints by `asmspotter train`
REQUIRED = (
    "format", "name", "version", "engine", "bands", "classes", "normalization", "weights", "config"
)  # fmt: skip
# The bundle packaged with the service: no other bundle may take its name and version.
PACKAGED_BUNDLE = Path(__file__).resolve().parents[1] / "service" / "default_bundle"
DEFAULT_LIMITS = (
    "Trained only on the data listed above. Detections outside that data's sensors, seasons, "
    "regions and site types are unverified; check every detection before acting on it."
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_info(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint.parent / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def export_bundle(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    sensor: str | None = None,
    half: bool = True,
    metrics: dict[str, Any] | None = None,
    command: str | None = None,
    limits: str | None = None,
) -> Path:
    """Write ``out_dir/{bundle.json, model.pt, model_card.md}`` from a training checkpoint."""
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no such checkpoint", str(checkpoint))
    try:
        head = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle/zip errors of a file that is no torch checkpoint
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID, f"not a torch checkpoint ({exc})", str(checkpoint)
        ) from exc
    if not isinstance(head, dict) or "config" not in head or "stats" not in head:
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID,
            "checkpoint lacks 'config'/'stats' (write it with `asmspotter train`)",
            str(checkpoint),
        )
    config = dict(head["config"])
    engine_name = head.get("engine") or config.get("engine", "torchvision")
    del head
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = get_engine(engine_name).export_weights(checkpoint, out / WEIGHTS, half=half)
    run = _run_info(checkpoint)
    stats = meta["stats"]
    info = {
        "format": FORMAT,
        "name": name or config.get("name", "asm-maskrcnn"),
        "version": version or config.get("version", "0.1.0"),
        "engine": engine_name,
        "sensor": sensor or config.get("sensor", "sentinel2-l2a"),
        "sensors": list(config.get("sensors") or [sensor or config.get("sensor", "sentinel2-l2a")]),
        "bands": list(config["bands"]),
        "optional_bands": list(config.get("optional_bands") or []),
        "chip_size": int(config["chip_size"]),
        "classes": list(config["classes"]),
        "normalization": {"mean": list(stats["mean"]), "std": list(stats["std"])},
        "weights": WEIGHTS,
        "weights_sha256": sha256_of(out / WEIGHTS),
        "weights_dtype": "float16" if half else "float32",
        "config": config,
        "metrics": metrics if metrics is not None else meta.get("metrics") or {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "trained_with": command or run.get("command", ""),
        "training": {
            "iteration": meta.get("iteration"),
            "data": meta.get("sources") or run.get("sources") or {},
            "n_train": run.get("n_train"),
            "n_val": run.get("n_val"),
            "seed": config.get("seed"),
            "checkpoint": checkpoint.name,
            "init_bundle": run.get("init_bundle"),  # fine-tuned from this bundle, if any
        },
    }
    explicit = name is not None or version is not None
    info["version"] = unique_version(
        info["name"], str(info["version"]), info["weights_sha256"], out, explicit
    )
    (out / "bundle.json").write_text(json.dumps(info, indent=2))
    (out / "model_card.md").write_text(model_card(info, limits or DEFAULT_LIMITS))
    return out


def unique_version(name: str, version: str, sha256: str, out: Path, explicit: bool) -> str:
    """A version that does not pass this bundle off as the packaged default.

    The same name and version as the packaged bundle with other weights: refused when the
    version was asked for (BUNDLE_INVALID); otherwise (a config's default) the weights' hash is
    added as build metadata, ``1.0.0+w3f2a9c1e``, and a notice says so. Re-exporting into the
    packaged bundle's own folder replaces it and keeps the version.
    """
    packaged = PACKAGED_BUNDLE / "bundle.json"
    if not packaged.is_file() or out.resolve() == PACKAGED_BUNDLE:
        return version
    default = json.loads(packaged.read_text())
    if (default.get("name"), default.get("version")) != (name, version):
        return version
    if default.get("weights_sha256") == sha256:
        return version  # the same weights: the same model
    if explicit:
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID,
            f"{name} {version} is the packaged default bundle's name and version; give this "
            "model another --version (or --name)",
            str(out),
        )
    unique = f"{version}+w{sha256[:8]}"
    feedback.notice(
        f"{name} {version} is the packaged default bundle's version; this bundle is {name} "
        f"{unique} (choose one with `asmspotter export --version` or `version=` in the config)"
    )
    return unique


def update_metrics(
    bundle_dir: str | Path, metrics: dict[str, Any], limits: str | None = None
) -> None:
    """Store evaluation metrics in an exported bundle's json and card."""
    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    info["metrics"] = metrics
    (bundle_dir / "bundle.json").write_text(json.dumps(info, indent=2))
    (bundle_dir / "model_card.md").write_text(model_card(info, limits or DEFAULT_LIMITS))


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(info: dict[str, Any], limits: str) -> str:
    cfg, training = info["config"], info.get("training", {})
    lines = [
        f"# {info['name']} {info['version']}",
        "",
        f"Mask R-CNN ({info['engine']} engine, backbone {cfg.get('backbone')}, norm "
        f"{cfg.get('norm')}) finding ASM sites ({', '.join(info['classes'])}) in "
        f"{info['sensor']} chips of {info['chip_size']} px, bands {', '.join(info['bands'])}.",
        "",
        "## Data",
        *[f"- {split}: `{src}`" for split, src in training.get("data", {}).items()],
        f"- images: {training.get('n_train')} train, {training.get('n_val')} validation",
        "- normalisation (reflectance): mean "
        + ", ".join(f"{v:.4f}" for v in info["normalization"]["mean"])
        + "; std "
        + ", ".join(f"{v:.4f}" for v in info["normalization"]["std"]),
        "",
        "## Training",
        f"- command: `{info.get('trained_with') or 'not recorded'}`",
        f"- seed: {training.get('seed')}; iterations: {training.get('iteration')}; "
        f"batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, {cfg.get('schedule')} schedule",
        *(
            [
                f"- fine-tuned from: {init.get('name')} {init.get('version')} (weights sha256 "
                f"`{init.get('weights_sha256')}`)"
            ]
            if (init := training.get("init_bundle"))
            else []
        ),
        f"- weights: `{info['weights']}` ({info.get('weights_dtype')}), sha256 "
        f"`{info['weights_sha256']}`",
        f"- created: {info['created']}",
        "",
        "## Metrics",
    ]
    metrics = info.get("metrics") or {}
    if not metrics:
        lines.append("No evaluation recorded.")
    for key in ("mask_AP", "mask_AP50", "bbox_AP", "bbox_AP50", "f1"):
        if key in metrics:
            lines.append(f"- {key}: {_fmt(metrics[key])}")
    per_class = metrics.get("objects", {}).get("per_class", {})
    if per_class:
        lines += ["", "| class | precision | recall | F1 (IoU 0.5) |", "|---|---|---|---|"]
        for cls, m in per_class.items():
            lines.append(
                f"| {cls} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} |"
            )
    for key, value in metrics.items():
        if isinstance(value, dict) and "mask_AP" in value:  # named extra evaluations
            lines.append(
                f"- {key}: mask AP {_fmt(value['mask_AP'])}, AP50 {_fmt(value['mask_AP50'])}, "
                f"F1 {_fmt(value['f1'])} ({value.get('dataset', '')})"
            )
    lines += ["", "## Limits", limits, ""]
    return "\n".join(lines)


def read_info(bundle_dir: str | Path) -> dict[str, Any]:
    """Parsed and checked bundle.json (BUNDLE_INVALID when unusable)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / "bundle.json"
    if not path.is_file():
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID, "no bundle.json in the folder", str(bundle_dir)
        )
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AsmSpotterError(Reason.BUNDLE_INVALID, f"bundle.json: {exc}", str(path)) from exc
    missing = [k for k in REQUIRED if k not in info] if isinstance(info, dict) else REQUIRED
    if missing:
        raise AsmSpotterError(Reason.BUNDLE_INVALID, f"bundle.json lacks {missing}", str(path))
    if info["format"] != FORMAT:
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID, f"format {info['format']!r} is not {FORMAT!r}", str(path)
        )
    return info


def load_bundle(path: str | Path, device: str | None = None) -> DetectionModel:
    """A ready ``DetectionModel`` from a bundle folder; device defaults to CUDA when present."""
    bundle_dir = Path(path)
    info = read_info(bundle_dir)
    weights = bundle_dir / info["weights"]
    if not weights.is_file():
        raise AsmSpotterError(Reason.BUNDLE_INVALID, "weights file is missing", str(weights))
    actual, expected = sha256_of(weights), info.get("weights_sha256")
    if expected and actual != expected:
        raise AsmSpotterError(
            Reason.BUNDLE_INVALID, "weights do not match weights_sha256", str(weights)
        )
    info["weights_sha256"] = actual  # a bundle's identity is never missing
    from training.devices import resolve_device

    device = resolve_device(device)
    model = get_engine(info["engine"]).load(bundle_dir, info, device)
    if info.get("verifier"):  # the Predictor rescores sites with it (training/verifier.py)
        from training.verifier import SiteVerifier

        model.site_scorer = SiteVerifier.from_bundle(bundle_dir, info, device)
    return model


def carry_extras(source_dir: str | Path, bundle_dir: str | Path) -> list[str]:
    """Parts of a source bundle the detector's training does not make (e.g. a site verifier):
    bundle.json keys the new bundle lacks, and the files of the source folder they name, are
    copied over unchanged. Returns the keys carried."""
    import shutil

    source_dir, bundle_dir = Path(source_dir), Path(bundle_dir)
    src, new = read_info(source_dir), read_info(bundle_dir)
    carried = [k for k in src if k not in new]

    def files(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value] if (source_dir / value).is_file() else []
        if isinstance(value, dict):
            return [f for v in value.values() for f in files(v)]
        if isinstance(value, list):
            return [f for v in value for f in files(v)]
        return []

    for key in carried:
        new[key] = src[key]
        for name in files(src[key]):
            target = bundle_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_dir / name, target)
    if carried:
        (bundle_dir / "bundle.json").write_text(json.dumps(new, indent=2))
    return carried
