// Safetensors reader/writer: bit-exact round trips (single file, sharded) and every malformed-header
// error, checking the message names the file, the tensor, and what was expected and found.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <cstring>
#include <random>

#include "models/safetensors.h"
#include "tests/common/test_support.h"
#include "tests/loading/loading_test_util.h"

namespace {

namespace fs = std::filesystem;
using loading_test::error_of;
using loading_test::write_raw_safetensors;
using models::ModelError;
using models::SafetensorsFile;
using models::SafetensorsReader;
using models::TensorMap;
using ::testing::HasSubstr;

// Bit-exact equality (same dtype, shape and bytes).
void expect_same_bits(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  auto ac = a.contiguous();
  auto bc = b.contiguous();
  const size_t bytes = static_cast<size_t>(ac.numel()) * ac.element_size();
  if (bytes == 0) return;  // empty tensors may have no storage (memcmp(nullptr) is UB)
  EXPECT_EQ(0, std::memcmp(ac.data_ptr(), bc.data_ptr(), bytes)) << what;
}

TensorMap sample_tensors() {
  torch::manual_seed(7);
  TensorMap t;
  t["model.embed_tokens.weight"] = torch::randn({5, 8}).to(torch::kBFloat16);
  t["model.norm.weight"] = torch::randn({8}).to(torch::kFloat16);
  t["lm_head.weight"] = torch::randn({8, 5}).t();  // non-contiguous float32
  t["scalar"] = torch::tensor(3.5f);
  t["empty"] = torch::zeros({0, 4}, torch::kBFloat16);
  t["odd.f16"] = torch::randn({3}).to(torch::kFloat16);  // 6 bytes: misaligns what follows
  return t;
}

TEST(Safetensors, RoundTripAllDtypesBitExact) {
  test_support::TempDir dir("st-roundtrip");
  const fs::path path = dir.path() / "model.safetensors";
  const TensorMap tensors = sample_tensors();
  models::save_safetensors(path, tensors, {{"format", "pt"}, {"note", "a\"b"}});

  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("note"), "a\"b");
  ASSERT_EQ(file->names().size(), tensors.size());
  for (const auto& kv : tensors) {
    SCOPED_TRACE(kv.first);
    torch::Tensor loaded = file->tensor(kv.first);
    expect_same_bits(loaded, kv.second, kv.first);
  }
  EXPECT_EQ(file->info("model.norm.weight").dtype, models::DType::Float16);
  EXPECT_EQ(file->tensor("scalar").dim(), 0);

  // The data section starts 8-byte aligned (header padded with spaces).
  const std::string bytes = loading_test::read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + header_len) % 8, 0u);
}

TEST(Safetensors, TensorsAreWritableAndOutliveTheReader) {
  test_support::TempDir dir("st-cow");
  const fs::path path = dir.path() / "a.safetensors";
  models::save_safetensors(path, {{"w", torch::ones({4, 4})}});
  torch::Tensor t;
  {
    auto reader = SafetensorsReader::open(path);
    t = reader.tensor("w");
  }  // reader gone: the tensor keeps the mapping alive
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 16.0f);
  t.mul_(2.0f);  // private copy-on-write mapping: the file is untouched
  EXPECT_FLOAT_EQ(t.sum().item<float>(), 32.0f);
  EXPECT_FLOAT_EQ(SafetensorsReader::open(path).tensor("w").sum().item<float>(), 16.0f);
}

