#!/usr/bin/env python3
"""Renders page images with known text, for the OCR example's tests and benchmark.

    python3 render_pages.py OUTDIR [--pages N] [--seed S] [--lines L]

Writes OUTDIR/pageK.png (K = 1..N, 1700x2200 at 200 dpi, black DejaVu Sans on white) and
OUTDIR/pageK.txt with the text drawn on it, one line per text line. The text is made of words
from a fixed list, chosen by a generator seeded with S and K, so the same arguments always give
the same pages. Pillow is needed (python3 -m pip install pillow).
"""
import argparse
import os
import random
import sys

try:
    from PIL import Image, ImageDraw, ImageFont
except ImportError:
    sys.exit("render_pages.py: Pillow is missing: python3 -m pip install pillow")

# Plain words that a clean scan reads unambiguously (no digits, no l/I/1 lookalikes alone).
WORDS = """
about above across after again against almost along already also always among animal answer
around autumn basket beautiful because before begin behind believe between bird black bottle
bread bridge bright brother brown build business careful carry center certain change chicken
children circle city clean climb clock close cloud coffee cold colour common country course
cover cross dance danger dark daughter decide deep desert different dinner doctor door dream
drive during early earth easy engine enough evening every example family farmer father field
figure finger finish flower follow forest forward friend garden gentle glass golden govern
green ground happen happy harbour heavy history horse house hundred hunter island journey
kitchen knife language large laugh learn letter market master matter meadow measure middle
minute modern morning mother mountain music narrow nature never number object ocean office
orange paper parent people pepper picture planet pocket power present problem promise quiet
rabbit reason record remember river rocket salt school season second seven silver simple
sister small smooth soft south spring square station stone story street strong summer sunday
table teacher thunder tomorrow travel tree under valley village water weather window winter
wonder wooden yellow yesterday young
""".split()

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WIDTH, HEIGHT, DPI = 1700, 2200, 200
MARGIN = 150


def page_text(seed, k, lines):
    rng = random.Random(seed * 1_000_003 + k)
    out = []
    for _ in range(lines):
        words = []
        while True:
            w = rng.choice(WORDS)
            if len(" ".join(words + [w])) > 52:
                break
            words.append(w)
        out.append(" ".join(words).capitalize())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lines", type=int, default=24)
    ap.add_argument("--font-size", type=int, default=32)
    args = ap.parse_args()
    if not os.path.exists(FONT):
        sys.exit(f"render_pages.py: font {FONT} is missing: apt-get install fonts-dejavu-core")
    font = ImageFont.truetype(FONT, args.font_size)
    os.makedirs(args.outdir, exist_ok=True)
    step = int(args.font_size * 2.0)
    if MARGIN + step * args.lines > HEIGHT - MARGIN:
        sys.exit("render_pages.py: too many lines for a page")
    for k in range(1, args.pages + 1):
        lines = page_text(args.seed, k, args.lines)
        img = Image.new("L", (WIDTH, HEIGHT), 255)
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(lines):
            draw.text((MARGIN, MARGIN + i * step), line, font=font, fill=0)
        base = os.path.join(args.outdir, f"page{k}")
        img.save(base + ".png", dpi=(DPI, DPI))
        with open(base + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"rendered {args.pages} pages into {args.outdir}")


if __name__ == "__main__":
    main()
