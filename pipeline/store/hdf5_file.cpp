#include "pipeline/store/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "pipeline/core/error.h"
#include "pipeline/core/fnv1a.h"

namespace pipeline::store {

static_assert(std::is_same<hid_t, int64_t>::value, "hid_t is expected to be int64_t (HDF5 >= 1.10)");

namespace {

// HDF5 prints its error stack to stderr by default; we turn that off once and report through
// exceptions, appending the innermost description of the stack.
struct SilenceHdf5 {
  SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const SilenceHdf5 kSilence;

herr_t walk_last(unsigned, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (err && err->desc) *out = err->desc;
  return 0;
}

std::string hdf5_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_last, &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason.empty() ? std::string() : " (HDF5: " + reason + ")";
}

[[noreturn]] void fail(const std::string& file, const std::string& object, const std::string& what) {
  throw StoreError(str_cat("[store] ", file, ":", object, ": ", what, hdf5_reason()));
}

// RAII for short-lived handles (dataspaces, types, attributes, datasets).
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  Handle(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~Handle() {
    if (id >= 0) close(id);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

hid_t utf8_string_type() {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Group::Group(Group&& other) noexcept : m_id(other.m_id), m_file(std::move(other.m_file)), m_path(std::move(other.m_path)) {
  other.m_id = -1;
}

Group& Group::operator=(Group&& other) noexcept {
  if (this != &other) {
    if (m_id >= 0) H5Gclose(m_id);
    m_id = other.m_id;
    m_file = std::move(other.m_file);
    m_path = std::move(other.m_path);
    other.m_id = -1;
  }
  return *this;
}

Group::~Group() {
  if (m_id >= 0) H5Gclose(m_id);
}

std::string Group::child_path(const std::string& name) const {
  return m_path == "/" ? "/" + name : m_path + "/" + name;
}

Group Group::create_group(const std::string& name) {
  hid_t id = H5Gcreate2(m_id, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail(m_file, child_path(name), "cannot create group");
  return Group(id, m_file, child_path(name));
}

Group Group::open_group(const std::string& name) const {
  if (!has(name)) {
    throw StoreError(str_cat("[store] ", m_file, ":", child_path(name),
                             ": missing. Hint: was the stage that writes it run (and complete)?"));
  }
  hid_t id = H5Gopen2(m_id, name.c_str(), H5P_DEFAULT);
  if (id < 0) fail(m_file, child_path(name), "cannot open group");
  return Group(id, m_file, child_path(name));
}

bool Group::has(const std::string& name) const {
  if (name.empty() || name.find('/') != std::string::npos) return false;
  return H5Lexists(m_id, name.c_str(), H5P_DEFAULT) > 0;
}

namespace {
herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> Group::children() const {
  std::vector<std::string> names;
  if (H5Literate(m_id, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names) < 0) {
    fail(m_file, m_path, "cannot list children");
  }
  std::sort(names.begin(), names.end());
  return names;
}

void Group::remove(const std::string& name) {
  if (H5Ldelete(m_id, name.c_str(), H5P_DEFAULT) < 0) fail(m_file, child_path(name), "cannot remove");
}

// --- attributes --------------------------------------------------------------------------------
namespace {
void replace_attr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
}
}  // namespace

void Group::set_attr(const std::string& name, const std::string& value) {
  replace_attr(m_id, name);
  Handle type(utf8_string_type(), H5Tclose);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(m_id, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr.id < 0) fail(m_file, m_path + "@" + name, "cannot create attribute");
  const char* p = value.c_str();
  if (H5Awrite(attr.id, type.id, &p) < 0) fail(m_file, m_path + "@" + name, "cannot write attribute");
}

void Group::set_attr(const std::string& name, int64_t value) {
  replace_attr(m_id, name);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(m_id, name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_INT64, &value) < 0) {
    fail(m_file, m_path + "@" + name, "cannot write attribute");
  }
}

void Group::set_attr(const std::string& name, double value) {
  replace_attr(m_id, name);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(m_id, name.c_str(), H5T_IEEE_F64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr.id < 0 || H5Awrite(attr.id, H5T_NATIVE_DOUBLE, &value) < 0) {
    fail(m_file, m_path + "@" + name, "cannot write attribute");
  }
}

bool Group::has_attr(const std::string& name) const { return H5Aexists(m_id, name.c_str()) > 0; }

std::string Group::attr_string(const std::string& name) const {
  if (!has_attr(name)) fail(m_file, m_path + "@" + name, "attribute missing");
  Handle attr(H5Aopen(m_id, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle ftype(H5Aget_type(attr.id), H5Tclose);
  if (H5Tget_class(ftype.id) != H5T_STRING) fail(m_file, m_path + "@" + name, "attribute is not a string");
  if (H5Tis_variable_str(ftype.id) > 0) {
    Handle type(utf8_string_type(), H5Tclose);
    char* p = nullptr;
    if (H5Aread(attr.id, type.id, &p) < 0) fail(m_file, m_path + "@" + name, "cannot read attribute");
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  size_t n = H5Tget_size(ftype.id);
  std::string out(n, '\0');
  if (H5Aread(attr.id, ftype.id, out.data()) < 0) fail(m_file, m_path + "@" + name, "cannot read attribute");
  out.resize(std::strlen(out.c_str()));
  return out;
}

int64_t Group::attr_int(const std::string& name) const {
  if (!has_attr(name)) fail(m_file, m_path + "@" + name, "attribute missing");
  Handle attr(H5Aopen(m_id, name.c_str(), H5P_DEFAULT), H5Aclose);
  int64_t v = 0;
  if (H5Aread(attr.id, H5T_NATIVE_INT64, &v) < 0) fail(m_file, m_path + "@" + name, "not an integer attribute");
  return v;
}

double Group::attr_double(const std::string& name) const {
  if (!has_attr(name)) fail(m_file, m_path + "@" + name, "attribute missing");
  Handle attr(H5Aopen(m_id, name.c_str(), H5P_DEFAULT), H5Aclose);
  double v = 0;
  if (H5Aread(attr.id, H5T_NATIVE_DOUBLE, &v) < 0) fail(m_file, m_path + "@" + name, "not a number attribute");
  return v;
}

// --- datasets ----------------------------------------------------------------------------------
template <class T>
void Group::write_array(const std::string& name, const std::vector<T>& data, const std::vector<uint64_t>& shape,
                        const std::string& dims, int64_t mem_type, int64_t file_type) {
  uint64_t n = 1;
  for (auto s : shape) n *= s;
  RHEAD_CHECK(n == data.size(), InternalError, "[store] ", m_file, ":", child_path(name), ": ", data.size(),
              " values for shape of ", n, " elements (bug in the caller)");
  std::vector<hsize_t> dims_h(shape.begin(), shape.end());
  Handle space(shape.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple(static_cast<int>(dims_h.size()), dims_h.data(), nullptr),
               H5Sclose);
  Handle ds(H5Dcreate2(m_id, name.c_str(), file_type, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (ds.id < 0) fail(m_file, child_path(name), "cannot create dataset");
  if (n > 0 && H5Dwrite(ds.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) < 0) {
    fail(m_file, child_path(name), "cannot write dataset");
  }
  if (!dims.empty()) {
    Handle type(utf8_string_type(), H5Tclose);
    Handle aspace(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attr(H5Acreate2(ds.id, "dims", type.id, aspace.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* p = dims.c_str();
    if (attr.id < 0 || H5Awrite(attr.id, type.id, &p) < 0) fail(m_file, child_path(name), "cannot write dims");
  }
}

void Group::write(const std::string& name, const std::vector<int32_t>& d, const std::vector<uint64_t>& s,
                  const std::string& dims) {
  write_array(name, d, s, dims, H5T_NATIVE_INT32, H5T_STD_I32LE);
}
void Group::write(const std::string& name, const std::vector<int64_t>& d, const std::vector<uint64_t>& s,
                  const std::string& dims) {
  write_array(name, d, s, dims, H5T_NATIVE_INT64, H5T_STD_I64LE);
}
void Group::write(const std::string& name, const std::vector<float>& d, const std::vector<uint64_t>& s,
                  const std::string& dims) {
  write_array(name, d, s, dims, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE);
}
void Group::write(const std::string& name, const std::vector<double>& d, const std::vector<uint64_t>& s,
                  const std::string& dims) {
  write_array(name, d, s, dims, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE);
}

void Group::write_text(const std::string& name, const std::string& text) {
  Handle type(utf8_string_type(), H5Tclose);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle ds(H5Dcreate2(m_id, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  const char* p = text.c_str();
  if (ds.id < 0 || H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) < 0) {
    fail(m_file, child_path(name), "cannot write text");
  }
}

void Group::write_texts(const std::string& name, const std::vector<std::string>& texts, const std::string& dims) {
  Handle type(utf8_string_type(), H5Tclose);
  hsize_t n = texts.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle ds(H5Dcreate2(m_id, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  std::vector<const char*> ptrs;
  for (const auto& t : texts) ptrs.push_back(t.c_str());
  if (ds.id < 0 || (n > 0 && H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)) {
    fail(m_file, child_path(name), "cannot write texts");
  }
  if (!dims.empty()) {
    Handle aspace(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attr(H5Acreate2(ds.id, "dims", type.id, aspace.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* p = dims.c_str();
    if (attr.id < 0 || H5Awrite(attr.id, type.id, &p) < 0) fail(m_file, child_path(name), "cannot write dims");
  }
}

template <class T>
Array<T> Group::read_array(const std::string& name, int64_t mem_type, const char* type_name) const {
  if (!has(name)) {
    throw StoreError(str_cat("[store] ", m_file, ":", child_path(name), ": missing dataset (expected ", type_name,
                             "). Hint: was it written by an older or newer rhead? see docs/STORE.md"));
  }
  Handle ds(H5Dopen2(m_id, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.id < 0) fail(m_file, child_path(name), "cannot open dataset");
  Handle ftype(H5Dget_type(ds.id), H5Tclose);
  H5T_class_t cls = H5Tget_class(ftype.id);
  H5T_class_t want = (mem_type == H5T_NATIVE_FLOAT || mem_type == H5T_NATIVE_DOUBLE) ? H5T_FLOAT : H5T_INTEGER;
  if (cls != want) {
    throw StoreError(str_cat("[store] ", m_file, ":", child_path(name), ": dataset has HDF5 class ", int(cls),
                             ", expected ", type_name));
  }
  Handle space(H5Dget_space(ds.id), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  Array<T> out;
  out.shape.assign(dims.begin(), dims.end());
  out.data.resize(out.numel());
  if (!out.data.empty() && H5Dread(ds.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()) < 0) {
    fail(m_file, child_path(name), "cannot read dataset");
  }
  return out;
}

Array<int32_t> Group::read_int32(const std::string& n) const { return read_array<int32_t>(n, H5T_NATIVE_INT32, "int32"); }
Array<int64_t> Group::read_int64(const std::string& n) const { return read_array<int64_t>(n, H5T_NATIVE_INT64, "int64"); }
Array<float> Group::read_float(const std::string& n) const { return read_array<float>(n, H5T_NATIVE_FLOAT, "float32"); }
Array<double> Group::read_double(const std::string& n) const { return read_array<double>(n, H5T_NATIVE_DOUBLE, "float64"); }

std::string Group::read_text(const std::string& name) const {
  auto all = read_texts(name);
  RHEAD_CHECK(all.size() == 1, StoreError, "[store] ", m_file, ":", child_path(name), ": expected one string, got ",
              all.size());
  return all.front();
}

std::vector<std::string> Group::read_texts(const std::string& name) const {
  if (!has(name)) fail(m_file, child_path(name), "missing text dataset");
  Handle ds(H5Dopen2(m_id, name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle ftype(H5Dget_type(ds.id), H5Tclose);
  if (H5Tget_class(ftype.id) != H5T_STRING || H5Tis_variable_str(ftype.id) <= 0) {
    fail(m_file, child_path(name), "expected a variable-length string dataset");
  }
  Handle space(H5Dget_space(ds.id), H5Sclose);
  hssize_t n = H5Sget_simple_extent_npoints(space.id);
  std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
  Handle type(utf8_string_type(), H5Tclose);
  if (n > 0 && H5Dread(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) {
    fail(m_file, child_path(name), "cannot read text");
  }
  std::vector<std::string> out;
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
  }
  if (n > 0) H5Dvlen_reclaim(type.id, space.id, H5P_DEFAULT, ptrs.data());
  return out;
}

std::vector<uint64_t> Group::shape_of(const std::string& name) const {
  Handle ds(H5Dopen2(m_id, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.id < 0) fail(m_file, child_path(name), "cannot open dataset");
  Handle space(H5Dget_space(ds.id), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return std::vector<uint64_t>(dims.begin(), dims.end());
}

void Group::copy_child_to(const std::string& name, Group& dest, const std::string& dest_name) const {
  if (H5Ocopy(m_id, name.c_str(), dest.m_id, dest_name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0) {
    fail(m_file, child_path(name), "cannot copy to " + dest.m_file + ":" + dest.child_path(dest_name));
  }
}

uint64_t Group::content_digest() const {
  uint64_t h = kFnv1aShortBasis;
  for (const auto& name : children()) {
    h = fnv1a(name.data(), name.size() + 1, h);
    H5O_info_t info;
    if (H5Oget_info_by_name(m_id, name.c_str(), &info, H5P_DEFAULT) < 0) fail(m_file, child_path(name), "cannot stat");
    if (info.type == H5O_TYPE_GROUP) {
      uint64_t sub = open_group(name).content_digest();
      h = fnv1a(&sub, sizeof sub, h);
      continue;
    }
    if (info.type != H5O_TYPE_DATASET) continue;
    Handle ds(H5Dopen2(m_id, name.c_str(), H5P_DEFAULT), H5Dclose);
    Handle ftype(H5Dget_type(ds.id), H5Tclose);
    if (H5Tget_class(ftype.id) == H5T_STRING) {
      for (const auto& t : read_texts(name)) h = fnv1a(t.data(), t.size() + 1, h);
      continue;
    }
    Handle native(H5Tget_native_type(ftype.id, H5T_DIR_ASCEND), H5Tclose);
    Handle space(H5Dget_space(ds.id), H5Sclose);
    int rank = H5Sget_simple_extent_ndims(space.id);
    std::vector<hsize_t> dims(rank > 0 ? rank : 0);
    if (rank > 0) H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
    h = fnv1a(dims.data(), dims.size() * sizeof(hsize_t), h);
    int cls = H5Tget_class(ftype.id);
    size_t elem = H5Tget_size(native.id);
    h = fnv1a(&cls, sizeof cls, h);
    h = fnv1a(&elem, sizeof elem, h);
    std::vector<unsigned char> bytes(static_cast<size_t>(H5Sget_simple_extent_npoints(space.id)) * elem);
    if (!bytes.empty() && H5Dread(ds.id, native.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0) {
      fail(m_file, child_path(name), "cannot read for digest");
    }
    h = fnv1a(bytes.data(), bytes.size(), h);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
File File::create(const std::filesystem::path& path) {
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail(path.string(), "/", "cannot create file (is the directory writable? is another process using it?)");
  return File(id, path);
}

File File::open(const std::filesystem::path& path, Mode mode) {
  if (!std::filesystem::exists(path)) {
    throw StoreError(str_cat("[store] ", path.string(), ": no such file. Hint: run the stage that writes it first"));
  }
  hid_t id = H5Fopen(path.c_str(), mode == Mode::ReadOnly ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) fail(path.string(), "/", "cannot open as HDF5 (damaged by a kill before its first flush, or not an HDF5 file)");
  return File(id, path);
}

File::File(File&& other) noexcept : m_id(other.m_id), m_path(std::move(other.m_path)) { other.m_id = -1; }

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    close();
    m_id = other.m_id;
    m_path = std::move(other.m_path);
    other.m_id = -1;
  }
  return *this;
}

File::~File() { close(); }

void File::close() {
  if (m_id >= 0) {
    H5Fclose(m_id);
    m_id = -1;
  }
}

Group File::root() const {
  hid_t id = H5Gopen2(m_id, "/", H5P_DEFAULT);
  if (id < 0) fail(m_path.string(), "/", "cannot open root group");
  return Group(id, m_path.string(), "/");
}

void File::flush() {
  if (H5Fflush(m_id, H5F_SCOPE_GLOBAL) < 0) fail(m_path.string(), "/", "flush failed");
}

bool is_readable_hdf5(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return false;
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  H5Fclose(id);
  return true;
}

}  // namespace pipeline::store