TEST(Safetensors, MisalignedDataIsCopied) {
  // Header of odd length: the F32 tensor's bytes start at an odd address.
  test_support::TempDir dir("st-misaligned");
  const fs::path path = dir.path() / "m.safetensors";
  const float values[2] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char*>(values), sizeof(values));
  write_raw_safetensors(path, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )", data);
  torch::Tensor x = SafetensorsFile::open(path)->tensor("x");
  EXPECT_FLOAT_EQ(x[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(x[1].item<float>(), -2.25f);
}

TEST(Safetensors, ShardedIndexRoundTrip) {
  test_support::TempDir dir("st-sharded");
  const TensorMap tensors = sample_tensors();
  // ~100 bytes per shard: several shards.
  auto written = models::save_safetensors_sharded(dir.path(), tensors, 100, {{"format", "pt"}});
  ASSERT_GE(written.size(), 3u);
  EXPECT_EQ(written.back().filename(), "model.safetensors.index.json");
  EXPECT_EQ(written.front().filename().string().substr(0, 20), "model-00001-of-0000" +
                                                                   std::to_string(written.size() - 1));
  const auto index = nlohmann::json::parse(loading_test::read_bytes(written.back()));
  uint64_t total = 0;
  for (const auto& kv : tensors) total += kv.second.numel() * kv.second.element_size();
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), tensors.size());

  for (const fs::path& source : {dir.path(), written.back()}) {
    SCOPED_TRACE(source.string());
    auto reader = SafetensorsReader::open(source);
    EXPECT_EQ(reader.files().size(), written.size() - 1);
    EXPECT_EQ(reader.names().size(), tensors.size());
    EXPECT_EQ(reader.total_bytes(), total);
    for (const auto& kv : tensors) expect_same_bits(reader.tensor(kv.first), kv.second, kv.first);
    EXPECT_FALSE(reader.contains("nope"));
    EXPECT_THAT(error_of<ModelError>([&] { reader.tensor("nope"); }), HasSubstr("no tensor 'nope'"));
  }
}

TEST(Safetensors, SingleShardWritesPlainFile) {
  test_support::TempDir dir("st-oneshard");
  auto written = models::save_safetensors_sharded(dir.path(), sample_tensors(), 1 << 20);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].filename(), "model.safetensors");
  EXPECT_EQ(SafetensorsReader::open(dir.path()).names().size(), sample_tensors().size());
}

TEST(Safetensors, WriterRejectsUnsupportedDtype) {
  test_support::TempDir dir("st-baddtype");
  auto msg = error_of<ModelError>([&] {
    models::save_safetensors(dir.path() / "x.safetensors", {{"ids", torch::arange(4)}});
  });
  EXPECT_THAT(msg, HasSubstr("tensor 'ids'"));
  EXPECT_THAT(msg, HasSubstr("expected float32, bfloat16 or float16"));
}

// ---------------------------------------------------------------------------------------------
// Malformed files (run under AddressSanitizer: --gtest_filter='*Malformed*')

class SafetensorsMalformed : public ::testing::Test {
 protected:
  std::string open_error(const std::string& header, const std::string& data) {
    write_raw_safetensors(path(), header, data);
    return error_of<ModelError>([&] { SafetensorsFile::open(path()); });
  }
  fs::path path() const { return m_dir.path() / "model.safetensors"; }
  test_support::TempDir m_dir{"st-malformed"};
};

TEST_F(SafetensorsMalformed, FileShorterThanHeaderLength) {
  loading_test::write_bytes(path(), std::string("\x10\x00\x00", 3));
  auto msg = error_of<ModelError>([&] { SafetensorsFile::open(path()); });
  EXPECT_THAT(msg, HasSubstr("[safetensors] " + path().string()));
  EXPECT_THAT(msg, HasSubstr("file is 3 bytes, too short"));
  loading_test::write_bytes(path(), "");
  EXPECT_THAT(error_of<ModelError>([&] { SafetensorsFile::open(path()); }), HasSubstr("file is 0 bytes"));
}

