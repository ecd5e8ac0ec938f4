"""Where monitoring runs and sites live: embedded SQLite by default, PostGIS for many users.

One code path for both: the URL picks a small dialect (placeholder, geometry in/out expressions,
id column); every query is written once. Geometries are stored in WGS84 (SQLite: WKB blobs;
PostGIS: ``geometry(Geometry, 4326)`` with a GiST index). URLs: ``sqlite:///path/monitor.sqlite``
(or a bare path) and ``postgresql://user@host:port/db`` (libpq form, unix sockets allowed).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason


@dataclass(frozen=True)
class Dialect:
    param: str
    id_column: str
    geom_type: str
    geom_in: str
    geom_out: str
    extra_ddl: tuple[str, ...] = ()


SQLITE = Dialect("?", "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "?", "geom")
POSTGIS = Dialect(
    "%s",
    "SERIAL PRIMARY KEY",
    "geometry(Geometry, 4326)",
    "ST_GeomFromWKB(%s, 4326)",
    "ST_AsBinary(geom)",
    ("CREATE INDEX IF NOT EXISTS observations_geom_idx ON observations USING GIST (geom)",),
)

RUN_FIELDS = (
    "area", "scene_id", "date", "model_version", "weights_sha256", "tile", "source", "crs",
    "created",
)  # fmt: skip
OBS_FIELDS = (
    "run_id", "site_id", "status", "area_m2", "previous_area_m2", "compliance",
    "concession_fraction", "protected_fraction", "concessions", "protected_areas", "score",
)  # fmt: skip


def _schema(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS runs (
            id {d.id_column}, area TEXT NOT NULL, scene_id TEXT NOT NULL, date TEXT NOT NULL,
            model_version TEXT, weights_sha256 TEXT, tile TEXT, source TEXT, crs TEXT,
            created TEXT, UNIQUE (area, scene_id, date))""",
        """CREATE TABLE IF NOT EXISTS sites (
            area TEXT NOT NULL, site_id TEXT NOT NULL, number INTEGER NOT NULL,
            first_run INTEGER NOT NULL REFERENCES runs(id), PRIMARY KEY (area, site_id))""",
        f"""CREATE TABLE IF NOT EXISTS observations (
            run_id INTEGER NOT NULL REFERENCES runs(id), site_id TEXT NOT NULL,
            status TEXT NOT NULL, area_m2 DOUBLE PRECISION, previous_area_m2 DOUBLE PRECISION,
            compliance TEXT, concession_fraction DOUBLE PRECISION,
            protected_fraction DOUBLE PRECISION, concessions TEXT, protected_areas TEXT,
            score DOUBLE PRECISION, geom {d.geom_type}, PRIMARY KEY (run_id, site_id))""",
        *_watch_schema(d),
        *d.extra_ddl,
    ]


def _watch_schema(d: Dialect) -> list[str]:
    """Early warning (``asmspotter watch``): watched areas, processed acquisitions, per-site
    state (confidence, last clear view, review), alerts and their webhook outbox, reviews."""
    return [
        f"""CREATE TABLE IF NOT EXISTS watch_areas (
            name TEXT PRIMARY KEY, geom {d.geom_type}, config TEXT NOT NULL, created TEXT,
            last_seen TEXT, last_checked TEXT)""",
        """CREATE TABLE IF NOT EXISTS watch_scenes (
            area TEXT NOT NULL, acquisition_id TEXT NOT NULL, acquired TEXT NOT NULL,
            items TEXT, published TEXT, run_id INTEGER, tile TEXT,
            clear_fraction DOUBLE PRECISION, started TEXT, done TEXT,
            PRIMARY KEY (area, acquisition_id))""",
        """CREATE TABLE IF NOT EXISTS site_state (
            area TEXT NOT NULL, site_id TEXT NOT NULL, label TEXT, confidence TEXT,
            clear_views INTEGER NOT NULL DEFAULT 0, first_seen TEXT, last_seen TEXT,
            last_clear TEXT, last_clear_scene TEXT, last_clear_tile TEXT, review TEXT,
            review_reason TEXT, reviewed_at TEXT, PRIMARY KEY (area, site_id))""",
        f"""CREATE TABLE IF NOT EXISTS alerts (
            alert_id TEXT PRIMARY KEY, area TEXT NOT NULL, site_id TEXT NOT NULL,
            kind TEXT NOT NULL, state TEXT NOT NULL, confidence TEXT NOT NULL,
            compliance TEXT, run_id INTEGER, scene_id TEXT, date TEXT, acquired TEXT,
            published TEXT, detected TEXT, raised_at TEXT, confirmed_at TEXT,
            withdrawn_at TEXT, views INTEGER NOT NULL DEFAULT 1, facts TEXT,
            geom {d.geom_type})""",
        """CREATE TABLE IF NOT EXISTS deliveries (
            alert_id TEXT NOT NULL REFERENCES alerts(alert_id), event TEXT NOT NULL,
            created TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_attempt TEXT,
            last_error TEXT, lease_owner TEXT, lease_until TEXT, delivered_at TEXT,
            PRIMARY KEY (alert_id, event))""",
        f"""CREATE TABLE IF NOT EXISTS reviews (
            area TEXT NOT NULL, site_id TEXT NOT NULL, alert_id TEXT, task_id INTEGER NOT NULL,
            annotation_id INTEGER NOT NULL, decision TEXT NOT NULL, reason TEXT, label TEXT,
            reviewer TEXT, reviewed_at TEXT, geom {d.geom_type},
            PRIMARY KEY (task_id, annotation_id))""",
    ]


