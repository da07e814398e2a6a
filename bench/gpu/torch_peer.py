#!/usr/bin/env python3
"""The PyTorch peer of the geoedit CUDA bench: the same math (SPEC §3, §4) in eager PyTorch on
device-resident tensors, timed with CUDA events (median of reps after a warm-up), plus the
device-to-device copy bandwidth measured in the same run. Prints one JSON object.

Not a dependency of the package: bench/gpu/run.sh runs it on a GPU machine that has PyTorch.
The peer follows the SPEC: f32 task vectors, f64 sums, the same region/coefficient rules, output
(base + c_new·b) + c_old·a rounded to the dtype. Its top-k uses torch.topk (ties not broken by
column index as the SPEC asks; the timing is what is compared)."""
import json
import math
import sys

import torch

DT = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def inputs(rows, cols, dtype, imp=False):
    g = torch.Generator(device="cuda").manual_seed(1)
    base = ((torch.rand(rows, cols, device="cuda", generator=g) * 2 - 1) * 0.05).to(DT[dtype])
    old = ((torch.rand(rows, cols, device="cuda", generator=g) * 2 - 1) * 0.06).to(DT[dtype])
    new = ((torch.rand(rows, cols, device="cuda", generator=g) * 2 - 1) * 0.06).to(DT[dtype])
    io = inw = None
    if imp:
        io = torch.rand(rows, cols, device="cuda", generator=g).to(DT[dtype])
        inw = torch.rand(rows, cols, device="cuda", generator=g).to(DT[dtype])
    return base, old, new, io, inw


def edit(base, old, new, io=None, inw=None, density=1.0, kappa=1.5, gamma=0.5, mu=1.0, phi=1.0, temp=1.0, alpha=1.0):
    rows, n = base.shape
    b0 = base.float()
    a = old.float() - b0
    b = new.float() - b0
    ad, bd = a.double(), b.double()
    dot = (ad * bd).sum(1)
    na = (ad * ad).sum(1)
    nb = (bd * bd).sum(1)
    cos = torch.where((na > 0) & (nb > 0), dot / torch.sqrt(na * nb), torch.zeros_like(dot))
    t = kappa / math.sqrt(n)
    orth = cos.abs() <= t
    if density < 1.0 or io is not None:
        ea = io.float() if io is not None else a.abs()
        eb = inw.float() if inw is not None else b.abs()
        k = max(1, math.ceil(density * n)) if density < 1.0 else n
        if k < n:
            va, ia = torch.topk(ea, k, dim=1)
            vb, ib = torch.topk(eb, k, dim=1)
            a = torch.zeros_like(a).scatter_(1, ia, a.gather(1, ia))
            b = torch.zeros_like(b).scatter_(1, ib, b.gather(1, ib))
            sa = torch.sqrt((va.double() ** 2).sum(1) / k)
            sb = torch.sqrt((vb.double() ** 2).sum(1) / k)
        else:
            sa = torch.sqrt((ea.double() ** 2).sum(1) / n)
            sb = torch.sqrt((eb.double() ** 2).sum(1) / n)
    else:
        sa = torch.sqrt(na / n)
        sb = torch.sqrt(nb / n)
    s = sa + sb
    r_old = torch.where(s > 0, sa / s, torch.full_like(s, 0.5))
    w_old = torch.where(s > 0, 1.0 / (1.0 + torch.exp(((1 - r_old) - r_old) / temp)), torch.full_like(s, 0.5))
    cn = torch.where(orth, torch.full_like(cos, alpha * gamma), torch.full_like(cos, alpha)).float()
    co = torch.where(orth, torch.zeros_like(cos), torch.where(cos > 0, mu * 2 * w_old, -phi * 2 * w_old)).float()
    out = (b0 + cn[:, None] * b) + co[:, None] * a
    return out.to(base.dtype)


def gram(m, n, ro, rn):
    g = torch.Generator(device="cuda").manual_seed(2)
    ao = torch.rand(ro, n, device="cuda", generator=g) - 0.5
    an = torch.rand(rn, n, device="cuda", generator=g) - 0.5
    bo = torch.rand(m, ro, device="cuda", generator=g) - 0.5
    bn = torch.rand(m, rn, device="cuda", generator=g) - 0.5

    def run():
        aod, and_, bod, bnd = ao.double(), an.double(), bo.double(), bn.double()
        gon = aod @ and_.T
        goo = aod @ aod.T
        gnn = and_ @ and_.T
        dot = ((bod @ gon) * bnd).sum(1)
        na = ((bod @ goo) * bod).sum(1)
        nb = ((bnd @ gnn) * bnd).sum(1)
        return dot, na, nb

    return run


def main():
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    reps = int(spec.get("reps", 20))
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "cases": []}
    # Copy bandwidth: a large device-to-device copy, bytes read + written.
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_(0, 255)
    y = torch.empty_like(x)
    ms = timed(lambda: y.copy_(x), reps)
    res["copy_gbps"] = 2 * x.numel() / (ms * 1e-3) / 1e9
    del x, y
    for c in spec.get("cases", []):
        if c["kind"] == "edit":
            base, old, new, io, inw = inputs(c["rows"], c["cols"], c["dtype"], c.get("importance", False))
            dens = c.get("density", 1.0)
            ms = timed(lambda: edit(base, old, new, io, inw, density=dens), reps)
            es = base.element_size()
            moved = base.numel() * es * (6 if io is not None else 4)
            res["cases"].append({**c, "ms": ms, "gbps": moved / (ms * 1e-3) / 1e9})
            del base, old, new, io, inw
        elif c["kind"] == "gram":
            run = gram(c["m"], c["n"], c["rOld"], c["rNew"])
            ms = timed(run, reps)
            res["cases"].append({**c, "ms": ms})
        torch.cuda.empty_cache()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
