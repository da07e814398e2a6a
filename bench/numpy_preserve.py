#!/usr/bin/env python3
"""numpy peer for bench/preserve.js: the same preservation work (SPEC §3 step 0) on the same shapes,
the way a numpy user would write it. The row GEMM: x (f32, [2*rows, n], both sides) @ P (f32, [n, n]);
the operator: numpy's solve in f64, P^T = solve(C0 + lambda*I, lambda*I) (LAPACK gesv through numpy's
OpenBLAS). Prints one JSON line per case: {"n", "rows", "gemmSeconds", "gemmCpuSeconds" (process CPU
time, all threads), "solveSeconds" (null if skipped), "blas"}. Times are the best of `reps`."""
import json, sys, time
import numpy as np

def best(f, reps, clock=time.perf_counter):
    t = []
    for _ in range(reps):
        t0 = clock()
        f()
        t.append(clock() - t0)
    return min(t)

def blas_name():
    try:
        cfg = np.show_config(mode='dicts')
        return cfg['Build Dependencies']['blas'].get('name', '?') + ' ' + str(cfg['Build Dependencies']['blas'].get('version', ''))
    except Exception:
        return '?'

def main():
    cases = json.loads(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.default_rng(0)
    for c in cases:
        n, rows = c['n'], c['rows']
        x = (0.01 * rng.standard_normal((2 * rows, n))).astype(np.float32)
        P = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
        out = np.empty((2 * rows, n), dtype=np.float32)
        g = best(lambda: np.matmul(x, P, out=out), reps)
        # the process's CPU time (all threads): on a shared machine, the time numpy's threads ran
        gc = best(lambda: np.matmul(x, P, out=out), reps, time.process_time)
        s = None
        if c.get('solve', True):
            v = rng.standard_normal(n)
            C0 = np.outer(v, v) + np.diag(1 + rng.random(n))
            lam = 0.3 * np.trace(C0) / n
            A = C0 + lam * np.eye(n)
            M = lam * np.eye(n)
            s = best(lambda: np.linalg.solve(A, M), max(1, reps // 2))
        print(json.dumps({'n': n, 'rows': rows, 'gemmSeconds': g, 'gemmCpuSeconds': gc, 'solveSeconds': s, 'blas': blas_name()}), flush=True)

if __name__ == '__main__':
    main()
