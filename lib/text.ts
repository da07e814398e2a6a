// Untrusted strings (tensor names, file names, metadata, messages that quote them) made safe for a
// terminal and for logs. THE escape: the CLI's output (lib/cli/common.ts re-exports it) and every
// message the library throws (GeoEditError, typeError, mapped native errors) go through it.

/**
 * C0/C1 control characters (ESC, CR, LF, BS…), DEL and the bidirectional controls (LRM/RLM, ALM,
 * the embeddings/overrides U+202A–U+202E, the isolates U+2066–U+2069) and the line/paragraph
 * separators are written as \\xHH / \\uHHHH escapes, so a crafted name can neither forge lines nor
 * rewrite the terminal nor reorder what a reader sees. Idempotent (a backslash is kept as it is).
 */
export function safeText(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}
