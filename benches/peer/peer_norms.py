"""PyTorch peer of gradscope's default norms study (crates/studies/src/norms.rs,
NormsParams::default(), as `gradscope reproduce` runs it). float64, zero biases.

Work, as gradscope does it:
- layers: plain, resnet, plain-bn, resnet-bn x relu, tanh, sigmoid x He, Xavier
  x 6 seeds = 144 nets of depth 50, width 128, on a batch of 64 Gaussian inputs
  of dimension 64, L = sum of outputs, BN in per-sample mode: ||h_l||, ||dL/dh_l||
  and every parameter's gradient norm; per configuration the mean and std over
  seeds and the mean-field ratio sqrt(chi_1) per layer (chi_1 = sigma_w^2 E[phi'(z)^2],
  z ~ N(0, q_l), by Gauss-Hermite quadrature);
- chain: |dF/dw_1| of F = w_L ... w_1 by autograd, 7 weights x lengths 1..50;
- phase: plain and resnet x relu and tanh x 12 values of sigma_w^2 x 4 seeds =
  192 nets of depth 50: ||dL/dh_l||, then log10(||dL/dh_0|| / ||dL/dh_L||);
- jacobian: width 96, 64 layers; identity, relu, tanh x Gaussian or orthogonal
  weights at the critical sigma_w^2 x plain or residual x 4 seeds: the Jacobian
  by the chain rule, its singular values at depths 1, 4, 16, 64, mean and
  variance of sigma^2.
"""
import math

import numpy as np
import torch
from torch import nn

from peer import BN

ARCHS = ("plain", "resnet", "plain-bn", "resnet-bn")
ACTS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda x: x}
DEPTH, WIDTH, INPUT_DIM, BATCH, SEEDS = 50, 128, 64, 64, 6
CHAIN_WEIGHTS, CHAIN_DEPTH = (0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5), 50
PHASE_SIGMA_W2 = [0.25 * 2 ** (k / 2.75) for k in range(12)]
PHASE_SEEDS = 4
JAC_WIDTH, JAC_DEPTHS, JAC_SEEDS = 96, (1, 4, 16, 64), 4
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(64)


