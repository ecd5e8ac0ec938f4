"""The packaged default bundle's whole recipe, on this 2-core machine (target: under 90 minutes).

Stages (each writes its output under --work and is skipped when that output exists, so an
interrupted run continues where it stopped):

1. ``verifier``: the context verifier (training.verifier) trained on the real gallery's train
   split (Amazon Mining Watch, Earth Genome, CC BY 4.0), classes weighted to balance; the val
   split is only watched.
2. ``detector-data``: synthetic scenes with exact masks (imagery.synthetic), in the bands the
   detector's config reads, in the calibrated Amazon look at L1C and L2A and in the legacy look,
   cut into 128 px chips.
3. ``detector``: torchvision Mask R-CNN through ``asmspotter train --config
   training/configs/default-torchvision.yaml`` (RGB: it runs on the gallery's chips and any RGB
   input); ``--detector-config`` trains another (``default.yaml``: Detectron2;
   ``sixband-torchvision.yaml``: six bands, NIR and SWIR optional).
4. ``attach``: the verifier added to the detector's bundle; the network reports sites from
   ``MIN_DETECTOR_SCORE`` up, for the verifier to rescore.
5. ``calibrate``: the gallery's val split through the service's own Predictor: each chip's best
   site (detector score) and the verifier's probability are fused by a logistic regression
   (training.verifier.fit_fusion), so a site's score reads as P(mine); the default threshold is
   the fused score that keeps specificity 0.98 on val, and never below 0.5.
6. ``export``: the bundle (detector + verifier + fusion + default threshold) under WORK/bundle.
7. ``benchmark``: the real-chip test split (benchmarks/bench_real_chips.py's figures) and the
   held-out synthetic scenes and real OSM lakes (benchmarks/eval_default_bundle.py); the model card.

    nice .venv/bin/python benchmarks/train_default_bundle.py --work runs/default-recipe
    # then: cp -r runs/default-recipe/bundle/. service/default_bundle/

Measured as one uninterrupted run on the idle 2-core machine (2.3.0's recipe): stages 1-6 in
66.4 min, 78.0 min with stage 7 ("done in 4679 s"); each run writes its own times to
WORK/times.json and the model card.

The test split is read only by stage 7.

With a CUDA device (``--device cuda``) the verifier trains there, longer
(``VERIFIER_EPOCHS_ON_GPU``; about 5 min on an H200). A GPU machine without the gallery or GDAL
trains the same verifier from the chips ``bench_verifier_variants.py --export-chips`` wrote;
``--verifier-from`` takes its output instead of stage 1 (its config must be the recipe's), and
``--reuse-detector BUNDLE`` takes a trained detector instead of stages 2-3:

    .venv/bin/python benchmarks/bench_verifier_variants.py --export-chips .gpu/chips.npz
    # on the GPU machine:
    python3 benchmarks/bench_verifier_variants.py recipe --chips .gpu/chips.npz --device cuda \
        --epochs 288 --out runs/gpu/v288
    nice .venv/bin/python benchmarks/train_default_bundle.py --work WORK --threads 2 \
        --verifier-from runs/gpu/v288 --reuse-detector service/default_bundle
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VERSION = "2.4.0"
SEED = 42
DETECTOR_PARTS = (  # (name, scenes, generator options): 512 px scenes, 128 px chips
    ("amazon-l1c", 100, {"level": "l1c", "palette": "amazon"}),
    ("amazon-l2a", 40, {"level": "l2a", "palette": "amazon"}),
    ("legacy-l2a", 40, {"level": "l2a", "palette": "legacy"}),
)
# torchvision measured better than Detectron2 (training/configs/default.yaml) on the real-chip test
# split with the same verifier and data (training/README.md, "what was tried"); it also trains and
# infers faster (benchmarks/bench_training.py). Six bands with NIR/SWIR optional
# (sixband-torchvision.yaml) measured better on synthetic scenes, tied on the real val split and
# not better on the real test split (training/README.md): true colour stays.
DETECTOR_CONFIG = REPO / "training" / "configs" / "default-torchvision.yaml"
DETECTOR_OVERRIDES: tuple[str, ...] = ()  # the config file is the recipe
VERIFIER = {
    "widths": [32, 48, 96, 192],
    "epochs": 144,
    "mixup": 0.3,
    "seed": SEED,
    "threads": 0,
}
# On a CUDA device the verifier trains longer (val AUROC rose with epochs: 72 -> 144 -> 216 on
# the CPU, 288 on an H200 in about 5 min): training/README.md, "what was tried".
VERIFIER_EPOCHS_ON_GPU = 288


def verifier_config(device: str, threads: int):
    """The recipe's verifier config for the device it trains on."""
    from training.verifier import VerifierConfig

    epochs = VERIFIER["epochs"] if device == "cpu" else VERIFIER_EPOCHS_ON_GPU
    return VerifierConfig(**{**VERIFIER, "epochs": epochs, "threads": threads})


