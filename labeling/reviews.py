"""Alerts as Label Studio review tasks, and reviews back into the store and into training data.

``push_alerts``: every raised alert of the monitoring store not yet in the review project becomes
a task: the before and after pictures of the place (one stretch for both, so they compare), the
after acquisition's N-band chip (what training reads, with its CRS and transform), and the site's
outline as a pre-annotation. The reviewer confirms, rejects with a reason, or corrects the outline.

``parse_review``: a task's decision (the latest annotation that is not skipped). ``pull_reviews``
writes decisions into the store (table ``reviews``; the site's ``review`` in ``site_state``, which
the map and later alerts read: a rejected site raises no new alert). ``training_tasks`` turns
review tasks into ordinary labelling tasks for ``labeling.export.export_dataset``: confirmed
sites keep their outline, corrected ones the reviewer's, rejected chips have no site (hard
negatives).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from shapely.affinity import translate
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from imagery.geometry import WGS84, reproject, to_map_space, to_pixel_space
from imagery.render import composite
from imagery.scene import Grid, open_scene
from imagery.tiles import write_tile
from labeling.config import DECISIONS, REJECT_REASONS, REVIEW_INSTRUCTIONS, review_config
from labeling.project import call, ensure_local_storage, ensure_project
from labeling.regions import POLYGON, polygon_from_points, polygon_results
from labeling.tasks import local_files_url

MODEL_VERSION = "alert-outline"
OUTCOME = {"confirm": "confirmed", "reject": "rejected", "correct": "corrected"}


def ensure_review_project(ls: Any, title: str) -> tuple[int, bool]:
    return ensure_project(
        ls,
        title,
        config=review_config(),
        instructions=REVIEW_INSTRUCTIONS,
        description="Early-warning alerts of AIASMSpotter to confirm, reject or correct",
    )


def _window(grid: Grid, geom_px: BaseGeometry, chip_px: int) -> Window:
    c0, r0, c1, r1 = geom_px.bounds
    size = int(max(chip_px, np.ceil(max(c1 - c0, r1 - r0)) + 8))
    cx, cy = (c0 + c1) / 2, (r0 + r1) / 2
    col = int(np.clip(round(cx - size / 2), 0, max(0, grid.width - size)))
    row = int(np.clip(round(cy - size / 2), 0, max(0, grid.height - size)))
    return Window(col, row, min(size, grid.width), min(size, grid.height))


def alert_chips(
    alert: Any, folder: Path, chip_px: int = 64
) -> tuple[dict[str, Any], Path, Path | None, BaseGeometry]:
    """Cut the after chip (GeoTIFF + PNG) and the before PNG of an alert's place into
    ``folder``; returns task data, the two pictures and the outline in chip pixels."""
    after_tile, before_tile = alert.facts.get("after_tile"), alert.facts.get("before_tile")
    folder.mkdir(parents=True, exist_ok=True)
    name = alert.folder_name
    with open_scene(after_tile) as scene:
        g = scene.grid
        outline = to_pixel_space(reproject(alert.geometry, WGS84, g.crs), g.transform)
        win = _window(g, outline, chip_px)
        after = scene.read(win)
        bands, sensor, rgb = scene.bands, scene.sensor, scene.sensor.rgb_bands
        transform = g.window_transform(win)
        chip_grid = Grid(g.crs, transform, int(win.width), int(win.height))
        write_tile(
            folder / f"{name}.tif", after, chip_grid, bands, sensor.name, scene.scene_id,
            alert.acquired, cog=False,
        )  # fmt: skip
    before = None
    if before_tile and Path(before_tile).is_file():
        with open_scene(before_tile) as prior:
            if prior.grid.crs == chip_grid.crs and tuple(prior.bands) == tuple(bands):
                bwin = from_bounds(*chip_grid.bounds, transform=prior.grid.transform)
                bwin = bwin.round_offsets().round_lengths()
                if int(bwin.width) == chip_grid.width and int(bwin.height) == chip_grid.height:
                    before = prior.read(bwin) if _inside(prior.grid, bwin) else None
    pictures = np.concatenate([after, before], axis=2) if before is not None else after
    rgb_img = composite(pictures, bands, rgb)  # one stretch for both views
    w = chip_grid.width
    after_png = folder / f"{name}_after.png"
    Image.fromarray(rgb_img[:, :w]).save(after_png)
    before_png = None
    if before is not None:
        before_png = folder / f"{name}_before.png"
        Image.fromarray(rgb_img[:, w:]).save(before_png)
    window = [int(win.col_off), int(win.row_off), int(win.width), int(win.height)]
    data = {
        "chip_id": name,
        "scene_id": alert.scene_id,
        "datetime": alert.acquired or "",
        "sensor": sensor.name,
        "bands": list(bands),
        "crs": chip_grid.crs.to_string(),
        "transform": list(transform)[:6],
        "width": chip_grid.width,
        "height": chip_grid.height,
        "window": window,
    }
    frame = box(0, 0, chip_grid.width, chip_grid.height)
    local = translate(outline, -win.col_off, -win.row_off).intersection(frame)
    return data, after_png, before_png, local


def _inside(grid: Grid, win: Window) -> bool:
    return (
        win.col_off >= 0
        and win.row_off >= 0
        and win.col_off + win.width <= grid.width
        and win.row_off + win.height <= grid.height
    )


def existing_alert_ids(ls: Any, project_id: int) -> set[str]:
    tasks = call("list tasks", ls.tasks.list, project=project_id, resolve_uri=False)
    return {t.data.get("alert_id") for t in tasks if isinstance(t.data, dict)}


def push_alerts(
    ls: Any,
    store: Any,
    title: str,
    files_root: Path,
    folder: Path,
    area: str | None = None,
    chip_px: int = 64,
) -> tuple[int, int]:
    """Raised alerts -> review tasks with the outline pre-annotated: (created, already there)."""
    from monitoring.alerts import load_alerts, site_states

    project_id, _ = ensure_review_project(ls, title)
    files_root, folder = Path(files_root).resolve(), Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ensure_local_storage(ls, project_id, folder)
    have = existing_alert_ids(ls, project_id)
    with store.transaction() as cur:
        alerts = load_alerts(store, cur, area, states=("raised",))
        states = {a.area: site_states(store, cur, a.area) for a in alerts}
    created = 0
    for alert in alerts:
        if alert.alert_id in have or not alert.facts.get("after_tile"):
            continue
        data, after_png, before_png, outline = alert_chips(alert, folder / alert.area, chip_px)
        label = states[alert.area].get(alert.site_id, {}).get("label") or "pit"
        data.update(
            image=local_files_url(after_png, files_root),
            before=local_files_url(before_png, files_root) if before_png else "",
            chip=(folder / alert.area / f"{alert.folder_name}.tif")
            .relative_to(files_root)
            .as_posix(),
            alert_id=alert.alert_id,
            area=alert.area,
            site_id=alert.site_id,
            kind=alert.kind,
            confidence=alert.confidence,
            compliance=alert.compliance or "",
            date=alert.date or "",
            before_date=alert.facts.get("before_date") or "-",
            label=label,
        )
        response = call(
            "import an alert task",
            ls.projects.import_tasks,
            project_id,
            request=[{"data": data}],
            return_task_ids=True,
        )
        task_id = int(response.task_ids[0])
        score = alert.facts.get("score")
        result = polygon_results(outline, label, data["width"], data["height"], score)
        call(
            "add the alert's outline",
            ls.predictions.create,
            task=task_id,
            result=result,
            score=float(score or 0.0),
            model_version=MODEL_VERSION,
        )
        created += 1
    return created, len(alerts) - created


@dataclass
class Review:
    task_id: int
    annotation_id: int
    alert_id: str
    area: str
    site_id: str
    decision: str  # confirmed | rejected | corrected
    reason: str | None
    reviewer: str
    reviewed_at: str
    regions: list[dict[str, Any]] = field(default_factory=list)  # polygon results (chip %)
    data: dict[str, Any] = field(default_factory=dict)

    def outline_wgs84(self) -> BaseGeometry | None:
        """The confirmed or corrected outline on the map (WGS84), None for a rejection."""
        import shapely

        if self.decision == "rejected" or not self.regions:
            return None
        w, h = int(self.data["width"]), int(self.data["height"])
        polys = [polygon_from_points(r["value"]["points"], w, h) for r in self.regions]
        px = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in polys])
        local = to_map_space(px, Affine(*self.data["transform"][:6]))
        return reproject(local, self.data["crs"], WGS84)


def _choice(result: list[dict], name: str) -> str | None:
    for r in result:
        if r.get("type") == "choices" and r.get("from_name") == name:
            values = (r.get("value") or {}).get("choices") or []
            return values[0] if values else None
    return None


def parse_review(task: dict[str, Any]) -> Review | None:
    """The decision on one review task (latest annotation not skipped), None if undecided."""
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not done:
        return None
    ann = sorted(done, key=lambda a: a.get("updated_at") or a.get("created_at") or "")[-1]
    result = ann.get("result") or []
    decision = _choice(result, "decision")
    if decision not in DECISIONS:
        return None
    reason = _choice(result, "reason") if decision == "reject" else None
    if reason is not None and reason not in REJECT_REASONS:
        reason = "other"
    regions = [r for r in result if r.get("type") == POLYGON]
    if decision == "confirm" and not regions:  # accepted as suggested
        for pred in task.get("predictions") or []:
            regions = [r for r in pred.get("result") or [] if r.get("type") == POLYGON]
            if regions:
                break
    who = ann.get("completed_by")
    reviewer = who.get("email", who.get("id")) if isinstance(who, dict) else who
    data = task.get("data") or {}
    return Review(
        task_id=int(task["id"]),
        annotation_id=int(ann["id"]),
        alert_id=data.get("alert_id", ""),
        area=data.get("area", ""),
        site_id=data.get("site_id", ""),
        decision=OUTCOME[decision],
        reason=reason or (None if decision != "reject" else "other"),
        reviewer=str(reviewer),
        reviewed_at=ann.get("updated_at") or datetime.now(UTC).isoformat(),
        regions=regions,
        data=data,
    )


def pull_reviews(store: Any, tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Write every decided review into the store; returns counts per decision."""
    from monitoring.alerts import new_site_state, save_site_state, site_states

    counts = {v: 0 for v in OUTCOME.values()}
    reviews = sorted(
        (r for r in map(parse_review, tasks) if r is not None and r.area and r.site_id),
        key=lambda r: r.reviewed_at,
    )
    with store.transaction() as cur:
        for r in reviews:
            label = r.regions[0]["value"][POLYGON][0] if r.regions else None
            store.execute(
                cur,
                "DELETE FROM reviews WHERE task_id = {p} AND annotation_id = {p}",
                (r.task_id, r.annotation_id),
            )
            store.execute(
                cur,
                "INSERT INTO reviews (area, site_id, alert_id, task_id, annotation_id, decision, "
                "reason, label, reviewer, reviewed_at, geom) VALUES "
                "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {g})",
                (r.area, r.site_id, r.alert_id, r.task_id, r.annotation_id, r.decision,
                 r.reason, label, r.reviewer, r.reviewed_at, store.wkb(r.outline_wgs84())),
            )  # fmt: skip
            state = site_states(store, cur, r.area).get(r.site_id) or new_site_state()
            state.update(review=r.decision, review_reason=r.reason, reviewed_at=r.reviewed_at)
            if label:
                state["label"] = label
            save_site_state(store, cur, r.area, r.site_id, state)
            counts[r.decision] += 1
    return counts


def training_tasks(tasks: list[dict[str, Any]]) -> tuple[list[dict], dict[int, dict[str, Any]]]:
    """Review tasks -> labelling tasks for ``export_dataset`` (one annotation each: the outline
    for confirmed and corrected sites, none for rejections) and the review facts per task."""
    out, facts = [], {}
    for task in tasks:
        review = parse_review(task)
        if review is None or (review.decision == "corrected" and not review.regions):
            continue
        plain = copy.deepcopy(task)
        regions = [] if review.decision == "rejected" else review.regions
        ann = next(a for a in plain["annotations"] if a["id"] == review.annotation_id)
        ann["result"] = regions
        plain["annotations"] = [ann]
        out.append(plain)
        facts[int(task["id"])] = {
            "review": review.decision,
            "review_reason": review.reason,
            "alert_id": review.alert_id,
            "area": review.area,
            "site_id": review.site_id,
            "hard_negative": review.decision == "rejected",
        }
    return out, facts
