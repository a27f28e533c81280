#!/usr/bin/env python3
"""PyTorch's loss, logits and parameter gradients for the small transformers of
`crates/engine/tests/transformer_pytorch.rs`, on the weights, token ids and targets
that test exports (f64), written as the test's fixture.

    GRADSCOPE_TRANSFORMER_INPUTS=/tmp/in.json cargo test -p gradscope-engine --test transformer_pytorch
    python3 benches/peer/peer_transformer.py /tmp/in.json crates/engine/tests/fixtures/transformer_pytorch.json

The nets are written here from their definition (Vaswani et al. 2017; Xiong et al.
2020), not from gradscope's code: h0 = E[ids] + P; per block an attention sublayer
(PyTorch's own F.multi_head_attention_forward on in_proj / out_proj, a causal mask
when asked) and, unless mlp=off, a feed-forward sublayer W2 relu(W1 x + b1) + b2,
each joined to its input x as
  post: LN(x + F(x)); xskip: LN(lambda x + F(x)); pre: x + F(LN(x));
  none: x + F(x); rezero: x + alpha F(x); rskip (Liu et al. 2020):
  y1 = LN1(x + F(x)), yi = LNi(x + y(i-1)) for i = 2..lambda, each LNi its own
  weights (norm{k}, then norm{k}_i); with skip=off every x term is dropped;
then the final LN (pre only) and a per-token linear head. LN eps 1e-5. The loss is
the mean cross-entropy over every token of the batch.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
EPS = 1e-5


def layer_norm(x, p, prefix):
    return F.layer_norm(x, x.shape[-1:], p[prefix + ".weight"], p[prefix + ".bias"], EPS)


def linear(x, p, prefix):
    return x @ p[prefix + ".weight"].T + p[prefix + ".bias"]


def attention(x, p, prefix, heads, causal):
    t, d = x.shape[1], x.shape[2]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None
    xt = x.transpose(0, 1)  # (T, B, d)
    y, _ = F.multi_head_attention_forward(
        xt, xt, xt, d, heads,
        p[prefix + ".in_proj_weight"], p[prefix + ".in_proj_bias"],
        None, None, False, 0.0,
        p[prefix + ".out_proj.weight"], p[prefix + ".out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask,
    )
    return y.transpose(0, 1)


def join(x, f, p, prefix, k, net):
    ln, skip = net["ln"], net["skip"]
    if ln == "rskip":
        y = f(x)
        for i in range(1, int(net["lambda"]) + 1):
            name = f"{prefix}.norm{k}" if i == 1 else f"{prefix}.norm{k}_{i}"
            y = layer_norm(x + y if skip else y, p, name)
        return y
    if ln in ("post", "xskip"):
        lam = net["lambda"] if ln == "xskip" else 1.0
        y = f(x)
        return layer_norm(lam * x + y if skip else y, p, f"{prefix}.norm{k}")
    if ln == "pre":
        y = f(layer_norm(x, p, f"{prefix}.norm{k}"))
    elif ln == "none":
        y = f(x)
    elif ln == "rezero":
        y = p[f"{prefix}.alpha{k}"] * f(x)
    else:
        raise ValueError(ln)
    return x + y if skip else y


def logits(p, net, ids):
    h = p["embed.weight"][ids] + p["pos_embed.weight"]
    for layer in range(net["depth"]):
        pre = f"layers.{layer}"
        h = join(h, lambda x: attention(x, p, pre + ".self_attn", net["heads"], net["causal"]), p, pre, 1, net)
        if net["mlp"]:
            h = join(h, lambda x: linear(torch.relu(linear(x, p, pre + ".linear1")), p, pre + ".linear2"), p, pre, 2, net)
    if net["ln"] == "pre":
        h = layer_norm(h, p, "norm")
    return linear(h, p, "head")


def one_case(case):
    t = {k: torch.tensor(v["values"]).reshape(v["shape"]) for k, v in case["tensors"].items()}
    names = case["parameters"]
    net = case["net"]
    ids = torch.tensor(case["ids"], dtype=torch.long).reshape(-1, net["seq_len"])
    y = torch.tensor(case["targets"], dtype=torch.long)
    params = [t[n].clone().requires_grad_(True) for n in names]
    p = dict(t)
    p.update(zip(names, params))
    z = logits(p, net, ids)
    loss = F.cross_entropy(z.reshape(-1, net["vocab"]), y)
    grads = torch.autograd.grad(loss, params)
    return {
        "loss": loss.item(),
        "logits": z.detach().reshape(-1).tolist(),
        "gradients": {n: g.reshape(-1).tolist() for n, g in zip(names, grads)},
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
