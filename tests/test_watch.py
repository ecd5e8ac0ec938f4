"""`asmspotter watch`: a real STAC API gaining acquisitions between passes, a real gRPC detection
service, a real webhook receiver, and both store backends (SQLite and PostGIS) side by side."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import shapely

from asmspotter.cli import main
from monitoring.alerts import load_alerts, site_states
from monitoring.store import Store
from monitoring.testing.webhook_receiver import WebhookReceiver
from tests.real_parts import missing, require_module
from tests.watch_support import (
    AREA,
    CONCESSION,
    PROTECTED,
    SITES,
    build_acquisitions,
    start_detection_server,
    write_polygons,
)

from .conftest import L2A_DIR

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def acquisitions(tmp_path_factory):
    if not L2A_DIR.is_dir():
        missing(f"{L2A_DIR} is absent")
    return build_acquisitions(L2A_DIR, tmp_path_factory.mktemp("acq"))


@pytest.fixture(scope="module")
def stac(postgis_cluster, acquisitions, tmp_path_factory):
    require_module("stac_fastapi.pgstac")
    from monitoring.testing.stac_server import StacServer

    server = StacServer(
        postgis_cluster, acquisitions[:1], tmp_path_factory.mktemp("stac") / "stac.log"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def detection_server():
    srv = start_detection_server()
    yield f"127.0.0.1:{srv.port}"
    srv.stop(grace=1)


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zones")
    return (
        write_polygons(folder / "area.geojson", [AREA], ["wadi"]),
        write_polygons(folder / "concessions.geojson", [CONCESSION], ["C-1"]),
        write_polygons(folder / "protected.geojson", [PROTECTED], ["Reserve"]),
    )


def _add(store: str, name: str, stac, zones, webhook: str, *extra: str) -> None:
    area, conc, prot = zones
    args = ["watch", "add", name, "--store", store, "--area", str(area), "--stac-url", stac.url,
            "--since", "2020-02-01", "--concessions", str(conc), "--protected", str(prot),
            "--resolution", "100", "--cadence-hours", "0", "--webhook", webhook,
            "--webhook-backoff", "0.2", *extra]  # fmt: skip
    assert main(args) == 0


def _run(store: str, server: str, data: Path, *extra: str) -> None:
    args = ["watch", "run", "--store", store, "--server", server, "--data-dir", str(data)]
    assert main([*args, *extra]) == 0


def _site_at(store: Store, area: str, name: str) -> str:
    """The id the store gave the site painted as ``name``."""
    with store.transaction() as cur:
        rows = store.fetch(
            cur,
            "SELECT o.site_id, {geom} AS geom FROM observations o JOIN runs r "
            "ON r.id = o.run_id WHERE r.area = {p}",
            (area,),
        )
    hits = {r["site_id"] for r in rows if r["geom"].intersects(SITES[name].centroid)}
    assert len(hits) == 1, (name, hits)
    return hits.pop()


def _statuses(store: Store, area: str) -> dict[str, str]:
    run = store.runs(area)[-1]
    return {o.site_id: o.status for o in store.observations(run.id)}


def test_new_site_alerts_once_and_clouds_are_not_gone(
    stac, acquisitions, detection_server, zones, postgis_cluster, tmp_path, capsys
):
    stores = {
        "sqlite": f"sqlite:///{tmp_path / 'watch.sqlite'}",
        "postgis": postgis_cluster.create_db(f"watch_{tmp_path.name[-12:].lower()}"),
    }
    hooks = {name: WebhookReceiver() for name in stores}
    for name, url in stores.items():
        _add(url, "wadi", stac, zones, hooks[name].url)
        _add(url, "wadi-strict", stac, zones, hooks[name].url, "--alert-when", "confirmed")

    def run_all(out: bool = False) -> None:
        for name, url in stores.items():
            extra = ("--out", str(tmp_path / f"out-{name}")) if out else ()
            _run(url, detection_server, tmp_path / f"data-{name}", *extra)

    # 1. The first acquisition is the baseline: three sites, no alert.
    run_all()
    for name, url in stores.items():
        with Store(url) as s:
            assert sorted(_statuses(s, "wadi").values()) == ["new"] * 3, name
            with s.transaction() as cur:
                assert load_alerts(s, cur) == []
    assert all(not h.received for h in hooks.values())

    # 2. A new acquisition appears: N1 is new outside the concession (one alert), N2 new inside
    # it (none); P2 under cloud and P1 under shadow are obscured, not gone; P3 is gone (clear).
    stac.add_items(acquisitions[1:2])
    run_all()
    for name, url in stores.items():
        with Store(url) as s:
            ids = {k: _site_at(s, "wadi", k) for k in SITES if k != "N3"}
            status = _statuses(s, "wadi")
            assert status[ids["P1"]] == "obscured" and status[ids["P2"]] == "obscured", name
            assert status[ids["P3"]] == "gone"
            assert status[ids["N1"]] == "new" and status[ids["N2"]] == "new"
            with s.transaction() as cur:
                alerts = load_alerts(s, cur, "wadi")
                strict = load_alerts(s, cur, "wadi-strict")
                state = site_states(s, cur, "wadi")
            assert [(a.site_id, a.kind, a.state, a.confidence) for a in alerts] == [
                (ids["N1"], "new", "raised", "suspected")
            ], name
            assert alerts[0].compliance == "outside_concessions"
            assert [(a.state, a.confidence) for a in strict] == [("pending", "suspected")]
            # Where each place was last seen clear: P1, P2 on the first date, P3 on the second.
            assert state[ids["P2"]]["last_clear"] == "2020-02-19"
            assert state[ids["P1"]]["last_clear"] == "2020-02-19"
            assert state[ids["P3"]]["last_clear"] == "2020-03-05"
            assert state[ids["N1"]]["confidence"] == "suspected"
        got = [(r.body["type"], r.body["area"], r.body["site_id"]) for r in hooks[name].received]
        assert got == [("alert.raised", "wadi", ids["N1"])], name
        body = hooks[name].received[0].body
        assert body["confidence"] == "suspected" and body["evidence"]["after_png"]
        assert body["evidence"]["before_png"] and body["facts"]["before_date"] == "2020-02-19"
        assert shapely.geometry.shape(body["geometry"]).intersects(SITES["N1"].centroid)
        assert body["found_to_alert_s"] >= 0 and body["published_to_alert_s"] >= 0

    # 3. Nothing new: nothing processed, nothing sent again.
    run_all()
    assert all(len(h.received) == 1 for h in hooks.values())
    assert "wadi: 0 new acquisition(s)" in capsys.readouterr().err

    # 4. A second clear view confirms N1: the same alert, confirmed (and raised under the strict
    # rule); P3 stays gone, the clouded sites are seen again.
    stac.add_items(acquisitions[2:3])
    run_all(out=True)
    for name, url in stores.items():
        with Store(url) as s:
            ids = {k: _site_at(s, "wadi", k) for k in SITES if k != "N3"}
            status = _statuses(s, "wadi")
            assert status[ids["P2"]] == "unchanged" and status[ids["P1"]] == "unchanged"
            with s.transaction() as cur:
                alerts = load_alerts(s, cur, "wadi")
                strict = load_alerts(s, cur, "wadi-strict")
        assert [(a.site_id, a.state, a.confidence) for a in alerts] == [
            (ids["N1"], "raised", "confirmed")
        ], name
        assert [(a.state, a.confidence) for a in strict] == [("raised", "confirmed")]
        got = sorted((r.body["area"], r.body["type"]) for r in hooks[name].received)
        assert got == [
            ("wadi", "alert.confirmed"),
            ("wadi", "alert.raised"),
            ("wadi-strict", "alert.raised"),
        ], name
        keys = hooks[name].keys()
        assert len(keys) == len(set(keys)) == 3  # every message once
        with (tmp_path / f"out-{name}" / "wadi" / "alerts.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [(r["state"], r["confidence"], r["compliance"]) for r in rows] == [
            ("raised", "confirmed", "outside_concessions")
        ]
        assert float(rows[0]["found_to_alert_s"]) >= 0
        geo = json.loads((tmp_path / f"out-{name}" / "wadi" / "alerts.geojson").read_text())
        assert len(geo["features"]) == 1
    for h in hooks.values():
        h.stop()


def test_webhook_failing_twice_gets_the_alert_once(stac, acquisitions, detection_server, zones,
                                                   tmp_path):  # fmt: skip
    stac.add_items(acquisitions)
    store = f"sqlite:///{tmp_path / 'retry.sqlite'}"
    hook = WebhookReceiver(fail_first=2)
    _add(store, "wadi", stac, zones, hook.url)
    _run(store, detection_server, tmp_path / "data")
    # One pass saw all three dates: N1 raised (second date) and confirmed (third date).
    statuses = [(r.body["type"], r.status) for r in hook.received]
    assert statuses == [
        ("alert.raised", 503), ("alert.raised", 503), ("alert.raised", 200),
        ("alert.confirmed", 200),
    ]  # fmt: skip
    assert [r.body["attempt"] for r in hook.received] == [1, 2, 3, 1]
    assert len(hook.accepted) == 2
    with Store(store) as s, s.transaction() as cur:
        rows = s.fetch(cur, "SELECT event, attempts, delivered_at FROM deliveries ORDER BY event")
    assert [(r["event"], r["attempts"]) for r in rows] == [("confirmed", 1), ("raised", 3)]
    assert all(r["delivered_at"] for r in rows)
    hook.stop()

    # A receiver down for a whole pass: the messages wait in the store for the next pass.
    store2 = f"sqlite:///{tmp_path / 'down.sqlite'}"
    down = WebhookReceiver(fail_first=4)
    _add(store2, "wadi", stac, zones, down.url, "--webhook-attempts", "2")
    _run(store2, detection_server, tmp_path / "data2")
    assert [r.status for r in down.received] == [503] * 4 and not down.accepted
    _run(store2, detection_server, tmp_path / "data2")
    assert [r.status for r in down.received] == [503] * 4 + [200, 200]
    assert sorted(r.body["attempt"] for r in down.received[4:]) == [3, 3]
    down.stop()


def _wait(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"watch run ended ({proc.returncode}) before the kill point")
        time.sleep(0.05)
    pytest.fail("kill point not reached in time")


def test_killed_pass_restarts_without_repeats(stac, acquisitions, detection_server, zones,
                                              tmp_path):  # fmt: skip
    stac.add_items(acquisitions)
    store = f"sqlite:///{tmp_path / 'kill.sqlite'}"
    hook = WebhookReceiver()
    _add(store, "wadi", stac, zones, hook.url)
    _add(store, "wadi-strict", stac, zones, hook.url, "--alert-when", "confirmed")
    cmd = [sys.executable, "-m", "asmspotter.cli", "watch", "run", "--store", store,
           "--server", detection_server, "--data-dir", str(tmp_path / "data")]  # fmt: skip
    log = (tmp_path / "watch.log").open("a")

    def start() -> subprocess.Popen:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def count(sql: str) -> int:
        with Store(store) as s, s.transaction() as cur:
            return int(s.fetch(cur, sql)[0]["n"])

    def kill(proc: subprocess.Popen) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # Kill 1: once the baseline is done, in the middle of the next acquisition.
    proc = start()
    _wait(lambda: count("SELECT COUNT(*) AS n FROM watch_scenes WHERE done IS NOT NULL") >= 1, proc)
    kill(proc)
    # Kill 2: once the first message is queued, before anything is sent.
    proc = start()
    _wait(lambda: count("SELECT COUNT(*) AS n FROM deliveries") >= 1, proc)
    assert not hook.received
    kill(proc)
    # Kill 3: while the receiver holds the first POST (sent, not yet answered).
    hook.hold_s = 2.0
    proc = start()
    _wait(lambda: len(hook.received) >= 1, proc)
    held = hook.received[0].key
    kill(proc)
    hook.hold_s = 0.0
    time.sleep(2.2)  # the receiver answers into the closed connection
    # The last start runs to the end.
    proc = start()
    assert proc.wait(180) == 0, (tmp_path / "watch.log").read_text()[-3000:]
    log.close()

    with Store(store) as s, s.transaction() as cur:
        alerts = load_alerts(s, cur)
        done = s.fetch(cur, "SELECT area, COUNT(*) AS n FROM watch_scenes GROUP BY area")
        runs = s.fetch(cur, "SELECT area, COUNT(*) AS n FROM runs GROUP BY area")
        sent = s.fetch(cur, "SELECT alert_id, event, delivered_at FROM deliveries")
    assert sorted((a.area, a.state, a.confidence) for a in alerts) == [
        ("wadi", "raised", "confirmed"), ("wadi-strict", "raised", "confirmed"),
    ]  # fmt: skip
    assert {r["area"]: r["n"] for r in done} == {"wadi": 3, "wadi-strict": 3}
    assert {r["area"]: r["n"] for r in runs} == {"wadi": 3, "wadi-strict": 3}
    assert len(sent) == 3 and all(r["delivered_at"] for r in sent)
    keys = hook.keys()
    assert sorted(set(keys)) == sorted(f"{r['alert_id']}:{r['event']}" for r in sent)
    # Every message reached the receiver once, except the one whose POST was cut by kill 3: it
    # is sent again with the same Idempotency-Key and the next attempt number (at-least-once
    # in that window; a receiver keyed on it keeps one copy).
    repeats = {k: keys.count(k) for k in set(keys) if keys.count(k) > 1}
    assert repeats == {held: 2}
    again = [r.body for r in hook.received if r.key == held]
    assert again[0]["delivery_id"] == again[1]["delivery_id"]
    assert again[1]["attempt"] == again[0]["attempt"] + 1
    assert len(hook.accepted) == 3
    hook.stop()


def test_bad_input_is_one_line(zones, tmp_path, capsys):
    area, conc, _ = zones
    store = f"sqlite:///{tmp_path / 'w.sqlite'}"
    base = ["watch", "add", "x", "--store", store, "--stac-url", "http://127.0.0.1:1/"]
    assert main([*base, "--area", str(tmp_path / "missing.geojson")]) == 2
    assert capsys.readouterr().err.startswith("error [FILE_NOT_FOUND]")
    assert main([*base, "--area", str(area), "--confirm-views", "0"]) == 2
    assert "confirm_views must be >= 1" in capsys.readouterr().err
    # A mistyped store is an error for list and remove, not an empty database made on the way.
    for cmd in (["watch", "list"], ["watch", "remove", "x"]):
        assert main([*cmd, "--store", store]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error [FILE_NOT_FOUND]: ") and "no monitoring store" in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "w.sqlite").exists()
    # add makes the store and says so, once.
    assert main([*base, "--area", str(area), "--since", "2020-01-01"]) == 0
    assert "note: created a new monitoring store" in capsys.readouterr().err
    assert main(["watch", "remove", "nowhere", "--store", store]) == 2
    assert "no watched area named nowhere" in capsys.readouterr().err
    # An unreachable STAC API stops that area's pass only; the command says so and exits 2.
    assert main(["watch", "add", "y", *base[3:], "--area", str(area)]) == 0
    assert "created a new monitoring store" not in capsys.readouterr().err
    args = ["watch", "run", "--store", store, "--server", "127.0.0.1:1", "--data-dir",
            str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert [line.split(":")[0] for line in lines] == ["error [UNREACHABLE]"] * 2
    assert "x: cannot reach http://127.0.0.1:1/" in lines[0] and "Traceback" not in err
    assert main(["watch", "list", "--store", store]) == 0
    out = capsys.readouterr().out
    assert out.count("0 acquisitions") == 2 and "last seen -" in out
    # run may start a store of its own (cron before any add), but it says so.
    other = f"sqlite:///{tmp_path / 'new.sqlite'}"
    assert main(["watch", "run", "--store", other, *args[4:]]) == 0
    captured = capsys.readouterr()
    assert "note: created a new monitoring store" in captured.err
    assert "new.sqlite" in captured.err and (tmp_path / "new.sqlite").is_file()


def test_loop_survives_failing_passes_and_stops_on_sigterm(zones, tmp_path):
    area = zones[0]
    store = f"sqlite:///{tmp_path / 'loop.sqlite'}"
    assert main(["watch", "add", "x", "--store", store, "--stac-url", "http://127.0.0.1:1/",
                 "--area", str(area), "--cadence-hours", "0"]) == 0  # fmt: skip
    cmd = [sys.executable, "-m", "asmspotter.cli", "watch", "run", "--loop", "--interval", "0.2",
           "--store", store, "--server", "127.0.0.1:1", "--data-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = 0
    while errors < 2:  # two passes, each failing on the unreachable STAC API
        line = proc.stderr.readline()
        assert line, proc.stdout.read()
        errors += line.startswith("error [")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
