#!/usr/bin/env python3
"""Checks the OCR example's output against the text each page was rendered with.

    check_ocr.py OUTPUT {header|ff} PAGE.png ... [--min 0.95]

OUTPUT is what `ocr` printed: sections after `==> page PATH <==` lines (header) or separated by
form feeds (ff). Pages are expected in the order given; a page written as !PAGE.png must come
out empty (it was made to fail). The expected text of PAGE.png is PAGE.txt. Similarity is
difflib's ratio over the word sequences. Prints one line saying what matched, or what did not;
exits 1 on any mismatch.
"""
import argparse
import difflib
import re
import sys


def sections(text, mode):
    if mode == "ff":
        parts = text.split("\f")
        if parts and parts[-1].strip() == "":
            parts = parts[:-1]  # the form feed ends each page, so one empty part follows
        return [(None, p) for p in parts]
    out = []
    for chunk in re.split(r"^==> page (.*) <==\n", text, flags=re.M)[1:]:
        out.append(chunk)
    return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("mode", choices=["header", "ff"])
    ap.add_argument("pages", nargs="+")
    ap.add_argument("--min", type=float, default=0.95)
    a = ap.parse_args()
    with open(a.output, encoding="utf-8", errors="replace") as f:
        got = sections(f.read(), a.mode)
    problems, scores = [], []
    if len(got) != len(a.pages):
        problems.append(f"{len(got)} pages in the output, {len(a.pages)} expected")
    for i, (page, (path, text)) in enumerate(zip(a.pages, got)):
        failing = page.startswith("!")
        page = page.lstrip("!")
        if path is not None and path != page:
            problems.append(f"section {i + 1} is {path}, expected {page} (out of order)")
            continue
        if failing:
            if text.strip():
                problems.append(f"{page} should be empty (failed) but has text")
            continue
        with open(page[: -len(".png")] + ".txt") as f:
            want = f.read().split()
        score = difflib.SequenceMatcher(None, want, text.split(), autojunk=False).ratio()
        scores.append(score)
        if score < a.min:
            problems.append(f"{page}: word similarity {score:.3f} < {a.min}")
    if problems:
        print("; ".join(problems))
        return 1
    print(f"{len(got)} pages in order, word similarity min {min(scores, default=1):.3f}"
          + (f", {len(a.pages) - len(scores)} empty as expected" if len(scores) < len(a.pages) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
