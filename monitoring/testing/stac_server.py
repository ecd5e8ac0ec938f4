"""A real STAC API on 127.0.0.1: stac-fastapi-pgstac over pgstac in a throwaway PostgreSQL.

``build_items`` turns the real Earth Search tile folder into STAC items whose asset hrefs are local
file paths (with proj:shape/transform read from the files) and derives a second, modified date
(other DNs, a cloud and a shadow patch in SCL) so a composite has something to take a median of.
``derive_item`` makes further acquisitions from an item's files (painted changes, SCL clouds) and
``StacServer.add_items`` publishes them while the server runs.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from monitoring.testing.postgres import Cluster, free_port

COLLECTION = "sentinel-2-l2a"
L2A_NAME = "S2A_29RKH_20200219_0_L2A"
KEEP_ASSETS = ("blue", "green", "red", "nir", "swir16", "swir22", "scl")
SECOND_DATE = "2020-03-05T11:34:25.405000Z"
CLOUD_BOX = (slice(100, 220), slice(150, 300))  # SCL pixels (rows, cols) set to 9 (cloud)
SHADOW_BOX = (slice(300, 360), slice(50, 140))  # ... set to 3 (cloud shadow)


def item_from_folder(folder: Path) -> dict[str, Any]:
    src = next(p for p in folder.glob("*.json") if "assets" in json.loads(p.read_text()))
    item = json.loads(src.read_text())
    item["collection"] = COLLECTION
    item["links"] = []
    assets = {}
    for key in KEEP_ASSETS:
        asset = item["assets"][key]
        path = folder / Path(asset["href"]).name
        with rasterio.open(path) as ds:
            asset["proj:shape"] = [ds.height, ds.width]
            asset["proj:transform"] = list(ds.transform)[:6]
        asset["href"] = path.resolve().as_uri()
        assets[key] = asset
    item["assets"] = assets
    return item


Change = Callable[[str, np.ndarray, Any, Path], np.ndarray]  # (asset key, band, dataset, path)


def _rewrite(item: dict[str, Any], new: dict[str, Any], out_dir: Path, change: Change) -> dict:
    """Write every asset of ``item`` through ``change`` into ``out_dir``; ``new`` points at them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, asset in new["assets"].items():
        src_path = Path(item["assets"][key]["href"].removeprefix("file://"))
        with rasterio.open(src_path) as src:
            data = change(key, src.read(1), src, src_path)
            profile = src.profile
        dst_path = out_dir / src_path.name
        profile.update(driver="GTiff")
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data, 1)
        asset["href"] = dst_path.resolve().as_uri()
    return new


def derive_second_date(item: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """A modified copy of ``item``: DN x 1.1 + 37 and cloud/shadow patches, on a later date."""
    second = copy.deepcopy(item)
    second["id"] = item["id"].replace("20200219", "20200305")
    second["properties"]["datetime"] = SECOND_DATE

    def change(key: str, data: np.ndarray, src: Any, path: Path) -> np.ndarray:
        if key == "scl":
            data = data.copy()
            data[CLOUD_BOX] = 9
            data[SHADOW_BOX] = 3
            return data
        out = np.clip(np.rint(data.astype(np.float64) * 1.1 + 37), 0, 65535).astype(np.uint16)
        out[item_nodata(path)] = 0
        return out

    return _rewrite(item, second, out_dir, change)


def derive_item(
    item: dict[str, Any],
    out_dir: Path,
    item_id: str,
    when: str,
    paint: list[tuple[Any, dict[str, int]]] = (),
    scl: list[tuple[Any, int]] = (),
) -> dict[str, Any]:
    """A new acquisition made from ``item``'s files: ``paint`` [(WGS84 polygon, {asset: DN})]
    writes those DNs under each polygon (e.g. a pond dug since), ``scl`` [(polygon, class)] sets
    the scene classification there (9 cloud, 3 shadow, 0 no data). Published ``created`` now."""
    from rasterio.features import geometry_mask

    from imagery.geometry import WGS84, reproject

    new = copy.deepcopy(item)
    new["id"] = item_id
    new["properties"]["datetime"] = when
    new["properties"]["created"] = datetime.now(UTC).isoformat()

    def change(key: str, data: np.ndarray, src: Any, path: Path) -> np.ndarray:
        changes = [(g, v[key]) for g, v in paint if key in v] if key != "scl" else list(scl)
        for geom, value in changes:
            local = reproject(geom, WGS84, src.crs)
            inside = ~geometry_mask([local], data.shape, src.transform, all_touched=True)
            data[inside & (data > 0) if key != "scl" else inside] = value
        return data

    return _rewrite(item, new, out_dir, change)


def item_nodata(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1) == 0


def build_items(folder: Path, work: Path) -> list[dict[str, Any]]:
    first = item_from_folder(folder)
    return [first, derive_second_date(first, work / "second")]


def collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    bbox = np.array([i["bbox"] for i in items])
    dates = sorted(i["properties"]["datetime"] for i in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "Sentinel-2 L2A test items (local files)",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[*bbox[:, :2].min(0).tolist(), *bbox[:, 2:].max(0).tolist()]]},
            "temporal": {"interval": [[dates[0], dates[-1]]]},
        },
    }


