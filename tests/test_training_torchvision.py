"""Smoke test of the torchvision engine on CPU: train, resume, evaluate, export, load, predict.

One short training run (module fixture) on tiny generated chips feeds most tests; it goes through
the real ``asmspotter`` CLI, real GeoTIFFs and pycocotools.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from asmspotter.cli import main
from imagery.errors import AsmSpotterError, Reason
from imagery.scene import open_scene
from training.bundle import load_bundle, sha256_of
from training.data import CocoChips

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
TINY = [  # a small, fast model: 64 px chips, narrow FPN and box head
    "chip_size=64",
    "batch_size=4",
    "num_workers=0",
    "device=cpu",
    "fpn_channels=64",
    "box_head_dim=256",
    "optimizer=adamw",
    "lr=1e-3",
    "weight_decay=0.05",
    "warmup_iters=10",
    "rpn_post_nms_topk_train=300",
    "roi_batch_size_per_image=128",
]
MAX_ITER = 100


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the test machine's CPUs are shared
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_tiny_coco):
    root = tmp_path_factory.mktemp("tv")
    return {
        "train": make_tiny_coco(root / "ds", 40, seed=0, val_every=5),
        "unseen": make_tiny_coco(root / "unseen", 6, seed=99),
        "root": root,
    }


@pytest.fixture(scope="module")
def trained(data):
    out, bundle = data["root"] / "run", data["root"] / "bundle"
    argv = ["train", "--data", str(data["train"]), "--out", str(out), "--export", str(bundle)]
    argv += [*TINY, f"max_iter={MAX_ITER}", "steps=[85]", "eval_period=50"]
    argv += ["checkpoint_period=50", "log_period=5"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"out": out, "bundle": bundle, "records": records}


def test_loss_falls(trained):
    losses = [r["loss"] for r in trained["records"] if "loss" in r]
    assert len(losses) >= 10 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_validation_metrics_and_best_checkpoint(trained):
    evals = [r for r in trained["records"] if "eval" in r]
    assert [r["iter"] for r in evals] == [50, MAX_ITER]
    for r in evals:
        assert {"mask_AP", "mask_AP50", "bbox_AP", "f1"} <= set(r["eval"])
    best = torch.load(trained["out"] / "best.pt", weights_only=False)
    best_ap = max(r["eval"]["mask_AP"] for r in evals)
    assert best["metrics"]["mask_AP"] == pytest.approx(best_ap)
    assert "optimizer" not in best and "optimizer" in torch.load(
        trained["out"] / "last.pt", weights_only=False
    )


def test_checkpoint_resumes_to_the_same_step(data, capsys):
    """A run resumed from its checkpoint continues exactly like an uninterrupted one."""
    base = ["--data", str(data["train"]), *TINY, "log_period=1", "eval_period=0", "warmup_iters=2"]
    straight, split = data["root"] / "straight", data["root"] / "split"
    assert main(["train", "--out", str(straight), *base, "max_iter=6", "checkpoint_period=3"]) == 0
    captured = capsys.readouterr()  # the steps after the bar, and the final metrics
    assert "train: band statistics from" in captured.err and "train: evaluating" in captured.err
    assert "validation (8 images): mask_AP " in captured.out
    assert main(["train", "--out", str(split), *base, "max_iter=3", "checkpoint_period=3"]) == 0
    assert main(["train", "--out", str(split), "--resume", *base, "max_iter=6"]) == 0

    def losses(folder):
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return {r["iter"]: r["loss"] for r in rows if "loss" in r}, rows

    a, _ = losses(straight)
    b, rows = losses(split)
    assert {"resumed_at": 3} in rows
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for it in (4, 5, 6):
        assert b[it] == pytest.approx(a[it], rel=1e-4)
    assert torch.load(split / "last.pt", weights_only=False)["iteration"] == 6


def test_non_finite_loss_stops_with_a_clear_error(data, capsys):
    argv = ["train", "--data", str(data["train"]), "--out", str(data["root"] / "diverge")]
    argv += [*TINY, "optimizer=sgd", "lr=1e8", "clip_grad=0", "warmup_iters=0", "max_iter=6"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error [TRAINING_DIVERGED]: non-finite loss at iteration")


def test_evaluate_cli_writes_ap_and_f1(trained, data, capsys):
    out = data["root"] / "eval.json"
    argv = ["evaluate", str(trained["bundle"]), str(data["unseen"]), "--out", str(out)]
    assert main(argv) == 0  # a readable table by default
    table = capsys.readouterr().out
    assert "mask_AP50" in table and "precision" in table and f"metrics JSON: {out}" in table
    assert main([*argv, "--json"]) == 0
    metrics = json.loads(out.read_text())
    for key in ("mask_AP", "mask_AP50", "bbox_AP", "bbox_AP50", "f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["segm"]["AP50"] == metrics["mask_AP50"]
    per_class = metrics["objects"]["per_class"]
    assert set(per_class) == {"pit", "pond"} and "f1" in per_class["pond"]
    assert metrics["n_images"] == 6
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_images"] == 6


def test_bundle_contents(trained):
    bundle = trained["bundle"]
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["format"] == "asmspotter-bundle/1" and info["engine"] == "torchvision"
    assert info["bands"] == BANDS and info["classes"] == ["pit", "pond"]
    assert info["chip_size"] == 64 and len(info["normalization"]["mean"]) == 6
    assert info["weights_sha256"] == sha256_of(bundle / info["weights"])
    assert "asmspotter train" in info["trained_with"] and "max_iter=100" in info["trained_with"]
    # the best checkpoint's validation metrics: 100 CPU steps learn the ponds (AP50 0.12 already
    # at step 50); an untrained or broken model scores 0
    assert info["metrics"]["mask_AP50"] >= 0.05 and info["metrics"]["n_instances"] > 0
    card = (bundle / "model_card.md").read_text()
    for words in ("## Data", "## Training", "seed: 42", "## Limits", "mask_AP"):
        assert words in card
    state = torch.load(bundle / info["weights"], weights_only=True)
    assert all(v.dtype != torch.float32 for v in state.values())  # fp16 weights


def test_bundle_finds_sites_in_an_unseen_scene(trained, data):
    model = load_bundle(trained["bundle"], device="cpu")
    assert model.info["engine"] == "torchvision" and model.device == "cpu"
    chips = CocoChips(data["unseen"], BANDS)
    images = []
    for i in range(len(chips)):
        with open_scene(chips.path_of(i)) as scene:
            images.append(scene.read())
    preds = model.predict(np.stack(images), score_threshold=0.3)
    assert len(preds) == len(images)
    found = 0
    for i, pred in enumerate(preds):
        k = len(pred)
        assert pred.masks.shape == (k, 64, 64) and pred.masks.dtype == bool
        assert pred.scores.dtype == np.float32 and pred.classes.dtype == np.int64
        assert pred.boxes.shape == (k, 4) and ((pred.classes >= 0) & (pred.classes < 2)).all()
        for gt, gt_cls in zip(chips[i].masks, chips[i].classes, strict=True):
            inter = (pred.masks & gt).sum(axis=(1, 2))
            union = (pred.masks | gt).sum(axis=(1, 2))
            found += bool(((inter / np.maximum(union, 1) >= 0.5) & (pred.classes == gt_cls)).any())
    assert found >= 2, "the trained bundle should find sites it never saw"


def test_predict_tolerates_nodata(trained):
    model = load_bundle(trained["bundle"], device="cpu")
    images = np.full((2, 6, 48, 80), 0.1, np.float32)  # any chip size works
    images[0, :, :10] = np.nan
    preds = model.predict(images)
    assert [p.masks.shape[1:] for p in preds] == [(48, 80), (48, 80)]
    assert all(np.isfinite(p.scores).all() for p in preds)
    with pytest.raises(AsmSpotterError) as err:
        model.predict(images[:, :4])
    assert err.value.reason == Reason.BAND_MISMATCH


def test_tampered_or_missing_bundle_is_refused(trained, data, capsys):
    broken = data["root"] / "broken"
    shutil.copytree(trained["bundle"], broken)
    with open(broken / "model.pt", "ab") as f:
        f.write(b"junk")
    with pytest.raises(AsmSpotterError) as err:
        load_bundle(broken)
    assert err.value.reason == Reason.BUNDLE_INVALID
    assert main(["evaluate", str(data["root"] / "nope"), str(data["unseen"])]) == 2
    assert "error [BUNDLE_INVALID]" in capsys.readouterr().err


def test_export_cli_from_a_checkpoint(trained, data):
    out = data["root"] / "exported-0.9.0"
    argv = ["export", str(trained["out"] / "last.pt"), "--out", str(out), "--version", "0.9.0"]
    argv += ["--full-precision", "--eval", str(data["unseen"]), "--limits", "Toy data only."]
    assert main(argv) == 0
    info = json.loads((out / "bundle.json").read_text())
    assert info["version"] == "0.9.0" and info["weights_dtype"] == "float32"
    assert info["metrics"]["n_images"] == 6 and info["training"]["iteration"] == MAX_ITER
    assert "Toy data only." in (out / "model_card.md").read_text()
    a = load_bundle(out, "cpu").predict(np.full((1, 6, 64, 64), 0.1, np.float32), 0.0)
    assert isinstance(a[0].scores, np.ndarray)


def test_service_predictor_runs_the_bundle_on_an_unseen_tile(trained, data, make_tiny_coco):
    """The service loads the bundle unchanged and finds sites of a larger tile it never saw."""
    from imagery.geometry import iou, mask_to_geometry
    from service.predictor import DetectOptions, Predictor

    folder = make_tiny_coco(data["root"] / "scene", 3, size=128, seed=123)
    chips = CocoChips(folder, BANDS)
    predictor = Predictor(load_bundle(trained["bundle"], device="cpu"), max_batch=4)
    matched = total = 0
    try:
        for i in range(len(chips)):
            with open_scene(chips.path_of(i)) as scene:
                transform = scene.grid.transform
            result = predictor.detect_file(
                chips.path_of(i), DetectOptions(min_score=0.3, output_crs="EPSG:32629")
            )
            assert result.width == 128 and result.window_count > 1
            for mask in chips[i].masks:
                truth = mask_to_geometry(mask, transform)
                total += 1
                matched += any(iou(site.geometry, truth) >= 0.5 for site in result.sites)
    finally:
        predictor.close()
    assert total > 0 and matched >= 1, f"{matched} of {total} sites found"


def test_a_bundle_with_optional_bands_reads_rgb_only_chips(trained, data, capsys):
    """NIR and SWIR optional: trained with them dropped from half the chips, exported with
    ``optional_bands``; RGB-only chips are then read with those bands as nodata (= the band
    mean), where a bundle without optional bands refuses them."""
    from imagery.tiles import write_tile

    root = data["root"] / "optional"
    argv = ["train", "--data", str(data["train"]), "--out", str(root / "run")]
    argv += ["--export", str(root / "bundle"), *TINY, "max_iter=60", "steps=[50]"]
    argv += ["eval_period=0", "checkpoint_period=60", "log_period=5"]
    argv += ["optional_bands=[B08,B11,B12]", "augment.optional_dropout=0.5"]
    assert main(argv) == 0
    info = json.loads((root / "bundle" / "bundle.json").read_text())
    assert info["bands"] == BANDS and info["optional_bands"] == ["B08", "B11", "B12"]
    # the unseen chips again, true colour only
    rgb = root / "rgb"
    (rgb / "chips").mkdir(parents=True)
    coco = json.loads((data["unseen"] / "annotations.json").read_text())
    for img in coco["images"]:
        with open_scene(data["unseen"] / img["file_name"]) as scene:
            write_tile(rgb / img["file_name"], scene.read()[:3], scene.grid, BANDS[:3], cog=False)
    (rgb / "annotations.json").write_text(json.dumps(coco))
    out = root / "eval.json"
    assert main(["evaluate", str(root / "bundle"), str(rgb), "--out", str(out), "--json"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_images"] == 6 and metrics["n_instances"] == len(coco["annotations"])
    assert main(["evaluate", str(trained["bundle"]), str(rgb)]) == 2  # no optional bands
    assert "BAND_MISSING" in capsys.readouterr().err
    # an RGB chip gives the model what a 6-band chip with NIR/SWIR at the band mean gives it
    model = load_bundle(root / "bundle", device="cpu")
    mean = np.array(info["normalization"]["mean"], np.float32)
    found = 0
    for img in coco["images"]:
        with open_scene(rgb / img["file_name"], bands=BANDS, optional_bands=BANDS[3:]) as s:
            from_rgb = s.read()
        assert np.isnan(from_rgb[3:]).all() and np.isfinite(from_rgb[:3]).all()
        filled = from_rgb.copy()
        filled[3:] = mean[3:, None, None]
        a, b = model.predict(from_rgb[None], 0.05)[0], model.predict(filled[None], 0.05)[0]
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        found += len(a)
    assert found > 0
