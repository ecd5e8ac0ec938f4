"""Batch submission: a directory, glob or list of GeoTIFFs through the server with bounded
concurrency, a progress bar, per-tile errors that do not stop the batch, and a resumable manifest.

Output folder: ``manifest.jsonl`` (one line per finished tile), ``results/`` (one GeoJSON per tile),
and the combined ``sites.geojson`` and ``sites.gpkg`` (one feature per site, rebuilt from the
manifest at the end, so a restarted batch never duplicates a tile). Files too large for one message
are streamed through DetectScene by the client.
"""

from __future__ import annotations

import glob
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagery import feedback
from imagery.geometry import feature_collection
from service.client.manifest import Manifest
from service.client.outputs import combine, write_json_atomic
from service.client.sync import DetectionClient
from service.client.types import DetectionError, TileError, TileResult

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class BatchReport:
    tiles: int
    skipped: int  # already done by an earlier run
    succeeded: int
    failed: int
    sites: int  # in the combined outputs
    errors: list[TileError] = field(default_factory=list)
    geojson: Path | None = None
    gpkg: Path | None = None
    manifest: Path | None = None


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Directories (searched recursively for .tif/.tiff), globs and files; sorted, unique."""
    found: dict[str, Path] = {}
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.suffix.lower() in TIFF_SUFFIXES]
        elif glob.has_magic(text):
            matches = [Path(p) for p in glob.glob(text, recursive=True)]
        else:
            matches = [path]  # a missing file is reported as that tile's error
        for p in matches:
            found.setdefault(str(p.resolve()), p)
    return [found[k] for k in sorted(found)]


def _result_name(key: str, stem: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.geojson"


def submit_batch(
    client: DetectionClient,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    min_score: float | None = None,
    output_crs: str = "EPSG:4326",
    max_detections: int = 0,
    concurrency: int = 4,
    progress: bool = True,
    retry_errors: bool = False,
    gpkg: bool = True,
    timeout: float | None = None,
    on_tile: Callable[[Path, TileResult | TileError], None] | None = None,
) -> BatchReport:
    out = Path(out_dir)
    (out / "results").mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / "manifest.jsonl")
    files = expand_inputs(inputs)
    todo = [f for f in files if not manifest.done(str(f.resolve()), retry_errors)]
    report = BatchReport(len(files), len(files) - len(todo), 0, 0, 0, manifest=manifest.path)

    def run_one(path: Path) -> TileResult | TileError:
        key = str(path.resolve())
        started = time.time()
        try:
            result = client.detect_tile(
                path,
                tile_id=path.stem,
                min_score=min_score,
                output_crs=output_crs,
                max_detections=max_detections,
                timeout=timeout,
            )
        except DetectionError as exc:
            err = TileError.from_exception(path.stem, exc)
        except OSError as exc:
            err = TileError(path.stem, "NOT_FOUND", "FILE_NOT_FOUND", f"{path}: {exc.strerror}")
        else:
            model = {
                "model_name": result.model.name,
                "model_version": result.model.version,
                "weights_sha256": result.model.weights_sha256,
            }
            features = [site.feature(source=key, **model) for site in result.sites]
            name = Path("results") / _result_name(key, path.stem)
            write_json_atomic(out / name, feature_collection(features, output_crs))
            manifest.append(
                {
                    "key": key,
                    "tile_id": result.tile_id,
                    "status": "ok",
                    "sites": len(result.sites),
                    "result": str(name),
                    "model": model,
                    "seconds": round(time.time() - started, 3),
                }
            )
            return result
        manifest.append(
            {
                "key": key,
                "tile_id": err.tile_id,
                "status": "error",
                "code": err.code,
                "reason": err.reason,
                "message": err.message,
            }
        )
        return err

    with (
        ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="submit") as pool,
        feedback.bar(total=len(files), unit="tile", enabled=progress, desc="tiles") as bar,
    ):
        bar.update(report.skipped)
        futures = {pool.submit(run_one, f): f for f in todo}
        for future in as_completed(futures):
            outcome = future.result()
            if isinstance(outcome, TileError):
                report.failed += 1
                report.errors.append(outcome)
                bar.write(f"error [{outcome.reason}] {futures[future]}: {outcome.message}")
            else:
                report.succeeded += 1
            bar.update(1)
            if on_tile:
                on_tile(futures[future], outcome)

    ok = [r for r in manifest.records.values() if r["status"] == "ok"]
    report.geojson = out / "sites.geojson"
    report.gpkg = out / "sites.gpkg" if gpkg else None
    report.sites = combine(
        (out / r["result"] for r in sorted(ok, key=lambda r: r["key"])),
        report.geojson,
        report.gpkg,
        output_crs,
    )
    return report


def summary_line(report: BatchReport) -> str:
    parts: list[Any] = [
        f"{report.succeeded} tiles done",
        f"{report.skipped} already done",
        f"{report.failed} failed",
        f"{report.sites} sites",
    ]
    return (
        ", ".join(parts)
        + f"; GeoJSON: {report.geojson}"
        + (f"; GeoPackage: {report.gpkg}" if report.gpkg else "")
    )
