// bench_decoder: throughput and memory of models::Decoder on CPU (not a test).
//   bench_decoder [--threads N]            table for contexts 512, 1K, 2K, 4K (one child process
//                                          per row, so peak RSS is per row)
//   bench_decoder --one CTX CHUNK DTYPE    one row (used by the table; DTYPE f32 | bf16); CHUNK is the
//                                          attention block, --call N the rows per prefill call
//                                          (DecoderOptions::prefill_call, default 512)
//   ... --model DIR                        rows on a Hugging Face folder instead of the random model
//                                          (bench_generate uses its world's model, so that its table
//                                          describes one model)
// Model: 8 layers, d_model 512, 8 heads (MHA, d_head 64), d_ff 1376, vocab 4096, random weights.
// Prefill = CTX-1 tokens (as the generate stage does), decode = 32 greedy steps after it, with and
// without capture (argmax only, as the paper needs; and argmax + top-5 + span mass).
// Timings are best-of-4 (prefill) / best-of-5 (decode) because the CPU may be shared. GFLOP/s counts matmul FLOPs: 2 * params per token
// for the projections/MLP plus 2 * L * d_model * T^2 for causal attention (QK^T and PV).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "models/cpu_compute.h"
#include "models/decoder.h"
#include "models/generation.h"
#include "tests/models/tiny_models.h"

namespace {

using Clock = std::chrono::steady_clock;

int64_t g_call = models::DecoderOptions{}.prefill_call;  // --call: rows per prefill forward call

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// VmRSS / VmHWM from /proc/self/status, MiB.
double proc_status_mib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::strtod(line.c_str() + key.size() + 1, nullptr) / 1024.0;
  }
  return -1;
}

models::ModelSpec bench_spec() {
  auto s = tiny::make_spec("llama");
  s.family = "bench";
  s.n_layer = 8;
  s.hidden_size = 512;
  s.n_head = 8;
  s.n_kv_head = 8;
  s.head_dim = 64;
  s.intermediate_size = 1376;
  s.vocab_size = 4096;
  s.max_position_embeddings = 8192;
  return s;
}

double matmul_gflops(int64_t n, torch::ScalarType dtype) {
  auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  torch::matmul(a, b);  // warm up
  const int reps = 5;
  auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) torch::matmul(a, b);
  return 2.0 * n * n * n * reps / seconds_since(t0) / 1e9;
}

int run_one(int64_t ctx, int64_t chunk, const std::string& dtype_name, const std::string& model_dir) {
  models::DecoderOptions options;
  options.prefill_chunk = chunk;
  options.prefill_call = g_call;
  options.compute_dtype = dtype_name == "bf16" ? models::DType::BFloat16 : models::DType::Float32;
  std::optional<models::ModelFolder> folder;
  naive::WeightMap weights;
  if (!model_dir.empty()) {
    folder = models::load_model_folder(model_dir);
  } else {
    weights = tiny::random_weights(bench_spec(), 7);
  }
  const models::ModelSpec spec = folder ? folder->spec : bench_spec();
  models::Decoder dec(
      spec,
      [&](const std::string& n) { return folder ? folder->tensor(n) : weights.at(n); }, options);
  std::vector<int64_t> prompt(static_cast<size_t>(ctx));
  for (int64_t i = 0; i < ctx; ++i) prompt[static_cast<size_t>(i)] = (i * 7919 + 13) % spec.vocab_size;
  const double rss_base = proc_status_mib("VmRSS");

  // Prefill alone (ctx - 1 tokens): best of 4 runs on fresh caches (the CPU is shared: bursts of other
  // tenants slowed single runs by up to 30 % on the project VM).
  const int64_t n_prefill = ctx - 1;
  auto ids = torch::tensor(std::vector<int64_t>(prompt.begin(), prompt.end() - 1), torch::kInt64).view({1, -1});
  double t_prefill = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    auto cache = dec.new_cache(1, ctx + 64);
    auto t0 = Clock::now();
    models::prefill_in_chunks(dec, ids, cache);  // as generate_greedy: one call per chunk
    t_prefill = std::min(t_prefill, seconds_since(t0));
  }
  const double peak_after_prefill = proc_status_mib("VmHWM");

  const double T = static_cast<double>(n_prefill), L = static_cast<double>(spec.n_layer);
  const double D = static_cast<double>(spec.hidden_size), F = static_cast<double>(spec.intermediate_size);
  const double per_token = 2.0 * L * (D * (static_cast<double>(spec.q_dim()) + 2.0 * static_cast<double>(spec.kv_dim())) +
                                      static_cast<double>(spec.q_dim()) * D + 3.0 * D * F);
  const double flops = T * per_token + 2.0 * L * D * T * T + 2.0 * D * static_cast<double>(spec.vocab_size);

  // Decode 32 steps after one prefill (the cache is truncated back to it before every run), with
  // and without capture; only the steps are timed.
  const int64_t steps = 32;
  auto cache2 = dec.new_cache(1, ctx + steps);
  models::prefill_in_chunks(dec, ids, cache2);
  auto decode_time = [&](int capture) {  // 0 none, 1 argmax (the paper), 2 argmax + top-5 + span
    models::GenerationOptions g;
    g.max_new_tokens = steps;
    if (capture > 0) {
      models::CaptureOptions c;
      if (capture > 1) {
        c.top_k = 5;
        c.spans = {{ctx / 2, ctx / 2 + 16}};
      }
      g.capture = c;
    }
    cache2.truncate(n_prefill);
    models::AttentionCapture cap(1, steps, spec.n_layer, spec.n_head,
                                 g.capture ? *g.capture : models::CaptureOptions{});
    models::ForwardOptions fo;
    if (capture > 0) fo.observer = &cap;
    auto input = torch::tensor({prompt.back()}, torch::kInt64).view({1, 1});
    auto td = Clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      cap.set_step(s);
      auto logits = dec.forward(input, cache2, fo);
      input = logits.argmax(-1).view({1, 1});
    }
    return seconds_since(td);
  };
  double t_plain = 1e30, t_capture = 1e30, t_full = 1e30;  // best of 5, interleaved
  for (int rep = 0; rep < 5; ++rep) {
    t_plain = std::min(t_plain, decode_time(0));
    t_capture = std::min(t_capture, decode_time(1));
    t_full = std::min(t_full, decode_time(2));
  }
  std::printf("%lld %lld %s %.4f %.3f %.4f %.4f %.4f %.1f %.1f %.1f\n", static_cast<long long>(ctx),
              static_cast<long long>(chunk), dtype_name.c_str(), t_prefill, flops / t_prefill / 1e9,
              t_plain, t_capture, t_full, rss_base, peak_after_prefill, proc_status_mib("VmHWM"));
  return 0;
}

