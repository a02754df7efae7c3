"""Turns the figures benches/run.sh collected into the comparison tables (stdout) and
BENCHMARKS.md (benches/reporting/ does the work).

    python3 report.py RESULTS_FILE META_FILE OUT_MD
    python3 report.py --summary STEP_FILE      # one step's figures, for run.sh's log
"""
import os
import sys

from reporting import tables
from reporting.figures import Figures, by_unit, text_table
from reporting.markdown import document


def summary(path):
    """Each figure of a step (diagnostics aside): median [min–max] over its rounds."""
    F = Figures(path)
    for key in sorted((k for k in F.vals if ".diag." not in k), key=lambda k: k.split(":")[::-1]):
        print(f"   {key}: {F.cell(key, by_unit(key))}")
    for key, why in F.skips.items():
        print(f"   {key}: not run ({why})")


def main():
    if sys.argv[1] == "--summary":
        return summary(sys.argv[2])
    results_path, meta_path, out_md = sys.argv[1:4]
    F = Figures(results_path)
    meta = dict(line.rstrip("\n").partition("=")[::2] for line in open(meta_path))
    try:
        jobs_txt = open(os.path.join(os.path.dirname(results_path), "jobs.txt")).read().rstrip()
    except OSError:
        jobs_txt = ""
    rows = tables.main_rows(F)
    print(text_table(tables.MAIN_COLS, rows))
    w1, goals = tables.w1_rows(F)
    if w1:
        print("\nW1 at 1e6, interleaved\n" + text_table(["map", "items/s", "plain ÷ this"], w1, "  "))
        print(text_table(["goal", "this run", "result"], goals, "  "))
    if F.keys("wc."):
        print("\nWC completion latency\n" + text_table(tables.WC_COLS, tables.wc_rows(F), "  "))
    if F.keys("ws."):
        print("\nWS the sandbox's cost\n" + text_table(tables.WS_COLS, tables.ws_rows(F), "  "))
    if F.get("mpi.np4.map_items_per_s") is not None:
        print("\nW8 libpool_mpi\n" + text_table(tables.W8_COLS, tables.w8_rows(F), "  "))
    jobs = tables.job_rows(F)
    if jobs:
        print("\nReal jobs (benches/jobs.sh)\n" + text_table(["goal", "this run", "result"], jobs, "  "))
    met = sum(r[10].count("MET") for r in rows)
    missed = sum(r[10].count("MISSED") for r in rows)
    print(f"\ntargets: {met} met, {missed} missed")
    for f in F.fails:
        print(f"FAILED: {f}")
    md = document(F, meta, rows, jobs_txt)
    with open(out_md, "w") as f:
        f.write(md)


if __name__ == "__main__":
    main()
