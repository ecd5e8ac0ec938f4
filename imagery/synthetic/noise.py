"""Seeded value noise as a function of GLOBAL pixel coordinates.

Any window of a scene can be rendered on its own and still match its neighbours exactly, which is
what lets a 10980 x 10980 tile be written block by block with flat memory.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _hash01(seed: int, gi: np.ndarray, gj: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point (splitmix64 of seed, row, col)."""
    with np.errstate(over="ignore"):
        x = (
            (gi.astype(np.uint64) * _M1)
            ^ (gj.astype(np.uint64) * _M2)
            ^ np.uint64((seed * 0x2545F491) & 0xFFFFFFFFFFFFFFFF)
        )
        x ^= x >> np.uint64(30)
        x *= _M2
        x ^= x >> np.uint64(27)
        x *= _M3
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)


def _axis(start: int, n: int, cell: float) -> tuple[np.ndarray, np.ndarray, int]:
    pos = (np.arange(start, start + n) + 0.5) / cell
    base = int(np.floor(pos[0]))
    idx = np.floor(pos).astype(np.int64) - base
    frac = (pos - np.floor(pos)).astype(np.float32)
    return idx, frac * frac * (3 - 2 * frac), base  # smoothstep weights


def value_noise(seed: int, row0: int, col0: int, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1) with features about ``cell`` pixels wide, for a window."""
    ri, rf, rb = _axis(row0, h, cell)
    ci, cf, cb = _axis(col0, w, cell)
    gi = np.arange(rb, rb + ri[-1] + 2)
    gj = np.arange(cb, cb + ci[-1] + 2)
    lattice = _hash01(seed, gi[:, None] + (1 << 31), gj[None, :] + (1 << 31))
    rows = lattice[ri] * (1 - rf)[:, None] + lattice[ri + 1] * rf[:, None]
    return rows[:, ci] * (1 - cf)[None, :] + rows[:, ci + 1] * cf[None, :]


def fractal_noise(
    seed: int,
    row0: int,
    col0: int,
    h: int,
    w: int,
    cell: float,
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Sum of octaves of value noise, normalised to roughly [0, 1] with mean 0.5."""
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        c = cell / (2**o)
        if c < 1:
            break
        total += np.float32(amp) * value_noise(seed * 131 + o, row0, col0, h, w, c)
        norm += amp
        amp *= persistence
    return total / np.float32(norm)


def pixel_noise(seed: int, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """Independent uniform [0, 1) value per pixel (fine texture), reproducible per window."""
    gi = np.arange(row0, row0 + h)[:, None] + (1 << 31)
    gj = np.arange(col0, col0 + w)[None, :] + (1 << 31)
    return _hash01(seed, gi, gj)
