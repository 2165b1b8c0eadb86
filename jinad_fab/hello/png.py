"""A minimal PNG writer for small greyscale images (numpy + zlib), so reports need no imaging library."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a 2-D uint8 array."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    h, w = img.shape
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(h))  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bits, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def digit_data_uri(image: np.ndarray) -> str:
    """A ``data:`` URI for one 8x8 digit (values 0..16): dark ink on white."""
    img = 255 - np.clip(np.asarray(image, dtype=np.float32) * (255 / 16), 0, 255).astype(np.uint8)
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")
