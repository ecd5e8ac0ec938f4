"""Detectron2 engine: patched install, a short CPU training that learns, resume, bundle round trip.

The dataset is made here: 6-band GeoTIFF chips (written with the imagery core) holding rasterised
pits (bright, dry: high SWIR) and ponds (dark water: low NIR/SWIR) on vegetation, some chips with
no site at all (negatives).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from tests.real_parts import require_module

require_module("detectron2", "detectron2 is not installed (third_party/detectron2)")

from imagery import coco  # noqa: E402
from imagery.errors import AsmSpotterError, Reason  # noqa: E402
from imagery.scene import Grid  # noqa: E402
from imagery.sensors import S2_STACK  # noqa: E402
from imagery.tiles import write_tile  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import load_train_data  # noqa: E402
from training.engines.base import SCORE_FLOOR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHIP = 64
# reflectance per band B02 B03 B04 B08 B11 B12
VEGETATION = np.array([0.03, 0.06, 0.04, 0.30, 0.16, 0.08], np.float32)
CLASS_SPECTRA = {
    "pit": np.array([0.14, 0.17, 0.21, 0.26, 0.34, 0.30], np.float32),
    "pond": np.array([0.06, 0.08, 0.07, 0.03, 0.02, 0.01], np.float32),
}


def _write_split(root: Path, n: int, seed: int, chip: int = CHIP) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    yy, xx = np.mgrid[:chip, :chip]
    for i in range(n):
        image = VEGETATION[:, None, None] * rng.uniform(0.9, 1.1, (1, chip, chip)).astype(
            np.float32
        )
        masks = []
        for _ in range(0 if i % 4 == 3 else int(rng.integers(1, 4))):  # every 4th: negative
            name = str(rng.choice(["pit", "pond"]))
            r = rng.uniform(4, 10)
            cy, cx = rng.uniform(r, chip - r, 2)
            if name == "pit":
                mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * 0.7)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            if any((mask & m).any() for m, _ in masks):
                continue
            image[:, mask] = CLASS_SPECTRA[name][:, None]
            masks.append((mask, name))
        transform = from_origin(500000 + i * 1000, 9000000, 10, 10)
        grid = Grid(crs="EPSG:32630", transform=transform, width=chip, height=chip)
        name = f"chip_{i:03d}.tif"
        write_tile(root / name, image, grid, S2_STACK, cog=False)
        images.append(coco.image_entry(i + 1, name, chip, chip, "EPSG:32630", transform))
        for mask, cls in masks:
            anns.append(coco.annotation(len(anns) + 1, i + 1, mask, cls))
    (root / "annotations.json").write_text(json.dumps(coco.dataset(images, anns)))
    return root


@pytest.fixture(scope="module")
def d2_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("d2data")
    _write_split(root / "train", 12, seed=1)
    _write_split(root / "val", 4, seed=2)
    return root


def _config(**overrides) -> TrainConfig:
    values = {
        "engine": "detectron2",
        "backbone": "R18",
        "norm": "GN",
        "fpn_channels": 64,
        "batch_size": 2,
        "lr": 0.01,
        "max_iter": 20,
        "warmup_iters": 5,
        "steps": [1000],
        "checkpoint_period": 10,
        "eval_period": 0,
        "log_period": 2,
        "num_workers": 0,
        "device": "cpu",
        "rpn_pre_nms_topk_train": 300,
        "rpn_post_nms_topk_train": 100,
        "rpn_pre_nms_topk_test": 200,
        "rpn_post_nms_topk_test": 50,
        "rpn_batch_size_per_image": 64,
        "roi_batch_size_per_image": 32,
        "detections_per_image": 20,
        "box_head_dim": 128,
        "engine_options": {  # the light CPU variant: small heads
            "MODEL.ROI_MASK_HEAD.CONV_DIM": 64,
            "MODEL.ROI_MASK_HEAD.NUM_CONV": 2,
        },
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def _losses(out_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out_dir / "metrics.json").read_text().splitlines()]
    return [(r["iteration"], r["total_loss"]) for r in rows if "total_loss" in r]


def test_config_maps_the_train_config_and_refuses_bad_values(tmp_path):
    from detectron2.modeling import build_model

    from training.engines.detectron2_config import build_config

    cfg = _config(bands=["B02", "B03", "B04", "B08"], norm="BN", engine_options={})
    d2 = build_config(cfg, "cpu")
    # inputs arrive normalised by prepare_input: the model's own normalisation is the identity
    assert d2.MODEL.PIXEL_MEAN == [0.0] * 4 and d2.MODEL.PIXEL_STD == [1.0] * 4
    assert d2.MODEL.ROI_BOX_HEAD.FC_DIM == 128  # box_head_dim, once ignored
    assert d2.MODEL.BACKBONE.FREEZE_AT == 0 and d2.MODEL.RESNETS.NORM == "BN"
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == 2 and d2.MODEL.WEIGHTS == ""
    assert d2.MODEL.ANCHOR_GENERATOR.SIZES == [[4], [8], [16], [32], [64]]
    assert d2.SOLVER.CLIP_GRADIENTS.ENABLED and not d2.SOLVER.AMP.ENABLED
    stem = build_model(d2).backbone.bottom_up.stem.conv1
    assert stem.weight.shape[1] == 4  # the stem takes every band
    for bad, reason in [
        ({"backbone": "vgg16"}, Reason.INVALID_ARGUMENT),
        ({"norm": "FrozenBN"}, Reason.INVALID_ARGUMENT),
        ({"init_weights": str(tmp_path / "missing.pth")}, Reason.FILE_NOT_FOUND),
        ({"engine_options": {"MODEL.NO_SUCH_KEY": 1}}, Reason.INVALID_ARGUMENT),
        ({"engine_options": {"MODEL.ROI_BOX_HEAD.FC_DIM": 64}}, Reason.INVALID_ARGUMENT),
    ]:
        with pytest.raises(AsmSpotterError) as err:
            build_config(_config(bands=["B02", "B03", "B04", "B08"], **bad), "cpu")
        assert err.value.reason == reason, bad


def test_detectron2_draws_the_shared_oversampled_stream(d2_dataset):
    """The Detectron2 loader draws the torchvision loop's sample stream (one sampler), with
    positives oversampled (once silently ignored)."""
    from training.engines.detectron2_data import EpochDataset
    from training.sampling import epoch_pool, run_sampler

    cfg = _config(oversample_positives=3)
    data = load_train_data(cfg, d2_dataset)
    pool = epoch_pool(data.train, 3)
    positives = sum(1 for img in data.train.images if data.train.anns_by_image[img["id"]])
    assert positives and len(pool) == len(data.train) + 2 * positives
    it = iter(run_sampler(data.train, cfg, 0))
    epoch = [next(it) for _ in range(len(pool))]
    assert sorted(k for _, k in epoch) == sorted(pool)  # an epoch is the oversampled pool
    resumed = iter(run_sampler(data.train, cfg, 3))  # iteration 3 x batch 2
    assert [next(resumed) for _ in range(4)] == epoch[6:10]
    mapped = EpochDataset([{"index": 0, "image_id": 1}], lambda d: d)[(2, 0)]
    assert mapped["epoch"] == 2 and mapped["index"] == 0


def test_install_script_fast_path_is_idempotent():
    start = time.perf_counter()
    run = subprocess.run(
        ["bash", str(REPO / "third_party/detectron2/install.sh"), sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "already installed" in run.stdout
    assert time.perf_counter() - start < 10
    import detectron2
    from detectron2._asmspotter_patch import PATCH_SHA256

    patch = REPO / "third_party/detectron2/detectron2-0.6.patch"
    import hashlib

    assert PATCH_SHA256 == hashlib.sha256(patch.read_bytes()).hexdigest()
    assert detectron2.__version__ == "0.6"


def test_train_resume_export_predict(d2_dataset, tmp_path):
    from training.bundle import export_bundle
    from training.engines.base import get_engine
    from training.model import load_bundle

    cfg = _config()
    data = load_train_data(cfg, d2_dataset)
    engine = get_engine("detectron2")
    out = tmp_path / "run"
    best = engine.train(cfg, data, out, resume=False)
    assert best.name == "model_best.pth"  # COCOEvaluator ran on the validation split
    import torch

    head = torch.load(best, map_location="cpu", weights_only=False)
    assert {"model", "config", "stats", "metrics", "iteration"} <= set(head)
    assert {"mask_AP", "mask_AP50", "f1", "objects"} <= set(head["metrics"])
    assert head["engine"] == "detectron2"
    losses = _losses(out)
    assert losses[-1][0] == 19
    first = np.mean([v for _, v in losses[:3]])
    last = np.mean([v for _, v in losses[-3:]])
    assert last < first * 0.8, losses

    # resume: a longer schedule continues from the last checkpoint (iteration 19 -> 20)
    from training.engines.detectron2_engine import read_start_iter

    assert read_start_iter(out) == 20  # last_checkpoint names the latest, not the best
    cfg_more = _config(max_iter=26)
    engine.train(cfg_more, data, out, resume=True)
    resumed = [(it, v) for it, v in _losses(out) if it >= 20]
    assert resumed and min(it for it, _ in resumed) >= 20 and resumed[-1][0] == 25
    assert resumed[0][1] < first * 0.8  # the weights came back too, not only the counter
    assert (out / "model_final.pth").is_file()

    bundle = export_bundle(out / "model_final.pth", tmp_path / "bundle")
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["engine"] == "detectron2" and info["training"]["iteration"] == 25
    model = load_bundle(bundle, device="cpu")
    sample = data.val[0]
    images = np.stack([sample.image, sample.image])
    images[1, :, :8, :8] = np.nan  # nodata is allowed
    preds = model.predict(images, score_threshold=0.0)
    assert len(preds) == 2
    for pred in preds:  # 26 CPU iterations learn no site (test_short_training_... does)
        k = len(pred)
        assert pred.masks.shape == (k, CHIP, CHIP) and pred.masks.dtype == bool
        assert pred.boxes.shape == (k, 4) and pred.scores.shape == (k,)
        assert set(pred.classes.tolist()) <= {0, 1}
        assert (pred.scores >= SCORE_FLOOR).all()
    with pytest.raises(AsmSpotterError) as err:
        model.predict(images[:, :3])
    assert err.value.reason == Reason.BAND_MISMATCH

    info["config"]["backbone"] = "R34"  # weights no longer fit the network: a typed refusal
    (bundle / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(AsmSpotterError) as err:
        load_bundle(bundle, device="cpu")
    assert err.value.reason == Reason.BUNDLE_INVALID


def test_train_and_predict_on_cuda_with_amp(d2_dataset, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    from training.bundle import export_bundle
    from training.engines.base import get_engine
    from training.model import load_bundle

    cfg = _config(device="cuda", amp=True, backbone="R50", fpn_channels=256, max_iter=20)
    data = load_train_data(cfg, d2_dataset)
    out = tmp_path / "run"
    best = get_engine("detectron2").train(cfg, data, out, resume=False)
    assert best.is_file()
    losses = _losses(out)
    assert losses[-1][0] == 19 and all(np.isfinite(v) for _, v in losses)
    bundle = export_bundle(best, tmp_path / "bundle")
    model = load_bundle(bundle, device="cuda")
    preds = model.predict(np.stack([data.val[i].image for i in range(3)]), score_threshold=0.0)
    assert [p.masks.shape[1:] for p in preds] == [(CHIP, CHIP)] * 3


@pytest.mark.slow
def test_short_training_reaches_mask_ap50(tmp_path):
    """A short training (minutes on CPU, seconds on a GPU) learns the generated sites."""
    from training.bundle import export_bundle
    from training.engines.base import get_engine
    from training.evaluate import evaluate_model
    from training.model import load_bundle

    _write_split(tmp_path / "data" / "train", 48, seed=11)
    _write_split(tmp_path / "data" / "val", 12, seed=12)
    cfg = _config(
        device="auto", batch_size=4, max_iter=400, warmup_iters=50, steps=[300], eval_period=200
    )
    data = load_train_data(cfg, tmp_path / "data")
    best = get_engine("detectron2").train(cfg, data, tmp_path / "run", resume=False)
    model = load_bundle(export_bundle(best, tmp_path / "bundle"))
    metrics = evaluate_model(model, data.val)
    print({k: metrics[k] for k in ("mask_AP", "mask_AP50", "bbox_AP50", "f1")})
    assert metrics["mask_AP50"] >= 0.5, metrics
