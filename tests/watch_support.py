"""Acquisitions for the early-warning tests: the real L2A tile (29RKH, 2020-02-19, 100 m pixels)
with ponds painted in (the water reflectance of ``tests.service_support``) and SCL clouds, as
STAC items a real STAC API serves; ``WaterIndexModel`` behind a real gRPC server detects them.

Sites (WGS84 squares of ~500 m, inside the watched area, on clear bare ground of the real tile):
P1 in a concession, P2 and P3 outside; N1 (new, outside concessions) and N2 (new, inside the
concession) appear on the second date, N3 (outside) on a fourth. Second date: P2 under cloud, P1
under cloud shadow, P3 filled in (gone on clear ground). Third date: everything clear again, P3
still gone.
"""

from __future__ import annotations

import json
from pathlib import Path

from shapely.geometry import box, mapping

from monitoring.testing.stac_server import derive_item, item_from_folder
from tests.service_support import WATER

AREA = box(-11.675, 24.525, -11.525, 24.675)
CONCESSION = box(-11.67, 24.58, -11.62, 24.665)
PROTECTED = box(-11.545, 24.53, -11.53, 24.545)  # a reserve with no site in it
HALF = 0.0024  # degrees: ~5 x 5 px of 100 m


def square(lon: float, lat: float, half: float = HALF):
    return box(lon - half, lat - half, lon + half, lat + half)


SITES = {
    "P1": square(-11.64, 24.64),
    "P2": square(-11.56, 24.64),
    "P3": square(-11.56, 24.56),
    "N1": square(-11.60, 24.555),
    "N2": square(-11.65, 24.60),
    "N3": square(-11.59, 24.64),
}
WATER_DN = {
    key: int(round(v * 10000))
    for key, v in zip(("blue", "green", "red", "nir", "swir16", "swir22"), WATER, strict=True)
}
DATES = ("2020-02-19T11:34:25Z", "2020-03-05T11:34:25Z", "2020-03-10T11:34:21Z")
FOURTH = "2020-03-15T11:34:25Z"  # N3 appears (the review tests need a third alert)


def build_acquisitions(l2a_dir: Path, work: Path) -> list[dict]:
    """The three acquisitions (STAC item dicts), oldest first."""
    base = item_from_folder(l2a_dir)
    ponds = [("P1", "P2", "P3"), ("P1", "P2", "N1", "N2"), ("P1", "P2", "N1", "N2")]
    clouds = [[], [(SITES["P2"].buffer(0.01), 9), (SITES["P1"].buffer(0.008), 3)], []]
    items = []
    for k, (when, names, scl) in enumerate(zip(DATES, ponds, clouds, strict=True)):
        items.append(
            derive_item(
                base,
                work / f"t{k + 1}",
                f"S2A_29RKH_{when[:10].replace('-', '')}_W{k + 1}_L2A",
                when,
                paint=[(SITES[n], WATER_DN) for n in names],
                scl=scl,
            )
        )
    return items


def write_polygons(path: Path, geoms: list, names: list[str]) -> Path:
    feats = [
        {"type": "Feature", "properties": {"name": n}, "geometry": mapping(g)}
        for g, n in zip(geoms, names, strict=True)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def fourth_acquisition(l2a_dir: Path, work: Path) -> dict:
    return derive_item(
        item_from_folder(l2a_dir),
        work / "t4",
        "S2A_29RKH_20200315_W4_L2A",
        FOURTH,
        paint=[(SITES[n], WATER_DN) for n in ("P1", "P2", "N1", "N2", "N3")],
    )


def start_detection_server() -> object:
    """A real gRPC detection server with the NDWI rule model; ``.port``; ``.stop(grace)``."""
    from service.server import DetectionServer, ServerConfig
    from tests.service_support import WaterIndexModel

    model = WaterIndexModel(chip_size=64)
    model.info["gsd_m"] = 100.0  # a rule, not a trained net: it reads the 100 m sample as is
    srv = DetectionServer(ServerConfig(address="127.0.0.1:0"), model=model)
    srv.start()
    srv.load()
    return srv
