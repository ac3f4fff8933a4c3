// The decoder's projections: y = x W^T (+ b) for x [..., K], W [N, K] (Hugging Face / torch layout).
//
// LibTorch 1.13 runs every linear as a GEMM, and OpenBLAS packs all of W into its GEMM layout even for a
// single row of x: a batch-1 decode step packed (read + write + read) every weight of the model once per
// token. A single fp32 row on the CPU therefore runs as a matrix-vector product (sgemv streams W once):
// 5-11x faster per projection at the toy zoo's shapes (docs/BENCHMARKS.md, change 5). The two sum in
// different orders, so a decode step's logits move by rounding (fp32 ulps), the way any other BLAS
// would move them; every path of one run uses the same rule, so bitwise equalities between ranks,
// resumes and prefix reuse are unaffected. bf16 keeps the GEMM (oneDNN; its gemv is not faster) and GPUs
// keep the GEMM (cuBLAS chooses its own kernel for one row).
#pragma once

#include <torch/torch.h>

namespace models {

// models::project: `b` may be undefined (no bias). (Not named linear: at::linear would be ambiguous.)
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

}  // namespace models
