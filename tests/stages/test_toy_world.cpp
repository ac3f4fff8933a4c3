// The toy world of the embedded default (stages/train/toy_world.h): training samples have exactly the
// requested length, use only vocabulary words, put weight on the answers only, and every answer can be
// read off the context (the value follows its key in a needle); the evaluation files follow the
// official needle format and the ablate task format; the road map is a single cycle, or (roads in
// context) each reasoning item carries the two roads its chain quotes.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"
#include "stages/niah/needles.h"
#include "stages/train/toy_world.h"
#include "stages/train/train_stage.h"
#include "tests/common/test_support.h"

namespace {

using stages::SplitMix64;
using stages::ToyWorld;
using stages::TrainingMix;

std::string text_of(const ToyWorld& w, const std::vector<int64_t>& ids, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) out += (out.empty() ? "" : " ") + w.vocab()[static_cast<size_t>(ids[i])];
  return out;
}

TrainingMix niah_only() {
  TrainingMix mix;
  mix.niah = 1;
  mix.qa = mix.reasoning = mix.copy = 0;
  return mix;
}

TEST(ToyWorld, NiahSamplesAnswerEveryQuestionFromTheContext) {
  ToyWorld world(1234);
  const TrainingMix mix = niah_only();
  SplitMix64 rng(5);
  for (int n = 0; n < 50; ++n) {
    auto seq = world.sample(rng, 256, mix);
    ASSERT_EQ(seq.ids.size(), 256u);
    ASSERT_EQ(seq.weights.size(), 256u);
    EXPECT_EQ(seq.ids[0], world.bos());
    const std::string text = text_of(world, seq.ids, 0, seq.ids.size());
    // Every weighted run of tokens is "<key> <values> ." and "remember <key> <values> ." is in the context.
    for (size_t i = 1; i < seq.ids.size(); ++i) {
      if (seq.weights[i] == 1.0f) continue;
      EXPECT_EQ(seq.weights[i], mix.answer_weight);
      size_t j = i;
      while (j < seq.ids.size() && seq.weights[j] != 1.0f) ++j;
      const std::string answer = text_of(world, seq.ids, i, j);
      ASSERT_EQ(answer.back(), '.') << answer;
      EXPECT_NE(text.find("remember " + answer), std::string::npos) << answer << "\n" << text;
      EXPECT_EQ(text_of(world, seq.ids, i - 1, i), "Answer:");
      i = j;
    }
  }
}

TEST(ToyWorld, ShortNiahSamplesOfTheCurriculumStillFitANeedleAndItsQuestion) {
  ToyWorld world(1234);
  const TrainingMix mix = niah_only();
  SplitMix64 rng(6);
  for (int n = 0; n < 200; ++n) {
    auto seq = world.sample(rng, 32, mix);
    ASSERT_EQ(seq.ids.size(), 32u);
    const std::string text = text_of(world, seq.ids, 0, seq.ids.size());
    EXPECT_NE(text.find("remember "), std::string::npos) << text;
    EXPECT_NE(text.find("Answer:"), std::string::npos) << text;
  }
}

TEST(ToyWorld, NeedleValueWordsSetEveryNeedleInTrainingAndEvaluation) {
  test_support::TempDir dir("toy-needle-values");
  for (int words : {3, 6}) {
    ToyWorld world(1234, 0, words);
    EXPECT_EQ(world.min_niah_length(false), 24 + 2 * words) << "BOS, 14 question tokens, answer, needle, 4 filler";
    SplitMix64 rng(8);
    for (int n = 0; n < 20; ++n) {
      const int64_t length = n == 0 ? world.min_niah_length(false) : 128;
      auto seq = world.sample(rng, length, niah_only());
      ASSERT_EQ(seq.ids.size(), static_cast<size_t>(length));
      for (size_t i = 1; i < seq.ids.size(); ++i) {  // every answer: <key>, `words` values, "."
        if (seq.weights[i] == 1.0f) continue;
        size_t j = i;
        while (j < seq.ids.size() && seq.weights[j] != 1.0f) ++j;
        if (j < seq.ids.size()) {
          EXPECT_EQ(j - i, static_cast<size_t>(words) + 2) << text_of(world, seq.ids, i, j);
        }
        i = j;
      }
    }
    EXPECT_THROW(world.sample(rng, world.min_niah_length(false) - 1, niah_only()), pipeline::InputError);
    world.write_files(dir.path() / std::to_string(words), 2, 2, 40);
    for (const auto& needle : stages::read_needles_jsonl(dir.path() / std::to_string(words) / "needles.jsonl")) {
      std::istringstream in(needle.real_needle);
      EXPECT_EQ(std::distance(std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()), words)
          << needle.real_needle;
    }
  }
  EXPECT_THROW(ToyWorld(1, 0, 0), pipeline::InputError);
}

