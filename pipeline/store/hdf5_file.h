// A small RAII layer over the HDF5 C API. Nothing outside pipeline/store/ includes hdf5.h.
//
// Datasets are row-major arrays with an explicit shape and a `dims` attribute naming each axis
// ("step,layer,head"), readable with h5py and h5dump. Every failure throws StoreError naming the file
// and the object path, with HDF5's own reason appended.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pipeline::store {

template <class T>
struct Array {
  std::vector<T> data;           // row-major
  std::vector<uint64_t> shape;   // empty for a scalar
  uint64_t numel() const {
    uint64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

class Group {
 public:
  Group() = default;
  Group(Group&& other) noexcept;
  Group& operator=(Group&& other) noexcept;
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group();

  Group create_group(const std::string& name);
  Group open_group(const std::string& name) const;
  bool has(const std::string& name) const;       // a direct child link of that name exists
  std::vector<std::string> children() const;     // direct child names, sorted
  void remove(const std::string& name);          // unlink a child (space is reclaimed by h5repack)

  void set_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, const char* value) { set_attr(name, std::string(value)); }
  void set_attr(const std::string& name, int64_t value);
  void set_attr(const std::string& name, double value);
  bool has_attr(const std::string& name) const;
  std::string attr_string(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;

  // data.size() must equal the product of shape; dims names the axes ("layer,head").
  void write(const std::string& name, const std::vector<int32_t>& data, const std::vector<uint64_t>& shape,
             const std::string& dims);
  void write(const std::string& name, const std::vector<int64_t>& data, const std::vector<uint64_t>& shape,
             const std::string& dims);
  void write(const std::string& name, const std::vector<float>& data, const std::vector<uint64_t>& shape,
             const std::string& dims);
  void write(const std::string& name, const std::vector<double>& data, const std::vector<uint64_t>& shape,
             const std::string& dims);
  void write_text(const std::string& name, const std::string& text);       // scalar UTF-8 string
  void write_texts(const std::string& name, const std::vector<std::string>& texts, const std::string& dims);

  Array<int32_t> read_int32(const std::string& name) const;
  Array<int64_t> read_int64(const std::string& name) const;
  Array<float> read_float(const std::string& name) const;
  Array<double> read_double(const std::string& name) const;
  std::string read_text(const std::string& name) const;
  std::vector<std::string> read_texts(const std::string& name) const;
  std::vector<uint64_t> shape_of(const std::string& name) const;

  // Deep copy of child `name` into `dest` as `dest_name` (works across files: H5Ocopy).
  void copy_child_to(const std::string& name, Group& dest, const std::string& dest_name) const;

  // FNV-1a 64 over every dataset below this group (names, shapes, types and values, in name order),
  // ignoring attributes: equal digests mean equal results regardless of rank count or timing.
  uint64_t content_digest() const;

  const std::string& path() const { return m_path; }        // "/cells/x" inside the file
  const std::string& file_path() const { return m_file; }

 private:
  friend class File;
  Group(int64_t id, std::string file, std::string path) : m_id(id), m_file(std::move(file)), m_path(std::move(path)) {}
  std::string child_path(const std::string& name) const;
  template <class T>
  void write_array(const std::string& name, const std::vector<T>& data, const std::vector<uint64_t>& shape,
                   const std::string& dims, int64_t mem_type, int64_t file_type);
  template <class T>
  Array<T> read_array(const std::string& name, int64_t mem_type, const char* type_name) const;

  int64_t m_id = -1;  // hid_t
  std::string m_file;
  std::string m_path = "/";
};

class File {
 public:
  enum class Mode { ReadOnly, ReadWrite };
  static File create(const std::filesystem::path& path);  // truncates an existing file
  static File open(const std::filesystem::path& path, Mode mode = Mode::ReadOnly);
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  Group root() const;
  void flush();   // H5Fflush(GLOBAL): after this, a kill -9 leaves a readable file
  void close();
  const std::filesystem::path& path() const { return m_path; }

 private:
  File(int64_t id, std::filesystem::path path) : m_id(id), m_path(std::move(path)) {}
  int64_t m_id = -1;  // hid_t
  std::filesystem::path m_path;
};

// True when `path` is an HDF5 file that opens cleanly (used to detect shards damaged by a kill).
bool is_readable_hdf5(const std::filesystem::path& path);

}  // namespace pipeline::store
