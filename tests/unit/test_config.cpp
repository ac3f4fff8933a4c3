// Typed INI configuration: values, lists, linspace, and every error path with its message.
#include <gtest/gtest.h>

#include "pipeline/core/config.h"
#include "pipeline/core/error.h"
#include "tests/common/test_support.h"

using pipeline::Config;
using pipeline::ConfigError;
using pipeline::ConfigSchema;
using pipeline::KeyType;

namespace {

ConfigSchema schema() {
  ConfigSchema s("job file");
  s.required("job.name", KeyType::String, "job name")
      .optional("job.seed", KeyType::Int, "1234", "seed")
      .optional("job.rate", KeyType::Float, "0.5", "a rate")
      .optional("job.verbose", KeyType::Bool, "false", "chatty")
      .optional("job.stages", KeyType::StringList, "", "stages")
      .optional("grid.lengths", KeyType::IntList, "1, 2", "lengths")
      .optional("grid.depths", KeyType::FloatList, "0", "depths")
      .required("model.*.path", KeyType::String, "model folder")
      .optional("model.*.family", KeyType::String, "auto", "family");
  return s;
}

// Runs `fn`, expecting a ConfigError whose message contains every fragment.
template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string_view> fragments) {
  test_support::expect_contains(test_support::error_of<ConfigError>(fn), fragments);
}

}  // namespace

TEST(Config, ValuesDefaultsAndLists) {
  Config c = Config::parse_text(schema(),
                                "[job]\nname = \"demo run\"  # comment\nseed = 7\nverbose = yes\n"
                                "stages = generate, score\nstages = ablate\n"
                                "[grid]\nlengths = linspace(1000, 50000, 20)\ndepths = linspace(0, 100, 10)\n"
                                "[model.base]\npath = /m/base\n[model.chat]\npath = /m/chat\nfamily = llama\n",
                                "t.ini");
  EXPECT_EQ(c.get_string("job.name"), "demo run");
  EXPECT_EQ(c.get_int("job.seed"), 7);
  EXPECT_DOUBLE_EQ(c.get_float("job.rate"), 0.5);
  EXPECT_TRUE(c.get_bool("job.verbose"));
  EXPECT_EQ(c.get_strings("job.stages"), (std::vector<std::string>{"generate", "score", "ablate"}));
  // The official grid (docs/PAPER_NOTES.md, "The NIAH grid"): numpy.round(linspace(1000, 50000, 20)), half-to-even.
  std::vector<int64_t> lengths = {1000,  3579,  6158,  8737,  11316, 13895, 16474, 19053, 21632, 24211,
                                  26789, 29368, 31947, 34526, 37105, 39684, 42263, 44842, 47421, 50000};
  EXPECT_EQ(c.get_ints("grid.lengths"), lengths);
  std::vector<double> depths = c.get_floats("grid.depths");
  ASSERT_EQ(depths.size(), 10u);
  EXPECT_DOUBLE_EQ(depths[1], 100.0 / 9.0);
  EXPECT_EQ(c.section_names("model.*"), (std::vector<std::string>{"base", "chat"}));
  EXPECT_EQ(c.get_string("model.base.family"), "auto");
  EXPECT_EQ(c.get_string("model.chat.family"), "llama");
  EXPECT_TRUE(c.is_set_explicitly("job.seed"));
  EXPECT_FALSE(c.is_set_explicitly("job.rate"));
}

TEST(Config, DepthGridMatchesPaper) {
  // round(linspace(0, 100, 10)) = 0, 11, 22, 33, 44, 56, 67, 78, 89, 100 (docs/PAPER_NOTES.md, "The NIAH grid").
  EXPECT_EQ(pipeline::linspace_rounded(0, 100, 10), (std::vector<int64_t>{0, 11, 22, 33, 44, 56, 67, 78, 89, 100}));
  // Half-to-even: linspace(0, 5, 11) has 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  auto r = pipeline::linspace_rounded(0, 5, 11);
  EXPECT_EQ(r[1], 0);
  EXPECT_EQ(r[3], 2);
  EXPECT_EQ(r[5], 2);
}

