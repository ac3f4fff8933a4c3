#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace models {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::str_cat;

namespace {

constexpr uint64_t kHeaderLengthBytes = 8;  // u64 little-endian header length
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kIndexName = "model.safetensors.index.json";

std::string errno_text() { return std::strerror(errno); }

std::string json_type_text(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  if (value.is_number_float()) return "a float " + text;
  if (value.is_number()) return "an integer " + text;
  if (value.is_null()) return "null";
  const std::string type = value.type_name();
  return str_cat(type[0] == 'a' || type[0] == 'o' ? "an " : "a ", type, " ", text);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// dtypes

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "F32";
    case DType::BFloat16: return "BF16";
    case DType::Float16: return "F16";
  }
  return "?";
}

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
  }
  return 0;
}

torch::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return torch::kFloat32;
    case DType::BFloat16: return torch::kBFloat16;
    case DType::Float16: return torch::kFloat16;
  }
  return torch::kFloat32;
}

DType from_scalar_type(torch::ScalarType type, const std::string& what) {
  switch (type) {
    case torch::kFloat32: return DType::Float32;
    case torch::kBFloat16: return DType::BFloat16;
    case torch::kFloat16: return DType::Float16;
    default: break;
  }
  throw ModelError(str_cat("[safetensors] ", what, ": dtype ", c10::toString(type),
                           " is not supported; expected float32, bfloat16 or float16"));
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// MappedFile: a whole file, mmap'ed MAP_PRIVATE (copy-on-write, never written back).

class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw ModelError(str_cat("[safetensors] ", path.string(), ": cannot open: ", errno_text()));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      std::string reason = errno_text();
      ::close(fd);
      throw ModelError(str_cat("[safetensors] ", path.string(), ": cannot stat: ", reason));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw ModelError(str_cat("[safetensors] ", path.string(), ": not a regular file"));
    }
    m_size = static_cast<uint64_t>(st.st_size);
    if (m_size > 0) {
      // MAP_NORESERVE: a private writable mapping of a 100 GB checkpoint must not be refused by
      // overcommit accounting; pages are only copied if someone writes to a tensor in place.
      void* p = ::mmap(nullptr, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
      if (p == MAP_FAILED) {
        std::string reason = errno_text();
        ::close(fd);
        throw ModelError(str_cat("[safetensors] ", path.string(), ": cannot mmap ", m_size,
                                 " bytes: ", reason));
      }
      m_data = static_cast<uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file referenced
  }
  ~MappedFile() {
    if (m_data) ::munmap(m_data, m_size);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return m_data; }
  uint64_t size() const { return m_size; }

 private:
  uint8_t* m_data = nullptr;
  uint64_t m_size = 0;
};

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

