// The decoder's projections: y = x W^T (+ b) for x [..., K], W [N, K] (Hugging Face / torch layout).
//
// LibTorch 1.13 runs every linear as a GEMM, and OpenBLAS packs all of W into its GEMM layout even for a
// single row of x: a batch-1 decode step packed (read + write + read) every weight of the model once per
// token. Up to kRowProjectionMaxRows fp32 rows on the CPU (decode steps, alone or batched across cells,
// and short prefill tails) therefore run through models/row_projection.h, which streams W once for all
// rows and gives every row the same bits whatever the batch (docs/BENCHMARKS.md, changes 5 and 9). The
// kernel and the GEMM sum in different orders, so results differ from a GEMM by fp32 rounding, the way
// any other BLAS would; every path of one run uses the same rule, so bitwise equalities between ranks,
// resumes, prefix reuse and decode batches hold. bf16 keeps the GEMM (oneDNN) and GPUs keep the GEMM
// (cuBLAS chooses its own kernel for few rows).
#pragma once

#include <torch/torch.h>

namespace models {

// models::project: `b` may be undefined (no bias). (Not named linear: at::linear would be ambiguous.)
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

}  // namespace models