TEST(Config, EscapesRangeAndOverrides) {
  Config c = Config::parse_text(schema(), "[job]\nname = a\\nb\\t\\\"c\\\"\n[grid]\nlengths = range(0, 10, 4), 99\n"
                                "[model.x]\npath = p\n", "t.ini", {"job.seed=99", "grid.depths=1.5, 2"});
  EXPECT_EQ(c.get_string("job.name"), "a\nb\t\"c\"");
  EXPECT_EQ(c.get_ints("grid.lengths"), (std::vector<int64_t>{0, 4, 8, 99}));
  EXPECT_EQ(c.get_int("job.seed"), 99);
  EXPECT_EQ(c.get_floats("grid.depths"), (std::vector<double>{1.5, 2.0}));
}

TEST(Config, UnknownKeySuggestsNearest) {
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nsed = 3\n", "jobs/a.ini"); },
               {"jobs/a.ini:3", "unknown key 'sed'", "[job]", "did you mean 'job.seed'"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n[model.base]\npaht = /m\n", "a.ini"); },
               {"a.ini:4", "'paht'", "[model.base]", "did you mean 'model.base.path'"});
  // A dot inside a user-chosen section name splits the section: say so, and how to fix it.
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n[model.mistral-7b-v0.2]\npath = /m/v0.2\n", "a.ini"); },
               {"a.ini", "section name 'mistral-7b-v0.2'", "contains a dot", "[model.<name>]", "call it 'mistral-7b-v0_2'"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nzzzzzzzzzz = 1\n", "a.ini"); },
               {"unknown key 'zzzzzzzzzz'", "--help-keys"});
}

