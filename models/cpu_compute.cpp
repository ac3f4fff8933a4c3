#include "models/cpu_compute.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define RHEAD_HAS_MXCSR 1
#endif

namespace models {

namespace {

#ifdef RHEAD_HAS_MXCSR
constexpr unsigned kFtzDaz = 0x8040;  // MXCSR bits: flush-to-zero (15) and denormals-are-zero (6)
#endif

void set_flushing_on_this_thread(bool flush) {
#ifdef RHEAD_HAS_MXCSR
  _mm_setcsr(flush ? (_mm_getcsr() | kFtzDaz) : (_mm_getcsr() & ~kFtzDaz));
#else
  (void)flush;
#endif
}

}  // namespace

void configure_cpu_compute(int threads, bool flush_subnormals) {
  at::set_num_threads(threads);
#if defined(__GLIBC__)
  // Fixed thresholds (this also turns off glibc's dynamic mmap threshold, which stops at 32 MiB).
  constexpr int kHeapBlockLimit = 1 << 30;
  mallopt(M_MMAP_THRESHOLD, kHeapBlockLimit);
  mallopt(M_TRIM_THRESHOLD, kHeapBlockLimit);
#endif
  // Set or cleared (a train stage after an inference stage in one process computes with IEEE
  // subnormals again). A region of `threads` OpenMP threads runs on the pool that LibTorch's kernels
  // and OpenBLAS-openmp use. (at::parallel_for would not do: its OpenMP body is a header template,
  // serial in a file compiled without -fopenmp; this file has the flag, models/decoder.cmake.)
  set_flushing_on_this_thread(flush_subnormals);
#pragma omp parallel num_threads(threads)
  set_flushing_on_this_thread(flush_subnormals);
}

bool flushes_subnormals() {
#ifdef RHEAD_HAS_MXCSR
  return (_mm_getcsr() & kFtzDaz) == kFtzDaz;
#else
  return false;
#endif
}

std::string compute_host_description() {
  std::string cpu = "unknown CPU";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon + 2 <= line.size()) cpu = line.substr(colon + 2);
    break;
  }
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  return cpu + "; OPENBLAS_CORETYPE " + (coretype && *coretype ? coretype : "unset") + "; LibTorch " +
         TORCH_VERSION;
}

}  // namespace models
