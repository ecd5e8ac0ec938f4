"""``asmspotter watch run``: every new acquisition over every watched area, once.

One pass: for each area that is due, search its STAC API for items newer than the last one seen,
group them by solar day (one acquisition), and for each acquisition, oldest first:

1. write the masked tile (``monitoring.acquisition``) and detect on its clear part;
2. in ONE transaction: track the detections against the inventory (a site not detected where the
   view did not see the ground is ``obscured``, never ``gone``), update every site's state and
   the area's alerts (``monitoring.alerts``), queue the messages, and mark the acquisition done;
3. write the evidence packets of the alerts that changed.

Then the outbox is delivered (``monitoring.webhook``). A pass killed anywhere loses nothing: an
acquisition is either done (with its alerts and messages) or not started; a restart skips what
is done and sends what is still queued.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagery import feedback
from imagery.errors import AsmSpotterError
from imagery.geometry import WGS84
from monitoring.acquisition import Acquisition, ClearView, new_acquisitions, write_view
from monitoring.alerts import (
    DETECTED,
    UNSEEN,
    Alert,
    enqueue,
    insert_alert,
    latency,
    load_alerts,
    new_site_state,
    save_site_state,
    site_states,
    update_alert,
    write_evidence,
)
from monitoring.areas import WatchedArea, done_items, load_areas, mark_checked, now_iso
from monitoring.compliance import is_alert
from monitoring.detect import Detector
from monitoring.monitor import RunSummary, features_from_geometries, record_run_in
from monitoring.store import Store
from monitoring.webhook import DeliveryReport, deliver_pending

Log = Callable[[str], None]


@dataclass
class ViewResult:
    area: str
    acquisition_id: str
    date: str
    clear_fraction: float
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)  # alerts this view raised or changed
    skipped: bool = False  # another process finished it first


@dataclass
class PassResult:
    views: list[ViewResult] = field(default_factory=list)
    deliveries: DeliveryReport | None = None
    errors: list[tuple[str, AsmSpotterError]] = field(default_factory=list)  # area, error

    def summary(self) -> str:
        done = [v for v in self.views if not v.skipped]
        alerts = [a for v in done for a in v.alerts]
        text = (
            f"pass: {len(done)} acquisition(s) processed"
            + (
                f", {len(self.views) - len(done)} done elsewhere"
                if len(done) < len(self.views)
                else ""
            )
            + f"; alerts: {sum(a.state == 'raised' for a in alerts)} raised, "
            f"{sum(a.state == 'pending' for a in alerts)} pending, "
            f"{sum(a.state == 'withdrawn' for a in alerts)} withdrawn"
        )
        if self.deliveries is not None:
            d = self.deliveries
            text += f"; messages: {len(d.delivered)} delivered, {len(d.failed)} failed"
            if d.no_webhook:
                text += f", {d.no_webhook} queued without a webhook URL"
        return text


def area_folder(data_dir: Path, area: str) -> Path:
    return Path(data_dir) / "".join(c if c.isalnum() or c in "-_." else "_" for c in area)


def run_pass(
    store: Store,
    detector: Detector,
    data_dir: str | Path,
    names: list[str] | None = None,
    *,
    force: bool = False,
    deliver: bool = True,
    log: Log = feedback.step,
    sleep: Callable[[float], None] = time.sleep,
) -> PassResult:
    """One pass over the watched areas (all, or ``names``); areas not due are skipped unless
    ``force``."""
    result = PassResult()
    areas = load_areas(store, names)
    now = datetime.now(UTC)
    for area in areas:
        if not force and not area.due(now):
            log(f"{area.name}: not due (checked {area.last_checked}, every {area.cadence_hours} h)")
            continue
        try:
            with store.transaction() as cur:
                done = done_items(store, cur, area.name)
            acquisitions = new_acquisitions(area, done)
            log(f"{area.name}: {len(acquisitions)} new acquisition(s)")
            for acq in acquisitions:
                view = process_acquisition(store, area, acq, detector, Path(data_dir))
                result.views.append(view)
                log(_describe(view))
        except AsmSpotterError as exc:  # one area's trouble (STAC down, bad imagery) stops
            result.errors.append((area.name, exc))  # only that area; the rest goes on
            continue
        mark_checked(store, area.name, now_iso())
    if deliver:
        result.deliveries = deliver_pending(store, {a.name: a for a in areas}, log, sleep)
    return result


def _describe(view: ViewResult) -> str:
    if view.skipped:
        return f"  {view.date} {view.acquisition_id}: done by another process"
    counts = ", ".join(f"{k} {v}" for k, v in view.counts.items() if v) or "no sites"
    return f"  {view.date} {view.acquisition_id}: {view.clear_fraction:.0%} clear; {counts}"


def describe_alert(alert: Alert) -> str:
    """One line per alert a view raised or changed, with the time from acquisition to alert."""
    text = (
        f"alert {alert.alert_id}: {alert.kind} site, {alert.state} ({alert.confidence}, "
        f"{alert.compliance})"
    )
    times = latency(alert)
    if alert.state == "raised" and times["found_to_alert_s"] is not None:
        text += f"; found->alert {times['found_to_alert_s']:.1f} s"
        if times["published_to_alert_s"] is not None:
            text += f", published->alert {times['published_to_alert_s']:.1f} s"
    return text


def process_acquisition(
    store: Store, area: WatchedArea, acq: Acquisition, detector: Detector, data_dir: Path
) -> ViewResult:
    """Detect on one acquisition and record everything it shows, exactly once."""
    found = _start(store, area, acq)
    folder = area_folder(data_dir, area.name)
    tile, clear = write_view(area, acq, folder / "views")
    if clear > 0:
        features, meta = detector(tile, area.rules.min_score)
    else:  # nothing seen: every site keeps its state
        features, meta = features_from_geometries([], WGS84), {}
    view = ClearView(tile)
    rules = area.rules
    result = ViewResult(area.name, acq.id, acq.day, clear)
    with store.transaction() as cur:
        # The first write takes SQLite's write lock (PostGIS: the area's advisory lock); only
        # then is "already done?" a safe question.
        store.execute(
            cur,
            "UPDATE watch_scenes SET tile = {p} WHERE area = {p} AND acquisition_id = {p}",
            (str(tile), area.name, acq.id),
        )
        store.lock_area(cur, area.name)
        row = store.fetch(
            cur,
            "SELECT done FROM watch_scenes WHERE area = {p} AND acquisition_id = {p}",
            (area.name, acq.id),
        )
        if row and row[0]["done"]:
            result.skipped = True
            return result
        if clear > 0:
            baseline = store.previous_run(cur, area.name, acq.day) is None
            summary = record_run_in(
                store,
                cur,
                area.name,
                acq.id,
                acq.day,
                features,
                tile=str(tile),
                concessions=area.zones("concessions"),
                protected=area.zones("protected"),
                grow_fraction=rules.grow_fraction,
                min_overlap=rules.min_overlap,
                tolerance_m=rules.tolerance_m,
                inside_fraction=rules.inside_fraction,
                visible=lambda g: view.sees(g, rules.min_clear_fraction),
                **meta,
            )
            result.run_id, result.counts = summary.run_id, summary.counts
            result.alerts = apply_view(
                store, cur, area, acq, summary, tile, baseline, found, folder / "evidence"
            )
        store.execute(
            cur,
            "UPDATE watch_scenes SET done = {p}, run_id = {p}, clear_fraction = {p} "
            "WHERE area = {p} AND acquisition_id = {p}",
            (now_iso(), result.run_id, clear, area.name, acq.id),
        )
        if not area.last_seen or acq.acquired > area.last_seen:
            area.last_seen = acq.acquired
        store.execute(
            cur,
            "UPDATE watch_areas SET last_seen = {p} WHERE name = {p}",
            (area.last_seen, area.name),
        )
    for alert in result.alerts:
        write_evidence(alert)
    return result


def _start(store: Store, area: WatchedArea, acq: Acquisition) -> str:
    """Record when the acquisition was first picked up (kept across restarts)."""
    with store.transaction() as cur:
        rows = store.fetch(
            cur,
            "SELECT started FROM watch_scenes WHERE area = {p} AND acquisition_id = {p}",
            (area.name, acq.id),
        )
        if rows:
            return rows[0]["started"]
        started = now_iso()
        store.execute(
            cur,
            "INSERT INTO watch_scenes (area, acquisition_id, acquired, items, published, started)"
            " VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            (
                area.name,
                acq.id,
                acq.acquired,
                json.dumps([i.id for i in acq.items]),
                acq.published,
                started,
            ),
        )
        return started


def last_clear_view(
    store: Store, cur: Any, area: str, before: str, geom: Any, min_fraction: float
) -> dict[str, Any] | None:
    """The newest earlier acquisition of ``area`` that saw ``geom``'s place clear."""
    rows = store.fetch(
        cur,
        "SELECT acquisition_id, acquired, tile FROM watch_scenes WHERE area = {p} "
        "AND done IS NOT NULL AND acquired < {p} AND tile IS NOT NULL ORDER BY acquired DESC",
        (area, before),
    )
    for row in rows[:12]:
        if Path(row["tile"]).is_file() and ClearView(row["tile"]).sees(geom, min_fraction):
            return row
    return None