struct Row {
  long long ctx = 0, chunk = 0;
  char dtype[8] = {};
  double t_prefill = 0, gflops = 0, t_plain = 0, t_capture = 0, t_full = 0, rss_base = 0, peak_prefill = 0, peak_all = 0;
};

bool run_child(const char* self, int threads, int64_t ctx, int64_t chunk, const char* dtype, Row& row) {
  const std::string cmd = std::string(self) + " --threads " + std::to_string(threads) + " --call " +
                          std::to_string(g_call) + " --one " +
                          std::to_string(ctx) + " " + std::to_string(chunk) + " " + dtype;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return false;
  const int n = std::fscanf(pipe, "%lld %lld %7s %lf %lf %lf %lf %lf %lf %lf %lf", &row.ctx, &row.chunk,
                            row.dtype, &row.t_prefill, &row.gflops, &row.t_plain, &row.t_capture, &row.t_full,
                            &row.rss_base, &row.peak_prefill, &row.peak_all);
  pclose(pipe);
  return n == 11;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::string model_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (arg == "--model" && i + 1 < argc) model_dir = argv[++i];
    if (arg == "--call" && i + 1 < argc) g_call = std::atoll(argv[++i]);
  }
  models::configure_cpu_compute(threads, /*flush_subnormals=*/true);
  torch::NoGradGuard no_grad;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--one" && i + 3 < argc) {
      return run_one(std::atoll(argv[i + 1]), std::atoll(argv[i + 2]), argv[i + 3], model_dir);
    }
  }
  std::printf("bench_decoder: 8 layers, d_model 512, 8 heads (d_head 64), d_ff 1376, vocab 4096; %d threads\n", threads);
  std::printf("machine matmul 1024^3: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s; 2048^3 fp32 %.1f GFLOP/s\n",
              matmul_gflops(1024, torch::kFloat32), matmul_gflops(1024, torch::kBFloat16),
              matmul_gflops(2048, torch::kFloat32));
  std::printf("%6s %6s %5s | %11s %9s | %9s %9s %8s %9s | %9s %11s %9s\n", "ctx", "chunk", "dtype",
              "prefill t/s", "GFLOP/s", "decode/s", "+argmax", "overhead", "+top5+span", "RSS base",
              "prefill +MiB", "peak MiB");
  struct Config { int64_t ctx, chunk; const char* dtype; };
  const std::vector<Config> configs = {{512, 256, "f32"},  {1024, 256, "f32"}, {2048, 256, "f32"},
                                       {4096, 256, "f32"}, {1024, 0, "f32"},   {4096, 0, "f32"},
                                       {2048, 256, "bf16"}, {4096, 256, "bf16"}};
  std::vector<Row> rows;
  for (const auto& c : configs) {
    Row r;
    if (!run_child(argv[0], threads, c.ctx, c.chunk, c.dtype, r)) {
      std::printf("%6lld: child failed\n", static_cast<long long>(c.ctx));
      continue;
    }
    const double overhead = 100.0 * (r.t_capture - r.t_plain) / r.t_plain;
    const double overhead_full = 100.0 * (r.t_full - r.t_plain) / r.t_plain;
    std::printf("%6lld %6s %5s | %11.0f %9.1f | %9.1f %9.1f %7.1f%% %8.1f%% | %9.0f %11.0f %9.0f\n", r.ctx,
                r.chunk == 0 ? "whole" : std::to_string(r.chunk).c_str(), r.dtype,
                static_cast<double>(r.ctx - 1) / r.t_prefill, r.gflops, 32.0 / r.t_plain,
                32.0 / r.t_capture, overhead, overhead_full, r.rss_base, r.peak_prefill - r.rss_base, r.peak_all);
    rows.push_back(r);
  }
  auto growth = [&](int64_t chunk) {
    double g1 = -1, g4 = -1;
    for (const auto& r : rows) {
      if (r.chunk != chunk || std::string(r.dtype) != "f32") continue;
      if (r.ctx == 1024) g1 = r.peak_prefill - r.rss_base;
      if (r.ctx == 4096) g4 = r.peak_prefill - r.rss_base;
    }
    return g4 / g1;
  };
  std::printf("prefill peak memory growth 1K -> 4K context (fp32): chunk 256: x%.2f, whole: x%.2f\n",
              growth(256), growth(0));
  return 0;
}
