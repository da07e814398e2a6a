// The fact-memory model: a bag-of-words prompt embedding feeding one residual FFN block and an
// unembedding, with cross-entropy. Float32Array math in tight loops, batched.
//   x = E[subject] + mean(E[template words])        [d]
//   y = x + W_down · relu(W_up · x)                  W_up [h, d], W_down [d, h]
//   logits = U · y                                   U [objects, d]
import { Rng } from './prng';
import type { Batch } from './data';

export interface ModelConfig {
  vocab: number;
  objects: number;
  d: number;
  h: number;
}

export interface Params {
  embed: Float32Array;
  up: Float32Array;
  down: Float32Array;
  unembed: Float32Array;
}
export type ParamName = keyof Params;
export const PARAM_NAMES: readonly ParamName[] = ['embed', 'up', 'down', 'unembed'];

/** Tensor names in the saved checkpoints (PyTorch nn.Linear layout [out, in]). */
export const TENSOR_NAME: Record<ParamName, string> = {
  embed: 'embed.weight',
  up: 'ffn.up.weight',
  down: 'ffn.down.weight',
  unembed: 'unembed.weight',
};

export function paramShape(c: ModelConfig, p: ParamName): [number, number] {
  switch (p) {
    case 'embed': return [c.vocab, c.d];
    case 'up': return [c.h, c.d];
    case 'down': return [c.d, c.h];
    case 'unembed': return [c.objects, c.d];
  }
}

export function initParams(c: ModelConfig, rng: Rng): Params {
  return {
    embed: rng.fillNormal(new Float32Array(c.vocab * c.d), 1 / Math.sqrt(c.d) * 1.0),
    up: rng.fillNormal(new Float32Array(c.h * c.d), 1 / Math.sqrt(c.d)),
    down: rng.fillNormal(new Float32Array(c.d * c.h), 1 / Math.sqrt(c.h)),
    unembed: rng.fillNormal(new Float32Array(c.objects * c.d), 1 / Math.sqrt(c.d)),
  };
}

export function cloneParams(p: Params): Params {
  return { embed: p.embed.slice(), up: p.up.slice(), down: p.down.slice(), unembed: p.unembed.slice() };
}

export function zerosLike(p: Params): Params {
  return {
    embed: new Float32Array(p.embed.length), up: new Float32Array(p.up.length),
    down: new Float32Array(p.down.length), unembed: new Float32Array(p.unembed.length),
  };
}

// ---- kernels -------------------------------------------------------------------------------

/** C[M,N] = A[M,K] · B[N,K]ᵀ (row dot products; 4 rows of A share each row of B). */
export function matmulABt(A: Float32Array, B: Float32Array, C: Float32Array, M: number, N: number, K: number): void {
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const a0 = i * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
    for (let j = 0; j < N; j++) {
      const b = j * K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const bv = B[b + k]!;
        s0 += A[a0 + k]! * bv;
        s1 += A[a1 + k]! * bv;
        s2 += A[a2 + k]! * bv;
        s3 += A[a3 + k]! * bv;
      }
      C[i * N + j] = s0;
      C[(i + 1) * N + j] = s1;
      C[(i + 2) * N + j] = s2;
      C[(i + 3) * N + j] = s3;
    }
  }
  for (; i < M; i++) {
    const a = i * K;
    for (let j = 0; j < N; j++) {
      const b = j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += A[a + k]! * B[b + k]!;
      C[i * N + j] = s;
    }
  }
}

/** C[M,N] += A[M,K] · B[K,N] (axpy form, 4 rows of B per pass; all-zero groups of A skipped). */
export function matmulABacc(A: Float32Array, B: Float32Array, C: Float32Array, M: number, N: number, K: number): void {
  for (let i = 0; i < M; i++) {
    const c = i * N, ai = i * K;
    let k = 0;
    for (; k + 4 <= K; k += 4) {
      const a0 = A[ai + k]!, a1 = A[ai + k + 1]!, a2 = A[ai + k + 2]!, a3 = A[ai + k + 3]!;
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const b0 = k * N, b1 = b0 + N, b2 = b1 + N, b3 = b2 + N;
      for (let j = 0; j < N; j++) C[c + j] = C[c + j]! + a0 * B[b0 + j]! + a1 * B[b1 + j]! + a2 * B[b2 + j]! + a3 * B[b3 + j]!;
    }
    for (; k < K; k++) {
      const a = A[ai + k]!;
      if (a === 0) continue;
      const b = k * N;
      for (let j = 0; j < N; j++) C[c + j] = C[c + j]! + a * B[b + j]!;
    }
  }
}

