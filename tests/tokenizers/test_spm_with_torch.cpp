// A SentencePiece model loaded and used while LibTorch is live in the same process. Before the plugin
// isolation this crashed at start-up (libsentencepiece's embedded protobuf vs LibTorch's libprotobuf).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/tokenizer/tokenizer.h"
#include "tests/common/test_support.h"

TEST(SpmWithTorch, EncodeDecodeNextToLibTorch) {
  auto tools = test_support::run_command("command -v spm_train", 30);
  if (tools.exit_code != 0) GTEST_SKIP() << "spm_train not on PATH (Debian package 'sentencepiece')";
  test_support::TempDir dir("spm-torch");
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += "the needle number " + std::to_string(i * 7) + " hides in the haystack.\n";
  test_support::write_text_file(dir.path() / "corpus.txt", corpus);
  auto trained = test_support::run_command("cd " + dir.path().string() +
                                           " && spm_train --input=corpus.txt --model_prefix=tokenizer "
                                           "--vocab_size=300 --model_type=bpe --byte_fallback=true > /dev/null 2>&1");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;

  torch::Tensor t = torch::arange(6, torch::kFloat32).reshape({2, 3});
  auto tok = models::load_tokenizer(dir.path());
  auto ids = tok->encode("the needle hides", /*add_special_tokens=*/true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tok->bos_id().value());
  EXPECT_EQ(tok->decode(ids, /*skip_special_tokens=*/true), "the needle hides");
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 15.0f);
}
