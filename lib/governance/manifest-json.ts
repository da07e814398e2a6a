// Manifest JSON: the canonical form the id is computed over (canonicalJson; canonicalSha256 streams
// it into the hash) and the text the manifest file holds (manifestText; writeManifestFile streams it
// to disk). Re-exported by lineage.ts.
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';

// ---- canonical JSON ---------------------------------------------------------------------------

/**
 * Canonical JSON (RFC 8785 style): object keys sorted by UTF-16 code units, no whitespace,
 * numbers and strings as JSON.stringify writes them (non-finite numbers and undefined array
 * entries as null, undefined object values left out).
 */
export function canonicalJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : 'null';
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x)).join(',')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof (o as { toJSON?: unknown }).toJSON === 'function') return canonicalJson((o as { toJSON: () => unknown }).toJSON());
    const keys = Object.keys(o).filter((k) => o[k] !== undefined && typeof o[k] !== 'function').sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return 'null';
}

// ---- big manifests ------------------------------------------------------------------------------
// A manifest of 200,000 tensors is ~100 MB of JSON. Its id and its file are produced piece by
// piece: an array longer than BIG is walked in slices with a turn of the event loop between them
// (a signal is acted on meanwhile), everything inside it synchronously (one tensor entry at a
// time), and neither the canonical string nor the file's text ever exists whole.

const BIG = 2048;
const tick = () => new Promise<void>((r) => setImmediate(r));
const isBigArray = (x: unknown): x is unknown[] => Array.isArray(x) && x.length > BIG;
const keysOf = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== undefined && typeof o[k] !== 'function');
const hasToJson = (x: unknown): x is { toJSON: () => unknown } => typeof (x as { toJSON?: unknown }).toJSON === 'function';

/** Writes the canonical form of x (canonicalJson's bytes) to put; async through big arrays and the objects above them. */
async function canonicalInto(x: unknown, put: (s: string) => void): Promise<void> {
  if (x !== null && typeof x === 'object' && !hasToJson(x)) {
    if (isBigArray(x)) {
      put('[');
      for (let i = 0; i < x.length; i++) {
        if (i) put(',');
        put(canonicalJson(x[i]));
        if (i % BIG === BIG - 1) await tick();
      }
      return put(']');
    }
    if (!Array.isArray(x)) {
      const o = x as Record<string, unknown>;
      const keys = keysOf(o).sort();
      put('{');
      for (let i = 0; i < keys.length; i++) { put(`${i ? ',' : ''}${JSON.stringify(keys[i])}:`); await canonicalInto(o[keys[i]!], put); }
      return put('}');
    }
  }
  put(canonicalJson(x));
}

/** SHA-256 of canonicalJson(v), the same bytes, hashed in 64 KiB pieces as they are produced. */
export async function canonicalSha256(v: unknown): Promise<string> {
  const h = crypto.createHash('sha256');
  let buf = '';
  await canonicalInto(v, (s) => { buf += s; if (buf.length >= 1 << 16) { h.update(buf); buf = ''; } });
  h.update(buf);
  return h.digest('hex');
}

/** One value as manifest text at indentation ind (see manifestText), synchronously. */
function textOf(x: unknown, ind: string): string {
  if (x === null || typeof x !== 'object') return JSON.stringify(x) ?? 'null';
  if (hasToJson(x)) return textOf(x.toJSON(), ind);
  const inner = ind + '  ';
  if (Array.isArray(x)) {
    if (x.length === 0) return '[]';
    if (x.every((y) => y === null || typeof y !== 'object')) return `[${x.map((y) => JSON.stringify(y) ?? 'null').join(', ')}]`;
    return `[\n${x.map((y) => inner + textOf(y, inner)).join(',\n')}\n${ind}]`;
  }
  const o = x as Record<string, unknown>;
  const keys = keysOf(o);
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${textOf(o[k], inner)}`).join(',\n')}\n${ind}}`;
}

async function textInto(x: unknown, ind: string, put: (s: string) => Promise<void> | void): Promise<void> {
  if (x !== null && typeof x === 'object' && !hasToJson(x)) {
    const inner = ind + '  ';
    if (isBigArray(x) && !x.every((y) => y === null || typeof y !== 'object')) {
      await put('[\n');
      for (let i = 0; i < x.length; i++) {
        await put(`${i ? ',\n' : ''}${inner}${textOf(x[i], inner)}`);
        if (i % BIG === BIG - 1) await tick();
      }
      return put(`\n${ind}]`);
    }
    if (!Array.isArray(x)) {
      const o = x as Record<string, unknown>;
      const keys = keysOf(o);
      if (keys.length === 0) return put('{}');
      await put('{\n');
      for (let i = 0; i < keys.length; i++) {
        await put(`${i ? ',\n' : ''}${inner}${JSON.stringify(keys[i])}: `);
        await textInto(o[keys[i]!], inner, put);
      }
      return put(`\n${ind}}`);
    }
  }
  await put(textOf(x, ind));
}

/**
 * A manifest as written to disk: JSON with two-space indentation, except that an array of
 * numbers, strings, booleans or nulls stays on one line (`"angleHistogram": [0, 3, …]`): a third
 * smaller for many tensors. Any JSON reader reads it; the id is over the canonical form.
 */
export function manifestText(v: unknown): string {
  return textOf(v, '') + '\n';
}

/** Writes manifestText(v) to file (replaced), 1 MiB at a time (the text never exists whole). */
export async function writeManifestFile(file: string, v: unknown): Promise<void> {
  const fh = await fs.promises.open(file, 'w');
  try {
    let buf = '';
    const put = async (s: string) => { buf += s; if (buf.length >= 1 << 20) { const b = buf; buf = ''; await fh.write(b); } };
    await textInto(v, '', put);
    await fh.write(buf + '\n');
  } finally {
    await fh.close();
  }
}
