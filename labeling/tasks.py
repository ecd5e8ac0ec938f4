"""Cut a scene into chips, render their pictures, and import them as Label Studio tasks.

Each chip is kept three times under ``FILES_ROOT/<project-slug>/<scene_id>/``: the N-band stacked
GeoTIFF (what training reads), a true colour PNG and a false colour PNG (what labellers see). Label
Studio serves the PNGs through a local-files storage (``/data/local-files/?d=<path>``); the task
data carries the chip's path, CRS, transform, scene id and date, so every region goes back to map
coordinates. Importing the same scene again adds only chips the project does not have yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from imagery.errors import AsmSpotterError, Reason
from imagery.render import composite
from imagery.scene import Grid, open_scene
from imagery.tiles import write_tile
from imagery.windows import WindowSpec, iter_windows
from labeling.project import call, ensure_local_storage

LOCAL_FILES_URL = "/data/local-files/?d="


@dataclass
class ImportResult:
    created: int = 0
    already_there: int = 0
    skipped_nodata: int = 0
    task_ids: list[int] = field(default_factory=list)


def local_files_url(path: Path, root: Path) -> str:
    return LOCAL_FILES_URL + quote(path.resolve().relative_to(root).as_posix())


def _view(scene: Any, values: np.ndarray, wanted: tuple[str, ...]) -> np.ndarray:
    bands = list(scene.bands)
    view = wanted if all(b in bands for b in wanted) else tuple(bands[:3] * 3)[:3]
    return composite(values, bands, view)


def cut_chips(
    scene_path: str | Path,
    files_root: Path,
    folder: Path,
    spec: WindowSpec,
    sensor: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Write chips + pictures of one scene into ``folder``; (task data list, chips all nodata)."""
    tasks, nodata = [], 0
    with open_scene(scene_path, sensor=sensor) as scene:
        out = folder / scene.scene_id
        out.mkdir(parents=True, exist_ok=True)
        sensor_info = scene.sensor
        crs = scene.grid.crs.to_string()
        for window in iter_windows(scene.grid.height, scene.grid.width, spec):
            values = scene.read(window)
            if not np.isfinite(values).any():
                nodata += 1
                continue
            col, row, w, h = (
                int(v) for v in (window.col_off, window.row_off, window.width, window.height)
            )
            chip_id = f"{scene.scene_id}_r{row:05d}_c{col:05d}"
            transform = scene.grid.window_transform(window)
            grid = Grid(scene.grid.crs, transform, w, h)
            tif = out / f"{chip_id}.tif"
            write_tile(
                tif,
                values,
                grid,
                scene.bands,
                sensor_info.name,
                scene.scene_id,
                scene.datetime,
                cog=False,
            )
            tc, fc = out / f"{chip_id}_tc.png", out / f"{chip_id}_fc.png"
            Image.fromarray(_view(scene, values, sensor_info.rgb_bands)).save(tc)
            Image.fromarray(_view(scene, values, sensor_info.false_color_bands)).save(fc)
            tasks.append(
                {
                    "image": local_files_url(tc, files_root),
                    "false_color": local_files_url(fc, files_root),
                    "chip": tif.resolve().relative_to(files_root).as_posix(),
                    "chip_id": chip_id,
                    "scene_id": scene.scene_id,
                    "datetime": scene.datetime or "",
                    "sensor": sensor_info.name,
                    "bands": list(scene.bands),
                    "crs": crs,
                    "transform": list(transform)[:6],
                    "width": w,
                    "height": h,
                    "window": [col, row, w, h],
                }
            )
    return tasks, nodata


def existing_chip_ids(ls: Any, project_id: int) -> set[str]:
    tasks = call("list tasks", ls.tasks.list, project=project_id, resolve_uri=False)
    return {t.data.get("chip_id") for t in tasks if isinstance(t.data, dict)}


def import_scene(
    ls: Any,
    project_id: int,
    scene_path: str | Path,
    files_root: Path,
    folder: Path,
    chip_size: int = 256,
    overlap: int = 0,
    sensor: str | None = None,
) -> ImportResult:
    """Chip ``scene_path`` into ``folder`` (inside ``files_root``) and import the new chips."""
    files_root = Path(files_root).resolve()
    folder = Path(folder).resolve()
    if not folder.is_relative_to(files_root):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"chip folder {folder} is outside Label Studio's document root {files_root}: "
            "it could not serve the pictures",
        )
    folder.mkdir(parents=True, exist_ok=True)
    ensure_local_storage(ls, project_id, folder)
    data, nodata = cut_chips(scene_path, files_root, folder, WindowSpec(chip_size, overlap), sensor)
    have = existing_chip_ids(ls, project_id)
    new = [d for d in data if d["chip_id"] not in have]
    result = ImportResult(already_there=len(data) - len(new), skipped_nodata=nodata)
    if new:
        response = call(
            "import tasks",
            ls.projects.import_tasks,
            project_id,
            request=[{"data": d} for d in new],
            return_task_ids=True,
        )
        result.task_ids = list(response.task_ids or [])
        result.created = len(new)
    return result