namespace {

bool parse_dtype(const std::string& text, DType* out) {
  if (text == "F32") *out = DType::Float32;
  else if (text == "BF16") *out = DType::BFloat16;
  else if (text == "F16") *out = DType::Float16;
  else return false;
  return true;
}

bool is_known_safetensors_dtype(const std::string& text) {
  static const std::set<std::string> kKnown = {"BOOL", "U8",  "I8",  "I16", "U16", "I32",  "U32",
                                               "I64",  "U64", "F64", "F8_E4M3", "F8_E5M2", "F4",
                                               "F6_E2M3", "F6_E3M2", "F8_E8M0", "E8M0", "C64"};
  return kKnown.count(text) > 0;
}

}  // namespace

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  const std::string where = str_cat("[safetensors] ", path.string());
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->m_path = path;
  file->m_map = std::make_shared<MappedFile>(path);
  const uint8_t* base = file->m_map->data();
  const uint64_t file_size = file->m_map->size();

  RHEAD_CHECK(file_size >= kHeaderLengthBytes, ModelError, where, ": file is ", file_size,
              " bytes, too short for the 8-byte header length (truncated or not a safetensors file)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  RHEAD_CHECK(header_len <= file_size - kHeaderLengthBytes, ModelError, where,
              ": header length ", header_len, " goes beyond the end of the file (", file_size,
              " bytes, so at most ", file_size - kHeaderLengthBytes,
              " header bytes); the file is truncated or not a safetensors file");
  RHEAD_CHECK(header_len > 0, ModelError, where, ": header length is 0; expected a JSON object");
  file->m_data_offset = kHeaderLengthBytes + header_len;
  file->m_data_size = file_size - file->m_data_offset;

  const char* header_begin = reinterpret_cast<const char*>(base + kHeaderLengthBytes);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::parse_error& e) {
    throw ModelError(str_cat(where, ": header (", header_len, " bytes) is not valid JSON: ", e.what()));
  }
  RHEAD_CHECK(header.is_object(), ModelError, where, ": header is a JSON ", header.type_name(),
              "; expected an object of tensor entries");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == kMetadataKey) {
      RHEAD_CHECK(entry.is_object(), ModelError, where, ": \"", kMetadataKey, "\" is ",
                  json_type_text(entry), "; expected an object of string values");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        RHEAD_CHECK(m.value().is_string(), ModelError, where, ": \"", kMetadataKey, "\" key '",
                    m.key(), "' is ", json_type_text(m.value()), "; expected a string");
        file->m_metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = str_cat(where, ": tensor '", name, "'");
    RHEAD_CHECK(entry.is_object(), ModelError, what, ": entry is ", json_type_text(entry),
                "; expected an object with dtype, shape, data_offsets");
    for (auto f = entry.begin(); f != entry.end(); ++f) {
      RHEAD_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", ModelError,
                  what, ": unknown field '", f.key(), "'; expected only dtype, shape, data_offsets");
    }
    RHEAD_CHECK(entry.contains("dtype"), ModelError, what, ": missing field 'dtype'");
    RHEAD_CHECK(entry.contains("shape"), ModelError, what, ": missing field 'shape'");
    RHEAD_CHECK(entry.contains("data_offsets"), ModelError, what, ": missing field 'data_offsets'");

    TensorInfo info;
    info.name = name;
    info.file = path;
    const json& dtype = entry["dtype"];
    RHEAD_CHECK(dtype.is_string(), ModelError, what, ": dtype is ", json_type_text(dtype),
                "; expected a string such as \"BF16\"");
    const std::string dtype_text = dtype.get<std::string>();
    if (!parse_dtype(dtype_text, &info.dtype)) {
      throw ModelError(str_cat(what, ": dtype '", dtype_text, "' is ",
                               is_known_safetensors_dtype(dtype_text) ? "not supported" : "unknown",
                               "; expected one of BF16, F16, F32"));
    }

    const json& shape = entry["shape"];
    RHEAD_CHECK(shape.is_array(), ModelError, what, ": shape is ", json_type_text(shape),
                "; expected an array of non-negative integers");
    uint64_t numel = 1;
    bool numel_overflow = false;
    for (const json& d : shape) {
      RHEAD_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                  ModelError, what, ": shape ", shape.dump(), " has a dimension that is ", json_type_text(d),
                  "; expected non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      info.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(numel, dim, &numel)) numel_overflow = true;
    }

    const json& offsets = entry["data_offsets"];
    RHEAD_CHECK(offsets.is_array() && offsets.size() == 2, ModelError, what, ": data_offsets is ",
                json_type_text(offsets), "; expected [begin, end]");
    for (const json& o : offsets) {
      RHEAD_CHECK(o.is_number_unsigned(), ModelError, what, ": data_offsets ", offsets.dump(),
                  " holds ", json_type_text(o), "; expected non-negative integers");
    }
    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    RHEAD_CHECK(info.begin <= info.end, ModelError, what, ": data_offsets [", info.begin, ", ",
                info.end, "] have begin > end");
    RHEAD_CHECK(info.end <= file->m_data_size, ModelError, what, ": data_offsets [", info.begin,
                ", ", info.end, "] go beyond the data section of ", file->m_data_size,
                " bytes (file truncated?)");
    uint64_t expected_bytes = 0;
    if (numel_overflow ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &expected_bytes)) {
      throw ModelError(str_cat(what, ": shape ", shape_str(info.shape), " of ", dtype_text,
                               " overflows 64-bit byte counts"));
    }
    const uint64_t bytes = info.end - info.begin;
    RHEAD_CHECK(bytes == expected_bytes, ModelError, what, ": data_offsets [", info.begin, ", ",
                info.end, "] give ", bytes, " bytes, expected ", expected_bytes, " for shape ",
                shape_str(info.shape), " of ", dtype_text);
    file->m_infos.emplace(name, std::move(info));
  }

  // No two tensors may share bytes. Sort by begin and compare each with the furthest-reaching
  // earlier tensor (one big tensor can contain several later ones).
  std::vector<const TensorInfo*> by_offset;
  for (const auto& kv : file->m_infos) {
    if (kv.second.end > kv.second.begin) by_offset.push_back(&kv.second);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  const TensorInfo* reach = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (reach && t->begin < reach->end) {
      throw ModelError(str_cat(where, ": tensor '", t->name, "' data_offsets [", t->begin, ", ",
                               t->end, "] overlap tensor '", reach->name, "' [", reach->begin, ", ",
                               reach->end, "]"));
    }
    if (!reach || t->end > reach->end) reach = t;
  }
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(m_infos.size());
  for (const auto& kv : m_infos) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = m_infos.find(name);
  RHEAD_CHECK(it != m_infos.end(), ModelError, "[safetensors] ", m_path.string(), ": no tensor '",
              name, "' (the file has ", m_infos.size(), " tensors)");
  return it->second;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto options = torch::TensorOptions().dtype(to_scalar_type(t.dtype)).device(torch::kCPU);
  if (t.end == t.begin) return torch::empty(t.shape, options);
  uint8_t* ptr = m_map->data() + m_data_offset + t.begin;  // in bounds: checked in open()
  const auto elem = static_cast<uintptr_t>(dtype_size(t.dtype));
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    torch::Tensor copy = torch::empty(t.shape, options);
    std::memcpy(copy.data_ptr(), ptr, t.end - t.begin);
    return copy;
  }
  std::shared_ptr<MappedFile> keep = m_map;
  return torch::from_blob(ptr, t.shape, [keep](void*) mutable { keep.reset(); }, options);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsReader

