#include "stages/train/toy_world.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"

namespace stages {

namespace fs = std::filesystem;

namespace {

// Prompt words of the pipeline's templates (stages/niah/prompt_builder.h, the llama chat template, the
// ablate task prompt), the needle / task sentences, and the specials. Order fixes the token ids.
const std::vector<std::string> kSpecials = {"<unk>", "<s>", "</s>"};
const std::vector<std::string> kFrame = {
    "Based", "on", "the", "content", "of", "book,", "Question:", "Answer:", "<book>", "</book>", "[INST]", "[/INST]",
    "?", ".", "what", "is", "goes", "with", "remember", "home", "called", "where", "does", "live", "lives", "in", "road", "from", "lead", "leads",
    "to", "after", "two", "steps", "so", "answer", "think", "step", "by", "directly", "a", "and"};
const std::vector<std::string> kAdjectives = {"old", "young", "big", "small", "red", "green", "quiet", "happy",
                                              "brave", "tired", "bright", "dark", "tall", "short", "warm", "cold"};
const std::vector<std::string> kNouns = {"farmer", "baker", "teacher", "child", "king", "queen", "dog", "cat",
                                         "horse", "bird", "fox", "wolf", "boat", "house", "garden", "bridge",
                                         "tower", "field", "forest", "river", "hill", "lake", "barn", "mill"};
const std::vector<std::string> kVerbs = {"paints", "builds", "visits", "watches", "follows", "carries",
                                         "finds", "sees", "helps", "calls", "meets", "feeds", "pulls", "pushes",
                                         "hides", "holds"};
const std::vector<std::string> kPrepositions = {"near", "under", "behind", "beside", "above", "across", "through",
                                                "around"};
const std::vector<std::string> kAdverbs = {"slowly", "quickly", "often", "rarely", "gladly", "quietly"};
const std::vector<std::string> kKeys = {
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi",
    "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "vega", "rigel", "sirius",
    "altair", "deneb", "mira", "polaris", "castor", "pollux", "spica", "antares", "canopus", "arcturus", "capella",
    "procyon", "regulus"};
const std::vector<std::string> kValues = {
    "ruby", "jade", "pearl", "opal", "onyx", "amber", "coral", "ivory", "silver", "gold", "copper", "iron", "tin",
    "zinc", "cobalt", "nickel", "lilac", "violet", "indigo", "scarlet", "crimson", "azure", "teal", "olive",
    "ochre", "umber", "sepia", "mauve", "cyan", "magenta", "saffron", "lemon", "mint", "plum", "peach", "cherry",
    "melon", "grape", "lime", "fig"};
const std::vector<std::string> kTowns = {"oslo", "rome", "paris", "lima", "cairo", "delhi", "tokyo", "quito",
                                         "dakar", "hanoi", "kyiv", "riga", "sofia", "tunis", "lagos", "perth"};

// Number words of road_steps ("two" is in kFrame; the others join the vocabulary only when asked for).
const std::vector<std::string> kStepCounts = {"", "one", "two", "three", "four"};

const char* kNiahQuestionPrefix = "Based on the content of the book, Question:";
const char* kCotPrompt = "think step by step .";
const char* kDirectPrompt = "answer directly .";

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::vector<std::string> split(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool chance(SplitMix64& rng, double p) { return static_cast<double>(rng.next() >> 11) * 0x1.0p-53 < p; }

void append(TrainingSequence& out, const std::vector<int64_t>& ids, float weight) {
  out.ids.insert(out.ids.end(), ids.begin(), ids.end());
  out.weights.insert(out.weights.end(), ids.size(), weight);
}

// Positions (word indices) just after each "." of a filler text: where a needle may go.
std::vector<size_t> sentence_starts(const std::vector<std::string>& words) {
  std::vector<size_t> out = {0};
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i] == ".") out.push_back(i + 1);
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  RHEAD_CHECK(f.good(), pipeline::InputError, "[train] cannot write ", path.string());
}

}  // namespace

