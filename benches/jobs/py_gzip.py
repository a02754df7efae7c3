#!/usr/bin/env python3
"""pgz's scheme in Python, the fair comparison: multiprocessing.Pool + zlib.

    py_gzip.py [-p N] [-b KiB] [-l LEVEL] < in > out.gz

Same stream as c_examples/pgz.c: blocks of raw deflate (wbits -15), each primed with the 32 KiB
of input before it (zdict) and ended with Z_SYNC_FLUSH; CRC-32 per block in the worker, combined
in the parent with zlib's crc32_combine (through ctypes: Python's zlib lacks it); a final empty
fixed block (03 00) and the gzip trailer. Pool.imap keeps the blocks in order; the input is read
lazily by a generator, though imap's feeder thread may run ahead of the workers.
"""
import argparse
import ctypes
import ctypes.util
import multiprocessing as mp
import struct
import sys
import zlib

DICT = 32768


def compress_block(args):
    level, dictionary, block = args
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY,
                         zdict=dictionary) if dictionary else \
        zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    out = c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH)
    return zlib.crc32(block), len(block), out


def blocks(f, size, level):
    tail = b""
    while True:
        block = f.read(size)
        if not block:
            return
        yield level, tail, block
        tail = (tail + block)[-DICT:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", type=int, default=mp.cpu_count())
    ap.add_argument("-b", type=int, default=128, help="block size in KiB")
    ap.add_argument("-l", type=int, default=6)
    a = ap.parse_args()
    libz = ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1")
    libz.crc32_combine.restype = ctypes.c_ulong
    libz.crc32_combine.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long]

    out = sys.stdout.buffer
    xfl = 2 if a.l == 9 else 4 if a.l == 1 else 0
    out.write(bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, xfl, 3]))
    crc, total = 0, 0
    with mp.get_context("fork").Pool(a.p) as pool:
        for bcrc, blen, data in pool.imap(compress_block, blocks(sys.stdin.buffer, a.b * 1024, a.l)):
            crc = libz.crc32_combine(crc, bcrc, blen)
            total += blen
            out.write(data)
    out.write(b"\x03\x00" + struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF))
    out.flush()


if __name__ == "__main__":
    main()
