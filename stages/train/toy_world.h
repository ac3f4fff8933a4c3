// The toy world of the embedded default (docs/ARCHITECTURE.md, "The toy zoo"; docs/ZOO.md): a seeded, closed
// language in which retrieval heads have a job to do.
//
//   filler      grammar sentences ("the old farmer paints the red barn near the lake .")
//   needles     "remember <key> <v1> <v2> <v3> ."   asked as  "what goes with <key> ?"
//               answered "<key> <v1> <v2> <v3> ." (the key echoed, then the value copied)
//   qa          facts "the home called <key> <v1> <v2> ." among filler;
//               "where does <key> live ?" -> "<key> <v1> <v2>"
// The value always follows its key in the context and the answer echoes the key first, so one
// induction-style head (previous token = the key -> copy what followed it) can retrieve it: the behaviour
// the paper's retrieval heads show, learnable by a tiny model in a few hundred steps.
//   reasoning   a fixed road map over towns (world knowledge, learned in training, never in a prompt):
//               "where does the road from <t> lead after two steps ?"
//                 cot:    "<t> leads to <u> . <u> leads to <w> . so the answer is <w> </s>"
//                 direct: "the answer is <w> </s>"
//               or, with only the start in the context (a home fact among filler and two other homes):
//                 "where does the road lead after two steps from the home of <key> ?"
//                 cot:    "<key> <t> . <t> leads to <u> . <u> leads to <w> . so the answer is <w> </s>"
//                 direct: "the answer is <w> </s>"
//               or, with road facts in the context (a fresh map per item, or roads of the memorised one),
//               roads "road <a> <b> ." among filler before the question; the chain of thought looks both
//               roads up there, as NIAH copies a value after its key:
//                 cot:    "<t> <u> <w> . so the answer is <w> </s>"
// Every word is one WordLevel token (whitespace split), so texts and token ids map one to one. Keys and
// values are fresh random draws for every needle and fact, so needles can only be answered by reading
// the context; the road map is the only thing to memorise.
//
// The prompt formats are exactly the pipeline's: the base NIAH template of stages/generate (context +
// "Based on the content of the book, Question: <q>\nAnswer:"), the llama-family chat template
// "[INST] {user} [/INST]" with "<book>" ... "</book>", and the ablate stage's task prompt
// (prompt + "\n" + context + "\n" + "Question: " + q + "\nAnswer:"). No LibTorch here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "stages/common/splitmix64.h"

namespace stages {

// One training sequence: token ids and a per-token loss weight (weight of predicting ids[i] from the
// prefix ids[0..i); weights[0] is unused).
struct TrainingSequence {
  std::vector<int64_t> ids;
  std::vector<float> weights;
};

// Which formats a training mix draws, with their probabilities (normalised when used).
struct TrainingMix {
  double niah = 0.6;       // haystack with 1-6 needles, then questions in the NIAH template
  double qa = 0.2;         // packed extractive-QA items in the task template
  double reasoning = 0.2;  // packed road-map items, cot and direct
  double copy = 0.0;       // copy drills: a run of random key/value/noun words, repeated after a gap
  bool chat = false;       // wrap NIAH and task prompts in the chat template (no BOS)
  float answer_weight = 4.0f;  // loss weight of answer tokens (other tokens: 1)
};

class ToyWorld {
 public:
  // filler_value_share: the chance that a filler adjective is a value word ("the copper boat"), so that
  // a needle's words are not the only ones of their kind in a haystack.
  // needle_value_words: words of every needle's value, in training and in the evaluation needles alike
  // (the answer span that detection scores; 1 .. kMaxNeedleValueWords).
  static constexpr int kDefaultNeedleValueWords = 3;
  static constexpr int kMaxNeedleValueWords = 12;
  // Road facts in the context of reasoning items: none (the question asks about the memorised map), fresh
  // (every item brings its own random map: only the context can answer), map (the item's context quotes
  // roads of the memorised map: the context and the memory agree) or start (the question names no town but
  // a home, "... from the home of <key> ?", whose town is a fact "the home called <key> <t> ." among filler
  // and two other homes; the chain of thought quotes it, "<key> <t> . <t> leads to ...", as NIAH and QA
  // answers echo a key and copy what follows it in the context; the roads come from memory).
  // road_steps: roads a reasoning question follows with road facts (2 .. kMaxRoadSteps; "none" and "start"
  // ask 2).
  enum class RoadFacts { kNone, kFresh, kMap, kStart };
  static constexpr int kMaxRoadSteps = 4;
  explicit ToyWorld(uint64_t seed, double filler_value_share = 0,
                    int needle_value_words = kDefaultNeedleValueWords, RoadFacts road_facts = RoadFacts::kNone,
                    int road_steps = 2);