/** C[K,N] += A[M,K]ᵀ · B[M,N] (4 rows of B per pass; all-zero groups of A skipped). */
export function matmulAtBacc(A: Float32Array, B: Float32Array, C: Float32Array, M: number, N: number, K: number): void {
  let m = 0;
  for (; m + 4 <= M; m += 4) {
    const b0 = m * N, b1 = b0 + N, b2 = b1 + N, b3 = b2 + N;
    const r0 = m * K, r1 = r0 + K, r2 = r1 + K, r3 = r2 + K;
    for (let k = 0; k < K; k++) {
      const a0 = A[r0 + k]!, a1 = A[r1 + k]!, a2 = A[r2 + k]!, a3 = A[r3 + k]!;
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const c = k * N;
      for (let j = 0; j < N; j++) C[c + j] = C[c + j]! + a0 * B[b0 + j]! + a1 * B[b1 + j]! + a2 * B[b2 + j]! + a3 * B[b3 + j]!;
    }
  }
  for (; m < M; m++) {
    const b = m * N;
    for (let k = 0; k < K; k++) {
      const a = A[m * K + k]!;
      if (a === 0) continue;
      const c = k * N;
      for (let j = 0; j < N; j++) C[c + j] = C[c + j]! + a * B[b + j]!;
    }
  }
}

// ---- forward / backward ---------------------------------------------------------------------

export interface Activations {
  x: Float32Array; // [B, d]
  u: Float32Array; // [B, h] pre-activation
  a: Float32Array; // [B, h]
  y: Float32Array; // [B, d]
  logits: Float32Array; // [B, O]
}

export function embedBatch(c: ModelConfig, p: Params, batch: Batch, x: Float32Array): void {
  const { d } = c;
  const L = batch.len;
  const wt = 1 / (L - 1);
  x.fill(0, 0, batch.size * d);
  for (let b = 0; b < batch.size; b++) {
    const xo = b * d;
    for (let j = 0; j < L; j++) {
      const t = batch.tokens[b * L + j]!;
      const w = j === 0 ? 1 : wt;
      const eo = t * d;
      for (let k = 0; k < d; k++) x[xo + k] = x[xo + k]! + w * p.embed[eo + k]!;
    }
  }
}

export function forward(c: ModelConfig, p: Params, batch: Batch): Activations {
  const B = batch.size, { d, h, objects: O } = c;
  const x = new Float32Array(B * d);
  embedBatch(c, p, batch, x);
  const u = new Float32Array(B * h);
  matmulABt(x, p.up, u, B, h, d);
  const a = new Float32Array(B * h);
  for (let i = 0; i < a.length; i++) a[i] = u[i]! > 0 ? u[i]! : 0;
  const y = new Float32Array(B * d);
  matmulABt(a, p.down, y, B, d, h);
  for (let i = 0; i < y.length; i++) y[i] = y[i]! + x[i]!;
  const logits = new Float32Array(B * O);
  matmulABt(y, p.unembed, logits, B, O, d);
  return { x, u, a, y, logits };
}

/** Arg-max object per prompt. */
export function predict(c: ModelConfig, p: Params, batch: Batch, chunk = 256): Int32Array {
  const out = new Int32Array(batch.size);
  const O = c.objects;
  for (let s = 0; s < batch.size; s += chunk) {
    const n = Math.min(chunk, batch.size - s);
    const sub: Batch = { tokens: batch.tokens.subarray(s * batch.len, (s + n) * batch.len), targets: batch.targets.subarray(s, s + n), size: n, len: batch.len };
    const { logits } = forward(c, p, sub);
    for (let b = 0; b < n; b++) {
      let best = 0, bv = -Infinity;
      for (let o = 0; o < O; o++) {
        const v = logits[b * O + o]!;
        if (v > bv) { bv = v; best = o; }
      }
      out[s + b] = best;
    }
  }
  return out;
}

/**
 * Mean cross-entropy over the batch; accumulates d(loss)/d(param) into `grads` for the names in
 * `want` (others are not computed).
 */
