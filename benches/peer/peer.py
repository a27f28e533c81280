#!/usr/bin/env python3
"""PyTorch peer of `gradscope bench`: the same workloads, written as a PyTorch
user would, timed the same way (warm-up runs for at least 0.5 s, then --runs timed runs; median,
min, max), printed as one JSON object.

    python3 benches/peer/peer.py --workload shattered-net --threads 1 --runs 5
"""
import argparse
import json
import math
import resource
import statistics
import time

import numpy as np
import torch
from torch import nn


class BN(nn.Module):
    """BatchNorm over the batch with statistics held constant in the backward
    pass (gradscope's per-sample mode): each sample's output is a function of
    that sample alone."""

    def __init__(self, width):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        xd = x.detach()
        mean = xd.mean(0)
        var = xd.var(0, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias


def he_linear(i, o, bias=True):
    lin = nn.Linear(i, o, bias=bias)
    nn.init.normal_(lin.weight, std=math.sqrt(2.0 / i))
    return lin


class Plain(nn.Module):
    def __init__(self, width, bn):
        super().__init__()
        self.fc = he_linear(width, width, bias=not bn)
        self.bn = BN(width) if bn else None

    def forward(self, x):
        h = self.fc(x)
        if self.bn is not None:
            h = self.bn(h)
        return torch.relu(h)


class Residual(nn.Module):
    """x + F(x), pre-activation branch of `branch` layers ([BN] → ReLU → Linear)."""

    def __init__(self, width, bn, branch=2):
        super().__init__()
        self.bns = nn.ModuleList([BN(width) for _ in range(branch)]) if bn else None
        self.fcs = nn.ModuleList([he_linear(width, width, bias=(not bn) or i == branch - 1) for i in range(branch)])

    def forward(self, x):
        h = x
        for i, fc in enumerate(self.fcs):
            if self.bns is not None:
                h = self.bns[i](h)
            h = fc(torch.relu(h))
        return x + h


class Mlp(nn.Module):
    """plain, plain-bn, resnet, resnet-bn and resnet1-bn (a one-layer branch)."""

    def __init__(self, arch, depth, width, inp=1, out=1):
        super().__init__()
        bn = arch.endswith("-bn")
        branch = 1 if arch.startswith("resnet1") else 2
        self.stem = he_linear(inp, width, bias=arch != "plain-bn")
        if arch.startswith("plain"):
            self.layers = nn.ModuleList([Plain(width, bn) for _ in range(depth)])
        else:
            self.layers = nn.ModuleList([Residual(width, bn, branch) for _ in range(depth)])
        self.head = he_linear(width, out)

    def hidden(self, x, depth=None):
        hs = [self.stem(x)]
        for layer in self.layers[: depth if depth is not None else len(self.layers)]:
            hs.append(layer(hs[-1]))
        return hs

    def forward(self, x):
        return self.head(self.hidden(x)[-1])


def grid(n=256):
    return torch.linspace(-2.0, 2.0, n).unsqueeze(1)


def r1_and_spectrum(g):
    g = g - g.mean()
    spec = np.abs(np.fft.rfft(g)) ** 2 / len(g)
    return np.corrcoef(g[:-1], g[1:])[0, 1], spec


def shattered_net():
    """Input gradients and every ‖∂L/∂h_l‖, resnet-bn depth 50 width 200."""
    net = Mlp("resnet-bn", 50, 200)
    for p in net.parameters():
        p.requires_grad_(False)
    x0 = grid()

    def run():
        x = x0.clone().requires_grad_(True)
        hs = net.hidden(x)
        for h in hs:
            h.retain_grad()
        net.head(hs[-1]).sum().backward()
        norms = [h.grad.norm().item() for h in hs]
        return x.grad, norms

    return run


def depth_sweep_backward():
    """One net per depth (shared prefix), a backward pass each: r₁ and spectrum at depths 1..50."""
    nets = [Mlp(a, 50, 200) for a in ("resnet-bn", "plain-bn") for _ in range(8)]
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(False)
    x0 = grid()

    def run():
        out = 0.0
        for net in nets:
            for depth in range(1, 51):
                x = x0.clone().requires_grad_(True)
                net.head(net.hidden(x, depth)[-1]).sum().backward()
                r1, _ = r1_and_spectrum(x.grad[:, 0].numpy())
                out += r1
        return out

    return run


def depth_sweep_jvp():
    """Forward mode (torch.func.jvp) through the deepest net, all depths' outputs at once."""
    from torch.func import jvp

    nets = [Mlp(a, 50, 200) for a in ("resnet-bn", "plain-bn") for _ in range(8)]
    x0 = grid()

    def all_depths(net):
        def f(x):
            hs = net.hidden(x)
            return torch.stack([net.head(h)[:, 0] for h in hs[1:]])

        return f

    def run():
        out = 0.0
        with torch.no_grad():
            for net in nets:
                _, tangents = jvp(all_depths(net), (x0,), (torch.ones_like(x0),))
                for g in tangents.numpy():
                    r1, _ = r1_and_spectrum(g)
                    out += r1
        return out

    return run


def training_step(arch, depth, width):
    net = Mlp(arch, depth, width, inp=width, out=width)
    x = torch.rand(256, width) * 2 - 1

    def run():
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()

    return run


class ConvBlock(nn.Module):
    """He et al. 2016a's basic block, post-activation, option A shortcut."""

    def __init__(self, cin, cout, stride, residual):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.residual, self.stride, self.extra = residual, stride, cout - cin

    def forward(self, x):
        h = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        if self.residual:
            s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra:
                e = self.extra
                s = nn.functional.pad(s, (0, 0, 0, 0, e // 2, e - e // 2))
            h = h + s
        return torch.relu(h)


class ConvNet(nn.Module):
    """The CIFAR nets of He et al. 2016a: 6n + 2 layers, widths 16/32/64."""

    def __init__(self, depth, residual):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for s, w in enumerate([16, 32, 64]):
            for b in range(n):
                blocks.append(ConvBlock(cin, w, 2 if s > 0 and b == 0 else 1, residual))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.blocks(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(h.mean((2, 3)))


def conv_step(depth, residual):
    """One SGD step (forward, backward, update) at batch 128 on 32×32×3 images."""
    net = ConvNet(depth, residual)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(128, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (128,))

    def run():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return run


def gram_vmap():
    """Per-example gradients with torch.func (vmap of grad), then the Gram matrices."""
    from torch.func import functional_call, grad, vmap

    net = Mlp("plain", 8, 256, inp=64, out=10)
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = torch.rand(256, 64) * 2 - 1
    y = torch.arange(256) % 10

    def loss(p, xi, yi):
        z = functional_call(net, p, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(z, yi.unsqueeze(0))

    def run():
        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
        layers = {}
        for k, v in g.items():
            flat = v.reshape(256, -1)
            layers.setdefault(k.rsplit(".", 1)[0], []).append(flat @ flat.T)
        per_layer = {k: sum(v) for k, v in layers.items()}
        return sum(per_layer.values())

    return run


def gram_trick():
    """The per-layer Gram trick by hand: (A Aᵀ + 1) ⊙ (Δ Δᵀ) from hooks."""
    net = Mlp("plain", 8, 256, inp=64, out=10)
    x = torch.rand(256, 64) * 2 - 1
    y = torch.arange(256) % 10
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    acts, grads = {}, {}
    for m in linears:
        m.register_forward_hook(lambda mod, i, o: acts.__setitem__(mod, i[0].detach()))
        m.register_full_backward_hook(lambda mod, gi, go: grads.__setitem__(mod, go[0].detach()))

    def run():
        net.zero_grad(set_to_none=True)
        # Sum of per-example losses: each row of Δ is that example's own gradient.
        nn.functional.cross_entropy(net(x), y, reduction="sum").backward()
        total = 0
        for m in linears:
            a, d = acts[m], grads[m]
            total = total + (a @ a.T + 1.0) * (d @ d.T)
        return total

    return run


def digits():
    """The embedded digits (crates/data/digits/digits.csv.gz), split 80/20 with a fixed permutation."""
    import gzip
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "crates" / "data" / "digits" / "digits.csv.gz"
    data = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.float32)
    x, y = torch.from_numpy(data[:, :64] / 16.0), torch.from_numpy(data[:, 64]).long()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_test = round(len(y) * 0.2)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class TrainBN(nn.Module):
    """BatchNorm for training: batch statistics with gradient, running statistics for eval."""

    def __init__(self, width):
        super().__init__()
        self.bn = nn.BatchNorm1d(width)

    def forward(self, x):
        return self.bn(x)


class Classifier(nn.Module):
    """gradscope's MLP shapes for classification: stem, blocks, head (pre-activation residual blocks)."""

    def __init__(self, arch, depth, width=64, inp=64, out=10):
        super().__init__()
        self.residual = arch.startswith("resnet")
        self.stem = nn.Linear(inp, width, bias=arch != "plain-bn")
        blocks = []
        for _ in range(depth):
            if self.residual:
                blocks.append(nn.Sequential(TrainBN(width), nn.ReLU(), nn.Linear(width, width, bias=False),
                                            TrainBN(width), nn.ReLU(), nn.Linear(width, width)))
            else:
                blocks.append(nn.Sequential(nn.Linear(width, width, bias=False), TrainBN(width), nn.ReLU()))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, out)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / m.in_features))

    def forward(self, x, skip=None, order=None):
        h = self.stem(x)
        for b in order if order is not None else range(len(self.blocks)):
            if skip is not None and skip[b]:
                continue
            h = h + self.blocks[b](h) if self.residual else self.blocks[b](h)
        return self.head(h)


def train(net, xtr, ytr, xte, yte, epochs=20, lr=0.01, probe=128, sim=16):
    """SGD with momentum; per epoch: errors on both sets, per-layer gradient norms,
    the line probe and per-example cosines, as gradscope's trainer logs them."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    log_batch = torch.randperm(len(ytr))[:64]
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(ytr)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for x, y in ((xtr, ytr), (xte, yte)):
                z = net(x)
                _ = nn.functional.cross_entropy(z, y).item(), (z.argmax(1) != y).float().mean().item()
        net.zero_grad()
        nn.functional.cross_entropy(net(xtr[log_batch]), ytr[log_batch]).backward()
        _ = [p.grad.norm().item() for p in net.parameters()]
        if probe:
            a, b = xtr[log_batch[0]], xtr[log_batch[1]]
            t = torch.linspace(0, 1, probe).unsqueeze(1)
            line = (a + t * (b - a)).requires_grad_(True)
            net(line)[:, ytr[log_batch[0]]].sum().backward()
            g = (line.grad * (b - a)).sum(1).detach().numpy()
            r1_and_spectrum(g)
        if sim:
            grads = []
            for i in log_batch[:sim]:
                net.zero_grad()
                nn.functional.cross_entropy(net(xtr[i : i + 1]), ytr[i : i + 1]).backward()
                grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
            g = torch.stack(grads)
            g = g / g.norm(dim=1, keepdim=True)
            _ = (g @ g.T).mean().item()


def reproduce():
    """gradscope reproduce's six default studies, as PyTorch code would run them
    (norms, skips and correlation in peer_norms.py, peer_skips.py, peer_correlation.py)."""
    torch.set_default_dtype(torch.float64)
    xtr, ytr, xte, yte = digits()
    xtr, xte = xtr.double(), xte.double()

    def run():
        # Shattered gradients: 5 archs × 8 depths × 8 seeds, 256 points, width 200, f64;
        # one forward through 50 blocks per net, one backward per depth.
        for arch in ("plain", "plain-bn", "resnet", "resnet-bn", "resnet1-bn"):
            for _ in range(8):
                net = Mlp(arch, 50, 200)
                for p in net.parameters():
                    p.requires_grad_(False)
                x = grid().requires_grad_(True)
                hs = net.hidden(x)
                for depth in (1, 2, 4, 8, 16, 24, 32, 50):
                    gs = torch.autograd.grad(net.head(hs[depth]).sum(), [x] + hs[: depth + 1], retain_graph=True)
                    _ = [h.norm().item() for h in gs[1:]]
                    g = gs[0][:, 0].numpy()
                    r1_and_spectrum(g)
                    np.correlate(g - g.mean(), g - g.mean(), "full")
        # Degradation: plain-bn and resnet-bn at depths 4 and 32, 2 seeds, 20 epochs.
        torch.set_default_dtype(torch.float32)
        xf, xtf = xtr.float(), xte.float()
        for arch in ("plain-bn", "resnet-bn"):
            for depth in (4, 32):
                for _ in range(2):
                    train(Classifier(arch, depth), xf, ytr, xtf, yte)
        # Ensemble: depth 16, 2 seeds: train, lesions (single, random k, swaps), path gradients.
        for arch in ("plain-bn", "resnet-bn"):
            for _ in range(2):
                net = Classifier(arch, 16)
                train(net, xf, ytr, xtf, yte, probe=0, sim=0)
                net.eval()
                with torch.no_grad():
                    def err(skip=None, order=None):
                        return (net(xtf, skip, order).argmax(1) != yte).float().mean().item()
                    for b in range(16):
                        err([i == b for i in range(16)])
                    for k in range(17):
                        for _ in range(1 if k == 0 else 20):
                            dead = set(torch.randperm(16)[:k].tolist())
                            err([i in dead for i in range(16)])
                    for swaps in (1, 2, 4, 8):
                        for _ in range(20):
                            order = list(range(16))
                            for _ in range(swaps):
                                i, j = torch.randperm(16)[:2].tolist()
                                order[i], order[j] = order[j], order[i]
                            err(order=order)
                if net.residual:
                    xb, yb = xf[:64], ytr[:64]
                    hs = [net.stem(xb)]
                    for blk in net.blocks:
                        hs.append(hs[-1] + blk(hs[-1]))
                    for k in range(17):
                        for _ in range(24):
                            through = set(torch.randperm(16)[:k].tolist())
                            h = hs[-1].detach().requires_grad_(True)
                            g = torch.autograd.grad(nn.functional.cross_entropy(net.head(h), yb), h)[0]
                            for b in reversed(range(16)):
                                if b in through:
                                    hb = hs[b].detach().requires_grad_(True)
                                    g = torch.autograd.grad(net.blocks[b](hb), hb, g)[0]
                            xin = xb.clone().requires_grad_(True)
                            torch.autograd.grad(net.stem(xin), xin, g)[0].norm().item()
        torch.set_default_dtype(torch.float64)
        # The norms, skips and correlation studies (float64).
        import peer_correlation
        import peer_norms
        import peer_skips

        peer_norms.study()
        peer_skips.study()
        peer_correlation.study()

    return run


class CurvatureNet(nn.Module):
    """resnet-bn as gradscope builds it (pre-activation two-layer branch, a
    linear stem and head), with nn.BatchNorm1d in training mode: the batch's
    statistics, differentiated through."""

    def __init__(self, depth=8, width=256, inp=64, out=10):
        super().__init__()
        self.stem = he_linear(inp, width)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(nn.ModuleDict({
                "bn1": nn.BatchNorm1d(width), "fc1": he_linear(width, width, bias=False),
                "bn2": nn.BatchNorm1d(width), "fc2": he_linear(width, width),
            }))
        self.head = he_linear(width, out)

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks:
            u = b["fc1"](torch.relu(b["bn1"](h)))
            h = h + b["fc2"](torch.relu(b["bn2"](u)))
        return self.head(h)


def curvature_setup():
    net = CurvatureNet().train()
    x = torch.rand(256, 64) * 2 - 1
    y = torch.arange(256) % 10
    params = [p for p in net.parameters() if p.requires_grad]
    return net, x, y, params


def curvature_gradient():
    net, x, y, params = curvature_setup()

    def run():
        return torch.autograd.grad(nn.functional.cross_entropy(net(x), y), params)

    return run


def gradient_graph(net, x, y, params):
    """∇L with its graph kept for double backward."""
    return torch.autograd.grad(nn.functional.cross_entropy(net(x), y), params, create_graph=True)


def hvp_at(grads, params):
    """H·v by double backward through the retained graph of ∇L at one point,
    as PyHessian's hessian_vector_product does."""

    def hvp(v):
        return torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)

    return hvp