namespace {

json read_json_file(const fs::path& path, const std::string& component) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(str_cat("[", component, "] ", path.string(), ": cannot read"));
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw ModelError(str_cat("[", component, "] ", path.string(), ": not valid JSON: ", e.what()));
  }
}

bool is_safe_relative_name(const std::string& name) {
  if (name.empty()) return false;
  fs::path p(name);
  if (p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

SafetensorsReader SafetensorsReader::open(const fs::path& path) {
  SafetensorsReader reader;
  reader.m_source = path;
  std::error_code ec;
  RHEAD_CHECK(fs::exists(path, ec), ModelError, "[safetensors] ", path.string(), ": does not exist");

  auto add_file = [&reader](const fs::path& file_path) -> size_t {
    reader.m_files.push_back(SafetensorsFile::open(file_path));
    return reader.m_files.size() - 1;
  };

  fs::path index_path;
  std::vector<fs::path> plain_files;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / kIndexName)) {
      index_path = path / kIndexName;
    } else if (fs::exists(path / "model.safetensors")) {
      plain_files.push_back(path / "model.safetensors");
    } else {
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
          plain_files.push_back(entry.path());
        }
      }
      std::sort(plain_files.begin(), plain_files.end());
      RHEAD_CHECK(!plain_files.empty(), ModelError, "[safetensors] ", path.string(),
                  ": no ", kIndexName, ", model.safetensors or other *.safetensors file. Hint: "
                  "convert .bin checkpoints with HF transformers (save_pretrained(..., "
                  "safe_serialization=True))");
    }
  } else if (path.extension() == ".json") {
    index_path = path;
  } else {
    plain_files.push_back(path);
  }

  if (!index_path.empty()) {
    const std::string where = str_cat("[safetensors] ", index_path.string());
    json index = read_json_file(index_path, "safetensors");
    RHEAD_CHECK(index.is_object() && index.contains("weight_map"), ModelError, where,
                ": no \"weight_map\" object; expected {\"weight_map\": {tensor: shard file}}");
    const json& weight_map = index["weight_map"];
    RHEAD_CHECK(weight_map.is_object(), ModelError, where, ": \"weight_map\" is ",
                json_type_text(weight_map), "; expected an object");
    std::map<std::string, size_t> shard_ids;
    const fs::path dir = index_path.parent_path();
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      RHEAD_CHECK(it.value().is_string(), ModelError, where, ": weight_map['", it.key(), "'] is ",
                  json_type_text(it.value()), "; expected a shard file name");
      const std::string shard = it.value().get<std::string>();
      RHEAD_CHECK(is_safe_relative_name(shard), ModelError, where, ": weight_map['", it.key(),
                  "'] = '", shard, "': expected a file name relative to the index's folder");
      auto found = shard_ids.find(shard);
      size_t id = 0;
      if (found == shard_ids.end()) {
        RHEAD_CHECK(fs::exists(dir / shard), ModelError, where, ": shard '", shard,
                    "' (holding tensor '", it.key(), "') does not exist in ", dir.string());
        id = add_file(dir / shard);
        shard_ids.emplace(shard, id);
      } else {
        id = found->second;
      }
      RHEAD_CHECK(reader.m_files[id]->contains(it.key()), ModelError, where, ": tensor '", it.key(),
                  "' is mapped to shard '", shard, "', which does not contain it");
      reader.m_where[it.key()] = id;
    }
    RHEAD_CHECK(!reader.m_where.empty(), ModelError, where, ": \"weight_map\" is empty");
    return reader;
  }

  for (const fs::path& file_path : plain_files) {
    size_t id = add_file(file_path);
    for (const std::string& name : reader.m_files[id]->names()) {
      auto [it, inserted] = reader.m_where.emplace(name, id);
      RHEAD_CHECK(inserted, ModelError, "[safetensors] ", path.string(), ": tensor '", name,
                  "' is in both ", reader.m_files[it->second]->path().string(), " and ",
                  file_path.string());
    }
  }
  return reader;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(m_where.size());
  for (const auto& kv : m_where) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = m_where.find(name);
  RHEAD_CHECK(it != m_where.end(), ModelError, "[safetensors] ", m_source.string(), ": no tensor '",
              name, "' in the checkpoint (", m_where.size(), " tensors)");
  return m_files[it->second]->info(name);
}

