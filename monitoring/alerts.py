"""Alerts of watched areas and what each view teaches about every site.

Per site (table ``site_state``): how many clear views showed it, when its place was last seen
clear (and on which tile), its confidence (``suspected`` after one clear view, ``confirmed``
after ``confirm_views``, ``unconfirmed`` when a clear view no longer shows a suspected site) and
its review. Per alert (table ``alerts``, one row per site event ``new``/``grown``): its state
(``pending`` until the rule lets it out, ``raised``, ``withdrawn``), confidence, the times from
acquisition to alert, and its evidence facts. Every message to send is a row of ``deliveries``
(``raised``, then ``confirmed`` or ``withdrawn``) written in the same transaction as the view
that caused it: the outbox ``monitoring.webhook`` empties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from monitoring.evidence import write_packet
from monitoring.store import Store

DETECTED = ("new", "grown", "unchanged", "split")  # statuses of a site the view detected
UNSEEN = ("gone", "merged")  # the place was seen clear and the site was not there
EVENTS = ("raised", "confirmed", "withdrawn")

ALERT_FIELDS = (
    "alert_id", "area", "site_id", "kind", "state", "confidence", "compliance", "run_id",
    "scene_id", "date", "acquired", "published", "detected", "raised_at", "confirmed_at",
    "withdrawn_at", "views",
)  # fmt: skip
SITE_FIELDS = (
    "label", "confidence", "clear_views", "first_seen", "last_seen", "last_clear",
    "last_clear_scene", "last_clear_tile", "review", "review_reason", "reviewed_at",
)  # fmt: skip


@dataclass
class Alert:
    alert_id: str
    area: str
    site_id: str
    kind: str  # new | grown
    state: str  # pending | raised | withdrawn
    confidence: str  # suspected | confirmed
    compliance: str | None
    run_id: int | None
    scene_id: str | None
    date: str | None
    acquired: str | None  # acquisition time (STAC datetime)
    published: str | None  # when the provider published it (STAC published/created)
    detected: str | None  # when this program picked the acquisition up
    raised_at: str | None
    confirmed_at: str | None
    withdrawn_at: str | None
    views: int
    facts: dict[str, Any] = field(default_factory=dict)
    geometry: BaseGeometry | None = None  # WGS84

    @staticmethod
    def make_id(area: str, site_id: str, kind: str, date: str) -> str:
        return f"{area}:{site_id}:{kind}:{date}"

    @property
    def folder_name(self) -> str:
        return self.alert_id.replace(":", "_").replace("/", "_")


def _alert(row: dict[str, Any]) -> Alert:
    return Alert(
        **{k: row[k] for k in ALERT_FIELDS},
        facts=json.loads(row["facts"] or "{}"),
        geometry=row.get("geom"),
    )


def load_alerts(
    store: Store,
    cur: Any,
    area: str | None = None,
    states: tuple[str, ...] = (),
    alert_ids: list[str] | None = None,
) -> list[Alert]:
    where, params = [], []
    if area is not None:
        where.append("area = {p}")
        params.append(area)
    if states:
        where.append(f"state IN ({', '.join(['{p}'] * len(states))})")
        params += list(states)
    if alert_ids is not None:
        if not alert_ids:
            return []
        where.append(f"alert_id IN ({', '.join(['{p}'] * len(alert_ids))})")
        params += list(alert_ids)
    sql = (
        f"SELECT {', '.join(ALERT_FIELDS)}, facts, {{geom}} AS geom FROM alerts"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY date, alert_id"
    )
    return [_alert(r) for r in store.fetch(cur, sql, params)]


def insert_alert(store: Store, cur: Any, alert: Alert) -> None:
    cols = ", ".join((*ALERT_FIELDS, "facts", "geom"))
    marks = ", ".join(["{p}"] * (len(ALERT_FIELDS) + 1) + ["{g}"])
    values = [getattr(alert, f) for f in ALERT_FIELDS]
    store.execute(
        cur,
        f"INSERT INTO alerts ({cols}) VALUES ({marks})",
        (*values, json.dumps(alert.facts, default=str), store.wkb(alert.geometry)),
    )


def update_alert(store: Store, cur: Any, alert: Alert) -> None:
    names = [f for f in ALERT_FIELDS if f != "alert_id"]
    sets = ", ".join(f"{f} = {{p}}" for f in (*names, "facts"))
    store.execute(
        cur,
        f"UPDATE alerts SET {sets} WHERE alert_id = {{p}}",
        (
            *(getattr(alert, f) for f in names),
            json.dumps(alert.facts, default=str),
            alert.alert_id,
        ),
    )


def enqueue(store: Store, cur: Any, alert_id: str, event: str, when: str) -> None:
    """One message to deliver (idempotent: a message exists at most once)."""
    assert event in EVENTS
    exists = store.fetch(
        cur,
        "SELECT 1 AS x FROM deliveries WHERE alert_id = {p} AND event = {p}",
        (alert_id, event),
    )
    if not exists:
        store.execute(
            cur,
            "INSERT INTO deliveries (alert_id, event, created) VALUES ({p}, {p}, {p})",
            (alert_id, event, when),
        )


def site_states(store: Store, cur: Any, area: str) -> dict[str, dict[str, Any]]:
    rows = store.fetch(
        cur, f"SELECT site_id, {', '.join(SITE_FIELDS)} FROM site_state WHERE area = {{p}}", (area,)
    )
    return {r.pop("site_id"): r for r in rows}


def save_site_state(store: Store, cur: Any, area: str, site_id: str, state: dict) -> None:
    store.execute(cur, "DELETE FROM site_state WHERE area = {p} AND site_id = {p}", (area, site_id))
    cols = ", ".join(("area", "site_id", *SITE_FIELDS))
    marks = ", ".join(["{p}"] * (len(SITE_FIELDS) + 2))
    store.execute(
        cur,
        f"INSERT INTO site_state ({cols}) VALUES ({marks})",
        (area, site_id, *(state.get(f) for f in SITE_FIELDS)),
    )


def new_site_state() -> dict[str, Any]:
    return {f: None for f in SITE_FIELDS} | {"clear_views": 0}


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    if a.tzinfo is None:
        a = a.replace(tzinfo=UTC)
    return (b - a).total_seconds()


def latency(alert: Alert) -> dict[str, float | None]:
    """Seconds from the acquisition (its sensing time, its publication, and the moment this
    program found it) to the alert being raised."""
    return {
        "acquisition_to_alert_s": seconds_between(alert.acquired, alert.raised_at),
        "published_to_alert_s": seconds_between(alert.published, alert.raised_at),
        "found_to_alert_s": seconds_between(alert.detected, alert.raised_at),
    }


def write_evidence(alert: Alert) -> Path | None:
    """The alert's evidence packet (before/after chips, polygon, facts, page); idempotent."""
    folder = alert.facts.get("evidence")
    if not folder or alert.geometry is None:
        return None
    folder = Path(folder)
    facts = {k: v for k, v in alert.facts.items() if k != "evidence"}
    facts.update(state=alert.state, confidence=alert.confidence, **latency(alert))
    return write_packet(
        folder.parent,
        alert.site_id,
        alert.geometry,
        facts,
        alert.facts.get("before_tile"),
        alert.facts.get("after_tile"),
        name=folder.name,
    )
