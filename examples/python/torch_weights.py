#!/usr/bin/env python3
"""Load PyTorch weights into gradscope, and check df/dx against autograd.

Builds the `resnet-bn` net in PyTorch with gradscope's `state_dict` names
(docs/data.md, "Weights files"), saves it as safetensors, runs
`gradscope shattered --load-weights` on it, and compares gradscope's df/dx on
the input grid with PyTorch's on the same weights. Needs torch, safetensors
and numpy.

    cargo build --release
    python3 examples/python/torch_weights.py [--depth 8] [--gradscope target/release/gradscope]
"""
import argparse
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


def linear(i, o, bias=True):
    lin = nn.Linear(i, o, bias=bias)
    nn.init.normal_(lin.weight, std=math.sqrt(2.0 / i))  # He (fan-in)
    return lin


class Block(nn.Module):
    """Pre-activation residual block x + F(x), F = BN → ReLU → Linear → BN → ReLU → Linear."""

    def __init__(self, width):
        super().__init__()
        self.bn1, self.fc1 = nn.BatchNorm1d(width), linear(width, width, bias=False)
        self.bn2, self.fc2 = nn.BatchNorm1d(width), linear(width, width)

    def forward(self, x):
        h = self.fc1(torch.relu(self.bn1(x)))
        return x + self.fc2(torch.relu(self.bn2(h)))


class ResnetBn(nn.Module):
    def __init__(self, depth, width):
        super().__init__()
        self.stem = linear(1, width)
        self.layers = nn.ModuleList([Block(width) for _ in range(depth)])
        self.head = linear(width, 1)

    def forward(self, x):
        h = self.stem(x)
        for block in self.layers:
            h = block(h)
        return self.head(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--gradscope", default="target/release/gradscope")
    args = ap.parse_args()

    torch.manual_seed(0)
    net = ResnetBn(args.depth, args.width).double().train()
    tmp = Path(tempfile.mkdtemp())
    weights = tmp / "resnet-bn.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))

    # Training-mode BN couples the grid; `full` takes the gradient through the
    # batch statistics, as autograd does.
    subprocess.run([args.gradscope, "shattered", "--archs", "resnet-bn", "--depths", str(args.depth),
                    "--width", str(args.width), "--seeds", "1", "--bn-mode", "full", "--dtype", "f64",
                    "--load-weights", str(weights), "--no-report", "-q", "--out", str(tmp / "data")], check=True)
    ours = np.load(tmp / "data/shattered/input_gradients.npy")[0, 0, 0]
    grid = np.load(tmp / "data/shattered/grid.npy")

    x = torch.tensor(grid, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    net(x).sum().backward()
    theirs = x.grad[:, 0].numpy()

    err = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
    r1 = lambda g: np.corrcoef(g[:-1], g[1:])[0, 1]
    print(f"resnet-bn depth {args.depth}: max |gradscope − PyTorch| / max |df/dx| = {err:.1e}; "
          f"r1 {r1(ours):.4f} (gradscope) vs {r1(theirs):.4f} (PyTorch)")
    if err > 1e-9:
        raise SystemExit("df/dx differs from PyTorch's")


if __name__ == "__main__":
    main()
