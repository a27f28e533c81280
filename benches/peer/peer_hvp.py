#!/usr/bin/env python3
"""PyTorch's loss, gradient, Hessian-vector product and Gauss-Newton product
for the small MLPs of `crates/engine/tests/hvp_pytorch.rs`, on the weights,
batch and direction that test exports (f64), written as the test's fixture.

    GRADSCOPE_HVP_INPUTS=/tmp/in.json cargo test -p gradscope-engine --test hvp_pytorch
    python3 benches/peer/peer_hvp.py /tmp/in.json crates/engine/tests/fixtures/hvp_pytorch.json

The nets are written here from their definitions, not from gradscope's code:
plain: h <- act(BN(W h [+ b])); resnet: h <- h + W2 act(BN2(W1 act(BN1(h)) [+ b1])) + b2
(pre-activation, BN only in the -bn variants, where the layer before a BN has no
bias); a linear stem and head; mean cross-entropy. BN "full" mode normalises with
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


def logits(p, case, x):
    phi = act(case["activation"])
    bn = case["arch"].endswith("-bn")
    h = linear(x, p, "stem")
    for layer in range(case["depth"]):
        pre = f"layers.{layer}"
        if case["arch"].startswith("plain"):
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