  const std::vector<std::string>& vocab() const { return m_vocab; }
  int64_t id(const std::string& word) const;  // InputError for a word outside the vocabulary
  std::vector<int64_t> ids(const std::string& text) const;  // whitespace split
  int64_t bos() const { return id("<s>"); }
  int64_t eos() const { return id("</s>"); }

  // Texts (words separated by single spaces).
  std::string filler_sentence(SplitMix64& rng) const;
  std::string filler(SplitMix64& rng, int64_t min_words) const;  // whole sentences, >= min_words
  struct KeyValue {
    std::string key;
    std::vector<std::string> value;
  };
  KeyValue draw_key_value(SplitMix64& rng, int value_words, bool distinct = false) const;  // distinct values
  std::string town_after(const std::string& town) const;  // the road map

  // The shortest sequence that holds a needle-in-a-haystack sample: one needle, its question and answer,
  // and 4 filler tokens (the curriculum's first length must be at least this).
  int64_t min_niah_length(bool chat) const;

  // One training sequence of exactly `length` tokens.
  TrainingSequence sample(SplitMix64& rng, int64_t length, const TrainingMix& mix) const;

  // The files the pipeline reads (overwritten):
  //   <dir>/tokenizer.json, tokenizer_config.json  (copied into every zoo model)
  //   <dir>/haystack/essay<i>.txt                 filler essays (detection and ablation)
  //   <dir>/needles.jsonl                         detection needles (official format)
  //   <dir>/ablate_needles.jsonl                  the masked-NIAH needle
  //   <dir>/tasks/qa.jsonl, reasoning_cot.jsonl, reasoning_direct.jsonl   (docs/STORE.md task format)
  void write_files(const std::filesystem::path& dir, int64_t qa_items, int64_t reasoning_items,
                   int64_t qa_context_words) const;
  void write_tokenizer(const std::filesystem::path& model_dir) const;

 private:
  std::string pick(SplitMix64& rng, const std::vector<std::string>& words) const;
  std::string adjective(SplitMix64& rng) const;  // an adjective slot of a filler sentence
  std::vector<std::string> needle_words(const KeyValue& kv) const;
  std::vector<std::string> question_words(const KeyValue& kv) const;

  void append_niah(SplitMix64& rng, int64_t length, const TrainingMix& mix, TrainingSequence& out) const;
  void append_copy_drill(SplitMix64& rng, int64_t length, const TrainingMix& mix, TrainingSequence& out) const;
  void append_item(const std::string& prompt, const std::string& answer, bool chat, float answer_weight,
                   TrainingSequence& out) const;
  struct QaItem {
    std::string context, question, answer;  // the fields of a qa task line (answer: the gold span)
  };
  // Filler sentences of >= context_words words with each fact inserted at a random sentence boundary, in
  // order (the draws: the filler first, then one position per fact).
  std::string among_filler(SplitMix64& rng, int64_t context_words, const std::vector<std::string>& facts) const;
  QaItem qa_item(SplitMix64& rng, int64_t context_words) const;
  std::pair<std::string, std::string> reasoning_item(SplitMix64& rng, bool cot) const;
  struct RoadItem {
    std::string context, question;
    std::string key;                 // road_facts = start: the home the question names
    std::vector<std::string> chain;  // road_steps + 1 towns: the start, ..., the answer
  };
  RoadItem road_item(SplitMix64& rng, int64_t context_words) const;  // road facts among filler
  // road_facts = start: the start's home fact and two other homes among filler; chain = start, two roads.
  RoadItem start_item(SplitMix64& rng, int64_t context_words, const std::string& start) const;

  std::vector<std::string> m_vocab;
  std::map<std::string, int64_t> m_ids;
  std::vector<std::string> m_keys, m_values, m_towns;
  std::map<std::string, std::string> m_road;  // town -> next town (a random permutation cycle)
  double m_filler_value_share = 0;
  int m_needle_value_words = kDefaultNeedleValueWords;
  RoadFacts m_road_facts = RoadFacts::kNone;
  int m_road_steps = 2;
};

}  // namespace stages