export function lossAndGrad(c: ModelConfig, p: Params, batch: Batch, grads: Partial<Params>, want: ReadonlySet<ParamName>): number {
  const B = batch.size, { d, h, objects: O } = c;
  const act = forward(c, p, batch);
  const g = act.logits; // reused in place as dlogits
  let loss = 0;
  for (let b = 0; b < B; b++) {
    const o0 = b * O;
    let mx = -Infinity;
    for (let o = 0; o < O; o++) if (g[o0 + o]! > mx) mx = g[o0 + o]!;
    let z = 0;
    for (let o = 0; o < O; o++) { const e = Math.exp(g[o0 + o]! - mx); g[o0 + o] = e; z += e; }
    const t = batch.targets[b]!;
    loss += -Math.log(g[o0 + t]! / z);
    for (let o = 0; o < O; o++) g[o0 + o] = g[o0 + o]! / z / B;
    g[o0 + t] = g[o0 + t]! - (1 / B);
  }
  loss /= B;
  if (want.has('unembed')) matmulAtBacc(g, act.y, grads.unembed!, B, d, O);
  const dy = new Float32Array(B * d);
  matmulABacc(g, p.unembed, dy, B, d, O);
  if (want.has('down')) matmulAtBacc(dy, act.a, grads.down!, B, h, d);
  const needUp = want.has('up') || want.has('embed');
  if (!needUp) return loss;
  const du = new Float32Array(B * h);
  matmulABacc(dy, p.down, du, B, h, d);
  for (let i = 0; i < du.length; i++) if (act.u[i]! <= 0) du[i] = 0;
  if (want.has('up')) matmulAtBacc(du, act.x, grads.up!, B, d, h);
  if (want.has('embed')) {
    const dx = dy; // dx = dy + du · W_up
    matmulABacc(du, p.up, dx, B, d, h);
    const L = batch.len, wt = 1 / (L - 1), ge = grads.embed!;
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < L; j++) {
        const t = batch.tokens[b * L + j]!;
        const w = j === 0 ? 1 : wt;
        const eo = t * d, xo = b * d;
        for (let k = 0; k < d; k++) ge[eo + k] = ge[eo + k]! + w * dx[xo + k]!;
      }
    }
  }
  return loss;
}

// ---- optimizers -----------------------------------------------------------------------------

export interface Optimizer {
  step(params: Float32Array[], grads: Float32Array[]): void;
}

export class Adam implements Optimizer {
  private m: Float32Array[] = [];
  private v: Float32Array[] = [];
  private t = 0;
  constructor(private lr: number, private b1 = 0.9, private b2 = 0.999, private eps = 1e-8) {}
  step(params: Float32Array[], grads: Float32Array[]): void {
    if (this.m.length === 0) {
      this.m = params.map((q) => new Float32Array(q.length));
      this.v = params.map((q) => new Float32Array(q.length));
    }
    this.t++;
    const c1 = 1 - Math.pow(this.b1, this.t), c2 = 1 - Math.pow(this.b2, this.t);
    const lr = this.lr * Math.sqrt(c2) / c1;
    const { b1, b2, eps } = this;
    for (let k = 0; k < params.length; k++) {
      const q = params[k]!, g = grads[k]!, m = this.m[k]!, v = this.v[k]!;
      for (let i = 0; i < q.length; i++) {
        const gi = g[i]!;
        const mi = (m[i] = b1 * m[i]! + (1 - b1) * gi);
        const vi = (v[i] = b2 * v[i]! + (1 - b2) * gi * gi);
        q[i] = q[i]! - ((lr * mi) / (Math.sqrt(vi) + eps * Math.sqrt(c2)));
      }
    }
  }
}

export class Sgd implements Optimizer {
  constructor(private lr: number) {}
  step(params: Float32Array[], grads: Float32Array[]): void {
    for (let k = 0; k < params.length; k++) {
      const q = params[k]!, g = grads[k]!;
      for (let i = 0; i < q.length; i++) q[i] = q[i]! - (this.lr * g[i]!);
    }
  }
}

// ---- LoRA -----------------------------------------------------------------------------------

/** A LoRA adapter on one [out, in] weight: ΔW = (alpha / r) · B · A, A [r, in], B [out, r]. */
export interface LoraFactor {
  A: Float32Array;
  B: Float32Array;
  r: number;
  out: number;
  in: number;
  alpha: number;
}

/** W + (alpha / r) · B · A, as a new array. */
export function loraMerged(W: Float32Array, f: LoraFactor): Float32Array {
  const s = f.alpha / f.r;
  const out = W.slice();
  for (let i = 0; i < f.out; i++) {
    for (let k = 0; k < f.r; k++) {
      const b = s * f.B[i * f.r + k]!;
      if (b === 0) continue;
      const ao = k * f.in, oo = i * f.in;
      for (let j = 0; j < f.in; j++) out[oo + j] = out[oo + j]! + b * f.A[ao + j]!;
    }
  }
  return out;
}

/** From dL/dW [out, in]: dL/dA = s · Bᵀ dW, dL/dB = s · dW Aᵀ (added into gA, gB). */
export function loraGrads(dW: Float32Array, f: LoraFactor, gA: Float32Array, gB: Float32Array): void {
  const s = f.alpha / f.r;
  for (let i = 0; i < f.out; i++) {
    const wo = i * f.in;
    for (let k = 0; k < f.r; k++) {
      const ao = k * f.in;
      let acc = 0;
      for (let j = 0; j < f.in; j++) acc += dW[wo + j]! * f.A[ao + j]!;
      gB[i * f.r + k] = gB[i * f.r + k]! + s * acc;
      const b = s * f.B[i * f.r + k]!;
      if (b !== 0) for (let j = 0; j < f.in; j++) gA[ao + j] = gA[ao + j]! + b * dW[wo + j]!;
    }
  }
}
