// gtest main for tests launched under mpiexec: MPI initialised once through the Communicator factory,
// result printing only on rank 0, and the pass/fail status all-reduced so a failure on any rank fails
// the ctest entry.
#include <gtest/gtest.h>

#include "pipeline/comm/communicator.h"
#include "tests/common/mpi_test_env.h"

namespace test_support {
pipeline::Communicator* g_world = nullptr;
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = pipeline::make_world_communicator("mpi", &argc, &argv);
  test_support::g_world = world.get();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int64_t failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  failed = world->allreduce_sum(failed);
  test_support::g_world = nullptr;
  return failed == 0 ? 0 : 1;
}