TEST_F(SafetensorsMalformed, HeaderLengthBeyondFile) {
  std::string bytes("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10);
  loading_test::write_bytes(path(), bytes);
  auto msg = error_of<ModelError>([&] { SafetensorsFile::open(path()); });
  EXPECT_THAT(msg, HasSubstr("header length 9223372036854775807 goes beyond the end of the file (10 bytes"));
  // Off by one: header claims one byte more than the file has.
  std::string header = "{}";
  std::string b2;
  b2.push_back(3);
  b2 += std::string(7, '\0') + header;
  loading_test::write_bytes(path(), b2);
  EXPECT_THAT(error_of<ModelError>([&] { SafetensorsFile::open(path()); }),
              HasSubstr("header length 3 goes beyond the end of the file (10 bytes, so at most 2"));
}

TEST_F(SafetensorsMalformed, TruncatedFile) {
  models::save_safetensors(path(), {{"w", torch::ones({4, 8}, torch::kBFloat16)}});
  std::string bytes = loading_test::read_bytes(path());
  loading_test::write_bytes(path(), bytes.substr(0, bytes.size() - 10));
  auto msg = error_of<ModelError>([&] { SafetensorsFile::open(path()); });
  EXPECT_THAT(msg, HasSubstr("tensor 'w': data_offsets [0, 64] go beyond the data section of 54 bytes"));
}

TEST_F(SafetensorsMalformed, BadHeaderJson) {
  auto msg = open_error(R"({"w": {"dtype": "F32", )", "");
  EXPECT_THAT(msg, HasSubstr(path().string()));
  EXPECT_THAT(msg, HasSubstr("is not valid JSON"));
  EXPECT_THAT(open_error("[1, 2]", ""), HasSubstr("header is a JSON array; expected an object"));
  EXPECT_THAT(open_error(std::string("{\"a\"\0}", 6), ""), HasSubstr("is not valid JSON"));
}

TEST_F(SafetensorsMalformed, OverlappingOffsets) {
  auto msg = open_error(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                        std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("tensor 'b' data_offsets [8, 16] overlap tensor 'a' [0, 16]"));
  // A big tensor containing two later ones: the second is compared with the big one, too.
  msg = open_error(R"({"big":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                   R"("c":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                   R"("d":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                   std::string(32, '\0'));
  EXPECT_THAT(msg, HasSubstr("overlap tensor 'big' [0, 32]"));
  // Touching is fine; zero-size tensors overlap nothing.
  write_raw_safetensors(path(), R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},)"
                                R"("z":{"dtype":"F16","shape":[0],"data_offsets":[2,2]}})",
                        std::string(8, '\0'));
  EXPECT_EQ(SafetensorsFile::open(path())->names().size(), 3u);
}

TEST_F(SafetensorsMalformed, OutOfRangeOffsets) {
  auto msg = open_error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': data_offsets [8, 24] go beyond the data section of 16 bytes"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("data_offsets [8, 4] have begin > end"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-1,15]}})", std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("expected non-negative integers"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("data_offsets is an array [0]; expected [begin, end]"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0, 18446744073709551615]}})",
                   std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("go beyond the data section"));
}

TEST_F(SafetensorsMalformed, WrongDtypeString) {
  auto msg = open_error(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", std::string(16, '\0'));
  EXPECT_THAT(msg, HasSubstr("tensor 'w': dtype 'F64' is not supported; expected one of BF16, F16, F32"));
  msg = open_error(R"({"w":{"dtype":"bfloat16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_THAT(msg, HasSubstr("dtype 'bfloat16' is unknown; expected one of BF16, F16, F32"));
  msg = open_error(R"({"w":{"dtype":16,"shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_THAT(msg, HasSubstr("dtype is an integer 16; expected a string"));
}

TEST_F(SafetensorsMalformed, ByteSizeShapeMismatch) {
  auto msg = open_error(R"({"model.layers.0.self_attn.q_proj.weight":)"
                        R"({"dtype":"BF16","shape":[4,8],"data_offsets":[0,100]}})",
                        std::string(128, '\0'));
  EXPECT_THAT(msg, HasSubstr("[safetensors] " + path().string() +
                             ": tensor 'model.layers.0.self_attn.q_proj.weight': data_offsets [0, 100] "
                             "give 100 bytes, expected 64 for shape [4, 8] of BF16"));
  // Shape whose byte count overflows 64 bits.
  msg = open_error(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "");
  EXPECT_THAT(msg, HasSubstr("overflows"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}})", "");
  EXPECT_THAT(msg, HasSubstr("has a dimension that is an integer -1; expected non-negative integers"));
  msg = open_error(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,0]}})", "");
  EXPECT_THAT(msg, HasSubstr("a float 2.5"));
}

