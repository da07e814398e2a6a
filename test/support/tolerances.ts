// SPEC §5 (docs/spec.md), the numerical contract every backend is held to, as named constants.

/** `cos` within this of the f64 reference; a row whose ||cos| − t| is below it may change region. */
export const COS_ABS = 1e-9;
/** f32 outputs: within F32_REL · (|θ0| + |c_new·b̃| + |c_old·ã|) + F32_ABS of the reference. */
export const F32_REL = 1e-6;
/** One f32 subnormal ulp (2⁻¹⁴⁹): the relative bound alone cannot hold where the result is subnormal. */
export const F32_ABS = 2 ** -149;
/** f16/bf16 outputs: within this many units in the last place of the correctly rounded reference. */
export const HALF_ULPS = 1;
