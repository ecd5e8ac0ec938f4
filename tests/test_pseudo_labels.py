"""Real chips for the detector: the teacher's pseudo-masks and the COCO part they make."""

from __future__ import annotations

import numpy as np
import pytest

from tests.real_parts import require_module

require_module("torch")

from imagery.coco import merge_datasets  # noqa: E402
from imagery.gallery import load_gallery  # noqa: E402
from training.data import CocoChips  # noqa: E402
from training.pseudo_labels import (  # noqa: E402
    PseudoRule,
    pseudo_sites,
    teacher_instances,
    write_real_part,
)


def _square(y: int, x: int, size: int = 6) -> np.ndarray:
    m = np.zeros((48, 48), bool)
    m[y : y + size, x : x + size] = True
    return m


def test_the_chip_label_and_the_verifier_constrain_the_teacher():
    masks = np.stack([_square(2, 2), _square(3, 3), _square(20, 20), _square(40, 40)])
    scores = np.array([0.9, 0.5, 0.3, 0.1])
    rule = PseudoRule(min_chip_probability=0.8, min_detector_score=0.2, overlap_iou=0.3)
    # a non-mine chip, or a mine chip the verifier doubts: no instance
    assert pseudo_sites(masks, scores, 0, 0.99, rule) == []
    assert pseudo_sites(masks, scores, 1, 0.5, rule) == []
    # a mine chip: the best, not its overlapping twin (IoU 25/47), the 0.3 one, not the weak one
    assert pseudo_sites(masks, scores, 1, 0.95, rule) == [0, 2]
    # the best detection is kept however weak; the next must reach min_detector_score
    assert pseudo_sites(masks, scores * 0.1, 1, 0.95, rule) == [0]
    assert pseudo_sites(masks, scores, 1, 0.95, PseudoRule(max_sites=1)) == [0]


@pytest.fixture(scope="module")
def train_chips():
    train = load_gallery().split("train")
    rows = np.concatenate(
        [np.flatnonzero(train.labels == 1)[:12], np.flatnonzero(train.labels == 0)[:4]]
    )
    return train.subset(rows)


def test_the_shipped_bundle_as_teacher_outlines_mine_chips_only(train_chips, tmp_path):
    from training.bundle import load_bundle
    from training.engines.base import score_floor

    model = load_bundle("service/default_bundle", device="cpu")
    rule = PseudoRule()
    found = teacher_instances(model, train_chips, rule, score_floor(model.info), batch=5)
    assert found, "the teacher kept no mine chip of 12"
    assert all(train_chips.labels[row] == 1 for row in found)
    p_chip = model.site_scorer.probabilities(train_chips.images[list(found)])
    assert (p_chip >= rule.min_chip_probability).all()
    for sites in found.values():
        scores = [score for _, _, score in sites]
        assert scores == sorted(scores, reverse=True)
        assert all(s >= rule.min_detector_score for s in scores[1:])
        assert all(mask.shape == (48, 48) and mask.any() for mask, _, _ in sites)

    # the COCO part: pseudo-masks as instances, the non-mines as background images
    rows = sorted(found) + [int(r) for r in np.flatnonzero(train_chips.labels == 0)]
    part = write_real_part(tmp_path / "real", train_chips, rows, found)
    chips = CocoChips(part, ["B02", "B03", "B04"], ["pit", "pond"])
    assert len(chips) == len(rows)
    for n, row in enumerate(rows):
        sample = chips[n]
        np.testing.assert_allclose(sample.image, train_chips.images[row], atol=1e-4)
        expected = [mask for mask, _, _ in found.get(row, [])]
        assert len(sample.masks) == len(expected)
        for got, want in zip(sample.masks, expected, strict=True):
            assert (got & want).sum() / (got | want).sum() == 1.0  # the outline round-trips
    merged = merge_datasets([part], tmp_path / "merged")
    assert len(CocoChips(merged, ["B02", "B03", "B04"], ["pit", "pond"], split="train")) == len(
        rows
    )
