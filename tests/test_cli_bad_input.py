"""Each kind of bad imagery input, tried through the real CLI: one line, its reason, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.conftest import L2A_DIR
from tests.real_parts import missing

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tiff(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32629",
    descriptions: tuple[str, ...] | None = None,
    **profile,
) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(300000, 9000000, 10, 10),
        **profile,
    ) as dst:
        dst.write(data)
        if descriptions is not None:
            dst.descriptions = descriptions
        elif data.shape[0] == len(BANDS):
            dst.descriptions = BANDS
    return path


def _missing_band(tmp: Path) -> Path:
    folder = tmp / "S2A_29RKH_20200219_0_L2A"
    folder.mkdir()
    for f in L2A_DIR.iterdir():
        if f.name != "B12.tif":
            (folder / f.name).symlink_to(f)
    return folder


def _truncated(tmp: Path) -> Path:
    good = _tiff(tmp / "good.tif", np.full((6, 256, 256), 1200, np.uint16), nodata=0)
    data = good.read_bytes()
    bad = tmp / "truncated.tif"
    bad.write_bytes(data[: len(data) // 3])
    return bad


def _no_geotransform(tmp: Path) -> Path:
    """A CRS but no geotransform: rasterio reads it with NotGeoreferencedWarning and an identity
    transform (1 m pixels at 0, 0), which would be a silent wrong answer."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    path = tmp / "nogeotransform.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=6,
                           dtype="uint16", crs="EPSG:32629", nodata=0) as dst:  # fmt: skip
            dst.write(np.full((6, 32, 32), 1200, np.uint16))
            dst.descriptions = BANDS
    with warnings.catch_warnings(record=True) as seen:  # the real warning path, not a fake
        warnings.simplefilter("always")
        rasterio.open(path).close()
    assert any(issubclass(w.category, NotGeoreferencedWarning) for w in seen)
    return path


def _nan(tmp: Path) -> Path:
    data = np.full((6, 32, 32), 0.1, np.float32)
    data[:, 3, 4] = np.nan
    return _tiff(tmp / "nan.tif", data)


CASES = {
    "missing band": (_missing_band, "BAND_MISSING", "B12"),
    "wrong dtype": (
        lambda t: _tiff(t / "complex.tif", np.ones((6, 16, 16), np.complex64)),
        "WRONG_DTYPE",
        "complex64",
    ),
    "bands not described": (
        lambda t: _tiff(t / "four.tif", np.ones((4, 16, 16), np.uint16)),
        "BAND_ORDER_UNKNOWN",
        "4 bands",
    ),
    "descriptions that name no band": (
        lambda t: _tiff(t / "layers.tif", np.ones((6, 16, 16), np.uint16), descriptions=("a",) * 6),
        "BAND_ORDER_UNKNOWN",
        "name no sentinel2-l2a band",
    ),
    "a PNG": (
        lambda t: (t / "chip.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)) and t / "chip.png",
        "NOT_A_GEOTIFF",
        "a PNG image",
    ),
    "no CRS": (
        lambda t: _tiff(t / "nocrs.tif", np.ones((6, 16, 16), np.uint16), crs=None),
        "CRS_MISSING",
        "no CRS",
    ),
    "no geotransform": (_no_geotransform, "GEOTRANSFORM_INVALID", "no geotransform"),
    "truncated file": (_truncated, "NOT_A_GEOTIFF", "truncated"),
    "not a GeoTIFF": (
        lambda t: (t / "notes.tif").write_text("not a raster") and t / "notes.tif",
        "NOT_A_GEOTIFF",
        "not a readable",
    ),
    "all nodata": (
        lambda t: _tiff(t / "empty.tif", np.zeros((6, 64, 64), np.uint16), nodata=0),
        "ALL_NODATA",
        "nodata",
    ),
    "NaN values": (_nan, "NAN_VALUES", "NaN"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_with_its_reason(case: str, tmp_path: Path) -> None:
    make, reason, words = CASES[case]
    if case == "missing band" and not L2A_DIR.is_dir():
        missing("real data absent")
    bad = make(tmp_path)
    result = _cli("stack", bad, "-o", tmp_path / "out.tif", "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error [{reason}]: ")
    assert str(bad) in lines[0] and words in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.tif").exists()  # nothing half-written is left behind


def test_good_input_still_works(tmp_path: Path) -> None:
    tile = _tiff(tmp_path / "ok.tif", np.full((6, 64, 64), 1500, np.uint16), nodata=0)
    result = _cli("stack", tile, "-o", tmp_path / "out.tif", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "100.0% valid" in result.stdout


@pytest.mark.parametrize("command", [["inspect"], ["detect", "--local", "--quiet", "-o", "s.json"]])
def test_no_geotransform_is_one_line_everywhere(command: list[str], tmp_path: Path) -> None:
    """inspect and detect read the tile through the same scene reader as stack: the same line."""
    bad = _no_geotransform(tmp_path)
    args = [a if a != "s.json" else tmp_path / "s.json" for a in command]
    result = _cli(args[0], bad, *args[1:])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error [GEOTRANSFORM_INVALID]: "), lines
    assert "no geotransform" in lines[0] and "Warning" not in result.stderr
    assert not (tmp_path / "s.json").exists()
