// models::configure_cpu_compute: the thread count, and subnormal flushing on the caller and on every
// pool thread, seen through what the pool computes (LibTorch elementwise ops and OpenBLAS GEMMs share
// it) rather than only through the MXCSR bits. Its own binary: the setting is process-wide in effect.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "models/cpu_compute.h"

namespace {

constexpr float kTiny = 1e-20f;  // kTiny * kTiny = 1e-40: subnormal in fp32 (smallest normal 1.18e-38)

TEST(CpuCompute, SubnormalsSurviveByDefault) {
  // The premise of the next test: without the setting, IEEE arithmetic keeps subnormal products.
  if (models::flushes_subnormals()) GTEST_SKIP() << "FTZ/DAZ already set on this thread";
  auto x = torch::full({4}, kTiny);
  EXPECT_GT((x * x).max().item<float>(), 0.0f);
}

TEST(CpuCompute, FlushesSubnormalsOnEveryPoolThread) {
  const int threads = 2;
  // Start the pool first: threads created after the caller set MXCSR would inherit it (clone copies the
  // FPU state), which would hide a pool that is never reached.
  at::set_num_threads(threads);
  (torch::ones({1 << 20}) * 2).sum();
  torch::mm(torch::ones({512, 512}), torch::ones({512, 512}));
  models::configure_cpu_compute(threads, /*flush_subnormals=*/true);
  EXPECT_EQ(at::get_num_threads(), threads);
  EXPECT_TRUE(models::flushes_subnormals());
#if defined(__x86_64__)
  // Elementwise products across the pool (1M elements: far above at::internal::GRAIN_SIZE).
  auto x = torch::full({1 << 20}, kTiny);
  EXPECT_EQ((x * x).max().item<float>(), 0.0f) << "a subnormal product survived an elementwise op";

  // A GEMM large enough for OpenBLAS to use both threads: every product 1e-40 -> 0 under FTZ; with IEEE
  // subnormals each entry would be 512 * 1e-40 = 5.1e-38 (a normal number).
  auto a = torch::full({512, 512}, kTiny);
  EXPECT_EQ(torch::mm(a, a).abs().max().item<float>(), 0.0f) << "a subnormal survived a BLAS GEMM";

  // Normal numbers are untouched.
  auto n = torch::full({512, 512}, 0.5f);
  EXPECT_EQ(torch::mm(n, n).min().item<float>(), 128.0f);

  // And cleared again (the train stage): IEEE subnormals on every thread of the pool.
  models::configure_cpu_compute(threads, /*flush_subnormals=*/false);
  EXPECT_FALSE(models::flushes_subnormals());
  EXPECT_GT((x * x).min().item<float>(), 0.0f) << "a thread of the pool still flushes (elementwise)";
  EXPECT_GT(torch::mm(a, a).abs().min().item<float>(), 0.0f) << "a thread of the pool still flushes (GEMM)";
#else
  GTEST_SKIP() << "subnormal flushing is implemented for x86 only";
#endif
}

#if defined(__GLIBC__)
TEST(CpuCompute, LargeTemporariesComeFromTheHeapNotFreshMappings) {
  // glibc's default serves a block this size with its own mmap (page faults and zeroing on every use).
  models::configure_cpu_compute(1, /*flush_subnormals=*/false);
  const size_t mapped_before = mallinfo2().hblkhd;
  auto scores = torch::empty({4, 256, 4096});  // 16 MiB, the attention temporary of a 4K prefill chunk
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before) << "the 16 MiB block was mmap'ed";
  EXPECT_EQ(scores.numel(), 4 * 256 * 4096);
}
#endif

}  // namespace
