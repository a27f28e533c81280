#!/usr/bin/env python3
"""Compare two notebooks-data folders value for value, provenance aside.

    scripts/compare-data.py EXPECTED ACTUAL [--npy]

JSON files are compared after dropping every `provenance` object; CSV and
(with --npy) NPY files byte for byte. Where numbers differ, the largest
absolute and relative differences are printed. Exit 0 when every file
matches, 1 otherwise.
"""
import json
import math
import sys
from pathlib import Path


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "provenance"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def numbers(v, out):
    if isinstance(v, dict):
        for k in sorted(v):
            numbers(v[k], out)
    elif isinstance(v, list):
        for x in v:
            numbers(x, out)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        out.append(float(v))
    return out


def csv_numbers(text):
    out = []
    for cell in text.replace("\n", ",").split(","):
        try:
            out.append(float(cell))
        except ValueError:
            pass
    return out


def spread(a, b):
    if len(a) != len(b):
        return "different number of values"
    worst_abs, worst_rel = 0.0, 0.0
    for x, y in zip(a, b):
        if x == y or (math.isnan(x) and math.isnan(y)):
            continue
        d = abs(x - y)
        if math.isnan(d) or math.isinf(d):
            return f"{x} vs {y}"
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / max(abs(x), abs(y)))
    return f"max abs {worst_abs:.3g}, max rel {worst_rel:.3g}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    npy = "--npy" in sys.argv
    if len(args) != 2:
        sys.exit(__doc__)
    a, b = Path(args[0]), Path(args[1])
    suffixes = {".json", ".csv"} | ({".npy"} if npy else set())
    files = sorted(
        p.relative_to(a)
        for p in a.rglob("*")
        if p.suffix in suffixes and "cells" not in p.parts and "checkpoints" not in p.parts
    )
    bad = 0
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pb.exists():
            print(f"missing: {rel}")
            bad += 1
            continue
        if rel.suffix == ".json":
            ja, jb = strip(json.loads(pa.read_text())), strip(json.loads(pb.read_text()))
            if ja != jb:
                print(f"differs: {rel} ({spread(numbers(ja, []), numbers(jb, []))})")
                bad += 1
        elif pa.read_bytes() != pb.read_bytes():
            detail = ""
            if rel.suffix == ".csv":
                detail = f" ({spread(csv_numbers(pa.read_text()), csv_numbers(pb.read_text()))})"
            print(f"differs: {rel}{detail}")
            bad += 1
    print(f"{len(files) - bad} of {len(files)} files equal")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
