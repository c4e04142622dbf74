#!/usr/bin/env python3
"""Plot cost per process against tree size from a scripts/bench.sh CSV, as a standalone SVG.

    python3 scripts/bench/plot.py [bench-out/latest.csv] [docs/performance-cost.svg]

Both axes are logarithmic. One line per series (the median over repetitions at each size):
rootless-restore's build phase per process for flat and deep trees (flat also with
--pid-method dance), the fork floor keeping
a tree of the same shape, and plain fork+exit+reap. Partial rows (timed out) are drawn hollow.
No third-party modules.
"""
import csv
import math
import statistics
import sys
from collections import defaultdict

SERIES = [
    # (row, shape, label, colour, dashed)
    ("restore", "flat", "rootless-restore, flat tree", "#c0392b", False),
    ("restore_dance", "flat", "rootless-restore, flat, dance", "#e67e22", False),
    ("restore", "deep", "rootless-restore, deep chain", "#8e44ad", False),
    ("floor_keep", "flat", "fork floor, flat tree kept alive", "#2471a3", True),
    ("floor_sync", "flat", "fork floor, flat tree in lockstep", "#5dade2", True),
    ("floor_keep", "deep", "fork floor, chain kept alive", "#17a589", True),
    ("floor_exec", "deep", "fork floor, chain, exec per link", "#d68910", True),
    ("floor_exit", "-", "fork + _exit + reap", "#7f8c8d", True),
]


def load(path):
    """Median per-process cost by (row, shape, n), and the keys measured only partially."""
    values = defaultdict(list)
    partial = set()
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["row"], r["shape"], int(r["n"]))
            if r["metric"] == "partial":
                partial.add(key)
            if r["metric"] != "per_process_us" or not r["value"]:
                continue
            values[key].append(float(r["value"]))
    return {k: statistics.median(v) for k, v in values.items()}, partial


def nice_ticks(lo, hi):
    """Powers of ten (and 2, 5 between them) covering [lo, hi]."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo / 1.0001 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks


def label(v, unit=""):
    if v >= 1000 and unit == "µs":
        return f"{v / 1000:g} ms"
    if v >= 1000:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:g}" + (f" {unit}" if unit else "")


def svg(data, partial, title):
    w, h = 760, 470
    left, right, top, bottom = 80, 250, 50, 60
    pw, ph = w - left - right, h - top - bottom
    sizes = sorted({k[2] for k in data})
    costs = [v for v in data.values() if v > 0]
    if not sizes or not costs:
        raise SystemExit("plot.py: no per_process_us rows in the CSV")
    x_lo, x_hi = min(sizes) / 1.5, max(sizes) * 1.5
    y_lo = 10 ** math.floor(math.log10(min(costs)))
    y_hi = 10 ** math.ceil(math.log10(max(costs)))

    def x(n):
        return left + pw * (math.log10(n) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))

    def y(v):
        return top + ph * (1 - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="28" font-size="15" font-weight="bold">{title}</text>']
    for t in nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + pw}" y2="{y(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{label(t, "µs")}</text>')
    for n in sizes:
        out.append(f'<line x1="{x(n):.1f}" y1="{top}" x2="{x(n):.1f}" y2="{top + ph}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x(n):.1f}" y="{top + ph + 18}" text-anchor="middle">{label(n)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 15}" text-anchor="middle">processes in the tree (log scale)</text>')
    out.append(f'<text transform="translate(20 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               'time per process (log scale)</text>')
    ly = top + 10
    for row, shape, name, colour, dashed in SERIES:
        pts = sorted((n, v) for (r, s, n), v in data.items() if r == row and s == shape and v > 0)
        if not pts:
            continue
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(n):.1f},{y(v):.1f}" for i, (n, v) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for n, v in pts:
            hollow = (row, shape, n) in partial
            fill = "white" if hollow else colour
            note = " (partial: timed out)" if hollow else ""
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3.5" fill="{fill}" stroke="{colour}" stroke-width="1.5">'
                       f'<title>{name}, N={n}: {v:.1f} µs per process{note}</title></circle>')
        lx = left + pw + 15
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 34}" y="{ly + 4}">{name}</text>')
        ly += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "bench-out/latest.csv"
    dst = sys.argv[2] if len(sys.argv) > 2 else "docs/performance-cost.svg"
    data, partial = load(src)
    with open(dst, "w") as f:
        f.write(svg(data, partial, "Cost per process against tree size"))
    print(f"plot.py: wrote {dst} from {src}")


if __name__ == "__main__":
    main()
