#!/usr/bin/python3
"""Writes examples/data/shapes.png, the image of examples/cnn_stage.cpp: 48 x 40 pixels, RGB, a red
disk and a green bar on a dark blue background. Standard library only (zlib), so the file is the same
on every machine."""

import pathlib
import struct
import zlib

W, H = 48, 40


def pixel(x, y):
    if (x - 15) ** 2 + (y - 20) ** 2 <= 10 ** 2:
        return (220, 40, 30)  # the disk
    if 32 <= x < 40 and 6 <= y < 34:
        return (40, 200, 60)  # the bar
    return (20, 30, 90)  # the background


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def main():
    rows = b"".join(b"\x00" + bytes(c for x in range(W) for c in pixel(x, y)) for y in range(H))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    out = pathlib.Path(__file__).resolve().parent.parent / "examples" / "data" / "shapes.png"
    out.write_bytes(png)
    print(f"{out}: {len(png)} bytes")


if __name__ == "__main__":
    main()
