"""Windows over a scene: fixed chip size, overlap, and edge handling.

Windows step by ``size - overlap``; the last row and column are shifted back to end on the scene's
edge, so every window is full-size when the scene is at least one chip wide and no pixel is missed.
A scene smaller than one chip gets one window of the scene's size (the model pads it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window


@dataclass(frozen=True)
class WindowSpec:
    size: int = 512
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.size <= 0 or not 0 <= self.overlap < self.size:
            raise ValueError(f"need size > 0 and 0 <= overlap < size, got {self}")

    @property
    def stride(self) -> int:
        return self.size - self.overlap


def _offsets(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    offsets = list(range(0, length - size, stride))
    offsets.append(length - size)  # last window ends on the edge
    return offsets


def iter_windows(height: int, width: int, spec: WindowSpec) -> Iterator[Window]:
    """Row-major windows covering a ``height`` x ``width`` raster."""
    for row in _offsets(height, spec.size, spec.stride):
        for col in _offsets(width, spec.size, spec.stride):
            yield Window(col, row, min(spec.size, width), min(spec.size, height))


def count_windows(height: int, width: int, spec: WindowSpec) -> int:
    return len(_offsets(height, spec.size, spec.stride)) * len(
        _offsets(width, spec.size, spec.stride)
    )


def core_region(window: Window, height: int, width: int, spec: WindowSpec) -> Window:
    """The part of ``window`` this window owns when windows overlap (half the overlap each side,
    the full margin at the scene's edges). Owned regions tile the scene without gaps or overlap
    for interior strides; used to decide which window reports a site whose centre is shared."""
    half = spec.overlap // 2
    col0 = int(window.col_off) + (half if window.col_off > 0 else 0)
    row0 = int(window.row_off) + (half if window.row_off > 0 else 0)
    col1 = int(window.col_off + window.width) - (
        half if window.col_off + window.width < width else 0
    )
    row1 = int(window.row_off + window.height) - (
        half if window.row_off + window.height < height else 0
    )
    return Window(col0, row0, col1 - col0, row1 - row0)