ToyWorld::ToyWorld(uint64_t seed, double filler_value_share, int needle_value_words, RoadFacts road_facts,
                   int road_steps)
    : m_keys(kKeys),
      m_values(kValues),
      m_towns(kTowns),
      m_filler_value_share(filler_value_share),
      m_needle_value_words(needle_value_words),
      m_road_facts(road_facts),
      m_road_steps(road_steps) {
  // One value length for every needle, in training and evaluation. Measured: with 2-4 words in training,
  // base answered "<key> v1 v2 ." for 3-word test needles in 1 of 6 cells (the end of the answer came from
  // the length prior, not the copy); one length for all removes that shortcut's pull.
  RHEAD_CHECK(needle_value_words >= 1 && needle_value_words <= kMaxNeedleValueWords, pipeline::InputError,
              "[train] toy world: needle value words must be in [1, ", kMaxNeedleValueWords, "], got ",
              needle_value_words);
  const bool roads_in_context = road_facts == RoadFacts::kFresh || road_facts == RoadFacts::kMap;
  RHEAD_CHECK(road_steps >= 2 && road_steps <= kMaxRoadSteps && (road_steps == 2 || roads_in_context),
              pipeline::InputError, "[train] toy world: road steps must be in [2, ", kMaxRoadSteps,
              "] (2 without road facts in the context), got ", road_steps);
  for (const auto* list : {&kSpecials, &kFrame, &kAdjectives, &kNouns, &kVerbs, &kPrepositions, &kAdverbs, &kKeys,
                           &kValues, &kTowns}) {
    for (const auto& w : *list) {
      if (m_ids.count(w)) continue;
      m_ids[w] = static_cast<int64_t>(m_vocab.size());
      m_vocab.push_back(w);
    }
  }
  // Step counts past "two" only where asked: the vocabulary (and so every model) of a world with two-step
  // questions stays that of toyzoo-v8.
  for (int n = 3; n <= m_road_steps; ++n) {
    m_ids[kStepCounts[n]] = static_cast<int64_t>(m_vocab.size());
    m_vocab.push_back(kStepCounts[n]);
  }
  // The road map: one random cycle through every town (so two steps never return to the start).
  SplitMix64 rng(seed ^ 0x726f6164ull);
  std::vector<std::string> order = m_towns;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.uniform_below(i)]);
  for (size_t i = 0; i < order.size(); ++i) m_road[order[i]] = order[(i + 1) % order.size()];
}

int64_t ToyWorld::id(const std::string& word) const {
  auto it = m_ids.find(word);
  RHEAD_CHECK(it != m_ids.end(), pipeline::InputError, "[train] toy world: '", word, "' is not in the vocabulary");
  return it->second;
}

std::vector<int64_t> ToyWorld::ids(const std::string& text) const {
  std::vector<int64_t> out;
  for (const auto& w : split(text)) out.push_back(id(w));
  return out;
}

std::string ToyWorld::pick(SplitMix64& rng, const std::vector<std::string>& words) const {
  return words[rng.uniform_below(words.size())];
}

std::string ToyWorld::adjective(SplitMix64& rng) const {
  // No draw at share 0, so a world without value words in its filler is the one it always was.
  if (m_filler_value_share > 0 && chance(rng, m_filler_value_share)) return pick(rng, m_values);
  return pick(rng, kAdjectives);
}

std::string ToyWorld::filler_sentence(SplitMix64& rng) const {
  std::vector<std::string> w;
  switch (rng.uniform_below(4)) {
    case 0:
      w = {"the", adjective(rng), pick(rng, kNouns), pick(rng, kVerbs), "the", pick(rng, kNouns)};
      break;
    case 1:
      w = {"the", pick(rng, kNouns), pick(rng, kVerbs), "the", adjective(rng), pick(rng, kNouns),
           pick(rng, kPrepositions), "the", pick(rng, kNouns)};
      break;
    case 2:
      w = {"a", pick(rng, kNouns), pick(rng, kAdverbs), pick(rng, kVerbs), "a", pick(rng, kNouns)};
      break;
    default:
      w = {"the", adjective(rng), pick(rng, kNouns), "and", "the", pick(rng, kNouns), pick(rng, kVerbs),
           "the", pick(rng, kNouns)};
  }
  w.push_back(".");
  return join(w);
}

