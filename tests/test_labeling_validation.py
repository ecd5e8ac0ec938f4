"""Every malformed-annotation case of the validation report, written through the real API.

Each case's regions are posted to Label Studio as a labeller's client would; the export's report
must name every repair and every drop, and the regions kept plus the regions dropped must add up to
the regions submitted (nothing disappears silently).
"""

from __future__ import annotations

import json

import pytest

from imagery.tiles import write_tile
from labeling import brush
from labeling import project as lsproject
from labeling.export import export_dataset, fetch_tasks
from labeling.regions import brush_result
from labeling.tasks import import_scene

pytestmark = pytest.mark.labelstudio
CHIP = 64


def _poly(points, label="pit", to="image"):
    name = "polygon" if to == "image" else "polygon_fc"
    return {
        "from_name": name,
        "to_name": to,
        "type": "polygonlabels",
        "original_width": CHIP,
        "original_height": CHIP,
        "value": {"points": points, "closed": True, "polygonlabels": [label]},
    }


def _square(x0, y0, x1, y1, label="pit", to="image"):
    return _poly([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], label, to)


def _brush(mask, label="pond", rle=None, size=None):
    res = brush_result(mask, label)
    if rle is not None:
        res["value"]["rle"] = rle
    if size:
        res["original_width"], res["original_height"] = size
    return res


def _tile(path):
    import numpy as np
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from imagery.scene import Grid
    from imagery.sensors import S2_STACK

    rng = np.random.default_rng(0)
    values = rng.uniform(0.02, 0.3, (6, 3 * CHIP, 3 * CHIP)).astype(np.float32)
    grid = Grid(CRS.from_epsg(32630), Affine(10, 0, 600000, 0, -10, 700000), 3 * CHIP, 3 * CHIP)
    return write_tile(path, values, grid, S2_STACK, scene_id="VALIDATION", cog=False)


def test_every_malformed_case_is_reported(labelstudio, tmp_path):
    import numpy as np

    ls = lsproject.connect(labelstudio.url, labelstudio.token)
    project_id, _ = lsproject.ensure_project(ls, "ASM validation cases")
    folder = labelstudio.document_root / "validation"
    import_scene(ls, project_id, _tile(tmp_path / "v.tif"), labelstudio.document_root, folder, CHIP)
    tasks = sorted(ls.tasks.list(project=project_id, resolve_uri=False), key=lambda t: t.id)
    assert len(tasks) == 9
    other = ls.users.create(email="second@asmspotter.test", username="second")

    good = np.zeros((CHIP, CHIP), bool)
    good[10:20, 10:30] = True
    ring = np.zeros((CHIP, CHIP), bool)
    ring[30:50, 30:50] = True
    ring[36:44, 36:44] = False  # a pond around an island: the hole must survive
    cases = {
        0: [
            [
                _square(10, 10, 40, 40),
                _poly([[50, 50], [60, 60]]),  # degenerate: 2 points
                _poly([[50, 50], [60, 50], [55, 50]]),  # degenerate: no area
                _square(59.6, 59.6, 60, 60),
            ]
        ],  # too small: covers no pixel centre
        1: [[_poly([[10, 10], [60, 60], [60, 10], [10, 60]])]],  # self-intersecting bow tie
        2: [[_square(120, 120, 150, 150), _square(80, 80, 130, 130, "pond")]],  # outside, partly
        3: [[_square(10, 10, 30, 30, "lake"), _square(40, 40, 60, 60)]],  # unknown label
        4: [
            [
                _brush(good, rle=brush.encode_mask(good)[:20]),  # truncated RLE
                _brush(np.zeros_like(good)),  # empty brush
                _brush(good, size=(128, 128)),  # drawn on another picture size
                _brush(ring),
            ]
        ],  # valid, with a hole
        5: "skip",
        6: None,  # never labelled
        7: [[]],  # submitted without regions: a negative
        8: [
            [_square(10, 10, 30, 30), _square(10, 10, 30, 30, to="false_color")],  # duplicate
            [_square(60, 60, 90, 90, "pond")],
        ],  # second annotator, elsewhere: conflict
    }
    submitted = 0
    for index, case in cases.items():
        task = tasks[index]
        if case == "skip":
            ls.annotations.create(task.id, result=[], was_cancelled=True)
            continue
        for n, result in enumerate(case or []):
            extra = {"completed_by": other.id} if n else {}
            ls.annotations.create(task.id, result=result, was_cancelled=False, **extra)
            submitted += len(result) if n == 0 else 0

    exported = fetch_tasks(ls, project_id)
    assert all(a["result"] is not None for t in exported for a in t.get("annotations", []))
    result = export_dataset(exported, tmp_path / "ds", labelstudio.document_root)
    report = result.report
    counts = report.counts()
    expected = {
        "degenerate:dropped": 2,
        "too_small:dropped": 1,
        "self_intersecting:repaired": 1,
        "outside_image:dropped": 1,
        "outside_image:repaired": 1,
        "unknown_label:dropped": 1,
        "bad_rle:dropped": 1,
        "empty_mask:dropped": 1,
        "size_mismatch:dropped": 1,
        "skipped:dropped": 1,
        "unlabelled:dropped": 1,
        "empty:kept": 1,
        "duplicate:dropped": 1,
        "conflict:resolved": 1,
    }
    for key, count in expected.items():
        assert counts.get(key) == count, (key, report.to_markdown())
    by_task = {i.task: i for i in report.issues}
    assert by_task[tasks[6].id].problem == "unlabelled"
    assert by_task[tasks[5].id].problem == "skipped"

    # Nothing disappears: regions of the kept annotations = sites kept + regions dropped.
    region_drops = [i for i in report.dropped() if i.region is not None and i.task != tasks[8].id]
    kept_sites_excluding_conflict = report.kept_sites - 1  # task 8 keeps one site
    assert kept_sites_excluding_conflict + len(region_drops) == submitted - 2  # task 8 results

    doc = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert len(doc["images"]) == 7  # skipped and unlabelled chips are not training data
    assert len(doc["annotations"]) == report.kept_sites
    holes = [a for a in doc["annotations"] if isinstance(a["segmentation"], dict)]
    assert len(holes) == 1  # the ring pond stays a ring (RLE keeps its hole)
    md = (tmp_path / "ds" / "validation_report.md").read_text()
    for key in expected:
        assert key.split(":")[0] in md
