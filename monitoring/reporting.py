"""Assemble an area's report from the store: map, alerts, evidence packets, mined-area plot."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84
from imagery.vector import write_features
from monitoring.compliance import is_alert
from monitoring.evidence import write_packet
from monitoring.monitor import mined_area_series
from monitoring.report import mined_area_svg, write_alerts, write_html_map
from monitoring.store import Store


def site_rows(store: Store, area: str, runs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Every observation of ``area`` (one row per site and run) with its run's date, scene and
    model, and the site's state (confidence, last clear view, review) where the store has one."""
    from monitoring.alerts import site_states

    with store.transaction() as cur:
        states = site_states(store, cur, area)
    rows = []
    for run in runs:
        for o in store.observations(run.id):
            props = {k: v for k, v in asdict(o).items() if k != "geometry"}
            props.update(date=run.date, scene_id=run.scene_id, model_version=run.model_version)
            state = states.get(o.site_id, {})
            props.update(
                {k: state.get(k) for k in ("confidence", "last_clear", "review", "review_reason")}
            )
            rows.append((o.geometry, props))
    return rows


def build_report(
    store: Store,
    area: str,
    out_dir: str | Path,
    concessions: Any = None,
    protected: Any = None,
) -> dict[str, Path]:
    """Write the report files of ``area`` under ``out_dir``; alerts are the latest run's."""
    runs = store.runs(area)
    if not runs:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"the store has no runs for area {area!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sites = site_rows(store, area, runs)
    all_props = [p for _, p in sites]
    latest = runs[-1]
    before = runs[-2] if len(runs) > 1 else None
    alerts = []
    for o in store.observations(latest.id):
        if not is_alert(o.status, o.compliance or ""):
            continue
        facts = {
            "date": latest.date,
            "scene_id": latest.scene_id,
            "before_date": before.date if before else None,
            "before_scene_id": before.scene_id if before else None,
            "status": o.status,
            "compliance": o.compliance,
            "area_m2": round(o.area_m2, 1),
            "previous_area_m2": o.previous_area_m2,
            "concession_fraction": o.concession_fraction,
            "protected_fraction": o.protected_fraction,
            "concessions": o.concessions,
            "protected_areas": o.protected_areas,
            "model_version": latest.model_version,
            "weights_sha256": latest.weights_sha256,
        }
        folder = write_packet(
            out / "evidence", o.site_id, o.geometry, facts, before.tile if before else None,
            latest.tile,
        )  # fmt: skip
        alerts.append(
            (
                o.geometry,
                {
                    "site_id": o.site_id,
                    **facts,
                    "evidence": str(folder),
                    "before_chip": folder / "before.png",
                    "after_chip": folder / "after.png",
                },
            )
        )
    series = mined_area_series(store, area)
    paths = {
        "map": write_html_map(
            sites,
            latest.tile,
            out / "map.html",
            concessions=concessions,
            protected=protected,
            base_tiles={r.date: r.tile for r in runs if r.tile},
            alerts=alerts,
            title=f"ASM monitoring: {area}",
        ),
        "mined_area_svg": mined_area_svg(series, out / "mined_area.svg"),
        "sites": write_features(out / "sites.gpkg", [g for g, _ in sites], all_props, WGS84),
    }
    paths["alerts_csv"], paths["alerts_geojson"] = write_alerts(alerts, out)
    with (out / "mined_area.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "mined_area_m2"])
        writer.writerows((d, round(a, 1)) for d, a in series)
    paths["mined_area_csv"] = out / "mined_area.csv"
    return paths


def watch_alert_rows(store: Store, area: str) -> list[tuple[Any, dict[str, Any]]]:
    """Every alert of a watched area as (WGS84 geometry, properties) with its site's review."""
    from monitoring.alerts import latency, load_alerts, site_states

    with store.transaction() as cur:
        alerts = load_alerts(store, cur, area)
        states = site_states(store, cur, area)
    rows = []
    for a in alerts:
        site = states.get(a.site_id, {})
        props = {k: v for k, v in a.facts.items() if not k.endswith("_tile")}
        props.update(
            alert_id=a.alert_id,
            site_id=a.site_id,
            status=a.kind,
            state=a.state,
            confidence=a.confidence,
            compliance=a.compliance,
            acquired=a.acquired,
            raised_at=a.raised_at,
            review=site.get("review"),
            review_reason=site.get("review_reason"),
            **latency(a),
        )
        rows.append((a.geometry, props))
    return rows


def build_watch_report(store: Store, area: Any, out_dir: str | Path) -> list[Path]:
    """A watched area's ``alerts.csv``, ``alerts.geojson`` and ``map.html`` under ``out_dir``
    (every run's sites, every alert with its before/after chips and review, the zones)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alerts = watch_alert_rows(store, area.name)
    paths = list(write_alerts(alerts, out))
    runs = store.runs(area.name)
    if not runs:
        return paths
    for _, props in alerts:
        folder = Path(props.get("evidence") or "")
        props.update(before_chip=folder / "before.png", after_chip=folder / "after.png")
    paths.append(
        write_html_map(
            site_rows(store, area.name, runs),
            runs[-1].tile,
            out / "map.html",
            concessions=area.concessions,
            protected=area.protected,
            base_tiles={r.date: r.tile for r in runs if r.tile},
            alerts=alerts,
            title=f"ASM early warning: {area.name}",
        )
    )
    return paths