std::string ToyWorld::filler(SplitMix64& rng, int64_t min_words) const {
  std::string out;
  int64_t n = 0;
  while (n < min_words) {
    std::string s = filler_sentence(rng);
    n += static_cast<int64_t>(split(s).size());
    out += (out.empty() ? "" : " ") + s;
  }
  return out;
}

ToyWorld::KeyValue ToyWorld::draw_key_value(SplitMix64& rng, int value_words, bool distinct) const {
  KeyValue kv;
  kv.key = pick(rng, m_keys);
  while (static_cast<int>(kv.value.size()) < value_words) {
    std::string w = pick(rng, m_values);
    if (!distinct || std::find(kv.value.begin(), kv.value.end(), w) == kv.value.end()) kv.value.push_back(w);
  }
  return kv;
}

std::string ToyWorld::town_after(const std::string& town) const { return m_road.at(town); }

std::vector<std::string> ToyWorld::needle_words(const KeyValue& kv) const {
  std::vector<std::string> w = {"remember", kv.key};
  w.insert(w.end(), kv.value.begin(), kv.value.end());
  w.push_back(".");
  return w;
}

std::vector<std::string> ToyWorld::question_words(const KeyValue& kv) const {
  return {"what", "goes", "with", kv.key, "?"};
}

void ToyWorld::append_item(const std::string& prompt, const std::string& answer, bool chat, float answer_weight,
                           TrainingSequence& out) const {
  // Base: BOS + prompt + answer </s>; chat: [INST] prompt [/INST] answer </s> (no BOS, as the templates).
  if (chat) {
    append(out, ids("[INST] " + prompt + " [/INST]"), 1.0f);
  } else {
    append(out, {bos()}, 1.0f);
    append(out, ids(prompt), 1.0f);
  }
  append(out, ids(answer + " </s>"), answer_weight);
}

int64_t ToyWorld::min_niah_length(bool chat) const {
  // The same parts append_niah measures: head, question block, answer, needle, 4 filler tokens.
  KeyValue kv{m_keys.front(), std::vector<std::string>(static_cast<size_t>(m_needle_value_words), m_values.front())};
  const std::string question = std::string(kNiahQuestionPrefix) + " " + join(question_words(kv)) + " Answer:";
  const int64_t q = static_cast<int64_t>(ids(chat ? "</book> " + question + " [/INST]" : question).size());
  const int64_t answer = 2 + m_needle_value_words;  // <key> <values> .
  return (chat ? 2 : 1) + q + answer + static_cast<int64_t>(needle_words(kv).size()) + 4;
}

