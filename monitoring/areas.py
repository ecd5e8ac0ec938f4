"""Watched areas: what ``asmspotter watch`` looks at, where it searches and when it alerts.

An area is stored in the monitoring store (table ``watch_areas``) with its polygon (WGS84), its
concessions and protected areas (GeoJSON, WGS84), the STAC source, the cadence and the alert
rules, so ``watch run`` needs nothing but the store. Processed acquisitions are rows of
``watch_scenes``; an item in a finished row is never processed again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason
from imagery.geometry import WGS84, feature, feature_collection
from imagery.vector import Features
from monitoring.monitor import features_from_geometries, iso_date
from monitoring.report import as_sites
from monitoring.store import Store

ALERT_WHEN = ("suspected", "confirmed")


@dataclass
class Rules:
    """When a place counts as seen, when a site is confirmed and when an alert goes out."""

    confirm_views: int = 2  # clear views showing a new site before it is "confirmed"
    alert_when: str = "suspected"  # raise at first sight, or only once confirmed
    min_clear_fraction: float = 0.5  # share of a site's pixels seen clear for a view to count
    min_score: float | None = None  # detection score threshold; None: the model's default
    grow_fraction: float = 0.2  # tracking (monitoring.tracking)
    min_overlap: float = 0.1
    tolerance_m: float = 0.0
    inside_fraction: float = 0.5  # compliance (monitoring.compliance)

    def check(self) -> None:
        if self.confirm_views < 1:
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, "confirm_views must be >= 1")
        if self.alert_when not in ALERT_WHEN:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"alert_when must be one of {ALERT_WHEN}"
            )
        for name in ("min_clear_fraction", "min_score", "inside_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"{name} must be in [0, 1]")


@dataclass
class Source:
    """Where acquisitions come from: a STAC API and collection, and how they are read."""

    stac_url: str
    collection: str = "sentinel-2-l2a"
    max_cloud: float | None = 90.0  # scene-level filter; pixels are masked with SCL anyway
    resolution: float = 10.0
    bands: list[str] | None = None  # None: the model's stack


@dataclass
class Webhook:
    url: str | None = None
    max_attempts: int = 4  # per pass; undelivered alerts are retried on the next pass
    backoff_s: float = 2.0  # first wait; doubles after each failure
    timeout_s: float = 10.0


@dataclass
class WatchedArea:
    name: str
    geometry: BaseGeometry  # WGS84
    source: Source
    since: str  # acquisitions before this date are ignored
    cadence_hours: float = 24.0  # `watch run` searches an area at most this often
    rules: Rules = field(default_factory=Rules)
    webhook: Webhook = field(default_factory=Webhook)
    concessions: dict[str, Any] | None = None  # FeatureCollection, WGS84
    protected: dict[str, Any] | None = None
    created: str | None = None
    last_seen: str | None = None  # datetime of the newest processed acquisition
    last_checked: str | None = None

    def zones(self, kind: str) -> Features | None:
        collection = self.concessions if kind == "concessions" else self.protected
        if not collection or not collection.get("features"):
            return None
        sites = as_sites(collection)
        return features_from_geometries([g for g, _ in sites], WGS84, [p for _, p in sites])

    def due(self, now: datetime) -> bool:
        if not self.last_checked or self.cadence_hours <= 0:
            return True
        elapsed = now - datetime.fromisoformat(self.last_checked)
        return elapsed.total_seconds() >= self.cadence_hours * 3600 * 0.999

    def config(self) -> dict[str, Any]:
        return {
            "source": dataclasses.asdict(self.source),
            "since": self.since,
            "cadence_hours": self.cadence_hours,
            "rules": dataclasses.asdict(self.rules),
            "webhook": dataclasses.asdict(self.webhook),
            "concessions": self.concessions,
            "protected": self.protected,
        }


def zones_collection(features: Features | None) -> dict[str, Any] | None:
    """Zone polygons (any CRS) as a WGS84 FeatureCollection for the area's config."""
    if features is None:
        return None
    wgs = features.to_crs(WGS84)
    return feature_collection(
        [feature(g, p) for g, p in zip(wgs.geometries, wgs.properties, strict=True) if g]
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _from_row(row: dict[str, Any]) -> WatchedArea:
    cfg = json.loads(row["config"])
    return WatchedArea(
        name=row["name"],
        geometry=row["geom"],
        source=Source(**cfg["source"]),
        since=cfg["since"],
        cadence_hours=cfg["cadence_hours"],
        rules=Rules(**cfg["rules"]),
        webhook=Webhook(**cfg["webhook"]),
        concessions=cfg.get("concessions"),
        protected=cfg.get("protected"),
        created=row["created"],
        last_seen=row["last_seen"],
        last_checked=row["last_checked"],
    )


def save_area(store: Store, area: WatchedArea) -> bool:
    """Add the area, or update the settings of the one with the same name (its progress kept).
    Returns True when it was added."""
    area.rules.check()
    area.since = iso_date(area.since)
    with store.transaction() as cur:
        store.lock_area(cur, area.name)
        exists = store.fetch(cur, "SELECT name FROM watch_areas WHERE name = {p}", (area.name,))
        params = (store.wkb(area.geometry), json.dumps(area.config()), area.name)
        if exists:
            store.execute(
                cur, "UPDATE watch_areas SET geom = {g}, config = {p} WHERE name = {p}", params
            )
        else:
            store.execute(
                cur,
                "INSERT INTO watch_areas (geom, config, name, created) VALUES ({g}, {p}, {p}, {p})",
                (*params, now_iso()),
            )
    return not exists


def load_areas(store: Store, names: list[str] | None = None) -> list[WatchedArea]:
    with store.transaction() as cur:
        rows = store.fetch(
            cur,
            "SELECT name, {geom} AS geom, config, created, last_seen, last_checked "
            "FROM watch_areas ORDER BY name",
        )
    areas = [_from_row(r) for r in rows]
    if names:
        missing = sorted(set(names) - {a.name for a in areas})
        if missing:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"no watched area named {', '.join(missing)}"
            )
        areas = [a for a in areas if a.name in names]
    return areas


