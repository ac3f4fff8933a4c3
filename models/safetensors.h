// Safetensors checkpoints (https://huggingface.co/docs/safetensors): reader and writer.
//
// File layout: u64 little-endian N | N bytes of JSON header | data section. The header maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data
// section) plus an optional "__metadata__" object of string -> string.
//
// Reading memory-maps the file (MAP_PRIVATE: an in-place write to a returned tensor changes only
// this process's copy) and validates the whole header before any tensor is touched: header length
// within the file, JSON syntax, every field's type, supported dtype (BF16, F16, F32), offsets
// inside the data section with begin <= end, no two tensors overlapping, and byte size ==
// product(shape) * dtype size. Malformed input never causes an out-of-bounds read; every problem
// is a ModelError naming the file, the tensor, what was expected and what was found.
//
// Returned tensors are zero-copy CPU views of the mapping (the mapping stays alive as long as any
// tensor from it does); a tensor whose data is not aligned to its element size is copied instead.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/model_error.h"
#include "models/model_spec.h"

namespace models {

// Safetensors dtype string ("BF16", "F16", "F32") <-> our DType, and bytes per element.
const char* safetensors_dtype_name(DType dtype);
int64_t dtype_size(DType dtype);
torch::ScalarType to_scalar_type(DType dtype);
// Throws ModelError for other scalar types (int, double, bool, ...); `what` names the tensor.
DType from_scalar_type(torch::ScalarType type, const std::string& what);

// "[4, 8]"
std::string shape_str(const std::vector<int64_t>& shape);

// One tensor's header entry, validated.
struct TensorInfo {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section: [begin, end)
  uint64_t end = 0;
  std::filesystem::path file;  // the .safetensors file holding it
  int64_t numel() const;
};

class MappedFile;  // read-only view of a whole file (mmap), defined in safetensors.cpp

// One .safetensors file, memory-mapped and validated on open.
class SafetensorsFile {
 public:
  // Throws ModelError ("[safetensors] <path>: ...") for a missing, unreadable or malformed file.
  static std::shared_ptr<const SafetensorsFile> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return m_path; }
  const std::map<std::string, std::string>& metadata() const { return m_metadata; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return m_infos.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;  // throws ModelError when absent
  // CPU tensor with the stored dtype and shape (zero-copy view of the mapping when aligned).
  torch::Tensor tensor(const std::string& name) const;
  uint64_t data_bytes() const { return m_data_size; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path m_path;
  std::shared_ptr<MappedFile> m_map;
  uint64_t m_data_offset = 0;  // 8 + header length
  uint64_t m_data_size = 0;
  std::map<std::string, TensorInfo> m_infos;
  std::map<std::string, std::string> m_metadata;
};

// A checkpoint: one .safetensors file, or the shards listed by a model.safetensors.index.json
// ("weight_map": tensor name -> shard file name, relative to the index's folder).
class SafetensorsReader {
 public:
  // `path` is a .safetensors file, an index .json, or a folder holding model.safetensors.index.json,
  // model.safetensors, or (failing both) one or more *.safetensors files that are merged (a
  // tensor present in two files is an error).
  static SafetensorsReader open(const std::filesystem::path& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return m_where.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;  // throws ModelError naming the checkpoint
  torch::Tensor tensor(const std::string& name) const;    // lazy, from the mapping
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return m_files; }
  const std::filesystem::path& source() const { return m_source; }  // what open() was given
  // Sum of all tensors' bytes.
  uint64_t total_bytes() const;

 private:
  std::filesystem::path m_source;
  std::vector<std::shared_ptr<const SafetensorsFile>> m_files;
  std::map<std::string, size_t> m_where;  // name -> index into m_files
};

using TensorMap = std::map<std::string, torch::Tensor>;

// Writes tensors (float32, bfloat16 or float16; any device, any strides) to one .safetensors file,
// with optional "__metadata__". The header is padded with spaces so the data section starts
// 8-byte aligned (as the reference implementation does). Written to "<path>.tmp" then renamed.
void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Writes tensors into `dir` as shards of at most `max_shard_bytes` tensor bytes each (a tensor
// larger than that gets a shard of its own): "<stem>-00001-of-0000N.safetensors" plus
// "<stem>.safetensors.index.json" ({"metadata": {"total_size": ...}, "weight_map": {...}}).
// With a single shard it writes "<stem>.safetensors" and no index. Returns the files written
// (index last when there is one).
std::vector<std::filesystem::path> save_safetensors_sharded(
    const std::filesystem::path& dir, const TensorMap& tensors, uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {}, const std::string& stem = "model");

}  // namespace models