@dataclass
class Run:
    id: int
    area: str
    scene_id: str
    date: str
    model_version: str | None
    weights_sha256: str | None
    tile: str | None
    source: str | None
    crs: str | None
    created: str | None


@dataclass
class Observation:
    run_id: int
    site_id: str
    status: str
    area_m2: float
    previous_area_m2: float | None
    compliance: str | None
    concession_fraction: float | None
    protected_fraction: float | None
    concessions: str | None
    protected_areas: str | None
    score: float | None
    geometry: BaseGeometry  # WGS84


def user_data_dir() -> Path:
    """Where monitoring keeps its files by default (never the current folder):
    ``$XDG_DATA_HOME/asmspotter``, i.e. ``~/.local/share/asmspotter``."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "asmspotter"


def default_store_url() -> str:
    """``$ASMSPOTTER_STORE``, else SQLite in the user's data folder:
    ``$XDG_DATA_HOME/asmspotter/monitor.sqlite`` (``~/.local/share/asmspotter/...``)."""
    if url := os.environ.get("ASMSPOTTER_STORE"):
        return url
    return f"sqlite:///{user_data_dir() / 'monitor.sqlite'}"


def store_label(url: str) -> str:
    """The store's URL without a password, for messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL (or a bare path); INVALID_ARGUMENT for other schemes."""
    if "://" in url and not url.startswith("sqlite:///"):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"unknown store URL {store_label(url)!r}; use sqlite:///PATH or postgresql://...",
        )
    return Path(url.removeprefix("sqlite:///"))


def check_store_url(url: str) -> None:
    """Refuse a malformed store URL before any work is done."""
    if not url.startswith(("postgresql://", "postgres://")):
        sqlite_path(url)