TEST(ToyWorld, CopyDrillWeightsExactlyTheWordsAnEarlierRunPredicts) {
  // Every weighted token repeats a run seen before: its predecessor occurred earlier, followed by it.
  ToyWorld world(1234);
  TrainingMix mix;
  mix.niah = mix.qa = mix.reasoning = 0;
  mix.copy = 1;
  SplitMix64 rng(7);
  size_t weighted = 0;
  for (int n = 0; n < 100; ++n) {
    const int64_t length = n % 2 ? 32 : 128;
    auto seq = world.sample(rng, length, mix);
    ASSERT_EQ(seq.ids.size(), static_cast<size_t>(length));
    EXPECT_EQ(seq.ids[0], world.bos());
    size_t in_this = 0;
    for (size_t i = 1; i < seq.ids.size(); ++i) {
      if (seq.weights[i] == 1.0f) continue;
      EXPECT_EQ(seq.weights[i], mix.answer_weight);
      ++in_this;
      bool predicted = false;
      for (size_t j = 1; j + 1 < i && !predicted; ++j) {
        predicted = seq.ids[j] == seq.ids[i - 1] && seq.ids[j + 1] == seq.ids[i];
      }
      EXPECT_TRUE(predicted) << "token " << i << " of " << text_of(world, seq.ids, 0, seq.ids.size());
    }
    EXPECT_GE(in_this, 3u);  // runs have >= 4 words: >= 3 predictable ones
    weighted += in_this;
  }
  EXPECT_GT(weighted, 600u);
}

TEST(ToyWorld, TaskSamplesArePackedItemsEndingInEos) {
  ToyWorld world(1234);
  TrainingMix mix;
  mix.niah = 0;
  mix.qa = 1;
  mix.reasoning = 1;
  SplitMix64 rng(9);
  int items = 0;
  for (int n = 0; n < 20; ++n) {
    auto seq = world.sample(rng, 200, mix);
    ASSERT_EQ(seq.ids.size(), 200u);
    for (size_t i = 0; i < seq.ids.size(); ++i) {
      if (seq.ids[i] == world.eos()) {
        ++items;
        EXPECT_EQ(seq.weights[i], mix.answer_weight);
      }
    }
  }
  EXPECT_GT(items, 40);
}

TEST(ToyWorld, FillerValueShareTurnsAdjectiveSlotsIntoValueWords) {
  // The value words of the vocabulary: those a needle's answer is drawn from.
  ToyWorld plain(5);
  SplitMix64 draw(1);
  std::set<std::string> values;
  for (int i = 0; i < 400; ++i) {
    for (const auto& w : plain.draw_key_value(draw, 3).value) values.insert(w);
  }
  auto value_words_in_filler = [&](double share) {
    ToyWorld world(5, share);
    SplitMix64 rng(2);
    std::istringstream words(world.filler(rng, 4000));
    int64_t n = 0, total = 0;
    for (std::string w; words >> w; ++total) n += values.count(w);
    return static_cast<double>(n) / static_cast<double>(total);
  };
  // Share 0 (the default): no value word in any filler, and no random draw for it: any positive share,
  // even one that never picks a value word, shifts the stream and so changes the text. Skipping the
  // draw is what keeps the default world (and the v7 zoo) what it was before the key existed.
  EXPECT_EQ(value_words_in_filler(0), 0.0);
  SplitMix64 a(9), b(9);
  EXPECT_NE(ToyWorld(5, 1e-12).filler(a, 500), plain.filler(b, 500));
  // Three of the four sentence forms (7 or 10 words with the ".") have one adjective slot each:
  // 0.75 / 8.5 = 0.088 of the words.
  const double all = value_words_in_filler(1), half = value_words_in_filler(0.5);
  EXPECT_NEAR(all, 0.088, 0.01);
  EXPECT_NEAR(half, all / 2, 0.015);
}