def curvature_hvp():
    """The first H·v at a point: the gradient's graph built, then double backward."""
    net, x, y, params = curvature_setup()
    v = [torch.randn_like(p) for p in params]

    def run():
        grads = gradient_graph(net, x, y, params)
        return torch.autograd.grad(grads, params, grad_outputs=v)

    return run


def curvature_hvp_again():
    """One more H·v at the same point, through the retained graph."""
    net, x, y, params = curvature_setup()
    hvp = hvp_at(gradient_graph(net, x, y, params), params)
    v = [torch.randn_like(p) for p in params]

    def run():
        return hvp(v)

    return run


def curvature_lanczos(steps=20):
    """The top eigenvalue by `steps` Lanczos steps with full reorthogonalisation,
    as PyHessian's SLQ Lanczos loop does (vectors as lists of tensors), from a
    fresh point: the gradient's graph is built once per run and retained."""
    net, x, y, params = curvature_setup()
    start = [torch.randn_like(p) for p in params]

    def dot(a, b):
        return sum((u * w).sum() for u, w in zip(a, b))

    def run():
        hvp = hvp_at(gradient_graph(net, x, y, params), params)
        n = math.sqrt(dot(start, start))
        v = [s / n for s in start]
        basis, alpha, beta = [v], [], []
        for i in range(steps):
            w = list(hvp(v))
            a = dot(w, v)
            alpha.append(a.item())
            for q in basis:  # full reorthogonalisation
                c = dot(w, q)
                w = [wi - c * qi for wi, qi in zip(w, q)]
            b = math.sqrt(dot(w, w))
            if i + 1 == steps or b == 0.0:
                break
            beta.append(b)
            v = [wi / b for wi in w]
            basis.append(v)
        t = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
        return np.linalg.eigvalsh(t)[-1]

    return run


