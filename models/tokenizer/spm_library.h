// SpmProcessor: the subset of sentencepiece::SentencePieceProcessor that rhead uses, served by the
// rhead_spm_shim plugin (see spm_shim.cpp for why sentencepiece must live in its own namespace of
// symbols). The plugin is found at $RHEAD_SPM_SHIM, next to the running executable, or at the path
// baked in at build time, in that order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace models::tokenizer_detail {

struct SpmStatus {
  std::string error;  // empty: ok
  bool ok() const { return error.empty(); }
  const std::string& ToString() const { return error; }
};

class SpmProcessor {
 public:
  SpmProcessor();  // throws pipeline::InputError naming the plugin path when it cannot be loaded
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  SpmStatus LoadFromSerializedProto(std::string_view proto);
  SpmStatus Encode(std::string_view text, std::vector<int>* ids) const;
  SpmStatus Decode(const std::vector<int>& ids, std::string* text) const;
  int GetPieceSize() const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;
  int unk_id() const;
  int bos_id() const;
  int eos_id() const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;

 private:
  void* m_handle = nullptr;  // the processor inside the plugin
};

}  // namespace models::tokenizer_detail
