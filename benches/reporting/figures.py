"""The figures of a run (benches/run.sh's results file) and how they are written.

The file holds, per step, rounds: a line "ROUND step n pct seconds" (pct: the largest share of
the CPUs other processes took during the round or one of its programs; n is "diag" for the
diagnostics run once after the rounds), then the round's lines "RESULT key value", "SKIP key why" and
"FAIL tag command". A key has one value per round; its figure is the median over the rounds,
with the spread (min, max). Lines outside any round (the real jobs') count as undisturbed.
"""
import statistics

DISTURBED_PCT = 10
# Steps whose figures (memory) other processes' CPU time does not change: never flagged.
UNFLAGGED_STEPS = {"w7"}


class Figures:
    def __init__(self, path):
        self.vals = {}  # key -> [(value, pct of its round)]
        self.skips = {}  # key -> why
        self.fails = []  # "tag command"
        self.rounds = {}  # step -> [pct of each round kept]
        self.seconds = {}  # step -> seconds its rounds and diagnostics took
        pct = 0
        for line in open(path):
            parts = line.split(None, 2)
            if not parts:
                continue
            if parts[0] == "ROUND" and len(parts) == 3:
                step, n, p = line.split()[1:4]
                self.seconds[step] = self.seconds.get(step, 0) + float((line.split() + [0])[4])
                if n != "diag":
                    self.rounds.setdefault(step, []).append(int(p))
                pct = 0 if step in UNFLAGGED_STEPS else int(p)
            elif parts[0] == "RESULT" and len(parts) == 3:
                self.vals.setdefault(parts[1], []).append((float(parts[2]), pct))
            elif parts[0] == "SKIP" and len(parts) >= 2:
                self.skips[parts[1]] = parts[2].strip() if len(parts) > 2 else ""
            elif parts[0] == "FAIL":
                self.fails.append(line[5:].strip())

    def values(self, key):
        return [v for v, _ in self.vals.get(key, [])]

    def get(self, key):
        """The median over rounds, or None."""
        v = self.values(key)
        return statistics.median(v) if v else None

    def spread(self, key):
        """(min, median, max, number of rounds), or None."""
        v = self.values(key)
        return (min(v), statistics.median(v), max(v), len(v)) if v else None

    def disturbed(self, key):
        """How many of the key's values come from rounds other processes disturbed."""
        return sum(1 for _, p in self.vals.get(key, []) if p >= DISTURBED_PCT)

    def skipped(self, key):
        """'not run: why' for a figure the library could not give, or None."""
        why = self.skips.get(key)
        return None if why is None else f"not run: {why}"

    def keys(self, prefix=""):
        return [k for k in self.vals if k.startswith(prefix)]

    def cell(self, key, fmt):
        """'median [min–max]' (with ⚠k/n when k of its n rounds were disturbed), or None."""
        s = self.spread(key)
        if s is None:
            return None
        lo, med, hi, n = s
        text = fmt(med)
        if n > 1:
            text += " " + span(fmt(lo), fmt(hi), text)
        d = self.disturbed(key)
        return text + (f" ⚠{d}/{n}" if d else "")


def span(lo, hi, med):
    """'[lo–hi]', without the unit when the three share it."""
    unit = med.split(" ", 1)[1] if " " in med else ""
    if unit and lo.endswith(" " + unit) and hi.endswith(" " + unit):
        lo, hi = lo[: -len(unit) - 1], hi[: -len(unit) - 1]
    return f"[{lo}–{hi}]"


# ---- formatting -------------------------------------------------------------------------------
def f_rate(v, unit):
    if v is None:
        return None
    for div, pre in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g} {pre}{unit}"
    return f"{v:.3g} {unit}"


def f_time(v):
    if v is None:
        return None
    if v < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if v < 1:
        return f"{v * 1e3:.3g} ms"
    return f"{v:.3g} s"


def f_x(v):
    return None if v is None else f"{v:.3g}×"


def f_gbs(v):
    return None if v is None else f"{v:.3g} GB/s"


def f_mib(v):
    if v is None:
        return None
    return f"{v:,.0f} MiB" if abs(v) >= 100 else f"{v:.3g} MiB"


def f_n(n):
    """1000000 -> 1e6"""
    return f"1e{len(str(n)) - 1}" if str(n).strip("0") == "1" else f"{n:,}"


def ratio(a, b):
    """a / b when both are known."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def ge(v, limit):
    return None if v is None else v >= limit


def le(v, limit):
    return None if v is None else v <= limit


def verdict(ok):
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def text_table(header, rows, indent=""):
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(header)), "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    return "\n".join(indent + line.rstrip() for line in lines)


def by_unit(key):
    """A formatter from the key's name: *_per_s rates, *_s times, *_mib sizes."""
    if key.endswith("gb_per_s"):
        return f_gbs
    if key.endswith("_per_s"):
        return lambda v: f_rate(v, "/s")
    if key.endswith("_s"):
        return f_time
    if key.endswith("_mib"):
        return f_mib
    return lambda v: f"{v:.4g}"