SPECIFICITY = 0.98  # the default threshold keeps this specificity on the val split
# Detections from this score up are rescored: at 0.05 the detector reported a site in half of the
# val mine chips (iteration 500), at 0.01 in 95 %; the verifier and fusion then decide.
MIN_DETECTOR_SCORE = 0.01
MIN_THRESHOLD = 0.5
ENGINE_NAMES = {"torchvision": "torchvision", "detectron2": "Detectron2"}

# What each stage leaves when it is done; its function skips its work when that exists.
STAGE_OUTPUTS = {
    "verifier": "verifier.pt",
    "detector-data": "detector-data/annotations.json",
    "detector": "detector-bundle/bundle.json",
    "attach": "verified-bundle/bundle.json",
    "calibrate": "calibration.json",
    "export": "bundle/bundle.json",
    "benchmark": "report.json",
}


def output(work: Path, stage: str) -> Path:
    """The file that shows ``stage`` done (a bundle stage's is its folder's bundle.json)."""
    return work / STAGE_OUTPUTS[stage]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-chip loss weights giving mines and non-mines equal total weight (mean 1)."""
    pos = labels == 1
    w = np.where(pos, 0.5 / pos.mean(), 0.5 / (~pos).mean())
    return (w / w.mean()).astype(np.float32)


def stage_verifier(work: Path, gallery, threads: int, device: str = "cpu") -> Path:
    from training.verifier import train_verifier

    out = output(work, "verifier")
    if out.is_file():
        return out
    train, val = gallery.split("train"), gallery.split("val")
    cfg = verifier_config(device, threads)
    mines = int(train.labels.sum())
    log(f"verifier: {len(train)} train chips ({mines} mines), {cfg.epochs} epochs on {device}")
    model, history = train_verifier(
        train.images,
        train.labels,
        cfg,
        val=(val.images, val.labels),
        weights=balanced_weights(train.labels),
        log=lambda line: log("  " + line),
        device=device,
    )
    save_verifier(model, cfg, work / "verifier.tmp")
    (work / "verifier-history.json").write_text(json.dumps(history, indent=1))
    (work / "verifier.tmp").rename(out)
    return out


def take_verifier(work: Path, run: Path) -> None:
    """A verifier ``bench_verifier_variants.py --out RUN`` trained (on a GPU machine, say) as
    stage 1's output; refused unless its config is the recipe's for the device it trained on."""
    figures = json.loads((run / "figures.json").read_text())
    saved = load_verifier(run / "verifier.pt")[1]
    device = "cpu" if figures.get("device", "cpu") == "cpu" else "cuda"
    expected = verifier_config(device, saved.threads)
    if saved != expected or figures.get("changes"):
        diff = {
            k: (v, getattr(expected, k))
            for k, v in saved.to_dict().items()
            if v != getattr(expected, k)
        }
        raise SystemExit(
            f"{run}: not the recipe's verifier on {device}: {diff or figures['changes']}"
        )
    shutil.copyfile(run / "verifier.pt", output(work, "verifier"))
    (work / "verifier-history.json").write_text(json.dumps(figures["history"], indent=1))


def save_verifier(model, cfg, path: Path) -> None:
    """A trained verifier as the recipe keeps it (fp32 state + config); load_verifier reads it."""
    import torch

    torch.save({"state": model.state_dict(), "config": cfg.to_dict()}, path)


def load_verifier(path: Path):
    import torch

    from training.verifier import VerifierConfig, build

    saved = torch.load(path, map_location="cpu", weights_only=True)
    cfg = VerifierConfig.from_dict(saved["config"])
    model = build(cfg)
    model.load_state_dict(saved["state"])
    return model.eval(), cfg


def stage_detector_data(work: Path, config: Path = DETECTOR_CONFIG) -> Path:
    """The synthetic chips of DETECTOR_PARTS, in the bands the detector's ``config`` reads."""
    from imagery.coco import merge_datasets
    from imagery.synthetic.output import generate_dataset

    merged = output(work, "detector-data").parent
    if output(work, "detector-data").is_file():
        return merged
    from training.config import load_config

    bands = tuple(load_config(config).bands)
    parts = []
    for k, (name, scenes, options) in enumerate(DETECTOR_PARTS):
        part = work / "synthetic" / name
        log(f"detector data: {name}, {scenes} scenes")
        if not (part / "annotations.json").is_file():
            generate_dataset(
                part,
                scenes,
                scene_size=512,
                chip_size=128,
                seed=SEED + 1000 * k,
                keep_negatives=0.25,
                bands=bands,
                clusters=6,
                **options,
            )
        parts.append(part)
    merge_datasets(parts, merged)
    return merged