TEST(ToyWorld, RoadMapIsOneCycleAndFilesFollowTheirFormats) {
  ToyWorld world(77);
  std::set<std::string> seen;
  std::string t = "oslo";
  for (int i = 0; i < 16; ++i) {
    seen.insert(t);
    t = world.town_after(t);
  }
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(t, "oslo");

  test_support::TempDir dir("toy_world");
  world.write_files(dir.path(), 5, 4, 40);
  auto needles = stages::read_needles_jsonl(dir.path() / "needles.jsonl");
  ASSERT_EQ(needles.size(), 3u);
  auto tok = models::load_tokenizer_json((world.write_tokenizer(dir.path() / "tok"), dir.path() / "tok" / "tokenizer.json"));
  for (const auto& n : needles) {
    auto ids = tok->encode(n.needle, /*add_special_tokens=*/false);
    for (auto id : ids) EXPECT_NE(id, 0) << "unknown word in " << n.needle;
    EXPECT_NE(n.needle.find(n.real_needle), std::string::npos);
  }
  std::ifstream cot(dir.path() / "tasks" / "reasoning_cot.jsonl");
  int lines = 0;
  for (std::string line; std::getline(cot, line);) ++lines;
  EXPECT_EQ(lines, 4);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "tasks" / "qa.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "haystack" / "essay1.txt"));
}

// The reasoning items of `sequences` reasoning-only training samples, each as its text up to its "</s>".
std::vector<std::string> sampled_reasoning_items(const ToyWorld& world, int sequences) {
  TrainingMix mix;
  mix.niah = mix.qa = mix.copy = 0;
  mix.reasoning = 1;
  SplitMix64 rng(4);
  std::vector<std::string> items;
  for (int n = 0; n < sequences; ++n) {
    auto seq = world.sample(rng, 128, mix);
    const std::string text = text_of(world, seq.ids, 0, seq.ids.size());
    for (size_t begin = 0, end; (end = text.find("</s>", begin)) != std::string::npos; begin = end + 4) {
      items.push_back(text.substr(begin, end - begin));
    }
  }
  return items;
}

// "... road <a> <b> . ..." -> every b of a road out of a in the text.
std::vector<std::string> roads_from(const std::string& text, const std::string& a) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::vector<std::string> w{std::istream_iterator<std::string>(in), {}};
  for (size_t i = 0; i + 3 < w.size(); ++i) {
    if (w[i] == "road" && w[i + 1] == a && w[i + 3] == ".") out.push_back(w[i + 2]);
  }
  return out;
}

// Every "road <a> <b> ." of a text: how many of them the memorised map has, and how many it has not.
std::pair<int, int> roads_on_and_off_the_map(const ToyWorld& world, const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> w{std::istream_iterator<std::string>(in), {}};
  std::pair<int, int> n{0, 0};
  for (size_t i = 0; i + 3 < w.size(); ++i) {
    if (w[i] == "road" && w[i + 3] == ".") ++(world.town_after(w[i + 1]) == w[i + 2] ? n.first : n.second);
  }
  return n;
}

// The chain a question asks about, followed through the roads of a text: start, then the one road out of
// each town, `steps` times. Empty when some town has no road out, or more than one.
std::vector<std::string> follow(const std::string& text, const std::string& start, int steps) {
  std::vector<std::string> chain = {start};
  for (int i = 0; i < steps; ++i) {
    auto next = roads_from(text, chain.back());
    if (next.size() != 1) return {};
    chain.push_back(next[0]);
  }
  return chain;
}

struct RoadCase {
  ToyWorld::RoadFacts facts;
  int steps;
};

void PrintTo(const RoadCase& c, std::ostream* os) {
  *os << (c.facts == ToyWorld::RoadFacts::kMap ? "map" : "fresh") << ", " << c.steps << " steps";
}