TEST(Config, WrongTypesNameFileSectionKeyAndLine) {
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nseed = twelve\n", "a.ini"); },
               {"a.ini:3", "[job] seed", "got 'twelve'", "expected an integer"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nrate = fast\n", "a.ini"); },
               {"[job] rate", "expected a number"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nverbose = maybe\n", "a.ini"); },
               {"[job] verbose", "expected true or false"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n[grid]\nlengths = 1, two\n", "a.ini"); },
               {"a.ini:4", "[grid] lengths", "'two' is not an integer"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n[grid]\nlengths = linspace(1, 2)\n", "a.ini"); },
               {"linspace takes (start, stop, num)"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\nseed = 1\nseed = 2\n", "a.ini"); },
               {"'job.seed' is given more than once"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n", "a.ini", {"job.seed=abc"}); },
               {"[job] seed", "got 'abc'"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n", "a.ini", {"job.sede=1"}); },
               {"--set job.sede", "did you mean 'job.seed'"});
}

TEST(Config, MissingRequiredKeys) {
  expect_error([] { Config::parse_text(schema(), "[job]\nseed = 1\n", "a.ini"); },
               {"a.ini", "missing required key 'name'", "[job]", "job name"});
  expect_error([] { Config::parse_text(schema(), "[job]\nname = x\n[model.chat]\nfamily = llama\n", "a.ini"); },
               {"missing required key 'path'", "[model.chat]", "model folder"});
}

TEST(Config, BadSyntaxAndMissingFile) {
  expect_error([] { Config::parse_text(schema(), "[job]\nname x\n", "a.ini"); }, {"a.ini", "not a valid INI"});
  expect_error([] { Config::parse_file(schema(), "/nonexistent/job.ini"); },
               {"/nonexistent/job.ini", "cannot open the job file"});
}

TEST(Config, DescribeListsEveryKey) {
  std::string d = schema().describe();
  for (const char* k : {"[job]", "name (string, required)", "seed (integer, default: 1234)", "[model.*]"}) {
    EXPECT_NE(d.find(k), std::string::npos) << k << " in\n" << d;
  }
}

TEST(Config, NearestName) {
  EXPECT_EQ(pipeline::nearest_name("selftset", {"selftest", "score", "generate"}), "selftest");
  EXPECT_EQ(pipeline::nearest_name("qqqqqqqq", {"selftest", "score"}), "");
}

TEST(Config, ResolvedTextIsCanonicalAndSkipsTuningKeys) {
  ConfigSchema s = schema();
  s.optional("grid.batch", KeyType::Int, "8", "cells per batch").tuning("grid.batch");
  auto resolved = [&](const std::string& text) {
    return Config::parse_text(s, "[job]\nname = x\n" + text, "t.ini").resolved_text(s.keys());
  };
  const std::string plain = resolved("[grid]\nlengths = 1000,25500, 50000\n[model.base]\npath = /m\n");
  // One sorted line per key, defaults included, "*" keys per section of the file; tuning keys left out.
  EXPECT_EQ(plain,
            "grid.depths = 0\ngrid.lengths = 1000, 25500, 50000\njob.name = x\njob.rate = 0.5\njob.seed = 1234\n"
            "job.stages = \njob.verbose = false\nmodel.base.family = auto\nmodel.base.path = /m\n");
  // The same values written otherwise (spaces, linspace, a default spelled out, a tuning key) give the same text.
  EXPECT_EQ(resolved("[job]\nseed = 1234\n[grid]\nlengths = linspace(1000, 50000, 3)\nbatch = 2\n"
                     "[model.base]\npath = /m\nfamily = auto\n"),
            plain);
  // Any other value does not; a newline in a string stays on its line.
  EXPECT_NE(resolved("[grid]\nlengths = 1000, 50000\n[model.base]\npath = /m\n"), plain);
  EXPECT_NE(resolved("[job]\nrate = 0.50000001\n[model.base]\npath = /m\n"), plain);
  EXPECT_NE(resolved("[model.base]\npath = /m\n[model.chat]\npath = /c\n"), plain);
  EXPECT_NE(resolved("[model.base]\npath = \"/m\\nx\"\n").find("model.base.path = /m\\nx\n"), std::string::npos);

  EXPECT_THROW(s.tuning("grid.nope"), pipeline::InternalError);
  EXPECT_NE(s.describe().find("batch (integer, default: 8, tuning: never changes results)"), std::string::npos);
}

TEST(Config, SettingsDifferenceNamesTheChangedKeys) {
  EXPECT_EQ(pipeline::settings_difference("a.x = 1\nb.y = 2\n", "a.x = 1\nb.y = 2\n"), "");
  EXPECT_EQ(pipeline::settings_difference("a.x = 1\nb.y = 2\n", "a.x = 1\nb.y = 3\nm.c.path = /c\n"),
            "[b] y: 2 -> 3; [m.c] path = /c (new)");
  EXPECT_EQ(pipeline::settings_difference("a.x = 1\nb.y = 2\n", "b.y = 2\n"), "[a] x (gone; was 1)");
  EXPECT_EQ(pipeline::settings_difference("", "a.a = 1\na.b = 1\na.c = 1\na.d = 1\na.e = 1\na.f = 1\n"),
            "[a] a = 1 (new); [a] b = 1 (new); [a] c = 1 (new); [a] d = 1 (new); and 2 more");
}

TEST(Config, KeysAddedSinceAtTheirDefaultsAreNoChange) {
  // A store recorded before grid.depths and job.rate existed (an older rhead): today's settings of the
  // same job differ from it only by those keys, at their defaults, so they compare equal. Set
  // explicitly (even to the default value) or changed, they count.
  ConfigSchema s = schema();
  const std::string before = "grid.lengths = 1000\njob.name = x\njob.seed = 1234\njob.stages = \njob.verbose = false\n"
                             "model.base.family = auto\nmodel.base.path = /m\n";
  auto compare = [&](const std::string& text) {
    Config c = Config::parse_text(s, "[job]\nname = x\n" + text, "t.ini");
    const std::string now = c.resolved_text(s.keys());
    return pipeline::settings_change(before, now, c);
  };
  EXPECT_EQ(compare("[grid]\nlengths = 1000\n[model.base]\npath = /m\n"), "");
  EXPECT_EQ(compare("[grid]\nlengths = 1000\ndepths = 0\n[model.base]\npath = /m\n"), "[grid] depths = 0 (new)");
  EXPECT_EQ(compare("[grid]\nlengths = 1000\n[job]\nrate = 0.25\n[model.base]\npath = /m\n"),
            "[job] rate = 0.25 (new)");
  // A changed key that existed before is a change whether it is at its default or not.
  EXPECT_EQ(compare("[grid]\nlengths = 2000\n[model.base]\npath = /m\n"), "[grid] lengths: 1000 -> 2000");
  // A new model brings its required path (set explicitly): a change; its defaulted family is not named.
  EXPECT_EQ(compare("[grid]\nlengths = 1000\n[model.base]\npath = /m\n[model.chat]\npath = /c\n"),
            "[model.chat] path = /c (new)");
}