def apply_view(
    store: Store,
    cur: Any,
    area: WatchedArea,
    acq: Acquisition,
    summary: RunSummary,
    tile: Path,
    baseline: bool,
    found: str,
    evidence_dir: Path,
) -> list[Alert]:
    """Update site states and alerts from one recorded view; queue the messages."""
    rules, now, changed = area.rules, now_iso(), []
    states = site_states(store, cur, area.name)
    open_by_site: dict[str, list[Alert]] = defaultdict(list)
    for a in load_alerts(store, cur, area.name, states=("pending", "raised")):
        if a.confidence == "suspected":
            open_by_site[a.site_id].append(a)
    for obs in store.observations(summary.run_id, cur):
        state = states.get(obs.site_id) or new_site_state()
        detection = summary.detections.get(obs.site_id, {})
        seen = {"last_clear": acq.day, "last_clear_scene": acq.id, "last_clear_tile": str(tile)}
        if obs.status in DETECTED:
            state.update(seen, last_seen=acq.day, first_seen=state["first_seen"] or acq.day)
            state["clear_views"] = int(state["clear_views"] or 0) + 1
            state["label"] = detection.get("class") or state["label"] or "pit"
            if state["confidence"] != "confirmed":
                enough = state["clear_views"] >= rules.confirm_views
                state["confidence"] = "confirmed" if enough else "suspected"
        elif obs.status in UNSEEN:
            state.update(seen)
            if state["confidence"] == "suspected":
                state["confidence"] = "unconfirmed"
        save_site_state(store, cur, area.name, obs.site_id, state)
        followed = open_by_site.get(obs.site_id, [])
        for alert in followed:
            if _follow(alert, obs.status, acq, rules.confirm_views, now, store, cur):
                update_alert(store, cur, alert)
                changed.append(alert)
        if baseline or followed or not is_alert(obs.status, obs.compliance or ""):
            continue
        if state.get("review") == "rejected":  # a reviewer said it is no mine: no new alert
            continue
        confirmed = rules.confirm_views <= 1
        raised = rules.alert_when == "suspected" or confirmed
        alert = Alert(
            alert_id=Alert.make_id(area.name, obs.site_id, obs.status, acq.day),
            area=area.name,
            site_id=obs.site_id,
            kind=obs.status,
            state="raised" if raised else "pending",
            confidence="confirmed" if confirmed else "suspected",
            compliance=obs.compliance,
            run_id=summary.run_id,
            scene_id=acq.id,
            date=acq.day,
            acquired=acq.acquired,
            published=acq.published,
            detected=found,
            raised_at=now if raised else None,
            confirmed_at=now if confirmed else None,
            withdrawn_at=None,
            views=1,
            geometry=obs.geometry,
        )
        meta = summary_meta(store, cur, summary.run_id)
        before = last_clear_view(
            store, cur, area.name, acq.acquired, obs.geometry, rules.min_clear_fraction
        )
        alert.facts = {
            "alert_id": alert.alert_id,
            "area": area.name,
            "site_id": obs.site_id,
            "label": state["label"],
            "status": obs.status,
            "confidence": alert.confidence,
            "date": acq.day,
            "scene_id": acq.id,
            "acquired": acq.acquired,
            "published": acq.published,
            "before_date": before["acquired"][:10] if before else None,
            "before_scene_id": before["acquisition_id"] if before else None,
            "before_tile": before["tile"] if before else None,
            "after_tile": str(tile),
            "compliance": obs.compliance,
            "area_m2": round(obs.area_m2, 1),
            "previous_area_m2": obs.previous_area_m2,
            "concession_fraction": obs.concession_fraction,
            "protected_fraction": obs.protected_fraction,
            "concessions": obs.concessions,
            "protected_areas": obs.protected_areas,
            "score": obs.score,
            "model_version": meta.get("model_version"),
            "weights_sha256": meta.get("weights_sha256"),
            "evidence": str(evidence_dir / alert.folder_name),
        }
        insert_alert(store, cur, alert)
        if raised:
            enqueue(store, cur, alert.alert_id, "raised", now)
        changed.append(alert)
    return changed