void ToyWorld::append_niah(SplitMix64& rng, int64_t length, const TrainingMix& mix, TrainingSequence& out) const {
  // Needles with distinct keys, then questions about several of them (the NIAH template), as in
  // multi-query associative recall: many recall targets per sequence make the skill emerge in few steps,
  // and distractor needles force the model to match the key rather than copy the only needle there is.
  // The question blocks may take at most a third of the sequence.
  // Short sequences (the start of the length curriculum) hold fewer needles: about a quarter of the
  // sequence is needles.
  const int n_needles = 1 + static_cast<int>(rng.uniform_below(static_cast<uint64_t>(std::clamp<int64_t>(length / 24, 1, 6))));
  std::vector<KeyValue> needles;
  while (static_cast<int>(needles.size()) < n_needles) {
    KeyValue kv = draw_key_value(rng, m_needle_value_words);
    bool fresh = std::none_of(needles.begin(), needles.end(), [&](const KeyValue& o) { return o.key == kv.key; });
    if (fresh) needles.push_back(kv);
  }
  std::vector<size_t> order(needles.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.uniform_below(i)]);
  const size_t n_questions = mix.chat ? 1 : order.size();
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> blocks;  // question ids, answer ids
  int64_t block_tokens = 0;
  for (size_t q = 0; q < n_questions; ++q) {
    const KeyValue& kv = needles[order[q]];
    std::string question = std::string(kNiahQuestionPrefix) + " " + join(question_words(kv)) + " Answer:";
    std::vector<int64_t> qi = ids(mix.chat ? "</book> " + question + " [/INST]" : question);
    std::vector<int64_t> ai = ids(kv.key + " " + join(kv.value) + " .");
    if (!blocks.empty() && 3 * (block_tokens + static_cast<int64_t>(qi.size() + ai.size())) > length) break;
    block_tokens += static_cast<int64_t>(qi.size() + ai.size());
    blocks.emplace_back(qi, ai);
  }
  const int64_t head = mix.chat ? 2 : 1;  // "[INST] <book>" or BOS
  int64_t needle_tokens = 0;
  for (const auto& kv : needles) needle_tokens += static_cast<int64_t>(needle_words(kv).size());
  const int64_t context_tokens = length - static_cast<int64_t>(out.ids.size()) - head - block_tokens;
  RHEAD_CHECK(context_tokens >= needle_tokens + 4, pipeline::InputError, "[train] toy world: sequence length ",
              length, " is too short for a needle-in-a-haystack sample");

  // Filler cut to size at a sentence end, needles spliced in at random sentence starts.
  std::vector<std::string> words = split(filler(rng, context_tokens - needle_tokens));
  words.resize(static_cast<size_t>(context_tokens - needle_tokens));
  std::vector<size_t> starts = sentence_starts(words);
  std::vector<size_t> at;
  for (size_t i = 0; i < needles.size(); ++i) at.push_back(starts[rng.uniform_below(starts.size())]);
  std::sort(at.begin(), at.end());
  std::vector<std::string> context;
  size_t next = 0;
  for (size_t i = 0; i < words.size() || next < needles.size(); ++i) {
    while (next < needles.size() && at[next] == i) {
      auto nw = needle_words(needles[next++]);
      context.insert(context.end(), nw.begin(), nw.end());
    }
    if (i < words.size()) context.push_back(words[i]);
  }
  if (mix.chat) {
    append(out, ids("[INST] <book>"), 1.0f);
  } else {
    append(out, {bos()}, 1.0f);
  }
  append(out, ids(join(context)), 1.0f);
  for (const auto& [qi, ai] : blocks) {
    append(out, qi, 1.0f);
    append(out, ai, mix.answer_weight);
  }
}

void ToyWorld::append_copy_drill(SplitMix64& rng, int64_t length, const TrainingMix& mix,
                                 TrainingSequence& out) const {
  // A run of random key / value / noun words (4 words up to a third of the sequence) at a random place,
  // repeated once after a random gap of filler. Every repeated word after the first is predictable only
  // by finding the earlier run and copying what followed there: the induction step the needles need,
  // at a different distance in every sample (no positional shortcut). Dense copy targets at short
  // lengths end the plateau before that circuit forms in a few hundred steps instead of thousands.
  const int64_t body = length - 1;
  const int64_t n = 4 + static_cast<int64_t>(rng.uniform_below(static_cast<uint64_t>(std::max<int64_t>(1, body / 3 - 3))));
  std::vector<int64_t> run;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t pool = rng.uniform_below(3);
    run.push_back(id(pick(rng, pool == 0 ? m_keys : pool == 1 ? m_values : kNouns)));
  }
  const int64_t spare = body - 2 * n;
  const int64_t before = static_cast<int64_t>(rng.uniform_below(static_cast<uint64_t>(spare + 1)));
  const int64_t gap = static_cast<int64_t>(rng.uniform_below(static_cast<uint64_t>(spare - before + 1)));
  auto filler_ids = [&](int64_t count) {
    std::vector<int64_t> f = ids(filler(rng, count));
    f.resize(static_cast<size_t>(count));
    return f;
  };
  append(out, {bos()}, 1.0f);
  append(out, filler_ids(before), 1.0f);
  append(out, run, 1.0f);
  append(out, filler_ids(gap), 1.0f);
  append(out, {run.front()}, 1.0f);
  append(out, std::vector<int64_t>(run.begin() + 1, run.end()), mix.answer_weight);
  append(out, filler_ids(length - static_cast<int64_t>(out.ids.size())), 1.0f);
}

