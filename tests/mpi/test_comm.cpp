// Communicator collectives under mpiexec: every result equals the answer computed serially.
#include <gtest/gtest.h>

#include <numeric>

#include "pipeline/core/error.h"
#include "pipeline/core/sharding.h"
#include "tests/common/mpi_test_env.h"

using test_support::world;

namespace {

// Rank r contributes values[i] = (r + 1) * (i + 1) + 0.25 (exact in binary floating point).
double contribution(int r, size_t i) { return (r + 1.0) * (i + 1.0) + 0.25; }

double serial_sum(int n_ranks, size_t i) {
  double s = 0;
  for (int r = 0; r < n_ranks; ++r) s += contribution(r, i);
  return s;
}

}  // namespace

TEST(Comm, BackendAndRanks) {
  EXPECT_EQ(world().backend(), "mpi");
  EXPECT_GE(world().rank(), 0);
  EXPECT_LT(world().rank(), world().size());
  world().barrier();
}

TEST(Comm, AllreduceSumFloat64) {
  const size_t n = 1000;
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = contribution(world().rank(), i);
  world().allreduce_sum(v.data(), n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], serial_sum(world().size(), i)) << "element " << i;
}

TEST(Comm, AllreduceSumFloat32) {
  const size_t n = 257;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(contribution(world().rank(), i));
  world().allreduce_sum(v.data(), n);
  // Small integers + 0.25 multiples are exact in float32 too, so equality is the right check.
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], static_cast<float>(serial_sum(world().size(), i)));
}

TEST(Comm, AllreduceSumInt64) {
  std::vector<int64_t> v = {int64_t{1} << 40, -3, world().rank()};
  world().allreduce_sum(v.data(), v.size());
  const int64_t p = world().size();
  EXPECT_EQ(v[0], p * (int64_t{1} << 40));
  EXPECT_EQ(v[1], -3 * p);
  EXPECT_EQ(v[2], p * (p - 1) / 2);
  EXPECT_EQ(world().allreduce_sum(int64_t{2}), 2 * p);
}

TEST(Comm, BroadcastFromEveryRoot) {
  for (int root = 0; root < world().size(); ++root) {
    std::string text = world().rank() == root ? std::string(1000 + root, char('a' + root)) : "x";
    world().broadcast_string(text, root);
    EXPECT_EQ(text, std::string(1000 + root, char('a' + root)));
    int64_t value = world().rank() == root ? 42 + root : -1;
    world().broadcast(&value, sizeof value, root);
    EXPECT_EQ(value, 42 + root);
  }
}

TEST(Comm, GatherVariableLengthBlobs) {
  // Rank r sends r*7 bytes (rank 0 sends an empty blob), including NUL bytes.
  std::string mine(static_cast<size_t>(world().rank() * 7), '\0');
  for (size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<char>(i % 3 == 0 ? 0 : 'A' + world().rank());
  for (int root = 0; root < world().size(); ++root) {
    auto all = world().gather_bytes(mine, root);
    if (world().rank() != root) {
      EXPECT_TRUE(all.empty());
      continue;
    }
    ASSERT_EQ(all.size(), static_cast<size_t>(world().size()));
    for (int r = 0; r < world().size(); ++r) {
      ASSERT_EQ(all[r].size(), static_cast<size_t>(r * 7));
      for (size_t i = 0; i < all[r].size(); ++i) EXPECT_EQ(all[r][i], static_cast<char>(i % 3 == 0 ? 0 : 'A' + r));
    }
  }
  auto everywhere = world().allgather_bytes(mine);
  ASSERT_EQ(everywhere.size(), static_cast<size_t>(world().size()));
  EXPECT_EQ(everywhere[world().rank()], mine);
}

TEST(Comm, SplitIntoTeams) {
  // Teams as the sharder makes them: colors from assign_work.
  std::vector<pipeline::WorkItem> items = {{"a", "g0", 1}, {"b", "g1", 1}, {"c", "g1", 1}};
  auto assignment = pipeline::assign_work(items, world().size());
  int color = assignment.team_of_rank[world().rank()];
  auto team = world().split(color, world().rank());
  int expected_size = 0;
  for (int c : assignment.team_of_rank) expected_size += c == color ? 1 : 0;
  EXPECT_EQ(team->size(), expected_size);
  int64_t one = 1;
  team->allreduce_sum(&one, 1);
  EXPECT_EQ(one, expected_size);
}

TEST(Comm, DeviceAllreduceNeedsNccl) {
  double x = 1;
  EXPECT_FALSE(world().supports_device_buffers());
  try {
    world().allreduce_sum_device(&x, 1, pipeline::ElementType::Float64, nullptr);
    FAIL() << "expected a CommError";
  } catch (const pipeline::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("needs the nccl backend"), std::string::npos) << e.what();
  }
}