class ToyWorldRoadFacts : public ::testing::TestWithParam<RoadCase> {};

TEST_P(ToyWorldRoadFacts, GiveEveryItemTheRoadsItsChainQuotes) {
  const bool from_map = GetParam().facts == ToyWorld::RoadFacts::kMap;
  const int steps = GetParam().steps;
  const std::string count = steps == 2 ? "two" : steps == 3 ? "three" : "four";
  ToyWorld world(77, 0, ToyWorld::kDefaultNeedleValueWords, GetParam().facts, steps);
  // Evaluation files: both modes ask the same item; its context holds exactly one road out of the start
  // town and out of each next one, and after `steps` roads they end at the answer, a town not met before.
  // "map": every road is one of the memorised map's; "fresh": the items' maps are random, so most of
  // their roads are not.
  std::pair<int, int> on_off{0, 0};
  auto count_roads = [&](const std::string& text) {
    auto [on, off] = roads_on_and_off_the_map(world, text);
    on_off.first += on;
    on_off.second += off;
  };
  test_support::TempDir dir("toy_world_roads_" + std::to_string(static_cast<int>(GetParam().facts)) + "_" + count);
  world.write_files(dir.path(), 2, 6, 40);
  std::ifstream cot(dir.path() / "tasks" / "reasoning_cot.jsonl");
  std::ifstream direct(dir.path() / "tasks" / "reasoning_direct.jsonl");
  int items = 0;
  for (std::string a, b; std::getline(cot, a) && std::getline(direct, b); ++items) {
    auto c = nlohmann::json::parse(a), d = nlohmann::json::parse(b);
    EXPECT_EQ(c.at("prompt"), "think step by step .");
    EXPECT_EQ(d.at("prompt"), "answer directly .");
    for (const char* field : {"context", "question", "answer"}) EXPECT_EQ(c.at(field), d.at(field)) << field;
    std::istringstream q(c.at("question").get<std::string>());
    std::vector<std::string> qw{std::istream_iterator<std::string>(q), {}};
    ASSERT_EQ(qw.size(), 11u);  // "where does the road from <t> lead after <count> steps ?"
    EXPECT_EQ(qw[8], count);
    const std::string context = c.at("context");
    count_roads(context);
    auto chain = follow(context, qw[5], steps);
    ASSERT_EQ(chain.size(), static_cast<size_t>(steps + 1)) << context;
    EXPECT_EQ(chain.back(), c.at("answer").get<std::string>()) << context;
    EXPECT_EQ(std::set<std::string>(chain.begin(), chain.end()).size(), chain.size()) << context;
  }
  EXPECT_EQ(items, 6);

  // Training: every chain of thought quotes its own item's roads, and every answer-only item's answer is
  // `steps` roads away from its start in its own context.
  int chains = 0, answers = 0;
  for (const std::string& item : sampled_reasoning_items(world, 30)) {
    const size_t at = item.find("Answer:");
    ASSERT_NE(at, std::string::npos) << item;
    const std::string prompt = item.substr(0, at), answer = item.substr(at + 7);
    count_roads(prompt);
    const size_t from = prompt.find("road from ");
    ASSERT_NE(from, std::string::npos) << item;
    const std::string start = prompt.substr(from + 10, prompt.find(' ', from + 10) - from - 10);
    EXPECT_NE(prompt.find(" lead after " + count + " steps ?"), std::string::npos) << item;
    auto chain = follow(prompt, start, steps);
    ASSERT_EQ(chain.size(), static_cast<size_t>(steps + 1)) << item;
    std::string quoted;
    for (const auto& t : chain) quoted += " " + t;
    if (prompt.find("think step by step") != std::string::npos) {
      ++chains;
      EXPECT_EQ(answer, quoted + " . so the answer is " + chain.back() + " ") << item;
    } else {
      ++answers;
      EXPECT_EQ(answer, " the answer is " + chain.back() + " ") << item;
    }
  }
  EXPECT_GT(chains, 5);
  EXPECT_GT(answers, 5);
  EXPECT_EQ(on_off.first + on_off.second, (steps + 2) * (6 + chains + answers));  // steps + 2 roads per item
  if (from_map) {
    EXPECT_EQ(on_off.second, 0);
  } else {
    EXPECT_GT(on_off.second, on_off.first);  // a random road agrees with the map 1 time in 15
  }
}