def linear(i, o, std, bias=True):
    lin = nn.Linear(i, o, bias=bias)
    nn.init.normal_(lin.weight, std=std)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class Net(nn.Module):
    """Stem, `depth` blocks, head: plain blocks phi([BN](W h)), residual blocks
    h + W phi([BN](W phi([BN](h)))) (pre-activation)."""

    def __init__(self, arch, act, std, depth=DEPTH, width=WIDTH, inp=INPUT_DIM):
        super().__init__()
        self.bn = arch.endswith("-bn")
        self.residual = arch.startswith("resnet")
        self.act = ACTS[act]
        self.stem = linear(inp, width, std(inp, width))
        per_block = 2 if self.residual else 1
        self.fcs = nn.ModuleList(
            [linear(width, width, std(width, width), bias=not self.bn) for _ in range(depth * per_block)])
        self.bns = nn.ModuleList([BN(width) for _ in range(depth * per_block)]) if self.bn else None
        self.head = linear(width, 1, std(width, 1))

    def layer(self, k, h):
        h = self.fcs[k](h) if not self.residual else h
        if self.bns is not None:
            h = self.bns[k](h)
        h = self.act(h)
        return self.fcs[k](h) if self.residual else h

    def hidden(self, x):
        hs = [self.stem(x)]
        for b in range(len(self.fcs) // (2 if self.residual else 1)):
            h = hs[-1]
            if self.residual:
                hs.append(h + self.layer(2 * b + 1, self.layer(2 * b, h)))
            else:
                hs.append(self.layer(b, h))
        return hs


def he(i, o):
    return math.sqrt(2.0 / i)


def xavier(i, o):
    return math.sqrt(2.0 / (i + o))


def normal(s2):
    return lambda i, o: math.sqrt(s2 / i)


def derivative(act, z):
    if act == "relu":
        return (z > 0).astype(float)
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if act == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    return np.ones_like(z)


def mean_squared_slope(act, q):
    """E[phi'(z)^2], z ~ N(0, q)."""
    z = NODES * math.sqrt(max(q, 1e-300))
    return float((WEIGHTS * derivative(act, z) ** 2).sum() / WEIGHTS.sum())


def layer_norms(net, x, params=True):
    """||h_l||, ||dL/dh_l|| and, when asked, every parameter's gradient norm."""
    hs = net.hidden(x)
    for h in hs:
        h.retain_grad()
    net.zero_grad(set_to_none=True)
    net.head(hs[-1]).sum().backward()
    grad = [h.grad.norm().item() for h in hs]
    second = [(h.detach() ** 2).mean().item() for h in hs]
    pg = [(n, p.grad.norm().item()) for n, p in net.named_parameters() if p.grad is not None] if params else []
    return grad, second, pg


def layers_part():
    for arch in ARCHS:
        for act in ("relu", "tanh", "sigmoid"):
            for name, std in (("he", he), ("xavier", xavier)):
                s2 = 2.0 if name == "he" else 1.0
                rows = []
                for _ in range(SEEDS):
                    net = Net(arch, act, std)
                    grad, second, _ = layer_norms(net, torch.randn(BATCH, INPUT_DIM))
                    rows.append((grad, second))
                g = np.array([r[0] for r in rows])
                q = np.array([r[1] for r in rows]).mean(0)
                _ = g.mean(0), g.std(0), g[:, :-1] / g[:, 1:]
                _ = [math.sqrt(s2 * mean_squared_slope(act, ql)) for ql in q]


def chain_part():
    out = []
    for w in CHAIN_WEIGHTS:
        row = []
        for length in range(1, CHAIN_DEPTH + 1):
            ws = [torch.tensor(w, requires_grad=True) for _ in range(length)]
            f = ws[0]
            for v in ws[1:]:
                f = f * v
            f.backward()
            row.append(abs(ws[0].grad.item()))
        out.append(row)
    return out


def phase_part():
    for arch in ("plain", "resnet"):
        for act in ("relu", "tanh"):
            for s2 in PHASE_SIGMA_W2:
                ratios = []
                for _ in range(PHASE_SEEDS):
                    net = Net(arch, act, normal(s2))
                    for p in net.parameters():
                        p.requires_grad_(False)
                    x = torch.randn(BATCH, INPUT_DIM).requires_grad_(True)
                    grad, _, _ = layer_norms(net, x, params=False)
                    ratios.append(math.log10(grad[0] / grad[-1]) if grad[-1] > 0 else float("nan"))
                _ = np.nanmean(ratios)


def jacobian_part():
    n = JAC_WIDTH
    for act in ("identity", "relu", "tanh"):
        s2 = 2.0 if act == "relu" else 1.0
        phi = ACTS[act]
        for orthogonal in (False, True):
            for residual in (False, True):
                sv2 = {d: [] for d in JAC_DEPTHS}
                for _ in range(JAC_SEEDS):
                    h = torch.randn(n)
                    j = torch.eye(n)
                    for layer in range(1, JAC_DEPTHS[-1] + 1):
                        w = torch.empty(n, n)
                        if orthogonal:
                            nn.init.orthogonal_(w, gain=math.sqrt(s2))
                        else:
                            nn.init.normal_(w, std=math.sqrt(s2 / n))
                        if residual:
                            d = torch.from_numpy(derivative(act, h.numpy()))
                            j = j + (w * d) @ j
                            h = h + w @ phi(h)
                        else:
                            z = w @ h
                            d = torch.from_numpy(derivative(act, z.numpy()))
                            j = d[:, None] * (w @ j)
                            h = phi(z)
                        if layer in sv2:
                            sv2[layer].append(torch.linalg.svdvals(j) ** 2)
                _ = [(torch.stack(v).mean().item(), torch.stack(v).var().item()) for v in sv2.values()]


def study():
    torch.set_default_dtype(torch.float64)
    layers_part()
    chain_part()
    phase_part()
    jacobian_part()
