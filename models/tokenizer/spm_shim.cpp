// A plugin (MODULE library) wrapping libsentencepiece behind a C interface.
//
// Why: Debian's libsentencepiece embeds its own protobuf-lite, whose symbols collide with the
// libprotobuf that LibTorch loads; linking both into one executable crashes during static
// initialisation. models/tokenizer/spm_library.cpp dlopen()s this plugin with RTLD_LOCAL |
// RTLD_DEEPBIND, so sentencepiece binds to its own protobuf copy and LibTorch never sees it.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

char* copy_out(const std::string& s, size_t* len) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) return nullptr;
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  if (len) *len = s.size();
  return p;
}

}  // namespace

extern "C" {

// Every function returns nullptr/0 on success or a malloc'ed error message the caller frees with
// rhead_spm_free_buffer.
__attribute__((visibility("default"))) void* rhead_spm_new() { return new sentencepiece::SentencePieceProcessor(); }

__attribute__((visibility("default"))) void rhead_spm_delete(void* sp) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(sp);
}

__attribute__((visibility("default"))) void rhead_spm_free_buffer(void* p) { std::free(p); }

__attribute__((visibility("default"))) char* rhead_spm_load_proto(void* sp, const char* data, size_t len) {
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->LoadFromSerializedProto(
      std::string(data, len));
  return status.ok() ? nullptr : copy_out(status.ToString(), nullptr);
}

__attribute__((visibility("default"))) char* rhead_spm_encode(void* sp, const char* text, size_t len, int** ids,
                                                              size_t* n_ids) {
  std::vector<int> out;
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Encode(std::string(text, len), &out);
  if (!status.ok()) return copy_out(status.ToString(), nullptr);
  *n_ids = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.empty() ? 1 : out.size())));
  if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return nullptr;
}

__attribute__((visibility("default"))) char* rhead_spm_decode(void* sp, const int* ids, size_t n_ids, char** text,
                                                              size_t* len) {
  std::string out;
  auto status = static_cast<sentencepiece::SentencePieceProcessor*>(sp)->Decode(std::vector<int>(ids, ids + n_ids), &out);
  if (!status.ok()) return copy_out(status.ToString(), nullptr);
  *text = copy_out(out, len);
  return nullptr;
}

__attribute__((visibility("default"))) int rhead_spm_piece_size(void* sp) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->GetPieceSize();
}

// Caller frees the returned string with rhead_spm_free_buffer.
__attribute__((visibility("default"))) char* rhead_spm_id_to_piece(void* sp, int id, size_t* len) {
  return copy_out(static_cast<sentencepiece::SentencePieceProcessor*>(sp)->IdToPiece(id), len);
}

__attribute__((visibility("default"))) int rhead_spm_piece_to_id(void* sp, const char* piece, size_t len) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(sp)->PieceToId(std::string(piece, len));
}

// which: 0 unk, 1 bos, 2 eos, 3 pad
__attribute__((visibility("default"))) int rhead_spm_special_id(void* sp, int which) {
  auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(sp);
  switch (which) {
    case 0: return p->unk_id();
    case 1: return p->bos_id();
    case 2: return p->eos_id();
    default: return p->pad_id();
  }
}

// which: 0 control, 1 unknown, 2 byte
__attribute__((visibility("default"))) int rhead_spm_is(void* sp, int id, int which) {
  auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(sp);
  switch (which) {
    case 0: return p->IsControl(id) ? 1 : 0;
    case 1: return p->IsUnknown(id) ? 1 : 0;
    default: return p->IsByte(id) ? 1 : 0;
  }
}

}  // extern "C"
