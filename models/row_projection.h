// y = x W^T (+ b) for a few fp32 rows of x on the CPU, batch-invariant: every output element is computed
// by the same instruction sequence whatever the number of rows, the row's position among them and the
// thread count. BLAS gives no such promise: OpenBLAS rounds a row of a 13-row GEMM differently from
// the same row alone (docs/BENCHMARKS.md, change 8). With this kernel, decoding several cells together
// gives every cell the bits it gets alone, so a rank may batch whichever cells it holds and 1-rank and
// N-rank results stay bitwise equal.
//
// Layout: x [M, K] row-major, W [N, K] row-major (torch's Linear), b [N] or null, y [M, N]. Each
// element is one chain of fused multiply-adds over k in 8-float vectors, summed across the vector
// lanes in a fixed order, then the k % 8 tail, then the bias. W is streamed once for all M rows (the
// point of batching decode steps: at the toy zoo's sizes a decode step is bound by reading W). AVX2 +
// FMA when the CPU has them (checked once), otherwise portable code with the same structure (different
// rounding from the AVX2 path, but the same for every batch).
#pragma once

#include <cstdint>

namespace models {

// Up to this many rows (decode batches, short prefill tails) models::project uses the kernel below;
// more rows go to the GEMM, which is faster there.
constexpr int64_t kRowProjectionMaxRows = 32;

void row_projection(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias, float* y);

// y[i, :] = sum_t p[i, t] v[t, :] for p [m, t] and v [t, d] (row-major), y [m, d]: a decode step's
// attention rows times the values. Each element is one chain of fused multiply-adds over t in order.
// (The scores q K^T of a decode step are row_projection(q, group, K, n_keys, d).) One thread: a decode
// step calls it once per KV head, on a few hundred KiB.
void row_combination(const float* p, int64_t m, const float* v, int64_t t, int64_t d, float* y);

// The index of the first maximum of row[0, n), n >= 1, by torch::argmax's rule (a NaN counts as the
// maximum: the first NaN wins): the capture's per-head argmax of a decode step's attention row. AVX2
// when the CPU has it (a max pass, then a search for the first element equal to it), else one scalar
// pass; the same index either way (no arithmetic, only comparisons).
int64_t row_argmax(const float* row, int64_t n);

}  // namespace models
