"""PyTorch peer of gradscope's default correlation study
(crates/studies/src/correlation.rs, CorrelationParams::default(), as
`gradscope reproduce` runs it). float64, He weights, PyTorch-default biases,
BN in per-sample mode.

Per (arch, seed), arch in plain-bn and resnet-bn, 4 seeds:
- pictures: a net on 2-D inputs over a 64 x 64 grid of [-2, 2]^2, one forward
  through 50 blocks, one backward per depth 1, 4, 16, 50 for df/dx; per
  picture the lag-1 correlation along both axes, the radially averaged power
  spectrum and its slope over radii 2..16, the radial autocorrelation;
- per-example similarity: a net on 128 digits (64 inputs, 10 classes), per
  depth the per-example cross-entropy gradients' Gram matrix of every layer by
  the per-layer trick (never B gradient copies), the whole net's cosine
  matrix, its mean off-diagonal, coherence, SNR, per-layer mean cosines and
  the cosine by input distance (8 bins).
"""
import math

import numpy as np
import torch
from torch import nn

from peer import BN, digits

ARCHS, DEPTHS, WIDTH, SIDE, EXTENT, EXAMPLES, BINS, SEEDS = (
    ("plain-bn", "resnet-bn"), (1, 4, 16, 50), 128, 64, 2.0, 128, 8, 4)


class Net(nn.Module):
    """Stem, blocks, head, recording (module, input, output) of every
    parameterised op so that per-example gradients come from the per-layer trick."""

    def __init__(self, arch, depth, inp, out):
        super().__init__()
        self.residual = arch.startswith("resnet")
        self.stem = nn.Linear(inp, WIDTH, bias=not arch.startswith("plain"))
        per = 2 if self.residual else 1
        self.fcs = nn.ModuleList([nn.Linear(WIDTH, WIDTH, bias=self.residual and k % 2 == 1)
                                  for k in range(depth * per)])
        self.bns = nn.ModuleList([BN(WIDTH) for _ in range(depth * per)])
        self.head = nn.Linear(WIDTH, out)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / m.in_features))

    def hidden(self, x):
        ops = []

        def rec(m, a, f):
            o = f(a)
            ops.append((m, a, o))
            return o

        def bn(k, h):
            xhat = self.bns[k].normalise(h)
            o = xhat * self.bns[k].weight + self.bns[k].bias
            ops.append((self.bns[k], xhat, o))
            return o

        hs, ends = [rec(self.stem, x, self.stem)], [1]
        for b in range(len(self.fcs) // (2 if self.residual else 1)):
            h = hs[-1]
            if self.residual:
                u = rec(self.fcs[2 * b], torch.relu(bn(2 * b, h)), self.fcs[2 * b])
                u = rec(self.fcs[2 * b + 1], torch.relu(bn(2 * b + 1, u)), self.fcs[2 * b + 1])
                hs.append(h + u)
            else:
                hs.append(torch.relu(bn(b, rec(self.fcs[b], h, self.fcs[b]))))
            ends.append(len(ops))
        return hs, ops, ends


def normalise(self, x):
    xd = x.detach()
    return (x - xd.mean(0)) / torch.sqrt(xd.var(0, unbiased=False) + 1e-5)


BN.normalise = normalise


def picture_stats(d1):
    n = d1.shape[0]
    g = d1 - d1.mean()
    r1 = 0.5 * (np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
                + np.corrcoef(g[:-1].ravel(), g[1:].ravel())[0, 1])
    power = np.abs(np.fft.fft2(g)) ** 2 / g.size
    k = np.fft.fftfreq(n) * n
    radius = np.rint(np.hypot(*np.meshgrid(k, k, indexing="ij"))).astype(int)
    keep = radius <= n // 2

    def radial(a):
        return np.bincount(radius[keep], a[keep]) / np.bincount(radius[keep])

    spectrum = radial(power)
    band = np.arange(2, max(n // 4, 3) + 1)
    slope = np.polyfit(np.log(band), np.log(spectrum[band]), 1)[0]
    acf = np.real(np.fft.ifft2(power))
    return r1, spectrum, slope, radial(acf / acf[0, 0])


def pictures(arch):
    net = Net(arch, DEPTHS[-1], 2, 1)
    for p in net.parameters():
        p.requires_grad_(False)
    axis = torch.linspace(-EXTENT, EXTENT, SIDE)
    grid = torch.stack([axis.repeat(SIDE), axis.repeat_interleave(SIDE)], 1).requires_grad_(True)
    hs, _, _ = net.hidden(grid)
    for d in DEPTHS:
        (g,) = torch.autograd.grad(net.head(hs[d]).sum(), grid, retain_graph=True)
        d1 = g[:, 0].reshape(SIDE, SIDE).numpy()
        _ = g.norm(dim=1).reshape(SIDE, SIDE)
        picture_stats(d1)


def gram_of(ops, deltas):
    """Per-layer Gram matrices of per-example gradients from (input, output grad) pairs."""
    grams = []
    for (m, a, _), dz in zip(ops, deltas):
        if isinstance(m, nn.Linear):
            g = (a @ a.T + (1.0 if m.bias is not None else 0.0)) * (dz @ dz.T)
        else:
            gw = dz * a
            g = gw @ gw.T + dz @ dz.T
        grams.append(g)
    return grams


def similarity(arch, x, y, dist, edges):
    net = Net(arch, DEPTHS[-1], 64, 10)
    hs, ops, ends = net.hidden(x)
    for d in DEPTHS:
        z = net.head(hs[d])
        used = ops[: ends[d]]
        loss = nn.functional.cross_entropy(z, y, reduction="sum")
        deltas = torch.autograd.grad(loss, [o for _, _, o in used] + [z], retain_graph=True)
        with torch.no_grad():
            grams = gram_of(used + [(net.head, hs[d].detach(), z)], [t.detach() for t in deltas])
            total = sum(grams)
            diag = torch.sqrt(torch.diagonal(total))
            cos = total / diag[:, None] / diag[None, :]
            off = ~torch.eye(EXAMPLES, dtype=torch.bool)
            _ = cos[off].mean().item()
            tr = torch.diagonal(total).mean()
            mean2 = total.sum() / EXAMPLES ** 2
            _ = (mean2 / tr).item(), (mean2 / ((tr - mean2) / EXAMPLES)).item()
            for g in grams:
                dg = torch.sqrt(torch.diagonal(g)).clamp_min(1e-300)
                _ = (g / dg[:, None] / dg[None, :])[off].mean().item()
            bins = np.searchsorted(edges[1:BINS], dist, side="left")
            c = cos.numpy()[off.numpy()]
            _ = [c[bins == b].mean() if (bins == b).any() else math.nan for b in range(BINS)]


def study():
    torch.set_default_dtype(torch.float64)
    xtr, ytr, _, _ = digits()
    x, y = xtr[:EXAMPLES].double(), ytr[:EXAMPLES]
    dist = torch.cdist(x, x).numpy()[~np.eye(EXAMPLES, dtype=bool)]
    edges = np.linspace(0.0, dist.max(), BINS + 1)
    for arch in ARCHS:
        for _ in range(SEEDS):
            pictures(arch)
            similarity(arch, x, y, dist, edges)
