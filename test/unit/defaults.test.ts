// The defaults live in one place in C++ (Params in geoedit.h); lib/options.ts mirrors them.
// They are the calibrated ones (docs/quality.md): kappa 2, keepOrthogonal 0.75.
import { describe, it, expect } from 'vitest';
import { DEFAULTS, PAPER_PRESET } from '../../lib/options';
import { loadNative } from '../../lib/native';
import { PRESERVE_DEFAULTS } from '../../lib/preserve/option';

describe('defaults', () => {
  it('lib/options.ts DEFAULTS agree with the core (Params in geoedit.h)', () => {
    const n = loadNative().defaults();
    for (const k of ['scale', 'kappa', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting', 'lambda', 'density', 'temperature'] as const) {
      expect(DEFAULTS[k], k).toBe(n[k]);
    }
    for (const k of ['kappa', 'keepOrthogonal', 'fuseAligned', 'forgetConflicting'] as const) expect(PAPER_PRESET[k], `paper.${k}`).toBe(n.paper[k]);
  });

  it('preservation: the core\'s rho/mu defaults (core/preserve.h) are the option table\'s (PRESERVE_DEFAULTS)', () => {
    expect(loadNative().defaults().preserve).toEqual({ rho: PRESERVE_DEFAULTS.rho, mu: PRESERVE_DEFAULTS.mu });
    // the calibrated values (docs/quality.md "Preservation statistics (measured)": mu raised from 10 to 100)
    expect(PRESERVE_DEFAULTS).toEqual({ rho: 0.3, mu: 100 });
  });

  it('are the values the quality calibration chose', () => {
    expect(DEFAULTS.kappa).toBe(2);
    expect(DEFAULTS.keepOrthogonal).toBe(0.75);
    expect(DEFAULTS.fuseAligned).toBe(0);
    expect(DEFAULTS.forgetConflicting).toBe(0);
  });
});
