"""The review loop: alerts of a watched area become Label Studio review tasks; a reviewer confirms,
rejects and corrects them through the API; the decisions reach the store, the map and the
exported training data (real Label Studio, real STAC API, real gRPC service, real Chromium)."""

from __future__ import annotations

import json

import pytest
from rasterio.transform import Affine
from shapely.geometry import shape

from asmspotter.cli import main
from imagery.coco import segmentation_to_mask
from imagery.geometry import WGS84, mask_to_geometry, reproject, to_pixel_space
from labeling import project as lsproject
from labeling.regions import polygon_results
from monitoring.alerts import load_alerts, site_states
from monitoring.store import Store
from tests.real_parts import missing, require_module
from tests.watch_support import (
    AREA,
    SITES,
    build_acquisitions,
    fourth_acquisition,
    start_detection_server,
    write_polygons,
)

from .browser import Browser
from .conftest import L2A_DIR

pytestmark = [pytest.mark.labelstudio, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def watched(postgis_cluster, tmp_path_factory):
    """A store whose watched area ("open", no concessions) raised alerts for N1, N2 and N3."""
    require_module("stac_fastapi.pgstac")
    from monitoring.testing.stac_server import StacServer

    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    work = tmp_path_factory.mktemp("review")
    items = build_acquisitions(L2A_DIR, work) + [fourth_acquisition(L2A_DIR, work)]
    stac = StacServer(postgis_cluster, items, work / "stac.log")
    srv = start_detection_server()
    area = write_polygons(work / "area.geojson", [AREA], ["open"])
    store = f"sqlite:///{work / 'watch.sqlite'}"
    run = ["watch", "run", "--store", store, "--server", f"127.0.0.1:{srv.port}",
           "--data-dir", str(work / "data"), "--no-deliver"]  # fmt: skip
    try:
        assert main(["watch", "add", "open", "--store", store, "--area", str(area),
                     "--stac-url", stac.url, "--since", "2020-02-01", "--resolution", "100",
                     "--cadence-hours", "0", "--confirm-views", "1"]) == 0  # fmt: skip
        assert main(run) == 0
        yield store, run, work, srv
    finally:
        stac.stop()
        srv.stop(grace=1)


def _ids(store: str) -> dict[str, str]:
    """painted name -> alert id."""
    with Store(store) as s, s.transaction() as cur:
        alerts = load_alerts(s, cur, "open")
    out = {}
    for a in alerts:
        (name,) = [n for n, g in SITES.items() if a.geometry.intersects(g.centroid)]
        out[name] = a.alert_id
    return out


def test_reviews_reach_store_map_and_training_data(watched, labelstudio, tmp_path, capsys):
    store, run, work, _ = watched
    ids = _ids(store)
    assert sorted(ids) == ["N1", "N2", "N3"]
    ls_args = ["--url", labelstudio.url, "--token", labelstudio.token]
    files = ["--files-root", str(labelstudio.document_root)]
    assert main(["label", "alerts", "--store", store, *ls_args, *files]) == 0
    assert "3 review tasks created, 0 already there" in capsys.readouterr().out
    assert main(["label", "alerts", "--store", store, *ls_args, *files]) == 0  # idempotent
    assert "0 review tasks created, 3 already there" in capsys.readouterr().out

    ls = lsproject.connect(labelstudio.url, labelstudio.token)
    project_id = lsproject.require_project(ls, "ASM alert review")
    tasks = {t.data["alert_id"]: t for t in ls.tasks.list(project=project_id, resolve_uri=False)}
    assert sorted(tasks) == sorted(ids.values())
    for task in tasks.values():  # the pictures are served, the outline is pre-annotated
        assert task.data["image"].startswith("/data/local-files/?d=")
        assert task.data["before"].startswith("/data/local-files/?d=")
        (pred,) = ls.predictions.list(task=task.id)
        assert pred.model_version == "alert-outline" and pred.result[0]["type"] == "polygonlabels"

    # The reviewer: accepts N1's outline (a pond, as the model said), rejects N2 as a river,
    # redraws N3 as a pit (its true square: the model's outline of 100 m pixels is larger).
    def decide(task, value: str, reason: str | None = None, regions=()) -> None:
        result = [*regions, {"from_name": "decision", "to_name": "image", "type": "choices",
                             "value": {"choices": [value]}}]  # fmt: skip
        if reason:
            result.append({"from_name": "reason", "to_name": "image", "type": "choices",
                           "value": {"choices": [reason]}})  # fmt: skip
        ls.annotations.create(task.id, result=result, was_cancelled=False)

    n1, n2, n3 = (tasks[ids[k]] for k in ("N1", "N2", "N3"))
    (pred1,) = ls.predictions.list(task=n1.id)
    decide(n1, "confirm", regions=pred1.result)  # accepting copies the suggested regions
    decide(n2, "reject", "river")
    d3 = n3.data
    truth_px = to_pixel_space(
        reproject(SITES["N3"], WGS84, d3["crs"]), Affine(*d3["transform"][:6])
    )
    drawn = polygon_results(truth_px, "pit", d3["width"], d3["height"])
    decide(n3, "correct", regions=drawn)

    # Store.
    assert main(["label", "reviews", "--store", store, *ls_args]) == 0
    assert "1 confirmed, 1 rejected, 1 corrected (of 3 tasks)" in capsys.readouterr().out
    with Store(store) as s, s.transaction() as cur:
        states = site_states(s, cur, "open")
        reviews = {r["alert_id"]: r for r in s.fetch(
            cur, "SELECT alert_id, decision, reason, label, reviewer, {geom} AS geom FROM reviews"
        )}  # fmt: skip
        alerts = {a.alert_id: a for a in load_alerts(s, cur, "open")}
    by_alert = {k: states[alerts[v].site_id] for k, v in ids.items()}
    assert [(by_alert[k]["review"], by_alert[k]["review_reason"]) for k in ("N1", "N2", "N3")] == [
        ("confirmed", None), ("rejected", "river"), ("corrected", None),
    ]  # fmt: skip
    assert by_alert["N3"]["label"] == "pit" and by_alert["N1"]["label"] == "pond"
    assert reviews[ids["N2"]]["geom"] is None and reviews[ids["N2"]]["reason"] == "river"
    assert reviews[ids["N1"]]["reviewer"] != "None"
    corrected = reviews[ids["N3"]]["geom"]
    assert corrected.symmetric_difference(SITES["N3"]).area < 1e-3 * SITES["N3"].area
    assert reviews[ids["N1"]]["geom"].intersects(SITES["N1"].centroid)

    # Map: the popups say what the reviewer decided.
    assert main([*run, "--out", str(tmp_path / "out")]) == 0
    page = tmp_path / "out" / "open" / "map.html"
    browser = Browser(tmp_path / "profile")
    try:
        for name, want in (("N2", "review: rejected (river)"), ("N1", "review: confirmed"),
                           ("N3", "review: corrected")):  # fmt: skip
            browser.open(f"{page.as_uri()}#alert={ids[name]}")
            popup = browser.evaluate(
                "document.querySelector('.leaflet-popup-content .alert-popup').innerText"
            )
            assert want in popup and ids[name] in popup, popup
        browser.screenshot(tmp_path / "review_map.png")
    finally:
        browser.close()

    # Training data: confirmed and corrected outlines as instance masks, the rejection as a
    # hard negative, every chip with its georeference.
    out = tmp_path / "ds"
    assert main(["label", "export", "--reviews", "--out", str(out), *ls_args, *files]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    images = {img["alert_id"]: img for img in coco["images"]}
    assert sorted(images) == sorted(ids.values())
    anns = {img_id: [a for a in coco["annotations"] if a["image_id"] == img_id]
            for img_id in (i["id"] for i in coco["images"])}  # fmt: skip
    neg = images[ids["N2"]]
    assert neg["review"] == "rejected" and neg["review_reason"] == "river" and neg["hard_negative"]
    assert anns[neg["id"]] == []
    for name, label in (("N1", "pond"), ("N3", "pit")):
        img = images[ids[name]]
        (ann,) = anns[img["id"]]
        assert ann["category_id"] == {"pit": 1, "pond": 2}[label]
        assert (out / img["file_name"]).is_file() and img["crs"] == "EPSG:32629"
        mask = segmentation_to_mask(ann["segmentation"], img["height"], img["width"])
        outline = mask_to_geometry(mask, Affine(*img["transform"][:6]), simplify_px=0)
        on_map = reproject(outline, img["crs"], WGS84)
        truth = SITES[name]
        iou = on_map.intersection(truth).area / on_map.union(truth).area
        assert iou > (0.9 if name == "N3" else 0.4), (name, iou)
    assert images[ids["N3"]]["review"] == "corrected"
    sites = json.loads((out / "sites.geojson").read_text())["features"]
    assert sorted(f["properties"]["label"] for f in sites) == ["pit", "pond"]
    assert any(shape(f["geometry"]).intersects(SITES["N3"].centroid) for f in sites)
