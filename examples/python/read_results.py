#!/usr/bin/env python3
"""Read gradscope results with numpy and pandas (schema: docs/data.md).

    python3 examples/python/read_results.py [notebooks-data]
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

root = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks-data")

d = root / "shattered"
summary = json.loads((d / "summary.json").read_text())
archs, depths = summary["config"]["archs"], summary["config"]["depths"]
print(f"shattered: {len(archs)} archs × {len(depths)} depths, {summary['config']['seeds']} seeds, "
      f"run {summary['provenance']['started']} ({summary['provenance']['version']})")
table = pd.read_csv(d / "summary.csv")
print(table.pivot(index="depth", columns="arch", values="r1_mean").round(3))

if (d / "input_gradients.npy").exists():                # arrays are written by a run, not committed
    g = np.load(d / "input_gradients.npy")            # (archs, depths, seeds, N)
    a, L = archs.index(archs[-1]), len(depths) - 1
    x = np.load(d / "grid.npy")
    print(f"{archs[-1]} at depth {depths[-1]}: df/dx of seed 0 has {len(x)} points, "
          f"lag-1 correlation {np.corrcoef(g[a, L, 0, :-1], g[a, L, 0, 1:])[0, 1]:.3f}")
else:
    print("no NPY arrays here: run `gradscope reproduce` to write them")

t = root / "degradation"
if (t / "curves.csv").exists():
    curves = pd.read_csv(t / "curves.csv")
    last = curves[curves.epoch == curves.epoch.max()]
    print(last.groupby(["arch", "depth"])[["train_error", "test_error"]].mean().round(4))
