"""PyTorch peer of gradscope's default skips study (crates/studies/src/skips.rs,
SkipsParams::default(), as `gradscope reproduce` runs it), built on the
shattered study (crates/studies/src/shattered.rs). Scalar input on a 256-point
grid over [-2, 2], width 128, float64, BN in per-sample mode (batch statistics
held constant in the backward), He-normal weights, PyTorch-default biases.

Work, as gradscope does it:
- comparison: 13 variants x 4 seeds = 52 nets of depth 50; for each net one
  forward pass through all 50 blocks, then one backward per depth 1, 4, 16, 50
  (208 backward passes) giving df/dx on the grid and ||dL/dh_l|| for l = 0..L;
- lambda sweep at depth 50: xskip and xskip-ln at lambda in {0.5, 0.7, 0.9, 1,
  1.1, 1.3, 1.5, 2} with alpha = 0.5, rskip-ln at 1, 2, 3, 4, 6, 8 recursions:
  22 variants x 4 seeds = 88 nets, one forward and one backward each;
- per signal (296): r1, power spectrum, spectral slope (bins 4..64), ACF to lag
  32; summaries over seeds (mean/std of r1, slope, per-block gradient growth,
  per-layer norms), decay fits against depth (exponential and power law of r1,
  1 - r1, ||dL/dh_0||), white/brown noise references (4 draws each, per part),
  across-seed correlation matrices (256 x 256 per variant and depth, which
  gradscope computes and the skips study then drops), the sweep's rows.
"""
import math

import numpy as np
import torch
from torch import nn

from peer import BN, grid, he_linear, r1_and_spectrum