class Transformer(nn.Module):
    """Pre-LN transformer encoder as a PyTorch user writes it: token and position
    embeddings, nn.TransformerEncoderLayer (norm_first, ReLU, no dropout), the final
    LayerNorm and a per-token linear head."""

    def __init__(self, depth=6, d=128, heads=4, seq=64, vocab=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d))
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.norm(self.layers(self.embed(ids) + self.pos)))


def transformer_step():
    vocab = 128
    net = Transformer(vocab=vocab)
    ids = torch.randint(0, vocab, (32, 64))
    y = (vocab - 1 - ids).reshape(-1)

    def run():
        net.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(ids).reshape(-1, vocab), y).backward()

    return run


WARM_UP_S = 0.5

WORKLOADS = {
    "reproduce": reproduce,
    "shattered-net": shattered_net,
    "depth-sweep": depth_sweep_jvp,
    "depth-sweep-per-depth": depth_sweep_backward,
    "mlp-512x10": lambda: training_step("plain", 10, 512),
    "resnet-256x50": lambda: training_step("resnet", 50, 256),
    "transformer-6x128": transformer_step,
    "gram-256x8": gram_trick,
    "gram-256x8-vmap": gram_vmap,
    "conv-resnet20-step": lambda: conv_step(20, True),
    "conv-plain20-step": lambda: conv_step(20, False),
    "conv-resnet56-step": lambda: conv_step(56, True),
    "conv-resnet110-step": lambda: conv_step(110, True),
    "curvature-gradient": curvature_gradient,
    "curvature-hvp": curvature_hvp,
    "curvature-hvp-again": curvature_hvp_again,
    "curvature-lanczos": curvature_lanczos,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    run = WORKLOADS[a.workload]()
    # Warm-up as gradscope's bench does: runs for at least WARM_UP_S, at least one.
    warm = time.perf_counter()
    run()
    while time.perf_counter() - warm < WARM_UP_S:
        run()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    in_order = list(times)
    times.sort()
    print(json.dumps({
        "workload": a.workload,
        "threads": a.threads,
        "runs": len(times),
        "median_s": statistics.median(times),
        "min_s": times[0],
        "max_s": times[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "flops": None,
        "times_s": in_order,
    }))


if __name__ == "__main__":
    main()
