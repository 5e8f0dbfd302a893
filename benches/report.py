#!/usr/bin/env python3
"""Prints criterion results as a Markdown table: median and spread (the
95% confidence interval of the median) for every benchmark run so far.

Usage: python3 benches/report.py [FILTER]   (after `cargo bench --bench commit`)
"""
import json
import pathlib
import sys


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale * 0.9995:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
pattern = sys.argv[1] if len(sys.argv) > 1 else ""
print("| benchmark | median | 95% CI of the median |")
print("|---|---:|---|")
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    name = bench["full_id"]
    if pattern not in name:
        continue
    median = json.loads(est.read_text())["median"]
    ci = median["confidence_interval"]
    rows.append((name, median["point_estimate"], ci["lower_bound"], ci["upper_bound"]))


def key(row):
    parts = row[0].split("/")
    last = parts[-1]
    return (parts[:-1], int(last) if last.isdigit() else 0, last)


for name, point, lo, hi in sorted(rows, key=key):
    print(f"| `{name}` | {fmt(point)} | {fmt(lo)} – {fmt(hi)} |")