TEST_F(SafetensorsMalformed, MissingOrUnknownFieldsAndMetadata) {
  EXPECT_THAT(open_error(R"({"w":{"dtype":"F32","shape":[1]}})", ""), HasSubstr("missing field 'data_offsets'"));
  EXPECT_THAT(open_error(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "1234"),
              HasSubstr("missing field 'shape'"));
  EXPECT_THAT(open_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "1234"),
              HasSubstr("unknown field 'x'"));
  EXPECT_THAT(open_error(R"({"w":[1,2]})", ""), HasSubstr("tensor 'w': entry is an array [1,2]"));
  EXPECT_THAT(open_error(R"({"__metadata__":{"format":1}})", ""),
              HasSubstr("\"__metadata__\" key 'format' is an integer 1; expected a string"));
  EXPECT_THAT(open_error(R"({"__metadata__":[]})", ""), HasSubstr("expected an object of string values"));
  // Metadata only, no tensors: valid.
  write_raw_safetensors(path(), R"({"__metadata__":{"format":"pt"}})", "");
  EXPECT_TRUE(SafetensorsFile::open(path())->names().empty());
}

TEST_F(SafetensorsMalformed, BadIndex) {
  const fs::path dir = m_dir.path();
  models::save_safetensors(dir / "a.safetensors", {{"x", torch::ones({2})}});
  const fs::path index = dir / "model.safetensors.index.json";
  auto index_error = [&](const std::string& text) {
    loading_test::write_bytes(index, text);
    return error_of<ModelError>([&] { SafetensorsReader::open(dir); });
  };
  EXPECT_THAT(index_error("{"), HasSubstr("not valid JSON"));
  EXPECT_THAT(index_error(R"({"metadata":{}})"), HasSubstr("no \"weight_map\" object"));
  EXPECT_THAT(index_error(R"({"weight_map":{"x":"missing.safetensors"}})"),
              HasSubstr("shard 'missing.safetensors' (holding tensor 'x') does not exist"));
  EXPECT_THAT(index_error(R"({"weight_map":{"y":"a.safetensors"}})"),
              HasSubstr("tensor 'y' is mapped to shard 'a.safetensors', which does not contain it"));
  EXPECT_THAT(index_error(R"({"weight_map":{"x":"../a.safetensors"}})"),
              HasSubstr("expected a file name relative to the index's folder"));
  EXPECT_THAT(index_error(R"({"weight_map":{"x":3}})"), HasSubstr("weight_map['x'] is an integer 3"));
  loading_test::write_bytes(index, R"({"weight_map":{"x":"a.safetensors"}})");
  EXPECT_EQ(SafetensorsReader::open(dir).names(), std::vector<std::string>{"x"});
}

TEST_F(SafetensorsMalformed, DuplicateTensorAcrossPlainFiles) {
  models::save_safetensors(m_dir.path() / "a.safetensors", {{"x", torch::ones({2})}});
  models::save_safetensors(m_dir.path() / "b.safetensors", {{"x", torch::ones({2})}});
  EXPECT_THAT(error_of<ModelError>([&] { SafetensorsReader::open(m_dir.path()); }),
              HasSubstr("tensor 'x' is in both"));
}

// Every truncation and many random byte flips of a valid file either load or throw ModelError;
// under AddressSanitizer this proves no out-of-bounds read.
TEST_F(SafetensorsMalformed, TruncationsAndCorruptionsNeverCrash) {
  models::save_safetensors(path(), {{"a", torch::ones({3, 2}, torch::kBFloat16)},
                                    {"b", torch::ones({5}, torch::kFloat32)}},
                           {{"format", "pt"}});
  const std::string good = loading_test::read_bytes(path());
  auto try_load = [&](const std::string& bytes) {
    loading_test::write_bytes(path(), bytes);
    try {
      auto f = SafetensorsFile::open(path());
      for (const auto& n : f->names()) f->tensor(n).sum();
    } catch (const ModelError&) {
    }
  };
  for (size_t n = 0; n < good.size(); ++n) try_load(good.substr(0, n));
  std::mt19937 rng(123);
  for (int i = 0; i < 400; ++i) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % std::min<size_t>(bytes.size(), 8 + 160);  // mostly the header
      bytes[at] = static_cast<char>(rng() & 0xff);
    }
    try_load(bytes);
  }
}

}  // namespace
