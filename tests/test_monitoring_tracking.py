"""Monitoring over time with the Amazon Mining Watch 2018 and 2024 polygons, on both stores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import box

from imagery.vector import Features, read_features
from monitoring.monitor import mined_area_series, record_run
from monitoring.store import Store
from tests.real_parts import missing

from .conftest import SHARED_DATA

AMW = SHARED_DATA / "amazon-mining-watch" / "outputs" / "website"
REGION = box(-56.5, -6.25, -56.25, -6.0)  # Tapajós, ~100 sites per year
TOL, MIN_OVERLAP, GROW = 20.0, 0.01, 0.2


def _proj(tr: Transformer, g):
    return shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _clip(name: str) -> Features:
    path = AMW / name
    if not path.exists():
        missing(f"{path} is absent")
    f = read_features(path)
    kept = [(g.intersection(REGION), p) for g, p in zip(f.geometries, f.properties, strict=True)]
    kept = [(g, p) for g, p in kept if g.area > 0]
    return Features([g for g, _ in kept], [p for _, p in kept], f.crs)


@pytest.fixture(scope="module")
def years() -> tuple[Features, Features]:
    return _clip("mining_201800_simplified.geojson"), _clip("mining_202400_simplified.geojson")


@pytest.fixture(params=["sqlite", "postgis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.sqlite'}"
    cluster = request.getfixturevalue("postgis_cluster")
    return cluster.create_db(f"mon_{tmp_path.name[-20:].lower().replace('-', '_')}")


def _expected(a: Features, b: Features) -> dict:
    """The tracking rules, computed here directly with shapely and pyproj."""
    c = shapely.union_all(a.geometries).centroid
    utm = CRS.from_epsg(32700 + int((c.x + 180) // 6) + 1)
    tr = Transformer.from_crs(4326, utm, always_xy=True)
    A = [_proj(tr, g) for g in a.geometries]
    B = [_proj(tr, g) for g in b.geometries]
    Ab, Bb = [g.buffer(TOL / 2) for g in A], [g.buffer(TOL / 2) for g in B]
    pairs = []
    for i, j in itertools.product(range(len(A)), range(len(B))):
        inter = Ab[i].intersection(Bb[j]).area
        if inter > 0 and inter / min(Ab[i].area, Bb[j].area) >= MIN_OVERLAP:
            pairs.append((inter, i, j))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    a_to_b, b_to_a = {}, {}
    for _, i, j in pairs:
        if i not in a_to_b and j not in b_to_a:
            a_to_b[i], b_to_a[j] = j, i
    touched_a, touched_b = {i for _, i, _ in pairs}, {j for _, _, j in pairs}
    status = {}
    for j in range(len(B)):
        if j in b_to_a:
            grown = B[j].area >= (1 + GROW) * A[b_to_a[j]].area
            status[("b", j)] = "grown" if grown else "unchanged"
        else:
            status[("b", j)] = "split" if j in touched_b else "new"
    for i in range(len(A)):
        if i not in a_to_b:
            status[("a", i)] = "merged" if i in touched_a else "gone"
    area = {("b", j): B[j].area for j in range(len(B))} | {
        ("a", i): A[i].area for i in range(len(A))
    }
    return {
        "status": status,
        "area": area,
        "mined": (shapely.union_all(A).area, shapely.union_all(B).area),
        "a_to_b": a_to_b,
    }


def test_two_dates_match_shapely(years, store_url):
    a, b = years
    exp = _expected(a, b)
    with Store(store_url) as store:
        first = record_run(
            store,
            "tapajos",
            "amw-2018",
            "2018-01-01",
            a,
            model_version="amw",
            weights_sha256="none",
        )
        second = record_run(
            store, "tapajos", "amw-2024", "2024-01-01", b, model_version="amw",
            weights_sha256="none", grow_fraction=GROW, min_overlap=MIN_OVERLAP, tolerance_m=TOL,
        )  # fmt: skip
        assert first.counts["new"] == len(a.geometries)
        want = {s: sum(v == s for v in exp["status"].values()) for s in second.counts}
        assert second.counts == want
        assert want["new"] > 10 and want["gone"] > 10 and want["grown"] >= 1
        assert want["unchanged"] >= 1
        obs = {o.site_id: o for o in store.observations(second.run_id)}
        first_ids = {o.site_id for o in store.observations(first.run_id)}
        for status in ("new", "grown", "gone"):
            got = sum(o.area_m2 for o in obs.values() if o.status == status)
            keys = [k for k, v in exp["status"].items() if v == status]
            assert got == pytest.approx(sum(exp["area"][k] for k in keys), rel=1e-6)
        # Stable IDs: matched sites keep their 2018 id; new ones get fresh ids.
        assert {o.site_id for o in obs.values() if o.status in ("grown", "unchanged")} <= first_ids
        assert not {o.site_id for o in obs.values() if o.status in ("new", "split")} & first_ids
        series = dict(mined_area_series(store, "tapajos"))
        assert series["2018-01-01"] == pytest.approx(exp["mined"][0], rel=1e-6)
        assert series["2024-01-01"] == pytest.approx(exp["mined"][1], rel=1e-6)
        assert second.mined_area_m2 == pytest.approx(exp["mined"][1], rel=1e-6)
        # Re-running the same scene and date replaces the run: no duplicate runs or sites.
        sites_before = store.site_count("tapajos")
        again = record_run(
            store, "tapajos", "amw-2024", "2024-01-01", b, model_version="amw",
            weights_sha256="none", grow_fraction=GROW, min_overlap=MIN_OVERLAP, tolerance_m=TOL,
        )  # fmt: skip
        assert again.rerun and again.run_id == second.run_id and again.counts == second.counts
        assert store.site_count("tapajos") == sites_before
        assert len(store.runs("tapajos")) == 2
        assert len(store.observations(second.run_id)) == len(obs)


def test_compliance_any_crs(years, store_url):
    a, _ = years
    # A concession in Web Mercator over the western half, a protected area in WGS84 in the east.
    west = box(-56.5, -6.25, -56.375, -6.0)
    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    concessions = Features([_proj(tr, west)], [{"name": "C-1"}],
                           CRS.from_epsg(3857))  # fmt: skip
    reserve = box(-56.3, -6.25, -56.25, -6.0)
    protected = Features([reserve], [{"name": "Reserve"}], CRS.from_epsg(4326))
    with Store(store_url) as store:
        run = record_run(
            store, "tapajos", "amw-2018", "2018-01-01", a, concessions=concessions,
            protected=protected, model_version="amw", weights_sha256="none",
        )  # fmt: skip
        obs = store.observations(run.run_id)
    c = shapely.union_all(a.geometries).centroid
    utm = Transformer.from_crs(4326, 32700 + int((c.x + 180) // 6) + 1, always_xy=True)
    west_u, reserve_u = (_proj(utm, g) for g in (west, reserve))
    kinds = set()
    for o in obs:
        g = _proj(utm, o.geometry)
        c_frac, p_frac = (
            g.intersection(west_u).area / g.area,
            g.intersection(reserve_u).area / g.area,
        )
        assert o.concession_fraction == pytest.approx(c_frac, abs=2e-3)
        assert o.protected_fraction == pytest.approx(p_frac, abs=2e-3)
        want = (
            "protected_area" if p_frac > 1e-6
            else "inside_concession" if c_frac >= 0.5 else "outside_concessions"
        )  # fmt: skip
        assert o.compliance == want
        kinds.add(o.compliance)
    assert kinds == {"protected_area", "inside_concession", "outside_concessions"}
    assert run.alerts == sum(o.compliance != "inside_concession" for o in obs)


def test_concurrent_runs_get_distinct_site_ids(years, store_url):
    """Two users recording the same area at once: no clash of site numbers, nothing lost."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = years
    Store(store_url).close()  # create the schema once

    def record(args):
        scene, features = args
        with Store(store_url) as store:
            return record_run(
                store,
                "shared",
                scene,
                "2024-01-01",
                features,
                model_version="m",
                weights_sha256="h",
            )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(record, [("s1", a), ("s2", b)]))
    ids = [set(r.statuses) for r in results]
    assert not ids[0] & ids[1]
    assert sum(len(i) for i in ids) == len(a.geometries) + len(b.geometries)
    with Store(store_url) as store:
        assert store.site_count("shared") == len(a.geometries) + len(b.geometries)
