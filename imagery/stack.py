"""Stack a scene's model bands into one cloud-optimised GeoTIFF tile, block by block."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagery import feedback
from imagery.errors import ImageryError, Reason
from imagery.scene import Scene, iter_blocks, open_scene
from imagery.tiles import TileWriter

UPSAMPLED = 4.0  # output pixels per source pixel above which the output is mostly interpolation


def stack_scene(
    scene: Scene, out: str | Path, mask_clouds: bool = True, progress: bool = True
) -> dict[str, float]:
    """Copy ``scene`` to a stacked tile; cloud/shadow pixels become nodata when masked.

    Returns pixel statistics (valid and cloud fractions). Raises ALL_NODATA for an empty scene.
    """
    g = scene.grid
    total = valid = cloudy = 0
    blocks = -(-g.height // 1024) * -(-g.width // 1024)
    itemsize = 4 if scene.sensor.units == "dB" else 2
    size_gb = g.width * g.height * len(scene.bands) * itemsize / 1e9
    feedback.step(
        f"stack: {g.width} x {g.height} px, {len(scene.bands)} bands at {g.res:g} m "
        f"(about {size_gb:.2f} GB before compression) -> {out}"
    )
    if scene.source_pixels and g.width * g.height > UPSAMPLED * scene.source_pixels:
        spacing = g.res * (g.width * g.height / scene.source_pixels) ** 0.5
        feedback.warn(
            f"{scene.path}: the output has {g.width * g.height / scene.source_pixels:.0f} times "
            f"the source's pixels (source spacing about {spacing:.0f} m, output {g.res:g} m): "
            f"the file is large and holds no more detail; --resolution {spacing:.0f} keeps "
            "the source's detail"
        )
    with TileWriter(
        out, g, scene.bands, scene.sensor.name, scene.scene_id, scene.datetime
    ) as writer:
        for window, data in feedback.bar(
            iter_blocks(scene, 1024), total=blocks, desc="stack", unit="block", enabled=progress
        ):
            if mask_clouds and (cloud := scene.read_cloud_mask(window)) is not None:
                data[:, cloud] = np.nan
                cloudy += int(cloud.sum())
            writer.write(window, data)
            total += data.shape[1] * data.shape[2]
            valid += int((~np.isnan(data).any(axis=0)).sum())
        feedback.step(f"stack: writing the cloud-optimised GeoTIFF with overviews: {out}")
    if valid == 0:
        Path(out).unlink(missing_ok=True)
        raise ImageryError(Reason.ALL_NODATA, "every pixel is nodata or cloud", scene.path)
    return {"pixels": total, "valid_fraction": valid / total, "cloud_fraction": cloudy / total}


def stack(
    path: str | Path,
    out: str | Path,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    mask_clouds: bool = True,
    progress: bool = True,
    resolution: float | None = None,
    band_order: Sequence[str] | None = None,
) -> dict[str, float]:
    with open_scene(
        path, sensor=sensor, bands=bands, resolution=resolution, band_order=band_order
    ) as scene:
        return stack_scene(scene, out, mask_clouds=mask_clouds, progress=progress)
