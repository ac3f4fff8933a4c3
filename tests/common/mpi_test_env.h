// The world communicator of an MPI test binary (set by tests/common/mpi_gtest_main.cpp).
#pragma once

#include "pipeline/comm/communicator.h"

namespace test_support {
extern pipeline::Communicator* g_world;
inline pipeline::Communicator& world() { return *g_world; }
}  // namespace test_support