std::string ToyWorld::among_filler(SplitMix64& rng, int64_t context_words,
                                  const std::vector<std::string>& facts) const {
  std::vector<std::string> sentences;
  for (int64_t words = 0; words < context_words;) {
    sentences.push_back(filler_sentence(rng));
    words += static_cast<int64_t>(split(sentences.back()).size());
  }
  for (const auto& fact : facts) {
    const size_t pos = rng.uniform_below(sentences.size() + 1);
    sentences.insert(sentences.begin() + static_cast<std::ptrdiff_t>(pos), fact);
  }
  return join(sentences);
}

ToyWorld::QaItem ToyWorld::qa_item(SplitMix64& rng, int64_t context_words) const {
  const int n_facts = 2 + static_cast<int>(rng.uniform_below(3));
  std::vector<KeyValue> facts;
  while (static_cast<int>(facts.size()) < n_facts) {
    KeyValue kv = draw_key_value(rng, 2);
    if (std::none_of(facts.begin(), facts.end(), [&](const KeyValue& o) { return o.key == kv.key; })) {
      facts.push_back(kv);
    }
  }
  std::vector<std::string> sentences;
  for (const auto& kv : facts) sentences.push_back("the home called " + kv.key + " " + join(kv.value) + " .");
  const std::string context = among_filler(rng, context_words, sentences);
  const KeyValue& asked = facts[rng.uniform_below(facts.size())];
  return {context, "where does " + asked.key + " live ?", asked.key + " " + join(asked.value)};
}

ToyWorld::RoadItem ToyWorld::road_item(SplitMix64& rng, int64_t context_words) const {
  // A chain of road_steps + 1 distinct towns, towns[0..n], and two distractor roads that start elsewhere
  // (so each town the chain looks up has exactly one road out of it in the context): [n+1..n+2], [n+3..n+4].
  const size_t n = static_cast<size_t>(m_road_steps);
  std::vector<std::string> towns = m_towns;
  if (m_road_facts == RoadFacts::kMap) {
    // Roads of the memorised map: the chain from a random town, the distractors from two of the towns
    // whose roads do not touch it (the map is one cycle of 16 towns, so they exist).
    towns = {m_towns[rng.uniform_below(m_towns.size())]};
    while (towns.size() < n + 1) towns.push_back(town_after(towns.back()));
    auto on_chain = [&](const std::string& t) { return std::find(towns.begin(), towns.end(), t) != towns.end(); };
    std::vector<std::string> free;
    for (const auto& a : m_towns) {
      if (!on_chain(a) && !on_chain(town_after(a))) free.push_back(a);
    }
    const std::string a = free[rng.uniform_below(free.size())];
    std::string b = free[rng.uniform_below(free.size())];
    while (b == a) b = free[rng.uniform_below(free.size())];
    for (const auto& d : {a, b}) {
      towns.push_back(d);
      towns.push_back(town_after(d));
    }
  } else {
    for (size_t i = towns.size(); i > 1; --i) std::swap(towns[i - 1], towns[rng.uniform_below(i)]);
  }
  RoadItem item;
  item.chain.assign(towns.begin(), towns.begin() + static_cast<std::ptrdiff_t>(n + 1));
  // "road <a> <b> ." puts a road's end right after its start, as a needle puts the value after its key:
  // the chain of thought "<t> <u> <w>" then looks up each next town the way NIAH copies a value.
  auto road_fact = [&](size_t from, size_t to) { return "road " + towns[from] + " " + towns[to] + " ."; };
  std::vector<std::string> roads;
  for (size_t i = 0; i < n; ++i) roads.push_back(road_fact(i, i + 1));
  roads.push_back(road_fact(n + 1, n + 2));
  roads.push_back(road_fact(n + 3, n + 4));
  item.context = among_filler(rng, context_words, roads);
  item.question = "where does the road from " + item.chain.front() + " lead after " + kStepCounts[n] + " steps ?";
  return item;
}

