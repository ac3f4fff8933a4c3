// ablate's downstream task files ([ablate] tasks): the name=kind:path entry, the JSONL items with their
// error messages (file:line, field, expected type), the prompt's user text and the scoring of a response.
// Pure functions of stages/ablate/ablate_ops.h: no model, no file IO.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "pipeline/core/error.h"
#include "stages/ablate/ablate_ops.h"
#include "tests/common/test_support.h"

using stages::TaskKind;

namespace {

using test_support::error_of;

void expect_has(const std::string& text, const std::string& part) { test_support::expect_contains(text, {part}); }

}  // namespace

TEST(AblateTasks, EntryNameKindPath) {
  stages::TaskSpec t = stages::parse_task_entry("squad=qa:data/squad dev.jsonl", "job.ini");
  EXPECT_EQ(t.name, "squad");
  EXPECT_EQ(t.kind, TaskKind::kQa);
  EXPECT_EQ(t.path, "data/squad dev.jsonl");
  EXPECT_EQ(stages::parse_task_entry("gsm8k = cot : g.jsonl", "job.ini").kind, TaskKind::kCot);
  EXPECT_EQ(stages::parse_task_entry("mmlu_5-shot=direct:C:/x.jsonl", "job.ini").path, "C:/x.jsonl")
      << "only the first ':' after the kind splits";

  for (const char* bad : {"squad.jsonl", "squad=squad.jsonl", "squad=mcq:s.jsonl", "sq.uad=qa:s.jsonl", "=qa:s.jsonl",
                          "squad=qa:"}) {
    const std::string m =
        error_of<pipeline::ConfigError>([&] { stages::parse_task_entry(bad, "jobs/x.ini"); });
    expect_has(m, "[config] jobs/x.ini: [ablate] tasks: entry '" + std::string(bad) + "'");
    expect_has(m, "expected name=kind:path with kind qa, cot or direct");
  }
  expect_has(error_of<pipeline::ConfigError>([] { stages::parse_task_entry("s=mcq:s.jsonl", "j"); }),
             "unknown kind 'mcq'");
  expect_has(error_of<pipeline::ConfigError>([] { stages::parse_task_entry("s.x=qa:s.jsonl", "j"); }),
             "name 's.x' is not made of letters, digits, '_' and '-' only");
}

TEST(AblateTasks, QaAndCotItems) {
  const auto qa = stages::parse_task_jsonl(
      "{\"context\": \"Paris is in France.\", \"question\": \"Where is Paris?\", \"answers\": [\"France\", \"in France\"]}\n"
      "\n"
      "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"], \"prompt\": \"Read.\"}\r\n",
      TaskKind::kQa, "qa.jsonl");
  ASSERT_EQ(qa.size(), 2u);
  EXPECT_EQ(qa[0].answers, (std::vector<std::string>{"France", "in France"}));
  EXPECT_EQ(qa[1].prompt, "Read.");
  EXPECT_EQ(stages::task_user_text(qa[0]), "Paris is in France.\nQuestion: Where is Paris?\nAnswer:");
  EXPECT_EQ(stages::task_user_text(qa[1]), "Read.\nc\nQuestion: q\nAnswer:");

  const auto cot = stages::parse_task_jsonl(
      "{\"question\": \"2+2?\", \"answer\": \"4\", \"answer_kind\": \"number\", \"prompt\": \"Q: 1+1?\\nA: 2\"}\n"
      "{\"question\": \"Pick\", \"answer\": \"B\", \"answer_kind\": \"choice\", \"context\": \"A) x B) y\"}\n"
      "{\"question\": \"Capital of France?\", \"answer\": \"Paris\"}\n",
      TaskKind::kCot, "cot.jsonl");
  ASSERT_EQ(cot.size(), 3u);
  EXPECT_EQ(cot[0].answer_kind, stages::AnswerKind::kNumber);
  EXPECT_EQ(cot[1].answer_kind, stages::AnswerKind::kChoice);
  EXPECT_EQ(cot[2].answer_kind, stages::AnswerKind::kText);
  EXPECT_EQ(stages::task_user_text(cot[0]), "Q: 1+1?\nA: 2\nQuestion: 2+2?\nAnswer:");
  EXPECT_EQ(stages::task_user_text(cot[1]), "A) x B) y\nQuestion: Pick\nAnswer:");
  EXPECT_EQ(stages::task_user_text(cot[2]), "Question: Capital of France?\nAnswer:");
}

