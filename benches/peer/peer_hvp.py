#!/usr/bin/env python3
"""PyTorch's loss, gradient, Hessian-vector product and Gauss-Newton product
for the small MLPs and conv nets of `crates/engine/tests/hvp_pytorch.rs`, on the weights,
batch and direction that test exports (f64), written as the test's fixture.

    GRADSCOPE_HVP_INPUTS=/tmp/in.json cargo test -p gradscope-engine --test hvp_pytorch
    python3 benches/peer/peer_hvp.py /tmp/in.json crates/engine/tests/fixtures/hvp_pytorch.json

The nets are written here from their definitions, not from gradscope's code:
plain: h <- act(BN(W h [+ b])); resnet: h <- h + W2 act(BN2(W1 act(BN1(h)) [+ b1])) + b2
(pre-activation, BN only in the -bn variants, where the layer before a BN has no
bias); a linear stem and head. Conv nets (He et al. 2016a): conv1-bn1-relu, then per
stage blocks relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)) (no shortcut in
`plain`; option A: x[:, :, ::2, ::2] with zero channels, option B: a 1x1 conv and BN),
global average pooling, fc. Mean cross-entropy. BN "full" mode normalises with
the batch's mean and biased variance, differentiated through; "eval" with the
running statistics. H.v is double backward, d/dtheta <grad L, v>; G.v is
J^T H_L J v with J v from torch.func.jvp of the logits.
"""
import json
import sys

import torch
from torch.func import functional_call, jvp

torch.set_default_dtype(torch.float64)
EPS = 1e-5


def act(name):
    return {"relu": torch.relu, "tanh": torch.tanh}[name]


def batch_norm(h, p, prefix, mode):
    if mode == "eval":
        mean, var = p[prefix + ".running_mean"], p[prefix + ".running_var"]
    else:
        mean, var = h.mean(0), h.var(0, unbiased=False)
    return (h - mean) / torch.sqrt(var + EPS) * p[prefix + ".weight"] + p[prefix + ".bias"]


def linear(h, p, prefix):
    out = h @ p[prefix + ".weight"].T
    if prefix + ".bias" in p:
        out = out + p[prefix + ".bias"]
    return out


def bn2d(h, p, prefix, mode):
    shape = (1, -1, 1, 1)
    if mode == "eval":
        mean, var = p[prefix + ".running_mean"], p[prefix + ".running_var"]
    else:
        mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
    return (h - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + EPS) * p[
        prefix + ".weight"
    ].reshape(shape) + p[prefix + ".bias"].reshape(shape)


def conv_logits(p, net, mode, x):
    conv = torch.nn.functional.conv2d
    x = x.reshape(x.shape[0], net["channels"], net["image"], net["image"])
    h = torch.relu(bn2d(conv(x, p["conv1.weight"], padding=1), p, "bn1", mode))
    n = (net["depth"] - 2) // 6
    residual = net["arch"].startswith("resnet")
    option_b = "shortcut=b" in net["arch"]
    for stage in (1, 2, 3):
        for b in range(n):
            pre = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            u = torch.relu(bn2d(conv(h, p[pre + ".conv1.weight"], stride=stride, padding=1), p, pre + ".bn1", mode))
            u = bn2d(conv(u, p[pre + ".conv2.weight"], padding=1), p, pre + ".bn2", mode)
            if residual:
                if pre + ".downsample.0.weight" in p and option_b:
                    s = bn2d(conv(h, p[pre + ".downsample.0.weight"], stride=stride), p, pre + ".downsample.1", mode)
                elif stride > 1 or h.shape[1] != u.shape[1]:
                    s = h[:, :, ::stride, ::stride]
                    extra = u.shape[1] - h.shape[1]
                    s = torch.nn.functional.pad(s, (0, 0, 0, 0, extra // 2, extra - extra // 2))
                else:
                    s = h
                u = u + s
            h = torch.relu(u)
    return linear(h.mean((2, 3)), p, "fc")


def logits(p, case, x):
    net = case["net"]
    if net["kind"] == "conv":
        return conv_logits(p, net, case["mode"], x)
    phi = act(net["activation"])
    bn = net["arch"].endswith("-bn")
    h = linear(x, p, "stem")
    for layer in range(net["depth"]):
        pre = f"layers.{layer}"
        if net["arch"].startswith("plain"):
            h = linear(h, p, pre + ".fc")
            if bn:
                h = batch_norm(h, p, pre + ".bn", case["mode"])
            h = phi(h)
        else:
            u = h
            for i in (1, 2):
                if bn:
                    u = batch_norm(u, p, f"{pre}.bn{i}", case["mode"])
                u = linear(phi(u), p, f"{pre}.fc{i}")
            h = h + u
    return linear(h, p, "head")


def one_case(case):
    t = {k: torch.tensor(v["values"]).reshape(v["shape"]) for k, v in case["tensors"].items()}
    names = case["parameters"]
    x = torch.tensor(case["x"]["values"]).reshape(case["x"]["shape"])
    y = torch.tensor(case["labels"])
    v_flat = torch.tensor(case["v"])
    sizes = [t[n].numel() for n in names]
    v = [c.reshape(t[n].shape) for c, n in zip(torch.split(v_flat, sizes), names)]
    params = [t[n].clone().requires_grad_(True) for n in names]

    def loss_of(ps):
        p = dict(t)
        p.update(zip(names, ps))
        return torch.nn.functional.cross_entropy(logits(p, case, x), y)

    loss = loss_of(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gv = sum((g * d).sum() for g, d in zip(grads, v))
    hv = torch.autograd.grad(gv, params)

    def z_of(*ps):
        p = dict(t)
        p.update(zip(names, ps))
        return logits(p, case, x)

    z, jv = jvp(z_of, tuple(t[n] for n in names), tuple(v))
    prob = torch.softmax(z, dim=1)
    u = prob * (jv - (prob * jv).sum(1, keepdim=True)) / x.shape[0]
    ps = [t[n].clone().requires_grad_(True) for n in names]
    gn = torch.autograd.grad(z_of(*ps), ps, grad_outputs=u)

    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs]).tolist()
    return {
        "loss": loss.item(),
        "gradient": flat(grads),
        "hvp": flat(hv),
        "gauss_newton": flat(gn),
        "torch_version": torch.__version__,
    }


def main():
    src, dst = sys.argv[1], sys.argv[2]
    cases = json.load(open(src))["cases"]
    for case in cases:
        case["pytorch"] = one_case(case)
    with open(dst, "w") as f:
        json.dump({"cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
