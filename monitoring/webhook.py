"""Send the outbox: every queued alert message is POSTed as JSON to its area's webhook.

- A message is one row of ``deliveries`` (alert id + event ``raised``/``confirmed``/``withdrawn``);
  it is marked delivered when the receiver answers 2xx and is never sent again after that.
- Failures (refused connection, timeout, non-2xx) are retried with exponential backoff
  (``backoff_s``, doubling) up to ``max_attempts`` per pass; what is still unsent waits for the
  next pass. The attempt count is kept in the store.
- Two passes at once (cron overlap) never send the same message together: a pass leases the
  message first (owner and expiry in the row); a lease of a dead process on this host is taken
  over at once.
- The only possible repeat is a pass killed after the receiver answered and before the store
  recorded it (milliseconds); every POST carries ``Idempotency-Key: <alert id>:<event>`` (and
  ``attempt``) so a receiver can drop that repeat.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from asmspotter import __version__
from imagery import feedback
from monitoring.alerts import Alert, latency, load_alerts, write_evidence
from monitoring.areas import WatchedArea, now_iso
from monitoring.store import Store

OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class DeliveryReport:
    delivered: list[tuple[str, str, int]] = field(default_factory=list)  # id, event, attempts
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # id, event, last error
    no_webhook: int = 0  # messages of areas without a webhook URL (kept queued)


def payload(alert: Alert, event: str, attempt: int) -> dict[str, Any]:
    """The JSON document a receiver gets: the alert, its evidence packet and its timings."""
    chips: dict[str, str | None] = {}
    folder = Path(alert.facts.get("evidence") or "")
    if alert.facts.get("evidence") and not (folder / "packet.json").is_file():
        write_evidence(alert)
    for name in ("before", "after"):
        png = folder / f"{name}.png"
        chips[f"{name}_png"] = (
            base64.b64encode(png.read_bytes()).decode() if png.is_file() else None
        )
    facts = {k: v for k, v in alert.facts.items() if not k.endswith("_tile")}
    return {
        "type": f"alert.{event}",
        "delivery_id": f"{alert.alert_id}:{event}",
        "attempt": attempt,
        "alert_id": alert.alert_id,
        "area": alert.area,
        "site_id": alert.site_id,
        "kind": alert.kind,
        "state": alert.state,
        "confidence": alert.confidence,
        "compliance": alert.compliance,
        "date": alert.date,
        "acquired": alert.acquired,
        "published": alert.published,
        "detected": alert.detected,
        "raised_at": alert.raised_at,
        "confirmed_at": alert.confirmed_at,
        "withdrawn_at": alert.withdrawn_at,
        **latency(alert),
        "geometry": mapping(alert.geometry) if alert.geometry is not None else None,
        "facts": facts,
        "evidence": chips,
        "sent_by": f"asmspotter/{__version__}",
    }


def post_json(url: str, document: dict[str, Any], key: str, timeout: float) -> str | None:
    """POST ``document``; None when the receiver answered 2xx, else what went wrong."""
    request = urllib.request.Request(
        url,
        data=json.dumps(document, default=str).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": f"asmspotter/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # refused, timeout, bad URL
        return f"{type(exc).__name__}: {exc}"


def _lease(store: Store, alert_id: str, event: str, seconds: float) -> bool:
    """Own the message for ``seconds`` unless another live pass owns it (True when owned)."""
    now = datetime.now(UTC)
    until = (now + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    with store.transaction() as cur:
        rows = store.fetch(
            cur,
            "SELECT lease_owner, lease_until, delivered_at FROM deliveries "
            "WHERE alert_id = {p} AND event = {p}",
            (alert_id, event),
        )
        if not rows or rows[0]["delivered_at"]:
            return False
        owner, expiry = rows[0]["lease_owner"], rows[0]["lease_until"]
        held = owner and expiry and datetime.fromisoformat(expiry) > now
        if held and owner != OWNER and not _dead_local(owner):
            return False
        cur = store.execute(
            cur,
            "UPDATE deliveries SET lease_owner = {p}, lease_until = {p} WHERE alert_id = {p} "
            "AND event = {p} AND delivered_at IS NULL "
            "AND (lease_owner IS NULL OR lease_owner = {p})",
            (OWNER, until, alert_id, event, owner),
        )
        return cur.rowcount == 1


def _dead_local(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _record(store: Store, alert_id: str, event: str, error: str | None = None) -> int:
    """Count one attempt (and its outcome); returns the attempt number."""
    with store.transaction() as cur:
        store.execute(
            cur,
            "UPDATE deliveries SET attempts = attempts + 1, last_attempt = {p}, last_error = {p}"
            " WHERE alert_id = {p} AND event = {p}",
            (now_iso(), error, alert_id, event),
        )
        row = store.fetch(
            cur,
            "SELECT attempts FROM deliveries WHERE alert_id = {p} AND event = {p}",
            (alert_id, event),
        )
    return int(row[0]["attempts"])


def _finish(store: Store, alert_id: str, event: str, delivered: bool) -> None:
    with store.transaction() as cur:
        store.execute(
            cur,
            "UPDATE deliveries SET delivered_at = {p}, lease_owner = NULL, lease_until = NULL "
            "WHERE alert_id = {p} AND event = {p}",
            (now_iso() if delivered else None, alert_id, event),
        )


def deliver_pending(
    store: Store,
    areas: dict[str, WatchedArea],
    log: Callable[[str], None] = feedback.step,
    sleep: Callable[[float], None] | None = None,
) -> DeliveryReport:
    """Send every undelivered message of ``areas``, oldest first."""
    sleep = sleep or time.sleep
    report = DeliveryReport()
    with store.transaction() as cur:
        queued = store.fetch(
            cur,
            "SELECT d.alert_id, d.event, a.area FROM deliveries d "
            "JOIN alerts a ON a.alert_id = d.alert_id WHERE d.delivered_at IS NULL "
            "ORDER BY d.created, d.alert_id, d.event",
        )
    for row in queued:
        area = areas.get(row["area"])
        if area is None:
            continue
        hook = area.webhook
        if not hook.url:
            report.no_webhook += 1
            continue
        alert_id, event = row["alert_id"], row["event"]
        budget = hook.max_attempts * hook.timeout_s + hook.backoff_s * 2**hook.max_attempts + 30
        if not _lease(store, alert_id, event, budget):
            continue
        with store.transaction() as cur:
            (alert,) = load_alerts(store, cur, alert_ids=[alert_id])
        error = "no attempt"
        for k in range(hook.max_attempts):
            attempt = _record(store, alert_id, event)
            error = post_json(
                hook.url, payload(alert, event, attempt), f"{alert_id}:{event}", hook.timeout_s
            )
            if error is None:
                _finish(store, alert_id, event, delivered=True)
                report.delivered.append((alert_id, event, attempt))
                log(f"  delivered {alert_id} ({event}) to {hook.url}, attempt {attempt}")
                break
            _record_error(store, alert_id, event, error)
            if k + 1 < hook.max_attempts:
                wait = hook.backoff_s * 2**k
                log(f"  {alert_id} ({event}): {error}; retrying in {wait:g} s")
                sleep(wait)
        else:
            _finish(store, alert_id, event, delivered=False)
            report.failed.append((alert_id, event, error))
            log(f"  {alert_id} ({event}) not delivered ({error}); kept for the next pass")
    return report


def _record_error(store: Store, alert_id: str, event: str, error: str) -> None:
    with store.transaction() as cur:
        store.execute(
            cur,
            "UPDATE deliveries SET last_error = {p} WHERE alert_id = {p} AND event = {p}",
            (error, alert_id, event),
        )
