#!/usr/bin/env python3
"""Writes the images a hostile uploader would send, for the sandboxed OCR test.

    hostile_pages.py DIR GOOD.png

DIR/corrupt.png: a PNG signature and header, then random bytes. DIR/truncated.png: the first
half of GOOD.png. DIR/bomb.png: a decompression bomb, 20000 x 20000 grey pixels (400 MB decoded)
from about 400 KB of deflate.
"""
import random
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main():
    out, good = sys.argv[1], sys.argv[2]
    sig = b"\x89PNG\r\n\x1a\n"
    rnd = random.Random(7)
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 640, 480, 8, 0, 0, 0, 0))
    with open(f"{out}/corrupt.png", "wb") as f:
        f.write(sig + ihdr + bytes(rnd.getrandbits(8) for _ in range(5000)))
    data = open(good, "rb").read()
    with open(f"{out}/truncated.png", "wb") as f:
        f.write(data[: len(data) // 2])
    side = 20000
    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte and one byte a pixel
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    with open(f"{out}/bomb.png", "wb") as f:
        f.write(sig + ihdr + chunk(b"IDAT", body) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
