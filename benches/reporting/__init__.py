"""Report modules of benches/report.py and benches/before_after.py."""