def remove_area(store: Store, name: str) -> None:
    """Stop watching ``name`` (its runs, sites and alerts stay in the store)."""
    with store.transaction() as cur:
        if not store.fetch(cur, "SELECT name FROM watch_areas WHERE name = {p}", (name,)):
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"no watched area named {name}")
        store.execute(cur, "DELETE FROM watch_scenes WHERE area = {p}", (name,))
        store.execute(cur, "DELETE FROM watch_areas WHERE name = {p}", (name,))


def mark_checked(store: Store, name: str, when: str) -> None:
    with store.transaction() as cur:
        store.execute(
            cur, "UPDATE watch_areas SET last_checked = {p} WHERE name = {p}", (when, name)
        )


def done_items(store: Store, cur: Any, area: str) -> set[str]:
    """STAC item ids of the area's finished acquisitions."""
    rows = store.fetch(
        cur, "SELECT items FROM watch_scenes WHERE area = {p} AND done IS NOT NULL", (area,)
    )
    return {i for r in rows for i in json.loads(r["items"] or "[]")}


def area_summary(store: Store, area: str) -> dict[str, int]:
    """Counts for ``watch list``: acquisitions done, alerts raised and pending, undelivered."""
    with store.transaction() as cur:
        done = store.fetch(
            cur,
            "SELECT COUNT(*) AS n FROM watch_scenes WHERE area = {p} AND done IS NOT NULL",
            (area,),
        )[0]["n"]
        states = store.fetch(
            cur, "SELECT state, COUNT(*) AS n FROM alerts WHERE area = {p} GROUP BY state", (area,)
        )
        waiting = store.fetch(
            cur,
            "SELECT COUNT(*) AS n FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id "
            "WHERE a.area = {p} AND d.delivered_at IS NULL",
            (area,),
        )[0]["n"]
    counts = {r["state"]: int(r["n"]) for r in states}
    return {
        "acquisitions": int(done),
        "raised": counts.get("raised", 0),
        "pending": counts.get("pending", 0),
        "withdrawn": counts.get("withdrawn", 0),
        "undelivered": int(waiting),
    }
