"""Training building blocks without a network: config, dataset, augmentation, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imagery.errors import AsmSpotterError, Reason
from training.config import TrainConfig, load_config
from training.data import (
    Augmenter,
    CocoChips,
    TrainingView,
    boxes_from_masks,
    load_train_data,
)
from training.engines.base import DetectionModel, Instances, get_engine, normalize
from training.evaluate import evaluate_model, match_counts


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory, make_tiny_coco):
    return make_tiny_coco(tmp_path_factory.mktemp("units") / "ds", 12, size=48, seed=3, val_every=4)


def test_config_file_plus_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("engine: torchvision\nlr: 0.01\naugment:\n  hflip: 0.2\nsteps: [5, 8]\n")
    cfg = load_config(path, ["lr=1e-3", "augment.band_dropout=0", "bands=[B04,B08]", "amp=false"])
    assert cfg.lr == pytest.approx(1e-3)
    assert cfg.augment.hflip == pytest.approx(0.2) and cfg.augment.band_dropout == 0
    assert cfg.bands == ["B04", "B08"] and cfg.steps == [5, 8] and cfg.amp is False
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip (bundle.json -> model)


@pytest.mark.parametrize(
    "overrides",
    [
        ["no_such_key=1"],
        ["lr"],
        ["lr=abc"],
        ["schedule=linear"],
        ["augment.nope=1"],
        ["norm=LN"],
        ["optional_bands=[B05]"],  # not one of the model's bands
        ["bands=[B04,B08]", "optional_bands=[B04,B08]"],  # every band optional
        ["augment.optional_dropout=0.5"],  # no optional bands to drop
        ["optional_bands=[B08]", "augment.optional_dropout=1.5"],
    ],
)
def test_config_rejects_bad_input(overrides):
    with pytest.raises(AsmSpotterError) as err:
        load_config(None, overrides)
    assert err.value.reason == Reason.INVALID_ARGUMENT


def test_config_missing_file(tmp_path):
    with pytest.raises(AsmSpotterError) as err:
        load_config(tmp_path / "absent.yaml")
    assert err.value.reason == Reason.FILE_NOT_FOUND


def test_dataset_reads_chips_masks_and_keeps_negatives(chips_dir):
    raw = json.loads((chips_dir / "annotations.json").read_text())
    chips = CocoChips(chips_dir, ["B02", "B03", "B04", "B08", "B11", "B12"])
    assert len(chips) == 12
    n_instances = sum(len(chips[i].masks) for i in range(len(chips)))
    assert n_instances == len(raw["annotations"])
    negatives = [i for i in range(len(chips)) if len(chips[i].masks) == 0]
    assert negatives, "the tiny set has chips without sites; they must be kept"
    sample = next(chips[i] for i in range(len(chips)) if len(chips[i].masks))
    assert sample.image.shape == (6, 48, 48) and sample.image.dtype == np.float32
    ann = next(a for a in raw["annotations"] if a["image_id"] == sample.image_id)
    assert sample.masks[0].sum() == ann["area"]  # polygons rasterise back to the exact mask
    x, y, w, h = ann["bbox"]
    np.testing.assert_allclose(sample.boxes[0], [x, y, x + w, y + h])
    # reflectance: water and soil sites differ from the vegetation around them
    assert 0 < np.nanmean(sample.image) < 1


def test_band_selection_and_missing_band(chips_dir):
    two = CocoChips(chips_dir, ["B08", "B04"])
    six = CocoChips(chips_dir, ["B02", "B03", "B04", "B08", "B11", "B12"])
    np.testing.assert_array_equal(two.read_image(0), six.read_image(0)[[3, 2]])
    with pytest.raises(AsmSpotterError) as err:
        CocoChips(chips_dir, ["B05"]).read_image(0)
    assert err.value.reason == Reason.BAND_MISSING


def test_split_field_and_statistics(chips_dir):
    data = load_train_data(load_config(None, ["stats_samples=100"]), chips_dir)
    assert (len(data.train), len(data.val)) == (9, 3)
    stack = np.stack([data.train.read_image(i) for i in range(len(data.train))])
    np.testing.assert_allclose(data.stats.mean, stack.mean(axis=(0, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(data.stats.std, stack.std(axis=(0, 2, 3)), rtol=1e-3)
    view = TrainingView(data.train, data.stats)
    normed = np.stack([view[i].image for i in range(len(view))])
    np.testing.assert_allclose(normed.mean(axis=(0, 2, 3)), 0, atol=1e-3)


def test_no_data_is_a_typed_error(tmp_path):
    with pytest.raises(AsmSpotterError) as err:
        load_train_data(load_config(), tmp_path)
    assert err.value.reason == Reason.FILE_NOT_FOUND
    with pytest.raises(AsmSpotterError) as err:
        load_train_data(load_config(), None)
    assert err.value.reason == Reason.INVALID_ARGUMENT


def test_augmentations_move_image_and_masks_together():
    from training.config import AugmentConfig

    image = np.zeros((3, 20, 30), np.float32)
    masks = np.zeros((1, 20, 30), bool)
    image[:, 2:5, 20:27] = 5.0
    masks[0, 2:5, 20:27] = True
    aug = Augmenter(AugmentConfig(0.5, 0.5, True, brightness=0, contrast=0, band_dropout=0))
    shapes = set()
    for seed in range(16):
        out_img, out_masks = aug(image, masks, np.random.default_rng(seed))
        assert out_img.shape[1:] == out_masks.shape[1:]
        np.testing.assert_array_equal(out_img[0] == 5.0, out_masks[0])
        shapes.add(out_img.shape)
        box = boxes_from_masks(out_masks)[0]
        assert (box[2] - box[0]) * (box[3] - box[1]) == 21
    assert shapes == {(3, 20, 30), (3, 30, 20)}  # 90 degree rotations happened


def test_band_dropout_and_brightness():
    from training.config import AugmentConfig

    image = np.ones((6, 8, 8), np.float32)
    masks = np.zeros((0, 8, 8), bool)
    aug = Augmenter(AugmentConfig(0, 0, False, brightness=0.2, contrast=0.2, band_dropout=0.5))
    dropped = 0
    for seed in range(20):
        out, _ = aug(image, masks, np.random.default_rng(seed))
        per_band = out.reshape(6, -1)
        assert np.allclose(per_band, per_band[:, :1])  # per-band, spatially constant change
        zero = (per_band == 0).all(axis=1)
        assert not zero.all()
        dropped += zero.sum()
        live = per_band[~zero, 0]
        assert ((live > 0.6) & (live < 1.45)).all()
    assert dropped > 0


def test_optional_dropout_zeroes_the_optional_bands_together():
    from training.config import AugmentConfig

    image = np.ones((6, 8, 8), np.float32)
    masks = np.zeros((0, 8, 8), bool)
    cfg = AugmentConfig(0, 0, False, brightness=0, contrast=0, band_dropout=0, optional_dropout=0.5)
    aug = Augmenter(cfg, optional=[3, 4, 5])
    dropped = 0
    for seed in range(40):
        out, _ = aug(image, masks, np.random.default_rng(seed))
        zero = (out == 0).all(axis=(1, 2))
        assert not zero[:3].any()  # the required bands are never dropped
        assert zero[3:].all() or not zero[3:].any()  # the optional ones all or none
        dropped += zero[3]
    assert 10 < dropped < 30  # about half of the chips
    # the config carries the positions of its optional bands
    cfg = load_config(None, ["optional_bands=[B11,B08]", "augment.optional_dropout=0.5"])
    assert cfg.optional_indices == [4, 3]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_normalize_replaces_nan_after_scaling():
    images = np.full((1, 2, 3, 3), 0.2, np.float32)
    images[0, 1, 0, 0] = np.nan
    out = normalize(images, [0.1, 0.2], [0.1, 0.05])
    assert np.isfinite(out).all()
    assert out[0, 0, 1, 1] == pytest.approx(1.0) and out[0, 1, 0, 0] == 0
    with pytest.raises(AsmSpotterError) as err:
        normalize(images, [0.1], [0.1])
    assert err.value.reason == Reason.BAND_MISMATCH


class OracleModel(DetectionModel):
    """Answers with the ground truth of a chip set (plus optional junk): checks the metrics."""

    def __init__(self, chips: CocoChips, drop_every: int = 0, extra: bool = False) -> None:
        self.chips, self.drop_every, self.extra = chips, drop_every, extra
        self.info = {"classes": chips.classes, "bands": chips.bands}
        self.device = "cpu"
        self.calls = 0

    def predict(self, images, score_threshold=0.05):
        out = []
        for image in images:
            sample = self.chips[self.calls]
            self.calls += 1
            keep = np.ones(len(sample.masks), bool)
            if self.drop_every:
                keep[:: self.drop_every] = False
            masks, classes = sample.masks[keep], sample.classes[keep]
            if self.extra:  # one confident false positive per chip
                junk = np.zeros((1, *image.shape[1:]), bool)
                junk[0, :2, :2] = True
                masks = np.concatenate([masks, junk])
                classes = np.concatenate([classes, [0]])
            out.append(
                Instances(
                    masks,
                    np.full(len(masks), 0.9, np.float32),
                    classes.astype(np.int64),
                    boxes_from_masks(masks),
                )
            )
        return out


def test_evaluation_of_a_perfect_model(chips_dir):
    chips = CocoChips(chips_dir, ["B02", "B03", "B04", "B08", "B11", "B12"])
    metrics = evaluate_model(OracleModel(chips), chips, batch_size=5)
    assert metrics["mask_AP"] == pytest.approx(1.0) and metrics["bbox_AP50"] == pytest.approx(1.0)
    assert metrics["f1"] == pytest.approx(1.0)
    assert metrics["n_images"] == 12
    assert set(metrics["objects"]["per_class"]) == {"pit", "pond"}


def test_evaluation_counts_misses_and_false_positives(chips_dir):
    chips = CocoChips(chips_dir, ["B02", "B03", "B04", "B08", "B11", "B12"])
    n_gt = sum(len(chips[i].masks) for i in range(len(chips)))
    metrics = evaluate_model(OracleModel(chips, drop_every=2, extra=True), chips)
    overall = metrics["objects"]["all"]
    assert overall["fp"] == 12  # one junk detection per chip
    assert overall["tp"] + overall["fn"] == n_gt and overall["fn"] > 0
    assert 0 < overall["f1"] < 1 and metrics["mask_AP"] < 1


def test_match_counts_is_one_to_one():
    gt_mask = np.zeros((1, 10, 10), bool)
    gt_mask[0, 2:6, 2:6] = True
    from training.data import Sample

    gt = Sample(np.zeros((1, 10, 10)), gt_mask, np.array([1]), boxes_from_masks(gt_mask), 1, "x")
    two = np.concatenate([gt_mask, gt_mask])  # a duplicate detection is one TP and one FP
    pred = Instances(two, np.array([0.9, 0.8], np.float32), np.array([1, 1]), np.zeros((2, 4)))
    counts = match_counts(pred, gt, 2)
    np.testing.assert_array_equal(counts, [[0, 0, 0], [1, 1, 0]])


def test_unknown_engine_is_a_typed_error():
    with pytest.raises(AsmSpotterError) as err:
        get_engine("yolo")
    assert err.value.reason == Reason.INVALID_ARGUMENT


def test_schedule_warmup_then_steps():
    from training.sampling import epoch_indices
    from training.train import lr_factor

    cfg = load_config(None, ["warmup_iters=10", "warmup_factor=0.1", "steps=[20,30]", "gamma=0.5"])
    assert lr_factor(0, cfg, 40, cfg.steps) == pytest.approx(0.1)
    assert lr_factor(5, cfg, 40, cfg.steps) == pytest.approx(0.55)
    assert lr_factor(10, cfg, 40, cfg.steps) == pytest.approx(1.0)
    assert lr_factor(25, cfg, 40, cfg.steps) == pytest.approx(0.5)
    assert lr_factor(35, cfg, 40, cfg.steps) == pytest.approx(0.25)
    cos = load_config(None, ["warmup_iters=0", "schedule=cosine"])
    assert lr_factor(20, cos, 40, []) == pytest.approx(0.5)
    shards = [epoch_indices(10, 1, 0, r, 3) for r in range(3)]
    assert {len(s) for s in shards} == {4}
    assert set().union(*map(set, shards)) == set(range(10))
    assert epoch_indices(10, 1, 0, 0, 1) == epoch_indices(10, 1, 0, 0, 1)
    assert epoch_indices(10, 1, 0, 0, 1) != epoch_indices(10, 1, 1, 0, 1)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["train", "--config", "/nonexistent/c.yaml", "-o", "/nonexistent/run"], "FILE_NOT_FOUND"),
        (["train", "lr=-1", "-o", "/nonexistent/run"], "INVALID_ARGUMENT"),
        (["train", "max_iter=2", "-o", "/nonexistent/run"], "INVALID_ARGUMENT"),  # no --data
        (["train", "--data", "/nonexistent", "engine=yolo", "-o", "/x"], "INVALID_ARGUMENT"),
        (["train", "--data", "/nonexistent"], "INVALID_ARGUMENT"),  # no -o: nothing in the cwd
        (["export", "/nonexistent/best.pt", "--out", "/tmp/x"], "FILE_NOT_FOUND"),
        (["evaluate", "/nonexistent", "/nonexistent.json"], "BUNDLE_INVALID"),
    ],
)
def test_cli_bad_input_is_one_line(argv, reason, capsys):
    from asmspotter.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error [{reason}]")


def test_export_refuses_a_file_that_is_no_checkpoint(tmp_path, capsys):
    from asmspotter.cli import main

    junk = tmp_path / "best.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["export", str(junk), "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("error [BUNDLE_INVALID]")


def test_positive_oversampling_pool(chips_dir):
    from training.sampling import RunSampler, epoch_pool

    chips = CocoChips(chips_dir, ["B02"])
    positives = [i for i, img in enumerate(chips.images) if chips.anns_by_image[img["id"]]]
    pool = epoch_pool(chips, 3)
    assert len(pool) == len(chips) + 2 * len(positives)
    assert all(pool.count(i) == (3 if i in positives else 1) for i in range(len(chips)))
    full = RunSampler(pool, 0, 0, 1, 0)
    first = [key for _, key in zip(range(2 * len(pool)), full, strict=False)]
    resumed = RunSampler(pool, 0, 0, 1, 5)
    assert [k for _, k in zip(range(len(first) - 5), resumed, strict=False)] == first[5:]
    assert first[len(pool)][0] == 1  # the second epoch follows the first
