// The f64 reference of SPEC §3 step 0 (preservation), independent of the core: P from C0 (and C1)
// by Gauss-Jordan elimination in f64, the basis form, and x·P.
export function gram(K: ArrayLike<number>, N: number, d: number): Float64Array {
  const C = new Float64Array(d * d);
  for (let r = 0; r < N; r++)
    for (let i = 0; i < d; i++) {
      const ki = K[r * d + i]!;
      for (let j = 0; j < d; j++) C[i * d + j] += ki * K[r * d + j]!;
    }
  for (let i = 0; i < C.length; i++) C[i] /= N;
  return C;
}

export function inverse(A0: ArrayLike<number>, d: number): Float64Array {
  const A = Float64Array.from(A0), I = new Float64Array(d * d);
  for (let i = 0; i < d; i++) I[i * d + i] = 1;
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(A[r * d + c]!) > Math.abs(A[p * d + c]!)) p = r;
    for (let j = 0; j < d; j++) {
      [A[c * d + j], A[p * d + j]] = [A[p * d + j]!, A[c * d + j]!];
      [I[c * d + j], I[p * d + j]] = [I[p * d + j]!, I[c * d + j]!];
    }
    const inv = 1 / A[c * d + c]!;
    for (let j = 0; j < d; j++) { A[c * d + j]! *= inv; I[c * d + j]! *= inv; }
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = A[r * d + c]!;
      if (f === 0) continue;
      for (let j = 0; j < d; j++) { A[r * d + j] -= f * A[c * d + j]!; I[r * d + j] -= f * I[c * d + j]!; }
    }
  }
  return I;
}

export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let q = 0; q < k; q++) {
      const a = A[i * k + q]!;
      if (a === 0) continue;
      for (let j = 0; j < n; j++) C[i * n + j] += a * B[q * n + j]!;
    }
  return C;
}

/** P = (mu'·C1 + lambda·I)(C0 + mu'·C1 + lambda·I)^-1, lambda = rho·tr(C0)/d, mu' = mu·tr(C0)/tr(C1). */
export function ridgeP(C0: ArrayLike<number>, C1: ArrayLike<number> | null, d: number, rho: number, mu: number): Float64Array {
  let t0 = 0, t1 = 0;
  for (let i = 0; i < d; i++) { t0 += C0[i * d + i]!; if (C1) t1 += C1[i * d + i]!; }
  const lam = (rho * t0) / d, mup = C1 && t1 > 0 ? (mu * t0) / t1 : 0;
  const M = new Float64Array(d * d), A = Float64Array.from(C0);
  for (let i = 0; i < d * d; i++) { M[i] = C1 ? mup * C1[i]! : 0; A[i] += M[i]!; }
  for (let i = 0; i < d; i++) { M[i * d + i] += lam; A[i * d + i] += lam; }
  return matmul(M, inverse(A, d), d, d, d);
}

/** I − UᵀU for U [k, d] (orthonormal rows). */
export function basisP(U: ArrayLike<number>, k: number, d: number): Float64Array {
  const P = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let v = i === j ? 1 : 0;
      for (let q = 0; q < k; q++) v -= U[q * d + i]! * U[q * d + j]!;
      P[i * d + j] = v;
    }
  return P;
}

/** max over rows and elements of |got − x·P| / ‖x‖₂ (SPEC §5: within 1e-5); x, got [rows, d]. */
export function maxRelError(got: ArrayLike<number>, x: ArrayLike<number>, P: ArrayLike<number>, rows: number, d: number): number {
  const y = matmul(x, P, rows, d, d);
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    let nx = 0;
    for (let j = 0; j < d; j++) nx += x[i * d + j]! ** 2;
    nx = Math.sqrt(nx) || 1;
    for (let j = 0; j < d; j++) worst = Math.max(worst, Math.abs(got[i * d + j]! - y[i * d + j]!) / nx);
  }
  return worst;
}

/** Orthonormal rows (Gram-Schmidt in f64, twice) from random rows. */
export function orthonormalRows(R: ArrayLike<number>, k: number, d: number): Float64Array {
  const U = Float64Array.from(R);
  for (let q = 0; q < k; q++) {
    for (let pass = 0; pass < 2; pass++)
      for (let p = 0; p < q; p++) {
        let t = 0;
        for (let j = 0; j < d; j++) t += U[q * d + j]! * U[p * d + j]!;
        for (let j = 0; j < d; j++) U[q * d + j] -= t * U[p * d + j]!;
      }
    let nn = 0;
    for (let j = 0; j < d; j++) nn += U[q * d + j]! ** 2;
    for (let j = 0; j < d; j++) U[q * d + j] /= Math.sqrt(nn);
  }
  return U;
}