WIDTH, POINTS, SEEDS = 128, 256, 4
DEPTHS = (1, 4, 16, 50)
LAMBDAS = (0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.5, 2.0)
RECURSIONS = (1, 2, 3, 4, 6, 8)
SWEEP_DEPTH, SWEEP_ALPHA = 50, 0.5
BAND = (POINTS // 64, POINTS // 4)  # inclusive bins of the slope fit
MAX_LAG = min(32, POINTS // 4)

# Spec string -> block options (crates/nets/src/spec.rs).
COMPARE = {
    "plain": dict(kind="plain"),
    "plain-bn": dict(kind="plain", norm="bn"),
    "plain:norm=ln": dict(kind="plain", norm="ln"),
    "looks-linear": dict(kind="looks-linear"),
    "resnet-bn": dict(norm="bn"),
    "resnet-bn:order=post": dict(order="post", norm="bn"),
    "resnet:norm=ln": dict(norm="ln"),
    "xskip-ln": dict(order="postnorm", norm="ln"),
    "highway": dict(kind="highway", gate=-2.0),
    "resnet:skip=scale(0.5)": dict(lam=0.5),
    "resnet:skip=gate(-2)": dict(gate=-2.0),
    "resnet:init=fixup": dict(init="fixup"),
    "resnet-bn:init=skipinit": dict(norm="bn", init="skipinit"),
}


def sweep_points():
    """(family, lambda, options) for xskip, xskip-ln at each lambda, then rskip-ln."""
    pts = [(fam, lam, dict(order="postnorm", norm=norm, lam=lam, alpha=SWEEP_ALPHA))
           for fam, norm in (("xskip", None), ("xskip-ln", "ln")) for lam in LAMBDAS]
    pts += [("rskip-ln", float(k), dict(order="postnorm", norm="ln", repeat=k)) for k in RECURSIONS]
    return pts


def make_norm(norm, width):
    return BN(width) if norm == "bn" else nn.LayerNorm(width)


class Plain(nn.Module):
    """Linear -> [norm] -> ReLU (no bias before BN)."""

    def __init__(self, width, norm=None):
        super().__init__()
        layers = [he_linear(width, width, bias=norm != "bn")]
        if norm:
            layers.append(make_norm(norm, width))
        self.body = nn.Sequential(*layers, nn.ReLU())

    def forward(self, x):
        return self.body(x)


class LooksLinear(nn.Module):
    """CReLU -> Linear(2W -> W) with weights [M, -M], M ~ N(0, 1/W) (He over W, / sqrt 2)."""

    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(2 * width, width)
        with torch.no_grad():
            m = torch.randn(width, width) * math.sqrt(1.0 / width)
            self.fc.weight.copy_(torch.cat([m, -m], 1))
            self.fc.bias.uniform_(-1 / math.sqrt(width), 1 / math.sqrt(width))

    def forward(self, x):
        return self.fc(torch.cat([torch.relu(x), torch.relu(-x)], 1))


class Residual(nn.Module):
    """y = s(x) + alpha*c*F(x), s(x) = lam*x or the gate carry (1 - g)*x (branch times g);
    then ReLU (post order) or LN, recursed as y <- LN(x + y) (postnorm, rSkip)."""

    def __init__(self, width, depth, order="pre", norm=None, lam=1.0, alpha=1.0, gate=None,
                 init=None, repeat=1, branch=None):
        super().__init__()
        if branch is None:
            layers = []
            for i in range(2):
                last = i == 1
                if order == "pre":
                    if norm:
                        layers.append(make_norm(norm, width))
                    layers += [nn.ReLU(), he_linear(width, width, bias=norm != "bn" or last)]
                elif order == "post":
                    layers.append(he_linear(width, width, bias=norm != "bn"))
                    if norm:
                        layers.append(make_norm(norm, width))
                    if not last:
                        layers.append(nn.ReLU())
                else:  # postnorm
                    layers.append(he_linear(width, width))
                    if not last:
                        layers.append(nn.ReLU())
            branch = nn.Sequential(*layers)
        self.branch = branch
        self.order, self.lam, self.alpha = order, lam, alpha
        self.gate = None
        if gate is not None:
            self.gate = he_linear(width, width)
            nn.init.constant_(self.gate.bias, gate)
        self.gain = None
        if init is not None:
            self.gain = nn.Parameter(torch.tensor([1.0 if init == "fixup" else 0.0]))
        if init == "fixup":  # inner layer x L^(-1/2) (L of the deepest net), last layer zero
            fcs = [m for m in branch if isinstance(m, nn.Linear)]
            with torch.no_grad():
                fcs[0].weight.mul_(depth ** -0.5)
                fcs[-1].weight.zero_()
                fcs[-1].bias.zero_()
        self.post = None
        if order == "postnorm" and norm:
            self.post = nn.ModuleList([make_norm(norm, width) for _ in range(repeat)])

    def forward(self, x):
        f = self.branch(x)
        if self.alpha != 1.0:
            f = f * self.alpha
        if self.gain is not None:
            f = f * self.gain
        if self.gate is not None:
            g = torch.sigmoid(self.gate(x))
            y = g * f + (1 - g) * x
        else:
            y = (x * self.lam if self.lam != 1.0 else x) + f
        if self.order == "post":
            y = torch.relu(y)
        elif self.post is not None:
            y = self.post[0](y)
            for n in self.post[1:]:
                y = n(x + y)
        return y


def block(width, depth, kind="residual", norm=None, **kw):
    if kind == "plain":
        return Plain(width, norm)
    if kind == "looks-linear":
        return LooksLinear(width)
    if kind == "highway":  # H = ReLU(Linear x), exclusive gate
        return Residual(width, depth, gate=kw["gate"],
                        branch=nn.Sequential(he_linear(width, width), nn.ReLU()))
    return Residual(width, depth, norm=norm, **kw)


class Net(nn.Module):
    """Linear stem (1 -> W; no bias for plain-bn) -> depth blocks -> linear head (W -> 1)."""

    def __init__(self, opts, depth, width=WIDTH):
        super().__init__()
        plain_bn = opts.get("kind") == "plain" and opts.get("norm") == "bn"
        self.stem = he_linear(1, width, bias=not plain_bn)
        self.layers = nn.ModuleList([block(width, depth, **opts) for _ in range(depth)])
        self.head = he_linear(width, 1)

    def hidden(self, x):
        hs = [self.stem(x)]
        for layer in self.layers:
            hs.append(layer(hs[-1]))
        return hs


def run_net(opts, depths):
    """One forward through the deepest net, one backward per depth (head on h_d):
    [(df/dx, ||dL/dh_l|| for l <= d)] per depth, and ||h_l|| for every l."""
    net = Net(opts, depths[-1])
    net.requires_grad_(False)
    x = grid(POINTS).requires_grad_(True)
    hs = net.hidden(x)
    act = torch.stack([h.detach().norm() for h in hs]).numpy()
    out = []
    for d in depths:
        grads = torch.autograd.grad(net.head(hs[d]).sum(), [x] + hs[: d + 1],
                                    retain_graph=d != depths[-1])
        norms = torch.stack([g.norm() for g in grads[1:]]).numpy()
        out.append((grads[0][:, 0].numpy(), norms))
    return out, act


def line_fit(x, y):
    """Least squares y = a + b x: (slope, intercept, R^2), None with < 2 points."""
    if len(x) < 2:
        return None
    b, a = np.polyfit(x, y, 1)
    ss = ((y - y.mean()) ** 2).sum()
    return b, a, 1 - ((y - a - b * x) ** 2).sum() / ss


def signal_stats(g):
    """r1, spectrum, spectral slope fit and ACF of one df/dx (NaN when not finite)."""
    if not np.isfinite(g).all():
        return np.nan, None, np.full(POINTS // 2 + 1, np.nan), np.full(MAX_LAG + 1, np.nan)
    r1, spec = r1_and_spectrum(g)
    k = np.arange(BAND[0], BAND[1] + 1)
    p = spec[k]
    ok = (p > 0) & np.isfinite(p)
    fit = line_fit(np.log(k[ok]), np.log(p[ok]))
    d = g - g.mean()
    acf = np.correlate(d, d, "full")[POINTS - 1: POINTS + MAX_LAG] / (d @ d)
    return r1, fit, spec, acf


def mean_std(v, axis=None):
    """Mean and sample std of the finite values (as gradscope's MeanStd)."""
    m = np.ma.masked_invalid(np.asarray(v, dtype=float))
    return np.ma.filled(m.mean(axis), np.nan), np.ma.filled(m.std(axis, ddof=1), np.nan)


def decay_fits(depths, values):
    """Exponential a*b^L and power law a*L^-p, fitted to ln y over the positive points."""
    L, v = np.asarray(depths, float), np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    return line_fit(L[ok], np.log(v[ok])), line_fit(np.log(L[ok]), np.log(v[ok]))


def noise_references():
    rng = np.random.default_rng()
    out = []
    for brown in (False, True):
        stats = []
        for _ in range(SEEDS):
            g = rng.standard_normal(POINTS)
            if brown:
                g = np.cumsum(g)
            r1, fit, _, _ = signal_stats(g)
            stats.append((r1, fit[0]))
        out.append(mean_std(stats, 0))
    return out


def shattered_part(variants, depths):
    """One shattered-study run: every (variant, seed) net, then the summary rows."""
    rows = {}
    for name, opts in variants:
        cells = [run_net(opts, depths) for _ in range(SEEDS)]
        for i, d in enumerate(depths):
            stats = [signal_stats(per_depth[i][0]) for per_depth, _ in cells]
            grad = np.stack([per_depth[i][1] for per_depth, _ in cells])  # (seeds, d + 1)
            act = np.stack([a[: d + 1] for _, a in cells])
            growth = (grad[:, 0] / grad[:, d]) ** (1.0 / d)
            rows[name, d] = dict(
                r1=mean_std([s[0] for s in stats]),
                slope=mean_std([s[1][0] if s[1] else np.nan for s in stats]),
                growth=mean_std(growth),
                grad=mean_std(grad, 0),
                act=mean_std(act, 0)[0],
                corr=np.corrcoef(np.stack([per_depth[i][0] for per_depth, _ in cells]), rowvar=False),
            )
        if len(depths) > 1:
            r1 = np.array([rows[name, d]["r1"][0] for d in depths])
            norm0 = np.array([rows[name, d]["grad"][0][0] for d in depths])
            for v in (r1, 1 - r1, norm0):
                decay_fits(depths, v)
    noise_references()
    return rows


def study():
    """The whole default skips study, once."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with np.errstate(all="ignore"):  # constant df/dx (looks-linear, fixup, skipinit) gives NaN r1
            compare = shattered_part(list(COMPARE.items()), list(DEPTHS))
            points = sweep_points()
            unique = {}
            for fam, lam, opts in points:
                unique.setdefault(tuple(sorted(opts.items())), opts)
            sweep = shattered_part(list(unique.items()), [SWEEP_DEPTH])
            rows = []
            for fam, lam, opts in points:
                r = sweep[tuple(sorted(opts.items())), SWEEP_DEPTH]
                g, a, L = r["grad"][0], r["act"], SWEEP_DEPTH
                mean_field = math.sqrt(lam ** 2 + 2 * SWEEP_ALPHA ** 2) if fam == "xskip" else math.nan
                rows.append(dict(family=fam, lam=lam, growth=r["growth"], r1=r["r1"], slope=r["slope"],
                                 log10_ratio=math.log10(g[0] / g[L]),
                                 forward_growth=(a[L] / a[0]) ** (1 / L), mean_field=mean_field))
        return compare, rows
    finally:
        torch.set_default_dtype(prev)
