// Per-layer key/value cache for a batch of B sequences, LEFT-PADDED: every sequence occupies the
// slots [pad[b], length()) of the same slot range, so one decode step appends one slot for all.
// Slot s of sequence b holds token position s - pad[b]. Keys are stored after RoPE.
//   keys(l), values(l): [B, n_kv_head, capacity, head_dim]; slots >= length() are unused.
// Capacity grows by doubling when a forward call needs more (a copy); reserve() up front avoids it.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "pipeline/core/error.h"

namespace models {

class KvCache {
 public:
  KvCache() = default;
  KvCache(int64_t n_layer, int64_t batch, int64_t n_kv_head, int64_t head_dim, int64_t capacity,
          torch::ScalarType dtype, torch::Device device)
      : m_batch(batch),
        m_n_kv_head(n_kv_head),
        m_head_dim(head_dim),
        m_dtype(dtype),
        m_device(device),
        m_pad(torch::zeros({batch}, torch::dtype(torch::kInt64).device(device))),
        m_pad_host(static_cast<size_t>(batch), 0) {
    RHEAD_CHECK(batch > 0, pipeline::InputError, "[model] kv cache: batch ", batch,
                ", expected > 0");
    m_keys.resize(static_cast<size_t>(n_layer));
    m_values.resize(static_cast<size_t>(n_layer));
    allocate(std::max<int64_t>(capacity, 1));
  }

  int64_t n_layer() const { return static_cast<int64_t>(m_keys.size()); }
  int64_t batch() const { return m_batch; }
  int64_t length() const { return m_length; }      // filled slots (same for every sequence)
  int64_t capacity() const { return m_capacity; }
  torch::ScalarType dtype() const { return m_dtype; }
  torch::Device device() const { return m_device; }

  // Leading pad slots per sequence: [B] int64 on the cache device, and the same on the host.
  const torch::Tensor& pad() const { return m_pad; }
  const std::vector<int64_t>& pad_host() const { return m_pad_host; }
  bool has_padding() const {
    return std::any_of(m_pad_host.begin(), m_pad_host.end(), [](int64_t p) { return p > 0; });
  }
  // Tokens held for sequence b (length() - pad[b]).
  int64_t seq_length(int64_t b) const { return m_length - m_pad_host[static_cast<size_t>(b)]; }

  // Sets the left padding; only on an empty cache (before the prefill).
  void set_padding(const std::vector<int64_t>& pad) {
    RHEAD_CHECK(m_length == 0, pipeline::InternalError,
                "[model] kv cache: set_padding on a non-empty cache (length ", m_length, ")");
    RHEAD_CHECK(static_cast<int64_t>(pad.size()) == m_batch, pipeline::InputError,
                "[model] kv cache: padding for ", pad.size(), " sequences, expected ", m_batch);
    m_pad_host = pad;
    m_pad = torch::tensor(pad, torch::dtype(torch::kInt64)).to(m_device);
  }

  void reserve(int64_t capacity) {
    if (capacity > m_capacity) allocate(std::max(capacity, 2 * m_capacity));
  }

  // [B, n_kv, capacity, d] storage of layer `layer`.
  torch::Tensor& keys(int64_t layer) { return m_keys[static_cast<size_t>(layer)]; }
  torch::Tensor& values(int64_t layer) { return m_values[static_cast<size_t>(layer)]; }

  // Called by the decoder after every layer has written slots [length, length + n).
  void advance(int64_t n) { m_length += n; }

  // A new unpadded cache holding a copy of this one's first `n` slots, with room for `capacity` slots
  // (>= n): a sequence's own cache, split off a shared one (models::generate_greedy_each).
  KvCache copy_of_first(int64_t n, int64_t capacity) const {
    RHEAD_CHECK(n >= 0 && n <= m_length && !has_padding(), pipeline::InternalError, "[model] kv cache: copy of ",
                n, " of ", m_length, " slots", has_padding() ? " of a padded cache" : "");
    KvCache copy(n_layer(), m_batch, m_n_kv_head, m_head_dim, std::max(capacity, n), m_dtype, m_device);
    for (size_t l = 0; l < m_keys.size(); ++l) {
      copy.m_keys[l].narrow(2, 0, n).copy_(m_keys[l].narrow(2, 0, n));
      copy.m_values[l].narrow(2, 0, n).copy_(m_values[l].narrow(2, 0, n));
    }
    copy.m_length = n;
    return copy;
  }

  // Forgets slots >= length (e.g. to decode again from a shared prefix); keeps the storage.
  void truncate(int64_t length) {
    RHEAD_CHECK(length >= 0 && length <= m_length, pipeline::InputError, "[model] kv cache: truncate to ",
                length, ", expected in [0, ", m_length, "]");
    m_length = length;
  }

 private:
  void allocate(int64_t capacity) {
    auto options = torch::dtype(m_dtype).device(m_device);
    for (size_t l = 0; l < m_keys.size(); ++l) {
      auto k = torch::empty({m_batch, m_n_kv_head, capacity, m_head_dim}, options);
      auto v = torch::empty({m_batch, m_n_kv_head, capacity, m_head_dim}, options);
      if (m_length > 0) {
        k.narrow(2, 0, m_length).copy_(m_keys[l].narrow(2, 0, m_length));
        v.narrow(2, 0, m_length).copy_(m_values[l].narrow(2, 0, m_length));
      }
      m_keys[l] = k;
      m_values[l] = v;
    }
    m_capacity = capacity;
  }

  int64_t m_batch = 0;
  int64_t m_n_kv_head = 0;
  int64_t m_head_dim = 0;
  torch::ScalarType m_dtype = torch::kFloat32;
  torch::Device m_device = torch::kCPU;
  int64_t m_length = 0;
  int64_t m_capacity = 0;
  torch::Tensor m_pad;
  std::vector<int64_t> m_pad_host;
  std::vector<torch::Tensor> m_keys;
  std::vector<torch::Tensor> m_values;
};

}  // namespace models
