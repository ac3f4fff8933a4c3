// HDF5 store: round trips, header attributes, schema-version refusal, digests, cross-file copies.
#include <gtest/gtest.h>

#include "pipeline/core/error.h"
#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"
#include "tests/common/test_support.h"

using namespace pipeline::store;

namespace {

StoreHeader header(const std::string& stage, int64_t version) {
  StoreHeader h;
  h.stage = stage;
  h.schema_version = version;
  h.job_file = "/jobs/x.ini";
  h.job_text = "[job]\nname = x\n";
  h.world_size = 3;
  h.comm_backend = "mpi";
  return h;
}

}  // namespace

TEST(Store, RoundTripEveryType) {
  test_support::TempDir dir("store");
  auto path = dir.path() / "a.h5";
  {
    File f = File::create(path);
    Group root = f.root();
    Group g = root.create_group("cells").create_group("c0");
    g.write("i32", std::vector<int32_t>{1, -2, 3, 4, 5, 6}, {2, 3}, "layer,head");
    g.write("i64", std::vector<int64_t>{int64_t{1} << 50, -7}, {2}, "step");
    g.write("f32", std::vector<float>{0.5f, -1.25f}, {1, 2}, "a,b");
    g.write("f64", std::vector<double>{3.141592653589793}, {}, "");
    g.write("empty", std::vector<int32_t>{}, {0, 4}, "step,head");
    g.write_text("response", "take a walk\nin Chaoyang Park \xE2\x98\x95");
    g.write_texts("names", {"a", "", "ccc"}, "item");
    g.set_attr("context_length", int64_t{5000});
    g.set_attr("recall", 87.5);
    g.set_attr("model", "llama");
    f.flush();
  }
  File f = File::open(path);
  Group g = f.root().open_group("cells").open_group("c0");
  auto i32 = g.read_int32("i32");
  EXPECT_EQ(i32.data, (std::vector<int32_t>{1, -2, 3, 4, 5, 6}));
  EXPECT_EQ(i32.shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(g.read_int64("i64").data, (std::vector<int64_t>{int64_t{1} << 50, -7}));
  EXPECT_EQ(g.read_float("f32").data, (std::vector<float>{0.5f, -1.25f}));
  EXPECT_EQ(g.read_double("f64").data, (std::vector<double>{3.141592653589793}));
  EXPECT_TRUE(g.read_double("f64").shape.empty());
  EXPECT_EQ(g.read_int32("empty").shape, (std::vector<uint64_t>{0, 4}));
  EXPECT_EQ(g.read_text("response"), "take a walk\nin Chaoyang Park \xE2\x98\x95");
  EXPECT_EQ(g.read_texts("names"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(g.attr_int("context_length"), 5000);
  EXPECT_DOUBLE_EQ(g.attr_double("recall"), 87.5);
  EXPECT_EQ(g.attr_string("model"), "llama");
  EXPECT_EQ(f.root().open_group("cells").children(), (std::vector<std::string>{"c0"}));
}

TEST(Store, HeaderAttributesAndCompletion) {
  test_support::TempDir dir("store");
  auto path = dir.path() / "score.h5";
  {
    File f = File::create(path);
    Group root = f.root();
    write_header(root, header("score", 2));
  }
  EXPECT_FALSE(is_complete(path));
  {
    File f = File::open(path, File::Mode::ReadWrite);
    Group root = f.root();
    for (const char* a : {"schema_version", "stage", "project_version", "git_revision", "job_file", "job_text",
                          "created_utc", "world_size", "comm_backend", "status"}) {
      EXPECT_TRUE(root.has_attr(a)) << a;
    }
    EXPECT_EQ(root.attr_string("status"), "running");
    auto h = read_header(root);
    EXPECT_EQ(h.stage, "score");
    EXPECT_EQ(h.job_text, "[job]\nname = x\n");
    EXPECT_EQ(h.world_size, 3);
    mark_complete(root);
  }
  EXPECT_TRUE(is_complete(path));
  File f = File::open(path);
  EXPECT_NO_THROW(require_readable(f.root(), "score", 2));
}

TEST(Store, ReaderRefusesNewerSchemaAndWrongStage) {
  test_support::TempDir dir("store");
  auto path = dir.path() / "generate.h5";
  {
    File f = File::create(path);
    Group root = f.root();
    write_header(root, header("generate", 7));
    mark_complete(root);
  }
  File f = File::open(path);
  try {
    require_readable(f.root(), "generate", 3);
    FAIL() << "expected a StoreError";
  } catch (const pipeline::StoreError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("schema_version 7 is newer than this rhead understands (up to 3"), std::string::npos) << what;
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
  }
  EXPECT_THROW(require_readable(f.root(), "score", 9), pipeline::StoreError);
}

TEST(Store, ClearErrorsForMissingThings) {
  test_support::TempDir dir("store");
  EXPECT_THROW(File::open(dir.path() / "nope.h5"), pipeline::StoreError);
  test_support::write_text_file(dir.path() / "junk.h5", "this is not HDF5");
  EXPECT_FALSE(is_readable_hdf5(dir.path() / "junk.h5"));
  try {
    File::open(dir.path() / "junk.h5");
    FAIL();
  } catch (const pipeline::StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open as HDF5"), std::string::npos) << e.what();
  }
  File f = File::create(dir.path() / "a.h5");
  Group root = f.root();
  try {
    root.read_int32("capture");
    FAIL();
  } catch (const pipeline::StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("a.h5:/capture: missing dataset"), std::string::npos) << e.what();
  }
  root.write("x", std::vector<float>{1.f}, {1}, "");
  EXPECT_THROW(root.read_int64("x"), pipeline::StoreError);  // float data read as integers
}

TEST(Store, DigestIgnoresAttributesAndCopiesAcrossFiles) {
  test_support::TempDir dir("store");
  File a = File::create(dir.path() / "a.h5");
  File b = File::create(dir.path() / "b.h5");
  Group ra = a.root();
  Group rb = b.root();
  Group ca = ra.create_group("cells");
  Group cell = ca.create_group("x");
  cell.write("v", std::vector<int32_t>{1, 2, 3}, {3}, "step");
  cell.set_attr("rank", int64_t{0});
  Group cb = rb.create_group("cells");
  ca.copy_child_to("x", cb, "x");
  cb.open_group("x").set_attr("rank", int64_t{5});  // attributes differ, data equal
  EXPECT_EQ(ra.content_digest(), rb.content_digest());
  cb.open_group("x").write("w", std::vector<int32_t>{0}, {1}, "");
  EXPECT_NE(ra.content_digest(), rb.content_digest());
}
