// The one call wrapper around the addon. Every native call goes through callSync/callAsync: native
// errors (an Error with a string `code`, and `details` when the binding attaches them) are mapped to
// GeoEditError once, here, and async calls report the stack of the caller's line, captured before
// the work left the JS thread (a rejection from a worker thread has no useful JS stack of its own).
import { GeoEditError, type GeoEditErrorCode } from '../errors';
import { safeText } from '../text';
import { loadNative } from './loader';
import type { NativeAddon } from './addon';

/** Where a public call came from: the stack frames captured synchronously at the API boundary. */
export interface CallSite {
  readonly frames: string;
}

/**
 * Captures the caller's frames. `above`: a function whose frame and everything above it are
 * dropped (pass the public entry point, e.g. editCheckpoint, so the first frame is the user's line).
 */
export function callSite(above?: (...args: never[]) => unknown): CallSite {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, above ?? callSite);
  const s = holder.stack ?? '';
  const i = s.indexOf('\n');
  return { frames: i < 0 ? '' : s.slice(i) };
}

function withStack<E extends Error>(e: E, site: CallSite | undefined): E {
  if (site) {
    try {
      Object.defineProperty(e, 'stack', { value: `${e.name}: ${e.message}${site.frames}`, writable: true, configurable: true });
    } catch {
      /* a frozen error keeps its own stack */
    }
  }
  return e;
}

/**
 * Turns an error thrown by the addon into the package's error: a coded Error becomes a
 * GeoEditError with the same code and message (and the binding's `details`, when present); a coded
 * TypeError stays a TypeError; anything else is returned as it is. `site` replaces the stack.
 */
export function mapNativeError(e: unknown, site?: CallSite): Error {
  if (e instanceof GeoEditError) return withStack(e, site);
  if (e && typeof e === 'object' && typeof (e as { code?: unknown }).code === 'string') {
    const err = e as Error & { code: string; details?: unknown };
    if (err instanceof TypeError) {
      try { err.message = safeText(err.message); } catch { /* a frozen error keeps its message */ }
      return withStack(err, site);
    }
    const details = err.details && typeof err.details === 'object' && !Array.isArray(err.details) ? (err.details as Record<string, unknown>) : undefined;
    return withStack(new GeoEditError(err.code as GeoEditErrorCode, err.message, details), site);
  }
  return withStack(e instanceof Error ? e : new Error(String(e)), site);
}

/** A synchronous call: its stack is the caller's already; only the error is mapped. */
export function callSync<T>(f: (addon: NativeAddon) => T): T {
  const addon = loadNative();
  try {
    return f(addon);
  } catch (e) {
    throw mapNativeError(e);
  }
}

/**
 * An asynchronous call. The site is captured now (or given by a public entry point that awaited
 * before reaching here), so a rejection points at the user's line, not at the event loop.
 */
export async function callAsync<T>(f: (addon: NativeAddon) => Promise<T>, site?: CallSite): Promise<T> {
  const where = site ?? callSite(callAsync);
  let p: Promise<T>;
  try {
    p = f(loadNative());
  } catch (e) {
    throw mapNativeError(e, where);
  }
  try {
    return await p;
  } catch (e) {
    throw mapNativeError(e, where);
  }
}