INSTANTIATE_TEST_SUITE_P(FreshAndMap, ToyWorldRoadFacts,
                         ::testing::Values(RoadCase{ToyWorld::RoadFacts::kFresh, 2},
                                           RoadCase{ToyWorld::RoadFacts::kMap, 2},
                                           RoadCase{ToyWorld::RoadFacts::kFresh, 3},
                                           RoadCase{ToyWorld::RoadFacts::kMap, 4}),
                         [](const auto& test_case) {
                           return std::string(test_case.param.facts == ToyWorld::RoadFacts::kMap ? "Map" : "Fresh") +
                                  std::to_string(test_case.param.steps) + "Steps";
                         });

// "... the home called <key> <t> . ..." -> (key, t) of every one-word home fact in the text.
std::vector<std::pair<std::string, std::string>> homes_in(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> w{std::istream_iterator<std::string>(in), {}};
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i + 4 < w.size(); ++i) {
    if (w[i] == "home" && w[i + 1] == "called" && w[i + 4] == ".") out.emplace_back(w[i + 2], w[i + 3]);
  }
  return out;
}

TEST(ToyWorld, StartFactsPutOnlyTheTripsStartInTheContext) {
  const ToyWorld plain(77), world(77, 0, ToyWorld::kDefaultNeedleValueWords, ToyWorld::RoadFacts::kStart);
  EXPECT_EQ(world.vocab(), plain.vocab());  // the v8 words say it all
  EXPECT_THROW(ToyWorld(5, 0, ToyWorld::kDefaultNeedleValueWords, ToyWorld::RoadFacts::kStart, 3),
               pipeline::InputError);
  const std::string prefix = "where does the road lead after two steps from the home of ", suffix = " ?";
  // The home the question asks about: one fact in the text, three homes in all, with distinct keys and towns.
  auto asked_start = [&](const std::string& text, const std::string& question) -> std::string {
    EXPECT_EQ(question.rfind(prefix, 0), 0u) << question;
    const std::string key = question.substr(prefix.size(), question.size() - prefix.size() - suffix.size());
    const auto homes = homes_in(text);
    std::set<std::string> keys, towns;
    for (const auto& [k, t] : homes) keys.insert(k), towns.insert(t);
    EXPECT_EQ(homes.size(), 3u) << text;
    EXPECT_EQ(keys.size(), 3u) << text;
    EXPECT_EQ(towns.size(), 3u) << text;
    for (const auto& [k, t] : homes) {
      if (k == key) return t;
    }
    ADD_FAILURE() << "no home of " << key << " in " << text;
    return {};
  };

  // Evaluation: one item per town, both modes the same.
  test_support::TempDir dir("toy_world_start");
  world.write_files(dir.path(), 2, 16, 40);
  std::ifstream cot(dir.path() / "tasks" / "reasoning_cot.jsonl");
  std::ifstream direct(dir.path() / "tasks" / "reasoning_direct.jsonl");
  std::set<std::string> started;
  int items = 0;
  for (std::string a, b; std::getline(cot, a) && std::getline(direct, b); ++items) {
    auto c = nlohmann::json::parse(a), d = nlohmann::json::parse(b);
    for (const char* field : {"context", "question", "answer"}) EXPECT_EQ(c.at(field), d.at(field)) << field;
    const std::string context = c.at("context");
    const std::string t = asked_start(context, c.at("question"));
    started.insert(t);
    EXPECT_EQ(c.at("answer").get<std::string>(), world.town_after(world.town_after(t))) << context;
  }
  EXPECT_EQ(items, 16);
  EXPECT_EQ(started.size(), 16u);  // every town starts one trip

  // Training: the chain of thought quotes the asked home of its own item and walks the map from its town.
  int chains = 0, answers = 0;
  for (const std::string& item : sampled_reasoning_items(world, 30)) {
    const size_t q = item.find("Question: "), at = item.find(" Answer:");
    ASSERT_TRUE(q != std::string::npos && at != std::string::npos && q < at) << item;
    const std::string question = item.substr(q + 10, at - q - 10), answer = item.substr(at + 8);
    const std::string key = question.substr(prefix.size(), question.size() - prefix.size() - suffix.size());
    const std::string t = asked_start(item.substr(0, q), question), u = world.town_after(t),
                      w = world.town_after(u);
    if (item.find("think step by step") != std::string::npos) {
      ++chains;
      EXPECT_EQ(answer, " " + key + " " + t + " . " + t + " leads to " + u + " . " + u + " leads to " + w +
                            " . so the answer is " + w + " ")
          << item;
    } else {
      ++answers;
      EXPECT_EQ(answer, " the answer is " + w + " ") << item;
    }
  }
  EXPECT_GT(chains, 5);
  EXPECT_GT(answers, 5);
}

