"""Label Studio's brush RLE: the RGBA image flattened row by row, packed with rle-pack.

Layout (bit stream, most significant bit first): 32 bits value count, 5 bits word size - 1,
4 x 4 bits run-length field widths - 1; then chunks of 1 bit "repeat", 2 bits width index,
``width`` bits run length - 1, and one word (repeat) or ``length`` words (literal). The mask is the
alpha channel. Written from the format; label-studio-converter's ``brush.decode_rle`` was the
reference it was checked against.
"""

from __future__ import annotations

import numpy as np

from imagery.errors import AsmSpotterError, Reason

_HEADER_BITS = 32 + 5 + 4 * 4
_WIDTHS = (3, 6, 10, 16)  # run-length field widths the encoder uses
_WORD = 8


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8))
        self.pos = 0

    def read(self, n: int) -> int:
        end = self.pos + n
        if end > self.bits.size:
            raise AsmSpotterError(Reason.INVALID_ANNOTATION, "brush RLE ends early (truncated)")
        value = 0
        for bit in self.bits[self.pos : end].tolist():
            value = (value << 1) | bit
        self.pos = end
        return value

    def read_words(self, count: int, size: int) -> np.ndarray:
        end = self.pos + count * size
        if end > self.bits.size:
            raise AsmSpotterError(Reason.INVALID_ANNOTATION, "brush RLE ends early (truncated)")
        block = self.bits[self.pos : end].reshape(count, size).astype(np.int64)
        self.pos = end
        return block @ (1 << np.arange(size - 1, -1, -1, dtype=np.int64))


def decode(rle: list[int] | bytes) -> np.ndarray:
    """The flat value array (uint8) an RLE encodes."""
    try:
        data = bytes(rle)
    except (TypeError, ValueError) as exc:
        raise AsmSpotterError(Reason.INVALID_ANNOTATION, f"brush RLE is not bytes ({exc})") from exc
    if len(data) * 8 < _HEADER_BITS:
        raise AsmSpotterError(Reason.INVALID_ANNOTATION, "brush RLE shorter than its header")
    bits = _Bits(data)
    num = bits.read(32)
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    if word > 8:
        raise AsmSpotterError(Reason.INVALID_ANNOTATION, f"brush RLE word size {word} > 8 bits")
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = min(num, i + 1 + bits.read(widths[bits.read(2)]))
        if repeat:
            out[i:j] = bits.read(word)
        else:
            out[i:j] = bits.read_words(j - i, word)
        i = j
    return out


def decode_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """bool [height, width]: the alpha channel of the RGBA image the RLE holds, > 0."""
    flat = decode(rle)
    if flat.size != height * width * 4:
        raise AsmSpotterError(
            Reason.INVALID_ANNOTATION,
            f"brush RLE holds {flat.size} values, expected {height}x{width}x4 = "
            f"{height * width * 4} for the image",
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 0


class _Writer:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, value: int, n: int) -> None:
        self.chunks.append(((value >> np.arange(n - 1, -1, -1)) & 1).astype(np.uint8))

    def bytes(self) -> list[int]:
        bits = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.uint8)
        return np.packbits(bits).tolist()  # zero-padded to whole bytes


def encode(values: np.ndarray) -> list[int]:
    """Flat uint8 values -> RLE bytes (as the list of ints Label Studio stores), runs only."""
    flat = np.asarray(values, np.uint8).ravel()
    w = _Writer()
    w.write(flat.size, 32)
    w.write(_WORD - 1, 5)
    for width in _WIDTHS:
        w.write(width - 1, 4)
    if flat.size:
        starts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1])
        lengths = np.diff(np.concatenate([starts, [flat.size]]))
        longest = 1 << _WIDTHS[-1]
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            while length > 0:
                n = min(length, longest)
                idx = next(k for k, width in enumerate(_WIDTHS) if n - 1 < (1 << width))
                w.write(1, 1)
                w.write(idx, 2)
                w.write(n - 1, _WIDTHS[idx])
                w.write(int(flat[start]), _WORD)
                length -= n
    return w.bytes()


def encode_mask(mask: np.ndarray) -> list[int]:
    """bool [H,W] -> RLE of an RGBA image, white and opaque where the mask is set."""
    rgba = np.repeat(np.asarray(mask, bool)[:, :, None], 4, axis=2).astype(np.uint8) * 255
    return encode(rgba)
