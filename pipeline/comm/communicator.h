// Communicator: the only door to other ranks. Backends (pipeline/comm/*.cpp, the only files that
// include mpi.h or nccl.h):
//   self  one process; collectives are identities
//   mpi   host buffers over MPI (control plane and CPU reductions)
//   nccl  device buffers over NCCL (unique id broadcast over MPI); host buffers and control over MPI
// Any failing rank calls abort(), which ends every rank (MPI_Abort) instead of leaving them waiting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pipeline {

enum class ElementType { Float32, Float64, Int64 };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "self" | "mpi" | "nccl"

  virtual void barrier() = 0;
  // In-place element-wise sum over ranks of host buffers; n must be equal on every rank.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  virtual void allreduce_sum(int64_t* data, size_t n) = 0;
  // The same for a buffer in GPU memory (nccl backend only; `stream` is a cudaStream_t or nullptr).
  virtual bool supports_device_buffers() const { return false; }
  virtual void allreduce_sum_device(void* data, size_t n, ElementType type, void* stream);
  // Root's `bytes` bytes at `data` are copied to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Root receives every rank's blob (index = rank); other ranks receive an empty vector.
  virtual std::vector<std::string> gather_bytes(const std::string& blob, int root) = 0;
  // Ranks with the same color form a new communicator, ordered by (key, rank).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ends every rank of the job with `code`; `message` is printed by this rank first.
  [[noreturn]] virtual void abort(int code, const std::string& message) = 0;

  // Helpers built on the primitives above.
  void broadcast_string(std::string& text, int root);
  std::vector<std::string> allgather_bytes(const std::string& blob);
  int64_t allreduce_sum(int64_t value);
};

// The world communicator for this process. backend: "auto" (mpi when launched by mpirun/srun or when
// the MPI library reports more than one rank, else self), "self", "mpi" or "nccl". Initialises MPI when
// needed; MPI is finalised when the returned object is destroyed.
std::unique_ptr<Communicator> make_world_communicator(const std::string& backend, int* argc, char*** argv);

// Whether this build has the NCCL backend compiled in.
bool nccl_compiled_in();

}  // namespace pipeline
