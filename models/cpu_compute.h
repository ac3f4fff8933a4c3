// CPU compute setup of a process: intra-op thread count, heap policy for large temporaries, and
// flush-to-zero of subnormal floats. Each measured on the 4K-token prefill of the tiny world's model
// (docs/BENCHMARKS.md, "What changed").
//
// Heap: a prefill chunk's attention temporaries are megabytes (at 4K context [4, 256, 4096] fp32 =
// 16 MiB per layer and chunk). glibc serves such blocks with a fresh mmap and returns them with munmap,
// so every chunk page-faults and zeroes its memory again. Serving blocks up to 1 GiB from the heap and
// keeping up to 1 GiB of freed heap top makes later chunks reuse the same pages: 14 % less time for a
// 4K prefill; peak RSS grows by the temporaries' size at most (+18 MiB at 4K).
//
// Subnormals: a sharp softmax row underflows most of its exps to subnormal values (|x| < 1.2e-38 in
// fp32), and x86 cores take a slow path on subnormal operands and results (Sleef exp rose from 4 % to
// 10 % of the profile; about 10 % of the prefill time). FTZ (results) and DAZ (operands) make them zero.
// That never changes a result that matters here: a softmax row's sum includes exp(0) = 1 and its output
// sums terms of at least ulp size, so a subnormal term is below every rounding step it could take part in.
// MXCSR is per thread: the setting is made on the calling thread and, by one OpenMP region of `threads`
// threads, on the libgomp pool that LibTorch's kernels and OpenBLAS-openmp share. libgomp keeps the
// pool's threads (and threads it creates later copy the creator's MXCSR), so one call after fixing the
// thread count covers every later parallel region. Tested by what the pool computes
// (tests/models/test_cpu_compute.cpp: elementwise products and a 2-thread GEMM flush subnormals).
#pragma once

#include <string>

namespace models {

// at::set_num_threads(threads); the heap policy above (glibc only); FTZ + DAZ set (flush_subnormals) or
// cleared on the caller and the pool (x86 only). Inference stages flush; the train stage does not: the
// toy zoo recipe was validated with IEEE subnormals, and other training numerics would train another zoo.
void configure_cpu_compute(int threads, bool flush_subnormals);

// Whether FTZ and DAZ are set on the calling thread (tests; false on non-x86).
bool flushes_subnormals();

// What the floating-point results of this process depend on besides the inputs and thread count: the CPU
// model (OpenBLAS picks its kernels by instruction set), OPENBLAS_CORETYPE when set, and the LibTorch
// version, e.g. "AMD EPYC; OPENBLAS_CORETYPE unset; LibTorch 1.13.1". Recorded next to trained weights.
std::string compute_host_description();

}  // namespace models