def stage_detector(work: Path, data: Path, threads: int, config: Path = DETECTOR_CONFIG) -> Path:
    bundle = output(work, "detector").parent
    if output(work, "detector").is_file():
        return bundle
    train_detector(config, data, work / "detector", bundle, DETECTOR_OVERRIDES, threads)
    return bundle


def train_detector(
    config: Path, data: Path, out: Path, bundle: Path, overrides: Sequence[str], threads: int
) -> None:
    """``asmspotter train`` in a process of its own with ``threads`` torch threads, resumed when
    ``out`` holds a checkpoint; the result exported to ``bundle``."""
    cmd = [
        str(REPO / ".venv" / "bin" / "asmspotter"),
        "train",
        "--config",
        str(config),
        "--data",
        str(data),
        "--out",
        str(out),
        "--export",
        str(bundle),
        *overrides,
    ]
    if (out / "last.pt").is_file():
        cmd.insert(2, "--resume")
    log("detector: " + " ".join(cmd[1:]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, env=env)


def fresh_copy(source: Path, tmp: Path) -> Path:
    """``source`` copied to ``tmp`` (a leftover of an interrupted run is replaced): a stage edits
    the copy and renames it into place when done."""
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    return tmp


def stage_attach(work: Path, detector: Path) -> Path:
    """The detector's bundle with the verifier attached (fusion and threshold not yet fitted)."""
    from training.verifier import Fusion, export_verifier

    out = output(work, "attach").parent
    if output(work, "attach").is_file():
        return out
    tmp = fresh_copy(detector, work / "verified-bundle.tmp")
    verifier, cfg = load_verifier(output(work, "verifier"))
    export_verifier(
        tmp,
        verifier,
        cfg,
        Fusion(),
        MIN_THRESHOLD,
        trained_with="benchmarks/train_default_bundle.py: gallery train split (Earth Genome)",
        min_detector_score=MIN_DETECTOR_SCORE,
    )
    tmp.rename(out)
    return out


def detector_and_verifier_scores(bundle: Path, chips) -> tuple[np.ndarray, np.ndarray]:
    """Per chip, through the service's Predictor: the best site's detector score (0: no site
    from the bundle's detector floor up) and the bundle's verifier probability of the chip
    (a one-chip scene is every site's context)."""
    from service.predictor import Predictor
    from training.bundle import load_bundle
    from training.chip_benchmark import predict_chips

    model = load_bundle(bundle, device="cpu")
    verifier, model.site_scorer = model.site_scorer, None
    # an identity scorer: every site from the detector floor up keeps its detector score
    predictor = Predictor(model, prefilter=False, site_test=False, scorer=lambda scene, s, _: s)
    try:
        detected = predict_chips(predictor, chips)
    finally:
        predictor.close()
    return detected.scores, verifier.probabilities(chips.images)


def stage_calibrate(work: Path, gallery, bundle: Path) -> dict:
    from imagery.stats import roc_auc, sensitivity_at_specificity, threshold_at_specificity
    from training.chip_benchmark import calibration
    from training.verifier import fit_fusion

    out = output(work, "calibrate")
    if out.is_file():
        return json.loads(out.read_text())
    val = gallery.split("val")
    log(f"calibrate: {len(val)} val chips through the detector and the verifier")
    p_det, p_ver = detector_and_verifier_scores(bundle, val)
    y = val.labels == 1
    found = p_det > 0
    fusion = fit_fusion(p_det[found], p_ver[found], y[found])
    fused = np.where(found, fusion(np.maximum(p_det, 1e-6), p_ver), 0.0)
    at_spec = threshold_at_specificity(fused[~y], SPECIFICITY)
    threshold = max(MIN_THRESHOLD, at_spec)
    figures = {
        "fusion": fusion.__dict__,
        "threshold": threshold,
        "threshold_at_spec98_val": at_spec,
        "val_chips": int(len(val)),
        "val_mines_with_a_site": float(found[y].mean()),
        "val_negatives_with_a_site": float(found[~y].mean()),
        "val_auroc_detector": roc_auc(p_det, y),
        "val_auroc_verifier": roc_auc(p_ver, y),
        "val_auroc_fused": roc_auc(fused, y),
        "val_sensitivity_at_spec98_fused": sensitivity_at_specificity(fused, y, 0.98),
        "val_calibration_fused": calibration(fused, y),
    }
    out.write_text(json.dumps(figures, indent=1))
    return figures


def stage_export(work: Path, verified: Path, calib: dict) -> Path:
    """The final bundle: the fitted fusion, the default threshold, the version."""
    from training.bundle import read_info

    bundle = output(work, "export").parent
    if output(work, "export").is_file():
        return bundle
    tmp = fresh_copy(verified, work / "bundle.tmp")
    info = read_info(tmp)
    history = json.loads((work / "verifier-history.json").read_text())
    info["verifier"]["fusion"] = calib["fusion"]
    info["verifier"]["metrics"] = {
        "val": {k: v for k, v in calib.items() if k.startswith("val_auroc")},
        "last_epoch": history[-1],
    }
    info["default_threshold"] = calib["threshold"]
    info["version"] = info["config"]["version"] = VERSION
    (tmp / "bundle.json").write_text(json.dumps(info, indent=2))
    tmp.rename(bundle)
    return bundle


def stage_benchmark(work: Path, bundle: Path, gallery) -> dict:
    out = output(work, "benchmark")
    if out.is_file():
        return json.loads(out.read_text())
    from benchmarks.bench_real_chips import summary_lines
    from benchmarks.eval_default_bundle import evaluate
    from training.chip_benchmark import evaluate_bundle_on_chips

    log("benchmark: the real-chip test split")
    chips = evaluate_bundle_on_chips(bundle, gallery.split("test"))
    for line in summary_lines(chips):
        log("  " + line)
    log("benchmark: held-out synthetic scenes and real OSM lakes")
    other = evaluate(bundle)
    report = {"real_chips_test": chips, **other}
    out.write_text(json.dumps(report, indent=1))
    return report


def model_card(bundle: Path, report: dict, work: Path) -> str:
    """The bundle's card: every figure is read from this run's outputs."""
    from imagery.gallery import ATTRIBUTION
    from training.bundle import read_info

    info = read_info(bundle)
    cfg = info["config"]
    calib = json.loads(output(work, "calibrate").read_text())
    chips = report["real_chips_test"]
    d = chips["operating_points"]["default"]
    syn, lakes = report["synthetic_heldout"], report.get("real_water_bodies")
    size_mb = sum(f.stat().st_size for f in bundle.glob("*.pt")) / 1e6
    vcfg = info["verifier"]["config"]
    over = {k: v for k, v in d["fpr_by_category"].items() if v > 0.05}
    history = json.loads((work / "verifier-history.json").read_text())
    verifier_minutes = sum(row["seconds"] for row in history) / 60
    from benchmarks.bench_real_chips import summary_lines

    lines = [
        f"# {info['name']} {info['version']} — the default bundle",
        "",
        "Two networks, one bundle (`bundle.json` carries both configs):",
        f"- a {ENGINE_NAMES[cfg['engine']]} Mask R-CNN ({cfg['backbone']}-FPN, norm"
        f" {cfg['norm']}, random init: no pretrained weights)",
        f"  outlining pits and ponds in bands {' '.join(cfg['bands'])} of Sentinel-2 L1C or L2A"
        " at 10 m,",
        "  trained on the project's synthetic scenes (exact masks), calibrated Amazon look and",
        "  legacy look;"
        + (
            f" {' '.join(cfg['optional_bands'])} are optional: input without them (true colour"
            " only, like the gallery's chips) reads them as nodata, as"
            f" {cfg['augment']['optional_dropout']:.0%} of the training chips showed them;"
            if cfg.get("optional_bands")
            else ""
        ),
        "- a context verifier (`training/verifier.py`, a small CNN over the 48 px true-colour chip",
        "  around each site) trained on real Sentinel-2 chips with people-checked labels, which",
        "  rescores every site; the two scores are fused by a logistic regression fitted on the",
        "  real val split, so a site's score reads as P(mine).",
        f"Weights: {size_mb:.1f} MB (fp16). Default threshold {info['default_threshold']:.3f}: the"
        f" fused score keeping specificity {SPECIFICITY} on the val split (never below"
        f" {MIN_THRESHOLD}). Sites from a detector score of {MIN_DETECTOR_SCORE} up are rescored.",
        "",
        "## Data",
        f"- Real: {ATTRIBUTION}",
        "  Split by mosaic (source set and period), never chip by chip (`imagery/gallery.py`):",
        "  train fits the verifier, val the fusion and the threshold; test is read by the",
        "  benchmark only.",
        "- Synthetic (detector): "
        + ", ".join(f"{n} {k} scenes" for n, k, _ in DETECTOR_PARTS)
        + " of 512 px cut into 128 px chips, seeds from 42.",
        "",
        "## Training",
        "On the 2-core CPU machine, one command runs every stage (verifier and detector side by",
        "side, one core each) and writes this card:",
        "",
        "    nice .venv/bin/python benchmarks/train_default_bundle.py --work runs/default-recipe",
        "",
        *(
            [
                f"This bundle's verifier trained {vcfg['epochs']} epochs, the recipe's count on a"
                " CUDA device (`--device cuda`; on a GPU machine without the gallery or GDAL,",
                "`benchmarks/bench_verifier_variants.py --chips ... --device cuda` trains the same"
                " one, and `--verifier-from` takes it).",
            ]
            if vcfg["epochs"] == VERIFIER_EPOCHS_ON_GPU
            else []
        ),
        f"Verifier training steps: {verifier_minutes:.1f} min by its history.",
        f"Seeds: {SEED} (verifier, detector, data). Verifier:"
        f" { {k: vcfg[k] for k in VERIFIER if k != 'threads'} }.",
        *run_times(work),
        "",
        "## Real-chip test split (`benchmarks/bench_real_chips.py`)",
        "",
        "```",
        *summary_lines(chips),
        "```",
        "",
        f"At the default threshold: sensitivity {d['sensitivity']:.3f}, specificity"
        f" {d['specificity']:.3f}; calibration ECE {chips['calibration']['ece']:.3f}.",
        f"Val split (calibration): AUROC detector alone {calib['val_auroc_detector']:.3f},"
        f" verifier alone {calib['val_auroc_verifier']:.3f}, fused {calib['val_auroc_fused']:.3f}.",
        "",
        "## Synthetic and real look-alikes (`benchmarks/eval_default_bundle.py`)",
        f"Held-out synthetic scenes (seed {syn['seed']}, {syn['scenes']} scenes, {syn['images']}"
        f" chips, {syn['instances']} sites), scored as the service scores them (the verifier"
        " rescores every site; it was trained on real chips and rejects most synthetic ones):"
        " mask AP"
        f" {syn['mask_AP']:.3f}, mask AP50 {syn['mask_AP50']:.3f}, bbox AP50"
        f" {syn['bbox_AP50']:.3f}, F1 {syn['f1']:.3f}.",
    ]
    if lakes:
        lines.append(
            f"Real OSM water bodies of the L1C sample: {lakes['flagged_as_site']} of"
            f" {lakes['water_bodies']} flagged as a site; {lakes['sites_found']} sites in all."
        )
    lines += [
        "",
        "## Limits",
        "- The real training signal is chip-level and from the Amazon only, L1C top-of-atmosphere",
        "  true colour; other regions and sensors are untested (the verifier's augmentations",
        "  cover haze, gain, gamma, noise and blur, not other landscapes).",
        "- Outlines come from a detector that has seen only synthetic masks: check them.",
        *(
            [
                "- On input with NIR and SWIR the detector also reads them, learned from the",
                "  generator's spectra only: the real-chip figures above are for true colour (the",
                "  gallery has no other bands); its real 6-band figures are unmeasured.",
            ]
            if cfg.get("optional_bands")
            else []
        ),
        *(
            [
                "- At the default threshold these look-alikes of the test split are flagged more"
                " often than 5 %: "
                + ", ".join(f"{k} {v:.1%}" for k, v in sorted(over.items()))
                + "; a higher `--min-score` trades sensitivity for fewer (the table above).",
            ]
            if over
            else []
        ),
        "- A chip where the detector reports no site cannot be rescued by the verifier.",
        "- Sentinel-2 only; Sentinel-1 needs its own bundle. Check every detection before acting.",
        "",
    ]
    return "\n".join(lines)


class RunTimes:
    """Wall seconds of the stages this run executed, kept in WORK/times.json for the model card.

    ``resumed`` says that some stage's output was already there (an interrupted run continued or
    a stage was reused), so the times are not those of one uninterrupted run.
    """

    def __init__(self, work: Path, threads: int):
        self.work = work
        done = [name for name in STAGE_OUTPUTS if output(work, name).exists()]
        self.figures: dict = {"resumed": done, "threads per process": threads, "seconds": {}}

    def stage(self, name: str, fn, *args):
        """Run one stage; its time is recorded only when it produced its output now."""
        fresh = not output(self.work, name).exists()
        start = time.perf_counter()
        result = fn(*args)
        if fresh:
            self.record(name, time.perf_counter() - start)
        return result

    def record(self, name: str, seconds: float) -> None:
        self.figures["seconds"][name] = round(seconds, 1)
        (self.work / "times.json").write_text(json.dumps(self.figures, indent=1))


def run_times(work: Path) -> list[str]:
    """The model card's lines on the run's wall times (WORK/times.json, written by RunTimes)."""
    path = work / "times.json"
    if not path.is_file():
        return ["This run kept no stage times (it predates WORK/times.json)."]
    figures = json.loads(path.read_text())
    stages = ", ".join(f"{k} {v / 60:.1f} min" for k, v in figures["seconds"].items())
    lines = [
        f"Wall times of this run (torch threads per process: {figures['threads per process']}):"
        f" {stages}."
    ]
    if figures["resumed"]:
        lines.append(
            f"Resumed: these stages' outputs were already there: {', '.join(figures['resumed'])}."
        )
    return lines


STAGES = ("verifier", "detector-data", "detector", "attach", "calibrate", "export", "benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "default-recipe")
    ap.add_argument("--stage", choices=STAGES, help="run up to this stage only")
    ap.add_argument("--only", choices=("verifier",), help="run this stage alone")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    ap.add_argument(
        "--device",
        default="cpu",
        help="the verifier's device: cpu (the 90-minute recipe), cuda (longer: 288 epochs) or auto",
    )
    ap.add_argument(
        "--verifier-from",
        type=Path,
        metavar="RUN",
        help="take the verifier bench_verifier_variants.py --out RUN trained instead of stage 1",
    )
    ap.add_argument(
        "--reuse-detector",
        type=Path,
        metavar="BUNDLE",
        help="take this bundle's detector (a verifier in it is replaced) instead of stages 2-3",
    )
    ap.add_argument(
        "--detector-config",
        type=Path,
        default=DETECTOR_CONFIG,
        help="the detector's training config (e.g. a torchvision one to compare engines)",
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from imagery.gallery import load_gallery
    from training.devices import resolve_device

    device = resolve_device(args.device)
    t0 = time.perf_counter()
    gallery = load_gallery()
    if args.only == "verifier":
        stage_verifier(args.work, gallery, args.threads, device)
        return
    if args.verifier_from and not output(args.work, "verifier").is_file():
        take_verifier(args.work, args.verifier_from)
    if args.reuse_detector and not output(args.work, "detector").is_file():
        shutil.copytree(args.reuse_detector, output(args.work, "detector").parent)
    last = STAGES.index(args.stage) if args.stage else len(STAGES) - 1
    times = RunTimes(args.work, args.threads)
    # The verifier trains in a process of its own while this one builds the detector: one core each.
    verifier = None
    if not output(args.work, "verifier").is_file():
        cmd = [sys.executable, __file__, "--work", str(args.work), "--only", "verifier"]
        verifier = subprocess.Popen([*cmd, "--threads", str(args.threads), "--device", device])
    data = None
    if last >= 1 and not args.reuse_detector:
        data = times.stage("detector-data", stage_detector_data, args.work, args.detector_config)
    if last >= 2:
        detector = times.stage(
            "detector", stage_detector, args.work, data, args.threads, args.detector_config
        )
    if verifier is not None:
        if verifier.wait() != 0:
            raise SystemExit("the verifier stage failed")
        times.record("verifier (beside the detector, from the start)", time.perf_counter() - t0)
    if last >= 3:
        verified = times.stage("attach", stage_attach, args.work, detector)
    if last >= 4:
        calib = times.stage("calibrate", stage_calibrate, args.work, gallery, verified)
        shown = {k: v for k, v in calib.items() if "calibration" not in k}
        log(f"calibration: {json.dumps(shown)}")
    if last >= 5:
        bundle = times.stage("export", stage_export, args.work, verified, calib)
        times.record("training, stages 1-6", time.perf_counter() - t0)
    if last >= 6:
        report = times.stage("benchmark", stage_benchmark, args.work, bundle, gallery)
        (bundle / "model_card.md").write_text(model_card(bundle, report, args.work))
    log(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