TEST(AblateTasks, ScoresArePercentOfSquadScoreOnThePrediction) {
  const auto qa = stages::parse_task_jsonl(
      "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"the Eiffel Tower\", \"tower\"]}", TaskKind::kQa, "f");
  stages::TaskScore s = stages::score_task_response(qa[0], TaskKind::kQa, "Eiffel tower, Paris");
  EXPECT_EQ(s.prediction, "Eiffel tower, Paris") << "qa scores the whole response";
  EXPECT_DOUBLE_EQ(s.f1, 100.0 * stages::squad_score("Eiffel tower, Paris", qa[0].answers).f1);
  EXPECT_NEAR(s.f1, 100.0 * 0.8, 1e-12);  // vs "eiffel tower": precision 2/3, recall 1
  EXPECT_EQ(s.exact_match, 0.0);
  EXPECT_EQ(stages::score_task_response(qa[0], TaskKind::kQa, "The tower.").exact_match, 100.0);

  const auto cot = stages::parse_task_jsonl("{\"question\": \"q\", \"answer\": \"1234\", \"answer_kind\": \"number\"}",
                                            TaskKind::kCot, "f");
  s = stages::score_task_response(cot[0], TaskKind::kCot, "1,000 plus 234. The answer is 1,234.00 dollars.");
  EXPECT_EQ(s.prediction, "1234");
  EXPECT_EQ(s.exact_match, 100.0);
  EXPECT_EQ(s.f1, 100.0);
  s = stages::score_task_response(cot[0], TaskKind::kDirect, "12 34");
  EXPECT_EQ(s.prediction, "34") << "no phrase: the last number";
  EXPECT_EQ(s.exact_match, 0.0);
}

TEST(AblateTasks, FileErrorsNameFileLineFieldAndExpectedType) {
  const auto err = [](const std::string& text, TaskKind kind) {
    return error_of<pipeline::InputError>([&] { stages::parse_task_jsonl(text, kind, "data/t.jsonl"); });
  };
  const std::string ok = "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"]}\n";
  std::string m = err(ok + "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"]\n", TaskKind::kQa);
  expect_has(m, "[ablate] data/t.jsonl:2: not valid JSON");
  expect_has(m, "Hint: a task file holds one JSON object per line");

  m = err(ok + "\n{\"context\": \"c\", \"question\": \"q\"}\n", TaskKind::kQa);
  expect_has(m, "data/t.jsonl:3: field 'answers' is missing; expected an array of strings");
  m = err("{\"context\": \"c\", \"question\": 7, \"answers\": [\"a\"]}", TaskKind::kQa);
  expect_has(m, "data/t.jsonl:1: field 'question' has the wrong type; got number 7, expected a string");
  m = err("{\"context\": \"c\", \"question\": \"q\", \"answers\": \"a\"}", TaskKind::kQa);
  expect_has(m, "data/t.jsonl:1: field 'answers' has the wrong type; got string \"a\", expected a non-empty array");
  m = err("{\"context\": \"c\", \"question\": \"q\", \"answers\": []}", TaskKind::kQa);
  expect_has(m, "field 'answers' has the wrong type; got array [], expected a non-empty array of strings");
  m = err("{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\", 2]}", TaskKind::kQa);
  expect_has(m, "field 'answers' holds number 2; expected strings only");
  m = err("{\"question\": \"q\", \"answers\": [\"a\"]}", TaskKind::kQa);
  expect_has(m, "data/t.jsonl:1: field 'context' is missing; expected a string");
  m = err("{\"question\": \"q\", \"answer\": \"a\"}", TaskKind::kQa);
  expect_has(m, "data/t.jsonl:1: unknown field 'answer' for a qa task; expected context, question, answers, prompt");

  m = err("{\"question\": \"q\", \"answers\": [\"a\"]}", TaskKind::kCot);
  expect_has(m, "unknown field 'answers' for a cot task; expected question, answer, context, prompt, answer_kind");
  m = err("{\"question\": \"q\", \"answer\": 4}", TaskKind::kDirect);
  expect_has(m, "field 'answer' has the wrong type; got number 4, expected a string");
  m = err("{\"question\": \"  \", \"answer\": \"4\"}", TaskKind::kCot);
  expect_has(m, "field 'question' is empty; expected non-empty text");
  m = err("{\"question\": \"q\", \"answer\": \"4\", \"answer_kind\": \"integer\"}", TaskKind::kCot);
  expect_has(m, "data/t.jsonl:1: field 'answer_kind': got 'integer', expected text, number or choice");
  m = err("[1, 2]", TaskKind::kCot);
  expect_has(m, "data/t.jsonl:1: expected a JSON object; got array");
  m = err("\n  \n", TaskKind::kCot);
  expect_has(m, "[ablate] data/t.jsonl: no task items; expected one JSON object per line");
}
