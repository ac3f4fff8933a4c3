// Numerics of the ablation experiments (docs/PAPER_NOTES.md, "Masking", "QA and chain of thought"). Pure
// functions: no IO, no torch.
//
//  * Head selection: top-K heads by mean score; K random *non-retrieval* heads from a seeded SplitMix64
//    stream (the official script is unseeded, re-draws per test, hard-codes 32x32 and fails to exclude
//    retrieval heads; this is the fixed behaviour: docs/PAPER_NOTES.md, "Deviations from the official code").
//  * SQuAD-style answer normalisation, token F1 and exact match (ExtractQA, MuSiQue).
//  * Final-answer extraction from chain-of-thought responses (GSM8K, MMLU, MuSiQue).
//  * Downstream task files ([ablate] tasks): the name=kind:path entry, the JSONL items (parsed from text,
//    the caller reads the file), the prompt's user text and the score of one response.
//  * Error types of failed NIAH cells (Figure 9; docs/PAPER_NOTES.md, "Masking") and the attention-sink flag.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stages/common/splitmix64.h"
#include "stages/score/score_ops.h"

namespace stages {

// mean [L, H], 0 <= k <= L*H -> the k heads ranked first by rank_heads (mean descending, ties (layer, head)).
std::vector<HeadId> top_k_heads(const ScoreMap& mean, int64_t k);

struct RandomHeadOptions {
  int64_t k = 0;                     // how many heads to draw
  uint64_t seed = 0;                 // same seed -> same heads
  double exclude_above = 0.1;        // exclude retrieval heads: mean > this
  int64_t exclude_top = 0;           // also exclude the first exclude_top heads of the ranking (e.g. 100)
};

// mean [L, H] -> k distinct heads drawn uniformly without replacement from the pool of heads with
// mean <= exclude_above and not among the top exclude_top; returned in (layer, head) order.
// Algorithm: pool in (layer, head) order, partial Fisher-Yates: for i in [0, k): swap(pool[i],
// pool[i + uniform_below(|pool| - i)]), keep pool[0..k). Throws pipeline::InputError when k > |pool|.
std::vector<HeadId> random_non_retrieval_heads(const ScoreMap& mean, const RandomHeadOptions& options);

// SQuAD normalize_answer: lower-case (ASCII), drop ASCII punctuation (Python string.punctuation), replace the
// words a/an/the by a space (regex \b(a|an|the)\b; bytes >= 0x80 count as word characters), collapse whitespace.
std::string squad_normalize(std::string_view text);

// (prediction, gold) -> SQuAD token F1 in [0, 1] on normalised whitespace tokens with clipped counts.
// Empty normalised prediction or gold: 1 when both are empty, else 0 (SQuAD v2 script).
double squad_f1(std::string_view prediction, std::string_view gold);

// (prediction, gold) -> 1 when the normalised strings are equal, else 0.
double squad_exact_match(std::string_view prediction, std::string_view gold);

struct QaScore {
  double f1 = 0.0;           // max over golds
  double exact_match = 0.0;  // max over golds
};

// (prediction, golds >= 1) -> max F1 and max EM over the gold answers; pipeline::InputError for no gold.
QaScore squad_score(std::string_view prediction, const std::vector<std::string>& golds);

enum class AnswerKind {
  kText,    // MuSiQue / free text
  kNumber,  // GSM8K
  kChoice,  // MMLU (letters A-D)
};

// Chain-of-thought response -> final answer. Rule: the answer segment is the text after the LAST
// case-insensitive "the answer is" (a following ':' and whitespace skipped), or the whole response when the
// phrase is absent. Then, by kind:
//   kNumber: the first number in the segment when the phrase was found, else the last number of the whole
//            response; number = optional '-', digits with optional ',' groups and optional '.digits';
//            commas removed, a trailing ".0..." fraction of zeros removed ("1,234.00" -> "1234"); "" if none.
//   kChoice: the first standalone letter A-D (optionally in parentheses) in the segment when the phrase was
//            found, else the last such letter of the response; "" if none.
//   kText:   the segment up to the first newline when the phrase was found, else the last non-empty line;
//            surrounding whitespace and one trailing '.' removed.
std::string extract_final_answer(std::string_view response, AnswerKind kind);

// ---- Downstream tasks under masking ([ablate] tasks; docs/STORE.md, ablate.h5) ----

enum class TaskKind {
  kQa,      // extractive QA: F1 / EM of the whole response against every gold answer
  kCot,     // chain of thought: F1 / EM of the extracted final answer
  kDirect,  // answer only: scored as kCot (the extraction takes the last line of a short answer)
};
const char* task_kind_name(TaskKind kind);  // "qa" | "cot" | "direct"

struct TaskSpec {
  std::string name;  // [A-Za-z0-9_-]+: part of cell ids and HDF5 group names
  TaskKind kind = TaskKind::kQa;
  std::string path;  // as given (relative to the current directory)
};

// One [ablate] tasks entry "name=kind:path" -> spec. Anything else is a ConfigError naming job_source,
// the key, the entry and the expected form.
TaskSpec parse_task_entry(std::string_view entry, std::string_view job_source);

struct TaskItem {
  std::string prompt;   // optional few-shot prefix ("" if absent)
  std::string context;  // qa: required; cot/direct: optional
  std::string question;
  std::vector<std::string> answers;  // qa: the gold answers (>= 1); cot/direct: exactly the one answer
  AnswerKind answer_kind = AnswerKind::kText;  // cot/direct only
};

// JSONL text of a task file -> its items in line order (blank lines skipped). source names the file in
// messages ("<source>:<line>"). One object per line:
//   qa:          {"context": str, "question": str, "answers": [str, ...] (>= 1), "prompt": str (optional)}
//   cot, direct: {"question": str, "answer": str, "context": str (optional), "prompt": str (optional),
//                 "answer_kind": "text" | "number" | "choice" (optional, default text)}
// pipeline::InputError naming source:line and the field for bad JSON, a missing or mistyped field, an
// unknown field, an empty required string, and for a file without items.
std::vector<TaskItem> parse_task_jsonl(std::string_view text, TaskKind kind, const std::string& source);

// The user part of an item's prompt: (prompt + "\n" if any) + (context + "\n" if any) + "Question: " +
// question + "\nAnswer:". A chat model gets it inside its family template.
std::string task_user_text(const TaskItem& item);

struct TaskScore {
  std::string prediction;    // qa: the response; cot/direct: extract_final_answer(response, answer_kind)
  double f1 = 0.0;           // percent, 0..100: squad_score's max over the golds
  double exact_match = 0.0;  // percent, 0..100
};
TaskScore score_task_response(const TaskItem& item, TaskKind kind, std::string_view response);

// Error type of one masked-NIAH cell (Figure 9; docs/PAPER_NOTES.md, "Masking").
enum class NiahErrorType {
  kCorrect,          // recall == 100
  kIncomplete,       // 0 < recall < 100: part of the needle retrieved
  kWrongExtraction,  // recall == 0 and some response n-gram occurs verbatim in the haystack
  kHallucination,    // recall == 0 otherwise: fluent text from neither needle nor haystack
};
const char* niah_error_type_name(NiahErrorType type);

// (recall in [0, 100], response, haystack text, n) -> error type. n-grams are taken over rouge_tokenize(...,
// use_stemmer = false) tokens (lower-case [a-z0-9] words) of response and haystack; a response with fewer
// than n tokens never counts as wrong extraction (too little evidence of copying). Default n = 3.
NiahErrorType classify_niah_error(double recall, std::string_view response, std::string_view haystack,
                                  int ngram = 3);

// capture [S, L, H], heads -> fraction of (step, head) argmax positions < n_sink (attention on the first
// n_sink tokens, the attention sink of Figure 9). 0 when there are no steps or heads.
double sink_fraction(const ArgmaxCapture& capture, const std::vector<HeadId>& heads, int64_t n_sink = 4);

// heads without the ones in `masked`, order kept: the tracked heads whose argmax says where they looked (a
// head under the uniform mask attends evenly, so its argmax is position 0 by the lowest-index tie rule).
std::vector<HeadId> heads_not_masked(const std::vector<HeadId>& heads, const std::vector<HeadId>& masked);

struct NiahErrorReport {
  NiahErrorType type = NiahErrorType::kCorrect;
  double sink_fraction = 0.0;  // over the top heads this cell did not mask
  bool sink = false;           // sink_fraction >= sink_threshold
};

// All of the above for one cell; sink flag when at least sink_threshold of the argmaxes of the top heads
// outside `masked` are sinks (no such head: fraction 0, no flag).
NiahErrorReport analyze_niah_cell(double recall, std::string_view response, std::string_view haystack,
                                  const ArgmaxCapture& capture, const std::vector<HeadId>& top_heads,
                                  const std::vector<HeadId>& masked = {}, int ngram = 3, int64_t n_sink = 4,
                                  double sink_threshold = 0.5);

}  // namespace stages
