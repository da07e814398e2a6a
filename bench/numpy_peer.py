#!/usr/bin/env python3
"""numpy peer for bench/run.js: the same GeoEdit math (SPEC §3, default geoedit strategy),
written the way a numpy user would. Prints one JSON line per case: {"shape", "dtype", "density", "seconds"}."""
import json, math, sys, time
import numpy as np

def decode(x, dtype):
    if dtype == 'bf16':
        return (x.astype(np.uint32) << 16).view(np.float32)
    return x

def encode(x, dtype):
    if dtype == 'bf16':
        u = x.view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return x

def trim(v, density):
    n = v.shape[1]
    k = max(1, math.ceil(density * n))
    idx = np.argpartition(-np.abs(v), k - 1, axis=1)[:, :k]
    out = np.zeros_like(v)
    np.put_along_axis(out, idx, np.take_along_axis(v, idx, axis=1), axis=1)
    return out

def edit(base, old, new, dtype, density, kappa=1.5, gamma=0.5):
    b0, o, w = decode(base, dtype), decode(old, dtype), decode(new, dtype)
    a = o - b0
    b = w - b0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dot = np.einsum('ij,ij->i', a64, b64)
    na = np.einsum('ij,ij->i', a64, a64)
    nb = np.einsum('ij,ij->i', b64, b64)
    with np.errstate(invalid='ignore', divide='ignore'):
        cos = np.where((na > 0) & (nb > 0), dot / np.sqrt(na * nb), 0.0)
    t = kappa / math.sqrt(a.shape[1])
    cn = np.where(np.abs(cos) <= t, gamma, 1.0).astype(np.float32)
    if density < 1:
        b = trim(b, density)
        a = trim(a, density)
    out = b0 + cn[:, None] * b
    return encode(out.astype(np.float32), dtype)

def main():
    cases = json.loads(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.default_rng(0)
    for c in cases:
        rows, cols = c['shape']
        if c['dtype'] == 'bf16':
            mk = lambda: (rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
        else:
            mk = lambda: rng.standard_normal((rows, cols), dtype=np.float32)
        base, old, new = mk(), mk(), mk()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            edit(base, old, new, c['dtype'], c['density'])
            times.append(time.perf_counter() - t0)
        times.sort()
        print(json.dumps({**c, 'seconds': times[len(times) // 2]}), flush=True)

if __name__ == '__main__':
    main()