class Store:
    """A monitoring database opened from a URL; use as a context manager or call close().

    ``create=False`` (reports, reading) refuses a SQLite path that does not exist instead of
    creating an empty database: a mistyped ``--store`` is an error, not "no runs".
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.created = False
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as exc:
                raise AsmSpotterError(
                    Reason.INVALID_ARGUMENT,
                    "PostGIS stores need psycopg: pip install 'asmspotter[monitor]'",
                ) from exc
            try:
                self._conn = psycopg.connect(url, autocommit=False)
            except psycopg.Error as exc:
                raise AsmSpotterError(
                    Reason.INVALID_ARGUMENT, f"cannot connect to {url}: {exc}".splitlines()[0]
                ) from exc
            self.dialect = POSTGIS
            with self._conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        else:
            path = sqlite_path(url)
            if not path.is_file():
                if not create:
                    raise AsmSpotterError(
                        Reason.FILE_NOT_FOUND,
                        "no monitoring store here (`asmspotter monitor run` or `watch add` "
                        "creates one); check --store or $ASMSPOTTER_STORE",
                        str(path),
                    )
                self.created = True
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=60)
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.dialect = SQLITE
        with self.transaction() as cur:
            for ddl in _schema(self.dialect):
                cur.execute(ddl)

    def _sql(self, text: str) -> str:
        return text.replace("{p}", self.dialect.param).replace("{g}", self.dialect.geom_in)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            yield cur
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        finally:
            cur.close()

    def execute(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def fetch(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts; a ``geom`` column (select it as ``{geom} AS geom``) becomes shapely."""
        cur = self.execute(cur, sql.replace("{geom}", self.dialect.geom_out), params)
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for row in rows:
            if row.get("geom") is not None:
                row["geom"] = shapely.from_wkb(bytes(row["geom"]))
        return rows

    @staticmethod
    def wkb(geom: BaseGeometry | None) -> bytes | None:
        """A geometry as the parameter of a ``{g}`` placeholder."""
        return None if geom is None else shapely.to_wkb(geom, output_dimension=2)

    def lock_area(self, cur: Any, area: str) -> None:
        """Serialise runs of one area across users until the transaction ends (PostGIS)."""
        if self.dialect is POSTGIS:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (area,))
        # SQLite: the first write takes the database lock; others wait (timeout below).

    # runs ------------------------------------------------------------------------------------
    def find_run(self, cur: Any, area: str, scene_id: str, date: str) -> Run | None:
        rows = self.execute(
            cur,
            f"SELECT id, {', '.join(RUN_FIELDS)} FROM runs "
            "WHERE area = {p} AND scene_id = {p} AND date = {p}",
            (area, scene_id, date),
        ).fetchall()
        return Run(*rows[0]) if rows else None

    def upsert_run(self, cur: Any, **meta: Any) -> tuple[Run, bool]:
        """Insert a run, or reuse (and clear) the one with the same area, scene and date."""
        meta = {**meta, "created": datetime.now(UTC).isoformat(timespec="seconds")}
        existing = self.find_run(cur, meta["area"], meta["scene_id"], meta["date"])
        values = [meta.get(f) for f in RUN_FIELDS]
        if existing is None:
            cols = ", ".join(RUN_FIELDS)
            marks = ", ".join(["{p}"] * len(RUN_FIELDS))
            self.execute(cur, f"INSERT INTO runs ({cols}) VALUES ({marks})", values)
            run = self.find_run(cur, meta["area"], meta["scene_id"], meta["date"])
            assert run is not None
            return run, False
        sets = ", ".join(f"{f} = {{p}}" for f in RUN_FIELDS)
        self.execute(cur, f"UPDATE runs SET {sets} WHERE id = {{p}}", [*values, existing.id])
        self.execute(cur, "DELETE FROM observations WHERE run_id = {p}", (existing.id,))
        self.execute(
            cur,
            "DELETE FROM sites WHERE first_run = {p} AND site_id NOT IN "
            "(SELECT site_id FROM observations o JOIN runs r ON r.id = o.run_id "
            "WHERE r.area = {p})",
            (existing.id, existing.area),
        )
        run = self.find_run(cur, meta["area"], meta["scene_id"], meta["date"])
        assert run is not None
        return run, True

    def runs(self, area: str | None = None) -> list[Run]:
        with self.transaction() as cur:
            where, params = ("WHERE area = {p} ", (area,)) if area else ("", ())
            rows = self.execute(
                cur,
                f"SELECT id, {', '.join(RUN_FIELDS)} FROM runs {where}ORDER BY date, id",
                params,
            ).fetchall()
        return [Run(*r) for r in rows]

    def previous_run(self, cur: Any, area: str, date: str) -> Run | None:
        rows = self.execute(
            cur,
            f"SELECT id, {', '.join(RUN_FIELDS)} FROM runs WHERE area = {{p}} AND date < {{p}} "
            "ORDER BY date DESC, id DESC LIMIT 1",
            (area, date),
        ).fetchall()
        return Run(*rows[0]) if rows else None

    # sites and observations --------------------------------------------------------------------
    def new_site_ids(self, cur: Any, area: str, run_id: int, count: int) -> list[str]:
        row = self.execute(
            cur, "SELECT COALESCE(MAX(number), 0) FROM sites WHERE area = {p}", (area,)
        ).fetchone()
        start = int(row[0]) + 1
        ids = []
        for number in range(start, start + count):
            site_id = f"S{number:05d}"
            self.execute(
                cur,
                "INSERT INTO sites (area, site_id, number, first_run) VALUES ({p}, {p}, {p}, {p})",
                (area, site_id, number, run_id),
            )
            ids.append(site_id)
        return ids

    def add_observations(self, cur: Any, rows: Sequence[dict[str, Any]]) -> None:
        cols = ", ".join((*OBS_FIELDS, "geom"))
        marks = ", ".join(["{p}"] * len(OBS_FIELDS) + ["{g}"])
        sql = self._sql(f"INSERT INTO observations ({cols}) VALUES ({marks})")
        params = [(*(r.get(f) for f in OBS_FIELDS), self.wkb(r["geometry"])) for r in rows]
        if params:
            cur.executemany(sql, params)

    def observations(self, run_id: int, cur: Any = None) -> list[Observation]:
        sql = (
            f"SELECT {', '.join(OBS_FIELDS)}, {self.dialect.geom_out} FROM observations "
            "WHERE run_id = {p} ORDER BY site_id"
        )
        if cur is None:
            with self.transaction() as own:
                rows = self.execute(own, sql, (run_id,)).fetchall()
        else:
            rows = self.execute(cur, sql, (run_id,)).fetchall()
        return [Observation(*r[:-1], shapely.from_wkb(bytes(r[-1]))) for r in rows]

    def site_count(self, area: str) -> int:
        with self.transaction() as cur:
            row = self.execute(cur, "SELECT COUNT(*) FROM sites WHERE area = {p}", (area,))
            return int(row.fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
