#!/usr/bin/env python3
"""The OCR job in Python: multiprocessing.Pool(N), the tesseract CLI run once per page.

    py_ocr.py [-p N] page.png ...

Prints each page's text in page order after a `==> page PATH <==` line, like c_examples/ocr.c.
There is no Tesseract binding in the standard library (tesserocr/pytesseract would be extra
installs, and pytesseract runs the same CLI), so each page pays for a process start and a model
load, as the shell loop and xargs do.
"""
import argparse
import multiprocessing as mp
import subprocess
import sys


def ocr(path):
    r = subprocess.run(["tesseract", path, "stdout"], capture_output=True)
    return path, r.returncode, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", type=int, default=mp.cpu_count())
    ap.add_argument("pages", nargs="+")
    a = ap.parse_args()
    failed = 0
    out = sys.stdout.buffer
    with mp.get_context("fork").Pool(a.p) as pool:
        for path, rc, text in pool.imap(ocr, a.pages, chunksize=1):
            out.write(f"==> page {path} <==\n".encode() + text)
            if rc:
                print(f"py_ocr: {path}: tesseract exit {rc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
