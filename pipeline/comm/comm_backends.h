// Backend constructors, private to pipeline/comm/ (see communicator.h for the public interface).
#pragma once

#include <memory>

#include "pipeline/comm/communicator.h"

namespace pipeline::detail {

std::unique_ptr<Communicator> make_self_communicator();
// Initialises MPI (MPI_Init_thread, FUNNELED) if nobody has; the world object finalises it.
std::unique_ptr<Communicator> make_mpi_world(int* argc, char*** argv);
// True when the process looks like it was started by an MPI launcher (mpirun, srun).
bool launched_by_mpi();
// NCCL over the MPI world (throws CommError with a clear message when no GPU is present).
std::unique_ptr<Communicator> make_nccl_world(std::unique_ptr<Communicator> mpi_world);

}  // namespace pipeline::detail