def _follow(
    alert: Alert,
    status: str,
    acq: Acquisition,
    confirm_views: int,
    now: str,
    store: Store,
    cur: Any,
) -> bool:
    """A later view of an unconfirmed alert's site: confirm it, withdraw it, or neither."""
    if status in DETECTED:
        alert.views += 1
        if alert.views < confirm_views:
            return True
        alert.confidence, alert.confirmed_at = "confirmed", now
        alert.facts.update(confidence="confirmed", confirmed_date=acq.day, confirmed_scene=acq.id)
        if alert.state == "pending":
            alert.state, alert.raised_at = "raised", now
            enqueue(store, cur, alert.alert_id, "raised", now)
        else:
            enqueue(store, cur, alert.alert_id, "confirmed", now)
        return True
    if status in UNSEEN:
        was = alert.state
        alert.state, alert.withdrawn_at = "withdrawn", now
        alert.facts.update(withdrawn_date=acq.day, withdrawn_scene=acq.id)
        if was == "raised":
            enqueue(store, cur, alert.alert_id, "withdrawn", now)
        return True
    return False  # obscured: nothing learnt


def summary_meta(store: Store, cur: Any, run_id: int) -> dict[str, Any]:
    rows = store.fetch(
        cur, "SELECT model_version, weights_sha256 FROM runs WHERE id = {p}", (run_id,)
    )
    return rows[0] if rows else {}


def write_outputs(store: Store, out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Per area: ``alerts.geojson`` and ``alerts.csv`` (every alert with its state, confidence,
    review and times) and the map, under ``out_dir/<area>/``."""
    from monitoring.reporting import build_watch_report

    paths = []
    for area in load_areas(store, names):
        paths += build_watch_report(store, area, area_folder(Path(out_dir), area.name))
    return paths
