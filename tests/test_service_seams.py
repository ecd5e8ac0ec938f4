"""Seam test on the synthetic generator's scenes (exact masks): every site, including those cut by
window seams, comes back as one polygon whose IoU with the truth is >= 0.9; none is duplicated and
touching neighbours stay apart. The detector is ``LabelBandModel`` (perfect per-window masks), so
what is measured is the service's windowing, merging and georeferencing."""

from __future__ import annotations

import pytest

from imagery.geometry import iou
from imagery.synthetic.scene import generate_scene
from imagery.windows import WindowSpec, iter_windows
from service.predictor import DetectOptions, Predictor
from tests.service_support import LabelBandModel, write_label_band_tile

CHIP, OVERLAP, SIZE = 128, 32, 320


def _cut_by_a_window_edge(bounds: tuple[int, int, int, int]) -> bool:
    """Does some window see only part of this box?"""
    c0, r0, c1, r1 = bounds
    for w in iter_windows(SIZE, SIZE, WindowSpec(CHIP, OVERLAP)):
        wc0, wr0, wc1, wr1 = w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height
        overlaps = c0 < wc1 and wc0 < c1 and r0 < wr1 and wr0 < r1
        inside = wc0 <= c0 and c1 <= wc1 and wr0 <= r0 and r1 <= wr1
        if overlaps and not inside:
            return True
    return False


@pytest.mark.parametrize("seed", [1, 2])
def test_generator_sites_across_seams_come_back_whole(tmp_path, seed):
    scene = generate_scene(seed, SIZE, SIZE, clusters=3, cloud_probability=0, nodata_probability=0)
    path = write_label_band_tile(tmp_path / "scene.tif", scene)
    predictor = Predictor(LabelBandModel(CHIP), overlap=OVERLAP, max_batch=4)
    try:
        result = predictor.detect_file(path, DetectOptions(output_crs=scene.grid.crs.to_string()))
    finally:
        predictor.close()
    truth = {inst.id: (inst, scene.instance_geometry(inst)) for inst in scene.instances}
    assert truth, "the generator made no sites"
    assert len(result.sites) == len(truth)  # no duplicates, no halves, no merged neighbours
    matched = set()
    for site in result.sites:
        scores = {i: iou(site.geometry, g) for i, (_, g) in truth.items()}
        best = max(scores, key=scores.get)
        assert scores[best] >= 0.9, (site.site_id, scores[best])
        assert site.class_name == truth[best][0].category
        matched.add(best)
    assert matched == set(truth)
    straddling = [
        i
        for i, (inst, _) in truth.items()
        if _cut_by_a_window_edge(
            (inst.col0, inst.row0, inst.col0 + inst.mask.shape[1], inst.row0 + inst.mask.shape[0])
        )
    ]
    assert len(straddling) >= 2, "too few sites cross a seam: pick another seed"
