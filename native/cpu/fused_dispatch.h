// The entry points of an ISA's fused row path (kernels.h FusedRowKernels): the switches from the run-time
// dtypes and flags to the ISA's specialisations. Included by an ISA file (kernels_avx2.cc,
// kernels_avx512.cc) inside its anonymous namespace, after it has defined
//   fused_stats_t<D, EO>, fused_select_t<D, EO>, fused_output_t<D, EO, OD, NT, TA, TB, UA, NX, PF>
// (EO: bf16 rows in the even/odd lane layout, used for bf16 -> bf16 only; NT: streaming stores; TA / TB:
// side a / b trimmed, at most one; UA: co != 0, which a trimmed a implies; NX: the next row's stats computed
// in the same pass, kernels.h NextRowStats; PF: with NX, the pass only prefetches the next row into L2 and sums
// it at its end, NextRowStats::sums false); defines kFused.

template <DType D, bool EO, DType OD, bool NT, bool NX, bool PF>
uint32_t fused_output_x(const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                        const RowSelection* sa, const RowSelection* sb, double* ka, double* kb, void* dst, NextRowStats* nx) {
  // a trimmed side always prefetches the next row (StatsPass::block): PF makes no other code there
  if (sa) return fused_output_t<D, EO, OD, NT, true, false, true, NX, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  if (co != 0.0f) {
    if (sb) return fused_output_t<D, EO, OD, NT, false, true, true, NX, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
    return fused_output_t<D, EO, OD, NT, false, false, true, NX, PF>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  }
  if (sb) return fused_output_t<D, EO, OD, NT, false, true, false, NX, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  return fused_output_t<D, EO, OD, NT, false, false, false, NX, PF>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
}
template <DType D, bool EO, DType OD, bool NT>
uint32_t fused_output_k(const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                        const RowSelection* sa, const RowSelection* sb, double* ka, double* kb, void* dst, NextRowStats* nx) {
  if (!nx) return fused_output_x<D, EO, OD, NT, false, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  return nx->sums ? fused_output_x<D, EO, OD, NT, true, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx)
                  : fused_output_x<D, EO, OD, NT, true, true>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
}

template <DType D, bool EO, DType OD>
uint32_t fused_output_nt(bool nt, const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                         const RowSelection* sa, const RowSelection* sb, double* ka, double* kb, void* dst, NextRowStats* nx) {
  return nt ? fused_output_k<D, EO, OD, true>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx)
            : fused_output_k<D, EO, OD, false>(base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
}
template <DType D>
uint32_t fused_output_od(DType od, bool nt, const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                         const RowSelection* sa, const RowSelection* sb, double* ka, double* kb, void* dst, NextRowStats* nx) {
  switch (od) {
    case DType::F32: return fused_output_nt<D, false, DType::F32>(nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
    case DType::F16: return fused_output_nt<D, false, DType::F16>(nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
    default:
      if (D == DType::BF16) return fused_output_nt<DType::BF16, true, DType::BF16>(nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
      return fused_output_nt<D, false, DType::BF16>(nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  }
}

void fused_stats(DType d, const void* base, const void* old_, const void* new_, int64_t n, double* dot, double* na, double* nb) {
  switch (d) {
    case DType::F32: return fused_stats_t<DType::F32, false>(base, old_, new_, n, dot, na, nb);
    case DType::F16: return fused_stats_t<DType::F16, false>(base, old_, new_, n, dot, na, nb);
    default: return fused_stats_t<DType::BF16, true>(base, old_, new_, n, dot, na, nb);
  }
}
RowSelection fused_select(DType d, const void* base, const void* x, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint,
                          bool prefetch_next) {
  switch (d) {
    case DType::F32: return fused_select_t<DType::F32, false>(base, x, n, k, cand, hint, prefetch_next);
    case DType::F16: return fused_select_t<DType::F16, false>(base, x, n, k, cand, hint, prefetch_next);
    default: return fused_select_t<DType::BF16, true>(base, x, n, k, cand, hint, prefetch_next);
  }
}
uint32_t fused_output(DType d, const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                      const RowSelection* sa, const RowSelection* sb, double* ka, double* kb, DType od, void* dst, bool nt,
                      NextRowStats* nx) {
  nt = nt && (reinterpret_cast<uintptr_t>(dst) & 3) == 0;
  switch (d) {
    case DType::F32: return fused_output_od<DType::F32>(od, nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
    case DType::F16: return fused_output_od<DType::F16>(od, nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
    default: return fused_output_od<DType::BF16>(od, nt, base, old_, new_, n, cn, co, sa, sb, ka, kb, dst, nx);
  }
}

const FusedRowKernels kFused = {fused_stats, fused_select, fused_output};
