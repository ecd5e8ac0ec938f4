"""Stage 1 of the data path: the window source. A scene -> its model windows in row-major order,
each read (one full-width strip per window row, the next strip read in the background) and
tested by the prefilter (``service/prefilter.py``): nodata windows and windows without water or
bare soil carry no pixels, so the model skips them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from imagery.errors import ImageryError, Reason
from imagery.scene import Scene
from imagery.windows import WindowSpec, iter_windows
from service.prefilter import WindowPrefilter


@dataclass
class SourceWindow:
    """One model window of the scene."""

    index: int
    window: Window
    pixels: np.ndarray | None  # float32 [C,h,w] reflectance; None: nodata or skipped
    support: np.ndarray | None  # grouped candidate pixels (site test); None: no test
    row_end: bool  # the last window of its row: sites above ``next_row`` are final after it
    next_row: int  # first pixel row of the next window row (the scene height after the last)


class WindowSource:
    """The windows of ``scene``; ``valid``/``skipped`` count as they are read. Raises ALL_NODATA
    after the last window when every one was nodata."""

    def __init__(
        self,
        scene: Scene,
        spec: WindowSpec,
        spectral: WindowPrefilter | None = None,
        skip_windows: bool = True,
        site_test: bool = True,
        model_bands: Sequence[str] | None = None,
    ) -> None:
        self.scene, self.spec = scene, spec
        # The model's bands among the scene's (which may hold the prefilter's besides).
        bands = list(model_bands or scene.bands)
        self.model_index = (
            None if bands == list(scene.bands) else [scene.bands.index(b) for b in bands]
        )
        self.spectral, self.skip_windows, self.site_test = spectral, skip_windows, site_test
        g = scene.grid
        self.windows = list(iter_windows(g.height, g.width, spec))
        self.valid = self.skipped = 0

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[SourceWindow]:
        windows, height = self.windows, self.scene.grid.height
        rows = sorted({int(w.row_off) for w in windows})
        strips = _StripReader(self.scene, rows, self.spec.size)
        try:
            strip, strip_row = np.empty(0), -1
            for i, window in enumerate(windows):
                row, col = int(window.row_off), int(window.col_off)
                if row != strip_row:
                    strip, strip_row = strips.get(row), row
                pixels, support = self._test(strip[:, :, col : col + int(window.width)])
                last = i == len(windows) - 1
                row_end = last or int(windows[i + 1].row_off) != row
                next_row = height if last else int(windows[i + 1].row_off)
                yield SourceWindow(i, window, pixels, support, row_end, next_row)
        finally:
            strips.close()
        if self.valid == 0:
            raise ImageryError(
                Reason.ALL_NODATA,
                "every pixel of the tile is nodata; check the tile's nodata value and footprint",
                self.scene.path,
            )

    def _test(self, pixels: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(pixels or None when the model can skip them, the site test's support or None)."""
        if np.isnan(pixels).all():
            return None, None  # nodata window: nothing to find
        self.valid += 1
        grouped = None if self.spectral is None else self.spectral.grouped(pixels)
        if grouped is not None and self.skip_windows and not self.spectral.enough(grouped):
            self.skipped += 1
            return None, None  # no water, no bare soil: no site
        if self.model_index is not None:
            pixels = pixels[self.model_index]
        return pixels, grouped if self.site_test else None


class _StripReader:
    """Reads one full-width strip per window row (each GeoTIFF block is decoded once, with GDAL's
    threads), the next strip in the background while the current one is processed."""

    def __init__(self, scene: Scene, rows: list[int], size: int) -> None:
        self.scene, self.rows, self.size = scene, rows, size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="strip")
        self._ahead: dict[int, Future] = {}

    def _submit(self, row: int) -> None:
        if row not in self._ahead:
            g = self.scene.grid
            height = min(self.size, g.height - row)
            self._ahead[row] = self._pool.submit(self.scene.read, Window(0, row, g.width, height))

    def get(self, row: int) -> np.ndarray:
        self._submit(row)
        k = self.rows.index(row)
        if k + 1 < len(self.rows):
            self._submit(self.rows[k + 1])
        return self._ahead.pop(row).result()

    def close(self) -> None:
        for future in self._ahead.values():
            future.cancel()
        self._pool.shutdown(wait=True)