torch::Tensor SafetensorsReader::tensor(const std::string& name) const {
  auto it = m_where.find(name);
  RHEAD_CHECK(it != m_where.end(), ModelError, "[safetensors] ", m_source.string(), ": no tensor '",
              name, "' in the checkpoint (", m_where.size(), " tensors)");
  return m_files[it->second]->tensor(name);
}

uint64_t SafetensorsReader::total_bytes() const {
  uint64_t total = 0;
  for (const auto& kv : m_where) {
    const TensorInfo& t = m_files[kv.second]->info(kv.first);
    total += t.end - t.begin;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Writers

namespace {

struct PreparedTensor {
  std::string name;
  DType dtype;
  torch::Tensor data;  // contiguous CPU
  uint64_t bytes;
};

PreparedTensor prepare(const std::string& name, const torch::Tensor& tensor, const fs::path& path) {
  const std::string what = str_cat(path.string(), ": tensor '", name, "'");
  RHEAD_CHECK(!name.empty() && name != kMetadataKey, ModelError, "[safetensors] ", path.string(),
              ": invalid tensor name '", name, "'");
  RHEAD_CHECK(tensor.defined(), ModelError, "[safetensors] ", what, ": undefined tensor");
  PreparedTensor p;
  p.name = name;
  p.dtype = from_scalar_type(tensor.scalar_type(), what);
  p.data = tensor.detach().to(torch::kCPU).contiguous();
  p.bytes = static_cast<uint64_t>(p.data.numel()) * static_cast<uint64_t>(dtype_size(p.dtype));
  return p;
}

void write_file(const fs::path& path, const std::vector<PreparedTensor>& tensors,
                const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const PreparedTensor& t : tensors) {
    header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                      {"shape", t.data.sizes().vec()},
                      {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string text = header.dump();
  while ((kHeaderLengthBytes + text.size()) % 8 != 0) text.push_back(' ');
  uint8_t len_bytes[kHeaderLengthBytes];
  uint64_t len = text.size();
  for (size_t i = 0; i < kHeaderLengthBytes; ++i) len_bytes[i] = static_cast<uint8_t>(len >> (8 * i));

  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    RHEAD_CHECK(out.good(), ModelError, "[safetensors] ", tmp.string(), ": cannot write: ",
                errno_text());
    out.write(reinterpret_cast<const char*>(len_bytes), kHeaderLengthBytes);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const PreparedTensor& t : tensors) {
      out.write(static_cast<const char*>(t.data.data_ptr()), static_cast<std::streamsize>(t.bytes));
    }
    out.flush();
    RHEAD_CHECK(out.good(), ModelError, "[safetensors] ", tmp.string(), ": write failed: ",
                errno_text());
  }
  fs::rename(tmp, path);
}

}  // namespace

void save_safetensors(const fs::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<PreparedTensor> prepared;
  prepared.reserve(tensors.size());
  for (const auto& kv : tensors) prepared.push_back(prepare(kv.first, kv.second, path));
  write_file(path, prepared, metadata);
}

std::vector<fs::path> save_safetensors_sharded(const fs::path& dir, const TensorMap& tensors,
                                               uint64_t max_shard_bytes,
                                               const std::map<std::string, std::string>& metadata,
                                               const std::string& stem) {
  RHEAD_CHECK(max_shard_bytes > 0, ModelError, "[safetensors] ", dir.string(),
              ": max_shard_bytes must be positive");
  std::vector<std::vector<PreparedTensor>> shards(1);
  uint64_t shard_bytes = 0;
  uint64_t total = 0;
  for (const auto& kv : tensors) {
    PreparedTensor p = prepare(kv.first, kv.second, dir);
    if (!shards.back().empty() && shard_bytes + p.bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += p.bytes;
    total += p.bytes;
    shards.back().push_back(std::move(p));
  }
  fs::create_directories(dir);
  std::vector<fs::path> written;
  if (shards.size() == 1) {
    written.push_back(dir / (stem + ".safetensors"));
    write_file(written.back(), shards[0], metadata);
    return written;
  }
  json weight_map = json::object();
  const size_t n = shards.size();
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "-%05zu-of-%05zu.safetensors", i + 1, n);
    const std::string file_name = stem + name;
    written.push_back(dir / file_name);
    write_file(written.back(), shards[i], metadata);
    for (const PreparedTensor& t : shards[i]) weight_map[t.name] = file_name;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  written.push_back(dir / (stem + ".safetensors.index.json"));
  std::ofstream out(written.back(), std::ios::binary | std::ios::trunc);
  out << index.dump(2) << "\n";
  RHEAD_CHECK(out.good(), ModelError, "[safetensors] ", written.back().string(), ": write failed");
  return written;
}

}  // namespace models
