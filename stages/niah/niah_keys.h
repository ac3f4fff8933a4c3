// The keys every NIAH stage declares in its own section ([generate], [ablate]): the grid of context lengths
// and needle depths, how prompts are built, how answers are decoded, and how the work is batched. Declared,
// read and checked here once, so the two stages cannot drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/core/config.h"
#include "stages/niah/niah_cell.h"
#include "stages/niah/prompt_builder.h"

namespace stages {

struct NiahKeys {
  std::vector<int64_t> lengths, depths;  // context lengths in tokens, needle depths in percent
  PromptMode prompt_mode = PromptMode::kFaithful;
  int64_t buffer_tokens = 200;           // tokens kept free for the question
  NiahDecodeOptions decode;              // max_new_tokens, stop_strings (mask and prefix cache: per cell)
  int64_t prefill_chunk = 128;           // tuning: query rows per attention block
  int64_t prefill_call = 512;            // tuning: prompt tokens per forward call of a fixed-mode prefill
  int64_t decode_batch = 32;             // tuning: cells decoded together
};

// Declares [<section>] lengths, depths, prompt_mode, buffer_tokens, max_new_tokens, stop_strings and the
// tuning keys prefill_chunk, prefill_call and decode_batch; `batch_unit` says what decode_batch groups
// (e.g. "cells of one length").
void declare_niah_keys(pipeline::ConfigSchema& schema, const std::string& section, const std::string& batch_unit);

// Reads them; a malformed prompt_mode is a ConfigError naming the key.
NiahKeys read_niah_keys(const pipeline::Config& c, const std::string& section);

// The checks of validate(): non-empty grid, lengths above buffer_tokens, depths in [0, 100], at least one
// decode step, decode_batch >= 1, prefill sizes >= 0. ConfigErrors name the job file, section and key.
void validate_niah_keys(const NiahKeys& k, const pipeline::Config& c, const std::string& section);

}  // namespace stages