def load_pgstac(dsn: str, items: list[dict[str, Any]]) -> None:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods
    from pypgstac.migrate import Migrate

    with PgstacDB(dsn=dsn) as db:
        Migrate(db).run_migration()
    with PgstacDB(dsn=dsn) as db:
        loader = Loader(db)
        loader.load_collections(iter([collection(items)]), Methods.upsert)
        loader.load_items(iter(items), Methods.upsert)


class StacServer:
    """stac-fastapi-pgstac under uvicorn on 127.0.0.1, serving ``items``."""

    def __init__(self, cluster: Cluster, items: list[dict[str, Any]], log: Path) -> None:
        db = f"stac{free_port()}"
        self.dsn = cluster.create_db(db)
        load_pgstac(self.dsn, items)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PGUSER": cluster.user,
            "PGPASSWORD": "unused",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(cluster.port),
            "PGDATABASE": db,
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "2",
        }
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "stac_fastapi.pgstac.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],  # fmt: skip
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait()

    def add_items(self, items: list[dict[str, Any]]) -> None:
        """Publish more items (e.g. a new acquisition between two passes of ``watch run``)."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_items(iter(items), Methods.upsert)

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"STAC server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/collections", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("STAC server did not answer in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def write_demo_items(folder: Path) -> int:
    """The two test items of the real L2A tile as item files with local asset paths."""
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    items = build_items(data / "sentinel-l2a-grd-riotilerpds" / L2A_NAME, folder / "assets")
    for item in items:
        for asset in item["assets"].values():
            asset["href"] = asset["href"].removeprefix("file://")
        (folder / f"{item['id']}.json").write_text(json.dumps(item, indent=1))
    print(f"wrote {len(items)} STAC items with local assets: {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m monitoring.testing.stac_server SOURCE``: serve STAC items as a local STAC API.

    SOURCE is anything ``asmspotter fetch --stac`` reads as static STAC (item files, a folder or
    glob of them, an item collection, a catalog); ``--demo`` serves the two test items built from
    the real L2A tile in ../shared/data (``--demo --write-items DIR`` writes them as static
    item files instead and exits). Serving needs PostgreSQL + PostGIS (tests/setup/
    system_packages.sh) and the dev extra (stac-fastapi-pgstac, pypgstac, uvicorn). Prints the
    URL, serves until Ctrl-C or SIGTERM, then removes its database.
    """
    import argparse
    import signal
    import tempfile

    from monitoring.stac_source import _static_items, describe
    from monitoring.testing.postgres import pg_bindir, start_cluster

    parser = argparse.ArgumentParser(prog="python -m monitoring.testing.stac_server")
    parser.add_argument("source", nargs="?", help="static STAC items to serve")
    parser.add_argument("--demo", action="store_true", help="serve the real-tile test items")
    parser.add_argument(
        "--write-items",
        type=Path,
        metavar="DIR",
        help="with --demo: write the items as static STAC files in DIR (local asset paths) and "
        "exit: no database, no server",
    )
    args = parser.parse_args(argv)
    if args.write_items:
        if not args.demo:
            parser.error("--write-items writes the --demo items")
        return write_demo_items(args.write_items)
    if pg_bindir() is None:
        print("error: PostgreSQL + PostGIS not installed (tests/setup/system_packages.sh)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="stac-"))
    if args.demo:
        data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
        items = build_items(
            data / "sentinel-l2a-grd-riotilerpds" / "S2A_29RKH_20200219_0_L2A", work
        )
    elif args.source:
        found = list(_static_items(args.source, describe(args.source)))
        for item in found:
            item.make_asset_hrefs_absolute()
        items = [{**i.to_dict(), "collection": COLLECTION, "links": []} for i in found]
    else:
        parser.error("give SOURCE or --demo")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a plain `kill` cleans up too
    try:
        cluster = start_cluster()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"error: cannot start PostgreSQL ({exc})", file=sys.stderr)
        return 2
    try:
        server = StacServer(cluster, items, work / "stac.log")
    except BaseException:
        cluster.stop()
        raise
    print(
        f"STAC API with {len(items)} item(s) in collection {COLLECTION}: {server.url}", flush=True
    )
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