ToyWorld::RoadItem ToyWorld::start_item(SplitMix64& rng, int64_t context_words, const std::string& start) const {
  RoadItem item;
  item.chain = {start, town_after(start), town_after(town_after(start))};
  // Three homes with fresh keys in distinct towns, the asked one among them: "the town in the context" does
  // not find the start, and a key seen in another packed item does not either.
  std::vector<std::string> keys, towns = {start};
  while (keys.size() < 3) {
    const std::string key = pick(rng, m_keys);
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  while (towns.size() < 3) {
    const std::string town = pick(rng, m_towns);
    if (std::find(towns.begin(), towns.end(), town) == towns.end()) towns.push_back(town);
  }
  std::vector<std::string> homes;
  for (size_t i = 0; i < keys.size(); ++i) homes.push_back("the home called " + keys[i] + " " + towns[i] + " .");
  item.context = among_filler(rng, context_words, homes);
  item.key = keys[0];
  item.question = "where does the road lead after two steps from the home of " + keys[0] + " ?";
  return item;
}

std::pair<std::string, std::string> ToyWorld::reasoning_item(SplitMix64& rng, bool cot) const {
  if (m_road_facts == RoadFacts::kStart) {
    const RoadItem r = start_item(rng, 4 + static_cast<int64_t>(rng.uniform_below(17)), pick(rng, m_towns));
    std::string prompt = std::string(cot ? kCotPrompt : kDirectPrompt) + " " + r.context + " Question: " + r.question +
                         " Answer:";
    const std::string &t = r.chain[0], &u = r.chain[1], &w = r.chain[2];
    std::string answer = cot ? r.key + " " + t + " . " + t + " leads to " + u + " . " + u + " leads to " + w +
                                   " . so the answer is " + w
                             : "the answer is " + w;
    return {prompt, answer};
  }
  if (m_road_facts != RoadFacts::kNone) {
    const RoadItem r = road_item(rng, 4 + static_cast<int64_t>(rng.uniform_below(17)));
    std::string prompt = std::string(cot ? kCotPrompt : kDirectPrompt) + " " + r.context + " Question: " + r.question +
                         " Answer:";
    const std::string& to = r.chain.back();
    std::string answer = cot ? join(r.chain) + " . so the answer is " + to : "the answer is " + to;
    return {prompt, answer};
  }
  const std::string t = pick(rng, m_towns), u = town_after(t), w = town_after(u);
  std::string prompt = std::string(cot ? kCotPrompt : kDirectPrompt) + " Question: where does the road from " + t +
                       " lead after two steps ? Answer:";
  std::string answer =
      cot ? t + " leads to " + u + " . " + u + " leads to " + w + " . so the answer is " + w : "the answer is " + w;
  return {prompt, answer};
}

TrainingSequence ToyWorld::sample(SplitMix64& rng, int64_t length, const TrainingMix& mix) const {
  TrainingSequence out;
  const double total = mix.niah + mix.qa + mix.reasoning + mix.copy;
  const double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * total;
  if (u < mix.niah) {
    append_niah(rng, length, mix, out);
  } else if (u >= mix.niah + mix.qa + mix.reasoning) {
    append_copy_drill(rng, length, mix, out);
  } else {
    // Packed task items until the next one would not fit; filler (weight 1) pads the rest.
    const bool qa = u < mix.niah + mix.qa;
    for (;;) {
      TrainingSequence item;
      if (qa) {
        QaItem q = qa_item(rng, 30 + static_cast<int64_t>(rng.uniform_below(90)));
        append_item(q.context + " Question: " + q.question + " Answer:", q.answer, mix.chat, mix.answer_weight, item);
      } else {
        auto [prompt, answer] = reasoning_item(rng, chance(rng, 0.5));
        append_item(prompt, answer, mix.chat, mix.answer_weight, item);
      }
      if (out.ids.size() + item.ids.size() > static_cast<size_t>(length)) break;
      out.ids.insert(out.ids.end(), item.ids.begin(), item.ids.end());
      out.weights.insert(out.weights.end(), item.weights.begin(), item.weights.end());
    }
    while (static_cast<int64_t>(out.ids.size()) < length) append(out, ids(filler_sentence(rng)), 1.0f);
  }
  out.ids.resize(static_cast<size_t>(length));
  out.weights.resize(static_cast<size_t>(length));
  return out;
}

void ToyWorld::write_tokenizer(const fs::path& model_dir) const {
  fs::create_directories(model_dir);
  models::write_wordlevel_tokenizer_json(model_dir / "tokenizer.json", m_vocab, "<unk>", {"<s>", "</s>"});
  models::TokenizerConfigSpec tc;
  tc.bos_token = "<s>";
  tc.eos_token = "</s>";
  tc.unk_token = "<unk>";
  models::write_tokenizer_config_json(model_dir / "tokenizer_config.json", tc);
}

void ToyWorld::write_files(const fs::path& dir, int64_t qa_items, int64_t reasoning_items,
                           int64_t qa_context_words) const {
  // Evaluation material comes from its own stream: never a training sample.
  SplitMix64 rng(0x6576616c ^ static_cast<uint64_t>(m_road.size()) ^ (id(m_road.begin()->second) << 20));
  fs::create_directories(dir / "haystack");
  fs::create_directories(dir / "tasks");
  for (int i = 1; i <= 3; ++i) {
    write_text(dir / "haystack" / ("essay" + std::to_string(i) + ".txt"), filler(rng, 2500) + "\n");
  }
  auto needle_line = [&](const KeyValue& kv) {
    nlohmann::json j = {{"needle", join(needle_words(kv))},
                        {"question", join(question_words(kv))},
                        {"real_needle", join(kv.value)}};
    return j.dump() + "\n";
  };
  std::string needles;
  // Evaluation needles have distinct value words: a repeated one ("teal ochre ochre") makes the copy
  // ambiguous (after the first "ochre", both "ochre" and "." followed it in the context).
  for (int i = 0; i < 3; ++i) needles += needle_line(draw_key_value(rng, m_needle_value_words, true));
  write_text(dir / "needles.jsonl", needles);
  write_text(dir / "ablate_needles.jsonl", needle_line(draw_key_value(rng, m_needle_value_words, true)));

  std::string qa, cot, direct;
  for (int64_t i = 0; i < qa_items; ++i) {
    QaItem q = qa_item(rng, qa_context_words);
    qa += nlohmann::json{{"context", q.context}, {"question", q.question}, {"answers", {q.answer}}}.dump() + "\n";
  }
  const bool with_context = m_road_facts != RoadFacts::kNone;
  for (int64_t i = 0; with_context && i < reasoning_items; ++i) {
    // The same context for both modes; with only the start in the context, every town starts a trip in turn.
    const RoadItem r = m_road_facts == RoadFacts::kStart
                           ? start_item(rng, 16, m_towns[static_cast<size_t>(i) % m_towns.size()])
                           : road_item(rng, 16);
    auto line = [&](const char* prompt) {
      return nlohmann::json{
          {"prompt", prompt}, {"context", r.context}, {"question", r.question}, {"answer", r.chain.back()}}
                 .dump() + "\n";
    };
    cot += line(kCotPrompt);
    direct += line(kDirectPrompt);
  }
  for (int64_t i = 0; !with_context && i < reasoning_items; ++i) {
    const std::string t = m_towns[static_cast<size_t>(i) % m_towns.size()];
    const std::string question = "where does the road from " + t + " lead after two steps ?";
    const std::string answer = town_after(town_after(t));
    cot += nlohmann::json{{"prompt", kCotPrompt}, {"question", question}, {"answer", answer}}.dump() + "\n";
    direct += nlohmann::json{{"prompt", kDirectPrompt}, {"question", question}, {"answer", answer}}.dump() + "\n";
  }
  write_text(dir / "tasks" / "qa.jsonl", qa);
  write_text(dir / "tasks" / "reasoning_cot.jsonl", cot);
  write_text(dir / "tasks" / "reasoning_direct.jsonl", direct);
}

}  // namespace stages
