"""Labelling against a real Label Studio: project, chips, annotations from known truth, export.

One synthetic scene (exact pit/pond truth) is cut into 4 chips; annotations are written through the
API from the truth (polygons and brush masks); the exported COCO must match the truth per site
(IoU >= 0.95) and every site must map back to its true map position within one pixel.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import Polygon, shape

from imagery.coco import CATEGORIES, segmentation_to_mask
from imagery.geometry import mask_to_geometry, reproject
from labeling import project as lsproject
from labeling.export import export_dataset, fetch_tasks
from labeling.ml_backend import MLBackend
from labeling.predict import PolygonPredictor, push_predictions
from labeling.regions import brush_result, polygon_results
from labeling.tasks import import_scene
from tests.real_parts import require_module

pytestmark = pytest.mark.labelstudio
SIZE, CHIP = 512, 256


@pytest.fixture(scope="module")
def truth_scene(tmp_path_factory):
    from imagery.synthetic.output import write_scene
    from imagery.synthetic.scene import generate_scene

    out = tmp_path_factory.mktemp("scene")
    options = {"cloud_probability": 0.0, "nodata_probability": 0.0}
    files = write_scene(out, 11, SIZE, SIZE, **options)
    return files, generate_scene(11, SIZE, SIZE, **options)


@pytest.fixture(scope="module")
def ls(labelstudio):
    return lsproject.connect(labelstudio.url, labelstudio.token)


@pytest.fixture(scope="module")
def imported(ls, labelstudio, truth_scene):
    files, _ = truth_scene
    project_id, created = lsproject.ensure_project(ls, "ASM e2e test")
    assert created
    folder = labelstudio.document_root / "asm-e2e"
    result = import_scene(ls, project_id, files.tile, labelstudio.document_root, folder, CHIP)
    return project_id, result, folder


def _chip_truth(scene, data):
    """(instance id, category, chip mask) of every truth instance visible on a chip."""
    col, row, w, h = data["window"]
    out = []
    for inst in scene.instances:
        mask = scene.instance_mask(inst)[row : row + h, col : col + w]
        if mask.any():
            out.append((inst.id, inst.category, mask))
    return out


def _annotate_from_truth(ls, project_id, scene):
    """Write one annotation per task from the truth: single-part hole-free sites as polygons,
    every other site (and every third one) as a brush mask."""
    kinds = {"polygonlabels": 0, "brushlabels": 0}
    for task in ls.tasks.list(project=project_id, resolve_uri=False):
        results = []
        for n, (_, category, mask) in enumerate(_chip_truth(scene, task.data)):
            geom = mask_to_geometry(mask, Affine.identity(), simplify_px=0)
            simple = isinstance(geom, Polygon) and not geom.interiors
            if simple and n % 3:
                results += polygon_results(geom, category, mask.shape[1], mask.shape[0])
            else:
                results.append(brush_result(mask, category))
            kinds[results[-1]["type"]] += 1
        ls.annotations.create(task.id, result=results, was_cancelled=False)
    return kinds


def test_project_setup_is_idempotent(ls):
    first, created = lsproject.ensure_project(ls, "ASM idempotent")
    again, created_again = lsproject.ensure_project(ls, "ASM idempotent")
    assert created and not created_again and first == again
    titles = [p.title for p in ls.projects.list()]
    assert titles.count("ASM idempotent") == 1
    project = ls.projects.get(first)
    for tool in ("PolygonLabels", "BrushLabels", 'value="pit"', 'value="pond"', "false_color"):
        assert tool in project.label_config
    assert "pond" in project.expert_instruction and project.show_instruction


def test_import_chips_and_serve_pictures(ls, labelstudio, imported, truth_scene):
    project_id, result, folder = imported
    files, scene = truth_scene
    assert result.created == (SIZE // CHIP) ** 2 and result.skipped_nodata == 0
    again = import_scene(ls, project_id, files.tile, labelstudio.document_root, folder, CHIP)
    assert again.created == 0 and again.already_there == result.created  # no duplicates
    tasks = list(ls.tasks.list(project=project_id, resolve_uri=False))
    assert len(tasks) == result.created
    data = tasks[0].data
    assert data["scene_id"] == scene.scene_id and data["datetime"] == scene.datetime
    col, row = data["window"][:2]
    expected = scene.grid.window_transform(Window(col, row, CHIP, CHIP))
    assert Affine(*data["transform"]) == expected
    # Label Studio serves the PNG through the local-files storage.
    req = urllib.request.Request(
        labelstudio.url + data["image"], headers={"Authorization": f"Token {labelstudio.token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (labelstudio.document_root / data["chip"]).is_file()


def test_annotate_export_matches_truth(ls, labelstudio, imported, truth_scene, tmp_path):
    project_id, _, _ = imported
    _, scene = truth_scene
    kinds = _annotate_from_truth(ls, project_id, scene)
    assert kinds["polygonlabels"] > 5 and kinds["brushlabels"] > 5

    tasks = fetch_tasks(ls, project_id)
    out = tmp_path / "dataset"
    result = export_dataset(tasks, out, labelstudio.document_root, region_km=2.56)
    assert not result.report.dropped(), result.report.to_markdown()
    doc = json.loads((out / "annotations.json").read_text())
    assert doc["categories"] == CATEGORIES
    assert {img["split"] for img in doc["images"]} == {"train", "val"}

    images = {img["id"]: img for img in doc["images"]}
    task_data = {t["id"]: t["data"] for t in tasks}
    for ann in doc["annotations"]:
        img = images[ann["image_id"]]
        data = task_data[img["task_id"]]
        assert (out / img["file_name"]).is_file()
        mask = segmentation_to_mask(ann["segmentation"], img["height"], img["width"])
        truths = [t for t in _chip_truth(scene, data) if t[2][mask].any()]
        best = max(truths, key=lambda t: (t[2] & mask).sum() / (t[2] | mask).sum())
        iou = (best[2] & mask).sum() / (best[2] | mask).sum()
        assert iou >= 0.95, (ann, iou)
        assert CATEGORIES[ann["category_id"] - 1]["name"] == best[1]
    expected = sum(len(_chip_truth(scene, d)) for d in task_data.values())
    assert len(doc["annotations"]) == expected  # every visible part of every site, once

    # sites.geojson: each site once (parts cut by chip edges merged), in EPSG:4326, back in the
    # scene CRS on its true outline within one pixel.
    sites = json.loads((out / "sites.geojson").read_text())["features"]
    assert len(sites) == len(scene.instances)
    truth = [(inst.category, scene.instance_geometry(inst)) for inst in scene.instances]
    for site in sites:
        geom = reproject(shape(site["geometry"]), "EPSG:4326", scene.grid.crs)
        category, true = max(truth, key=lambda t: t[1].intersection(geom).area)
        assert site["properties"]["label"] == category
        assert geom.hausdorff_distance(true) <= scene.grid.res + 1e-6
        assert true.symmetric_difference(geom).area <= 0.05 * true.area

    # The training loader reads the dataset as it is.
    training_data = require_module("training.data")
    chips = training_data.CocoChips(out, list(scene.bands), ["pit", "pond"], "train")
    sample = chips[0]
    assert sample.image.shape == (len(scene.bands), CHIP, CHIP)
    assert np.isfinite(sample.image).all()
    _train_a_few_steps(out, tmp_path / "run")


def _train_a_few_steps(dataset, run):
    """`asmspotter train --data DATASET` on the export as it is (tiny network, 2 iterations)."""
    torch = require_module("torch")
    from asmspotter.cli import main

    threads = torch.get_num_threads()
    try:
        code = main(
            [
                "train",
                "--data",
                str(dataset),
                "--out",
                str(run),
                "chip_size=128",
                "batch_size=2",
                "num_workers=0",
                "device=cpu",
                "fpn_channels=64",
                "box_head_dim=256",
                "max_iter=2",
                "warmup_iters=1",
                "eval_period=0",
                "checkpoint_period=100",
                "log_period=1",
                "steps=[1]",
                "rpn_post_nms_topk_train=100",
                "roi_batch_size_per_image=64",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert (run / "last.pt").is_file() or any(run.glob("*.pt"))


def test_ml_backend_predictions_appear(ls, labelstudio, imported, truth_scene):
    project_id, _, _ = imported
    files, _ = truth_scene
    predictor = PolygonPredictor(files.truth, label="pit", score=0.8, label_field="category")
    with MLBackend(predictor, labelstudio.document_root) as backend:
        ml = ls.ml.create(project=project_id, url=backend.url, title="truth polygons")
        assert ml.state in ("CO", "CONNECTED", None) or ml.id
        ls.actions.create(
            id="retrieve_tasks_predictions",
            project=project_id,
            selected_items={"all": True, "excluded": []},
        )
        assert backend.requests > 0
    ls.ml.delete(ml.id)
    tasks = list(ls.tasks.list(project=project_id, resolve_uri=False))
    from_backend = [
        p for t in tasks for p in t.predictions if p.model_version == predictor.model_version
    ]
    assert len(from_backend) == len(tasks)
    regions = [r for p in from_backend for r in p.result]
    assert regions and all(r["score"] == pytest.approx(0.8) for r in regions)
    assert {r["value"]["polygonlabels"][0] for r in regions} == {"pit", "pond"}
    assert all(p.score == pytest.approx(0.8) for p in from_backend if p.result)


def test_push_predictions_with_sdk(ls, labelstudio, imported, truth_scene):
    project_id, _, _ = imported
    files, _ = truth_scene
    predictor = PolygonPredictor(files.truth, label="pond", score=0.6)
    predictor.model_version = "pushed-truth"
    done, regions = push_predictions(ls, project_id, predictor, labelstudio.document_root)
    assert done == (SIZE // CHIP) ** 2 and regions > 0
    again, _ = push_predictions(ls, project_id, predictor, labelstudio.document_root)
    assert again == 0  # idempotent per model version
    preds = list(ls.predictions.list(project=project_id))
    pushed = [p for p in preds if p.model_version == "pushed-truth"]
    assert len(pushed) == done and all(p.score == pytest.approx(0.6) for p in pushed if p.result)


def test_ml_backend_serves_a_model_bundle(ls, labelstudio, imported, tiny_bundle):
    """The same endpoint in front of a real bundle written by the training command."""
    from labeling.predict import BundlePredictor

    project_id, _, _ = imported
    predictor = BundlePredictor(tiny_bundle, device="cpu", min_score=0.0)
    with MLBackend(predictor, labelstudio.document_root) as backend:
        ml = ls.ml.create(project=project_id, url=backend.url, title="tiny bundle")
        ls.actions.create(
            id="retrieve_tasks_predictions",
            project=project_id,
            selected_items={"all": True, "excluded": []},
        )
        assert backend.requests == (SIZE // CHIP) ** 2
    ls.ml.delete(ml.id)
    preds = [
        p
        for p in ls.predictions.list(project=project_id)
        if p.model_version == predictor.model_version
    ]
    assert len(preds) == (SIZE // CHIP) ** 2
    for p in preds:
        scores = [r["score"] for r in p.result]
        assert all(0.0 <= s <= 1.0 for s in scores)
        # Task score: mean over sites (a site may be drawn as several polygons).
        assert min(scores, default=0.0) - 1e-6 <= p.score <= max(scores, default=0.0) + 1e-6
