#include "models/tokenizer/spm_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "pipeline/core/error.h"

namespace models::tokenizer_detail {

namespace {

struct Api {
  void* (*make)();
  void (*destroy)(void*);
  void (*free_buffer)(void*);
  char* (*load_proto)(void*, const char*, size_t);
  char* (*encode)(void*, const char*, size_t, int**, size_t*);
  char* (*decode)(void*, const int*, size_t, char**, size_t*);
  int (*piece_size)(void*);
  char* (*id_to_piece)(void*, int, size_t*);
  int (*piece_to_id)(void*, const char*, size_t);
  int (*special_id)(void*, int);
  int (*is)(void*, int, int);
};

std::filesystem::path executable_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe.parent_path();
}

const Api& api() {
  static std::once_flag once;
  static Api table{};
  static std::string failure;
  std::call_once(once, [] {
    std::vector<std::filesystem::path> candidates;
    if (const char* env = std::getenv("RHEAD_SPM_SHIM")) candidates.emplace_back(env);
    candidates.push_back(executable_dir() / "librhead_spm_shim.so");
    candidates.emplace_back(RHEAD_SPM_SHIM_PATH);
    void* lib = nullptr;
    std::string tried;
    for (const auto& c : candidates) {
      if (c.empty()) continue;
      tried += (tried.empty() ? "" : ", ") + c.string();
      if (!std::filesystem::exists(c)) continue;
      // RTLD_LOCAL + RTLD_DEEPBIND: sentencepiece's embedded protobuf stays private to the plugin.
      lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (lib) break;
      failure = dlerror();
    }
    if (!lib) {
      failure = "cannot load the SentencePiece plugin (tried " + tried + ")" + (failure.empty() ? "" : ": " + failure) +
                ". Hint: rebuild rhead (target rhead_spm_shim) or set RHEAD_SPM_SHIM to librhead_spm_shim.so";
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(lib, name);
      if (!p && failure.empty()) failure = std::string("SentencePiece plugin lacks symbol ") + name;
      return p;
    };
    table.make = reinterpret_cast<void* (*)()>(sym("rhead_spm_new"));
    table.destroy = reinterpret_cast<void (*)(void*)>(sym("rhead_spm_delete"));
    table.free_buffer = reinterpret_cast<void (*)(void*)>(sym("rhead_spm_free_buffer"));
    table.load_proto = reinterpret_cast<char* (*)(void*, const char*, size_t)>(sym("rhead_spm_load_proto"));
    table.encode = reinterpret_cast<char* (*)(void*, const char*, size_t, int**, size_t*)>(sym("rhead_spm_encode"));
    table.decode = reinterpret_cast<char* (*)(void*, const int*, size_t, char**, size_t*)>(sym("rhead_spm_decode"));
    table.piece_size = reinterpret_cast<int (*)(void*)>(sym("rhead_spm_piece_size"));
    table.id_to_piece = reinterpret_cast<char* (*)(void*, int, size_t*)>(sym("rhead_spm_id_to_piece"));
    table.piece_to_id = reinterpret_cast<int (*)(void*, const char*, size_t)>(sym("rhead_spm_piece_to_id"));
    table.special_id = reinterpret_cast<int (*)(void*, int)>(sym("rhead_spm_special_id"));
    table.is = reinterpret_cast<int (*)(void*, int, int)>(sym("rhead_spm_is"));
  });
  if (!failure.empty()) throw pipeline::InputError("[tokenizer] " + failure);
  return table;
}

SpmStatus take_error(char* err) {
  SpmStatus s;
  if (err) {
    s.error = err;
    api().free_buffer(err);
  }
  return s;
}

}  // namespace

SpmProcessor::SpmProcessor() : m_handle(api().make()) {}

SpmProcessor::~SpmProcessor() {
  if (m_handle) api().destroy(m_handle);
}

SpmStatus SpmProcessor::LoadFromSerializedProto(std::string_view proto) {
  return take_error(api().load_proto(m_handle, proto.data(), proto.size()));
}

SpmStatus SpmProcessor::Encode(std::string_view text, std::vector<int>* ids) const {
  int* buf = nullptr;
  size_t n = 0;
  SpmStatus s = take_error(api().encode(m_handle, text.data(), text.size(), &buf, &n));
  if (s.ok()) ids->assign(buf, buf + n);
  if (buf) api().free_buffer(buf);
  return s;
}

SpmStatus SpmProcessor::Decode(const std::vector<int>& ids, std::string* text) const {
  char* buf = nullptr;
  size_t n = 0;
  SpmStatus s = take_error(api().decode(m_handle, ids.data(), ids.size(), &buf, &n));
  if (s.ok() && buf) text->assign(buf, n);
  if (buf) api().free_buffer(buf);
  return s;
}

int SpmProcessor::GetPieceSize() const { return api().piece_size(m_handle); }

std::string SpmProcessor::IdToPiece(int id) const {
  size_t n = 0;
  char* p = api().id_to_piece(m_handle, id, &n);
  std::string out = p ? std::string(p, n) : std::string();
  if (p) api().free_buffer(p);
  return out;
}

int SpmProcessor::PieceToId(std::string_view piece) const { return api().piece_to_id(m_handle, piece.data(), piece.size()); }
int SpmProcessor::unk_id() const { return api().special_id(m_handle, 0); }
int SpmProcessor::bos_id() const { return api().special_id(m_handle, 1); }
int SpmProcessor::eos_id() const { return api().special_id(m_handle, 2); }
bool SpmProcessor::IsControl(int id) const { return api().is(m_handle, id, 0) != 0; }
bool SpmProcessor::IsUnknown(int id) const { return api().is(m_handle, id, 1) != 0; }
bool SpmProcessor::IsByte(int id) const { return api().is(m_handle, id, 2) != 0; }

}  // namespace models::tokenizer_detail
