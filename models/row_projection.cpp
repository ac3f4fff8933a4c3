#include "models/row_projection.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace models {
namespace {

// A block of NR rows of W x MR rows of x keeps NR * MR accumulator chains in registers (8 hide the FMA
// latency): 4 x 2 for pairs of x rows, 8 x 1 for a last single row. Every element is the same chain
// whatever block computes it.
constexpr int kBlockRows = 8;  // rows of W per parallel work unit

__attribute__((target("avx2,fma"))) inline float lane_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // lanes i + i+4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                         // (0+2), (1+3)
  s = _mm_add_ss(s, _mm_movehdup_ps(s));                                          // (0+2) + (1+3)
  return _mm_cvtss_f32(s);
}

// y[j][i] for i < NR rows of W (stride k) and j < MR rows of x (stride k); y has row stride ldy.
template <int NR, int MR>
__attribute__((target("avx2,fma"))) void block_avx2(const float* x, const float* w, int64_t k, const float* bias,
                                                    float* y, int64_t ldy) {
  __m256 acc[NR][MR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
#pragma GCC unroll 2
    for (int j = 0; j < MR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const int64_t k8 = k / 8 * 8;
  for (int64_t p = 0; p < k8; p += 8) {
    __m256 xv[MR];
#pragma GCC unroll 2
    for (int j = 0; j < MR; ++j) xv[j] = _mm256_loadu_ps(x + j * k + p);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      const __m256 wv = _mm256_loadu_ps(w + i * k + p);
#pragma GCC unroll 2
      for (int j = 0; j < MR; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < NR; ++i) {
    for (int j = 0; j < MR; ++j) {
      float s = lane_sum(acc[i][j]);
      for (int64_t p = k8; p < k; ++p) s = std::fma(w[i * k + p], x[j * k + p], s);
      y[j * ldy + i] = bias != nullptr ? s + bias[i] : s;
    }
  }
}

// The same chains without vector instructions (8 lanes as an array; the same lane sum order).
template <int NR, int MR>
void block_portable(const float* x, const float* w, int64_t k, const float* bias, float* y, int64_t ldy) {
  const int64_t k8 = k / 8 * 8;
  for (int i = 0; i < NR; ++i) {
    for (int j = 0; j < MR; ++j) {
      float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t p = 0; p < k8; p += 8) {
        for (int l = 0; l < 8; ++l) lane[l] = std::fma(w[i * k + p + l], x[j * k + p + l], lane[l]);
      }
      float s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
      for (int64_t p = k8; p < k; ++p) s = std::fma(w[i * k + p], x[j * k + p], s);
      y[j * ldy + i] = bias != nullptr ? s + bias[i] : s;
    }
  }
}

using BlockFn = void (*)(const float*, const float*, int64_t, const float*, float*, int64_t);

template <int NR, int MR>
BlockFn pick(bool avx2) {
  return avx2 ? &block_avx2<NR, MR> : &block_portable<NR, MR>;
}

// Rows [n0, n0 + nr) of W (nr <= kBlockRows) against every row of x.
void w_block(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias, float* y,
             int64_t n0, int64_t nr) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const BlockFn pair = pick<4, 2>(avx2), single = pick<8, 1>(avx2);
  static const BlockFn tail[kBlockRows] = {pick<1, 1>(avx2), pick<2, 1>(avx2), pick<3, 1>(avx2), pick<4, 1>(avx2),
                                           pick<5, 1>(avx2), pick<6, 1>(avx2), pick<7, 1>(avx2), pick<8, 1>(avx2)};
  const float* b = bias != nullptr ? bias + n0 : nullptr;
  int64_t r = 0;
  if (nr == kBlockRows) {
    for (; r + 2 <= m; r += 2) {
      pair(x + r * k, w + n0 * k, k, b, y + r * n + n0, n);
      pair(x + r * k, w + (n0 + 4) * k, k, b != nullptr ? b + 4 : nullptr, y + r * n + n0 + 4, n);
    }
    if (r < m) single(x + r * k, w + n0 * k, k, b, y + r * n + n0, n);
    return;
  }
  for (; r < m; ++r) tail[nr - 1](x + r * k, w + n0 * k, k, b, y + r * n + n0, n);
}

// y[0, c0 : c0 + 8 C) of row_combination for one row p[0, :]: C vector accumulators over t.
template <int C>
__attribute__((target("avx2,fma"))) void combine_avx2(const float* p, const float* v, int64_t t, int64_t d, float* y) {
  __m256 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t s = 0; s < t; ++s) {
    const __m256 ps = _mm256_set1_ps(p[s]);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(ps, _mm256_loadu_ps(v + s * d + 8 * c), acc[c]);
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + 8 * c, acc[c]);
}

int64_t argmax_portable(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (std::isnan(row[k])) return k;
    if (row[k] > row[best]) best = k;
  }
  return best;
}

__attribute__((target("avx2"))) int64_t argmax_avx2(const float* row, int64_t n) {
  const int64_t n8 = n / 8 * 8;
  __m256 top = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 nan = _mm256_setzero_ps();
  for (int64_t k = 0; k < n8; k += 8) {
    const __m256 v = _mm256_loadu_ps(row + k);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    top = _mm256_max_ps(top, v);
  }
  if (_mm256_movemask_ps(nan) != 0) return argmax_portable(row, n);
  float lanes[8];
  _mm256_storeu_ps(lanes, top);
  float m = lanes[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, lanes[i]);
  for (int64_t k = n8; k < n; ++k) {
    if (std::isnan(row[k])) return argmax_portable(row, n);  // a NaN in the tail: the scalar rule decides
    m = std::max(m, row[k]);
  }
  const __m256 mv = _mm256_set1_ps(m);
  for (int64_t k = 0; k < n8; k += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + k), mv, _CMP_EQ_OQ));
    if (mask != 0) return k + __builtin_ctz(static_cast<unsigned>(mask));
  }
  for (int64_t k = n8; k < n; ++k) {
    if (row[k] == m) return k;
  }
  return 0;  // all -inf: element 0, as the scalar rule
}

}  // namespace

int64_t row_argmax(const float* row, int64_t n) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? argmax_avx2(row, n) : argmax_portable(row, n);
}

void row_combination(const float* p, int64_t m, const float* v, int64_t t, int64_t d, float* y) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  for (int64_t i = 0; i < m; ++i) {
    const float* pi = p + i * t;
    float* yi = y + i * d;
    int64_t c0 = 0;
    if (avx2) {
      for (; c0 + 64 <= d; c0 += 64) combine_avx2<8>(pi, v + c0, t, d, yi + c0);
      for (; c0 + 8 <= d; c0 += 8) combine_avx2<1>(pi, v + c0, t, d, yi + c0);
    }
    for (; c0 < d; ++c0) {  // columns past the vectors (and every column without AVX2)
      float acc = 0;
      for (int64_t s = 0; s < t; ++s) acc = std::fma(pi[s], v[s * d + c0], acc);
      yi[c0] = acc;
    }
  }
}

void row_projection(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const float* bias, float* y) {
  const int64_t n_blocks = (n + kBlockRows - 1) / kBlockRows;
  // Threads split W's rows: no element's arithmetic depends on the thread count. Tiny products stay on
  // the calling thread (waking the pool costs more).
  const bool parallel = m * n * k >= (int64_t{1} << 17);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t n0 = blk * kBlockRows;
    w_block(x, m, w, n, k, bias, y, n0, std::min<int64_t>(kBlockRows, n - n0));
  }
}

}  // namespace models
