#include "pipeline/comm/communicator.h"

#include <cstdlib>

#include "pipeline/comm/comm_backends.h"
#include "pipeline/core/error.h"

namespace pipeline {

void Communicator::allreduce_sum_device(void*, size_t, ElementType, void*) {
  throw CommError(str_cat("[comm] ", backend(),
                          " backend: all-reduce of a GPU buffer needs the nccl backend. Hint: run with "
                          "--comm nccl on GPU nodes, or copy the tensor to the host first"));
}

void Communicator::broadcast_string(std::string& text, int root) {
  int64_t n = static_cast<int64_t>(text.size());
  broadcast(&n, sizeof n, root);
  text.resize(static_cast<size_t>(n));
  if (n > 0) broadcast(text.data(), static_cast<size_t>(n), root);
}

std::vector<std::string> Communicator::allgather_bytes(const std::string& blob) {
  std::vector<std::string> all = gather_bytes(blob, 0);
  int64_t count = static_cast<int64_t>(all.size());
  broadcast(&count, sizeof count, 0);
  all.resize(static_cast<size_t>(count));
  for (auto& s : all) broadcast_string(s, 0);
  return all;
}

int64_t Communicator::allreduce_sum(int64_t value) {
  allreduce_sum(&value, 1);
  return value;
}

bool nccl_compiled_in() {
#ifdef RHEAD_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_world_communicator(const std::string& backend, int* argc, char*** argv) {
  if (backend == "self") return detail::make_self_communicator();
  if (backend == "mpi") return detail::make_mpi_world(argc, argv);
  if (backend == "nccl") {
#ifdef RHEAD_HAVE_NCCL
    return detail::make_nccl_world(detail::make_mpi_world(argc, argv));
#else
    throw ConfigError(
        "[comm] backend 'nccl': this rhead was built without support for backend 'nccl'. Hint: "
        "reconfigure on a machine with the CUDA toolkit and NCCL (RHEAD_USE_NCCL=ON), or use --comm mpi");
#endif
  }
  if (backend == "auto") {
    if (detail::launched_by_mpi()) return detail::make_mpi_world(argc, argv);
    return detail::make_self_communicator();
  }
  throw ConfigError(str_cat("[comm] backend '", backend, "': expected auto, self, mpi or nccl"));
}

}  // namespace pipeline
