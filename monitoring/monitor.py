"""One monitoring run: an area's detections on a date -> tracked, compliance-checked sites."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, as_crs, reproject, utm_crs_for
from imagery.vector import Features
from monitoring.compliance import Zones, classify, is_alert
from monitoring.store import Store
from monitoring.tracking import PRESENT, STATUSES, mined_area_m2, track


@dataclass
class RunSummary:
    run_id: int
    area: str
    date: str
    scene_id: str
    rerun: bool
    counts: dict[str, int]
    mined_area_m2: float
    alerts: int
    crs: str
    statuses: dict[str, str] = field(default_factory=dict)  # site_id -> status
    detections: dict[str, dict[str, Any]] = field(default_factory=dict)  # site_id -> properties


def iso_date(text: str) -> str:
    """'2024-03-01', '2024-03-01T10:00:00Z' -> '2024-03-01'; INVALID_ARGUMENT otherwise."""
    try:
        return Date.fromisoformat(str(text)[:10]).isoformat()
    except ValueError:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"date {text!r} is not an ISO date (YYYY-MM-DD)"
        ) from None


def polygons_wgs84(features: Features) -> tuple[list[BaseGeometry], list[dict[str, Any]]]:
    """Polygonal, valid, non-empty detections in WGS84 with their properties."""
    geoms, props = [], []
    for geom, p in zip(features.to_crs(WGS84).geometries, features.properties, strict=True):
        if geom is None or geom.is_empty:
            continue
        geom = shapely.force_2d(geom if geom.is_valid else shapely.make_valid(geom))
        parts = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon"]
        if geom.geom_type in ("Polygon", "MultiPolygon"):
            parts = [geom]
        if not parts:
            continue
        geoms.append(parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts))
        props.append(p)
    return geoms, props


def record_run(store: Store, *args: Any, **kwargs: Any) -> RunSummary:
    """Track ``detections`` against the area's previous run and store the result, in one
    transaction (arguments as ``record_run_in``).

    Re-running the same area, scene and date replaces that run instead of adding one.
    """
    with store.transaction() as cur:
        return record_run_in(store, cur, *args, **kwargs)


def record_run_in(
    store: Store,
    cur: Any,
    area: str,
    scene_id: str,
    date: str,
    detections: Features,
    *,
    model_version: str | None = None,
    weights_sha256: str | None = None,
    tile: str | None = None,
    source: str | None = None,
    concessions: Features | None = None,
    protected: Features | None = None,
    grow_fraction: float = 0.2,
    min_overlap: float = 0.1,
    tolerance_m: float = 0.0,
    inside_fraction: float = 0.5,
    visible: Callable[[BaseGeometry], bool] | None = None,
) -> RunSummary:
    """``record_run`` inside the caller's transaction ``cur``.

    ``visible(site_wgs84)`` says whether a site's place was seen clear in this scene; a site
    that is not detected where the scene did not see the ground is ``obscured`` (it keeps its
    last known state) instead of ``gone`` or ``merged``. Without it every place counts as seen.

    The model's identity is required (``"none"`` as the hash for hand-drawn polygons): a run
    whose detections cannot be traced to a model is refused, never stored with empty fields.
    """
    if not model_version or not weights_sha256:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            "a run needs the model version and weights hash of its detections "
            f"(got model_version={model_version!r}, weights_sha256={weights_sha256!r})",
        )
    date = iso_date(date)
    current, props = polygons_wgs84(detections)
    store.lock_area(cur, area)
    previous_run = store.previous_run(cur, area, date)
    if previous_run is not None and previous_run.crs:
        work = as_crs(previous_run.crs)
    else:
        anchor = shapely.union_all(current).centroid if current else None
        work = utm_crs_for(anchor.x, anchor.y) if anchor else as_crs(3857)
    run, rerun = store.upsert_run(
        cur,
        area=area,
        scene_id=scene_id,
        date=date,
        model_version=model_version,
        weights_sha256=weights_sha256,
        tile=tile,
        source=source,
        crs=work.to_string(),
    )
    prev = []
    if previous_run is not None:
        prev = [o for o in store.observations(previous_run.id, cur) if o.status in PRESENT]
    prev_ids = {o.site_id: o.geometry for o in prev}
    tracked = track(
        [(o.site_id, reproject(o.geometry, WGS84, work)) for o in prev],
        [reproject(g, WGS84, work) for g in current],
        grow_fraction=grow_fraction,
        min_overlap=min_overlap,
        tolerance_m=tolerance_m,
    )
    if visible is not None:
        for t in tracked:
            if t.status in ("gone", "merged") and not visible(prev_ids[t.site_id]):
                t.status = "obscured"
    fresh = [t for t in tracked if t.site_id is None]
    new_ids = store.new_site_ids(cur, area, run.id, len(fresh))
    for t, site_id in zip(fresh, new_ids, strict=True):
        t.site_id = site_id
    conc = Zones.from_features(concessions, work) if concessions else Zones([], [])
    prot = Zones.from_features(protected, work) if protected else Zones([], [])
    rows = []
    for t in tracked:
        j = t.detection_index
        wgs = current[j] if j is not None else prev_ids[t.site_id]
        score = props[j].get("score") if j is not None else None
        rows.append(
            {
                "run_id": run.id,
                "site_id": t.site_id,
                "status": t.status,
                "area_m2": t.area_m2,
                "previous_area_m2": t.previous_area_m2,
                "score": float(score) if isinstance(score, int | float) else None,
                "geometry": wgs,
                **classify(t.geometry, conc, prot, inside_fraction),
            }
        )
    store.add_observations(cur, rows)
    counts = Counter(r["status"] for r in rows)
    return RunSummary(
        run_id=run.id,
        area=area,
        date=date,
        scene_id=scene_id,
        rerun=rerun,
        counts={s: counts.get(s, 0) for s in STATUSES},
        mined_area_m2=mined_area_m2([t.geometry for t in tracked if t.status in PRESENT]),
        alerts=sum(is_alert(r["status"], r["compliance"]) for r in rows),
        crs=work.to_string(),
        statuses={r["site_id"]: r["status"] for r in rows},
        detections={
            t.site_id: props[t.detection_index] for t in tracked if t.detection_index is not None
        },
    )


def mined_area_series(store: Store, area: str) -> list[tuple[str, float]]:
    """(date, mined area m²) per run of an area, from the stored sites."""
    out = []
    for run in store.runs(area):
        work = as_crs(run.crs) if run.crs else WGS84
        geoms = [
            reproject(o.geometry, WGS84, work)
            for o in store.observations(run.id)
            if o.status in PRESENT
        ]
        out.append((run.date, mined_area_m2(geoms)))
    return out


def features_from_geometries(
    geometries: Sequence[BaseGeometry], crs: Any = WGS84, properties: Sequence[dict] | None = None
) -> Features:
    """Wrap shapely geometries (e.g. the service's detections) as ``Features``."""
    return Features(list(geometries), list(properties or [{} for _ in geometries]), as_crs(crs))