TEST(ToyWorld, StepCountsPastTwoNeedRoadFactsAndKeepTheTwoStepVocabulary) {
  // A world asking two steps has the v8 vocabulary whatever its road facts; three steps add "three".
  const ToyWorld plain(5), fresh(5, 0, ToyWorld::kDefaultNeedleValueWords, ToyWorld::RoadFacts::kFresh);
  const ToyWorld three(5, 0, ToyWorld::kDefaultNeedleValueWords, ToyWorld::RoadFacts::kFresh, 3);
  EXPECT_EQ(plain.vocab(), fresh.vocab());
  ASSERT_EQ(three.vocab().size(), plain.vocab().size() + 1);
  EXPECT_EQ(three.vocab().back(), "three");
  using Facts = ToyWorld::RoadFacts;
  EXPECT_THROW(ToyWorld(5, 0, ToyWorld::kDefaultNeedleValueWords, Facts::kNone, 3), pipeline::InputError);
  EXPECT_THROW(ToyWorld(5, 0, ToyWorld::kDefaultNeedleValueWords, Facts::kFresh, 5), pipeline::InputError);
}

}  // namespace

namespace {

TEST(TrainSchedule, RampThenFullContextAndLongDrawsLengthsAfterItsRamp) {
  SplitMix64 rng(3);
  // From scratch: 32 rising to 128 over the first half, multiples of 16, then 128; no draws.
  EXPECT_EQ(stages::training_length(0, 1200, 32, 128, false, 0.5, rng), 32);
  EXPECT_EQ(stages::training_length(300, 1200, 32, 128, false, 0.5, rng), 80);  // 32 + 96 * 300 / 600
  EXPECT_EQ(stages::training_length(599, 1200, 32, 128, false, 0.5, rng), 112);
  for (int64_t step = 600; step < 1200; ++step) EXPECT_EQ(stages::training_length(step, 1200, 32, 128, false, 0.5, rng), 128);
  // Fine-tuning at the parent's context (chat, moe): the context throughout.
  EXPECT_EQ(stages::training_length(0, 300, 128, 128, true, 0.5, rng), 128);
  // long: 128 -> 512 over 50 steps, then half the steps at 512, the others uniform over 128, 144, ..., 512.
  EXPECT_EQ(stages::training_length(25, 100, 128, 512, true, 0.5, rng), 320);
  std::map<int64_t, int> seen;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++seen[stages::training_length(50 + i % 50, 100, 128, 512, true, 0.5, rng)];
  int drawn = 0;
  for (const auto& [length, count] : seen) {
    EXPECT_TRUE(length >= 128 && length <= 512 && length % 16 == 0) << length;
    if (length != 512) drawn += count;
  }
  EXPECT_EQ(seen.size(), 25u);  // every multiple of 16 from 128 to 512
  // 1 - 0.5 of the steps draw; of those, 24 of 25 lengths are below 512: expected n * 0.5 * 24 / 25 = 9600.
  EXPECT_NEAR(drawn, 9600, 300);  // binomial sd ~ 71
  // full_share = 1: the old schedule, every later step at 512.
  for (int i = 0; i < 100; ++i) EXPECT_EQ(stages::training_length(60, 100, 128, 512, true, 1.0, rng), 512);
}

}  // namespace
