// NCCL backend: device-buffer all-reduce over NCCL (one rank per GPU), everything else over MPI.
// The NCCL unique id is created on rank 0 and broadcast over MPI (as llm.c does).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>

#include "pipeline/comm/comm_backends.h"
#include "pipeline/core/error.h"

namespace pipeline::detail {

namespace {

void check_cuda(cudaError_t rc, const char* what) {
  if (rc == cudaSuccess) return;
  throw CommError(str_cat("[comm] nccl backend: ", what, " failed: ", cudaGetErrorString(rc)));
}

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc == ncclSuccess) return;
  throw CommError(str_cat("[comm] nccl ", what, " failed: ", ncclGetErrorString(rc)));
}

ncclDataType_t nccl_type(ElementType type) {
  switch (type) {
    case ElementType::Float32: return ncclFloat32;
    case ElementType::Float64: return ncclFloat64;
    case ElementType::Int64: return ncclInt64;
  }
  throw InternalError("nccl_type: unknown element type");
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Communicator> mpi) : m_mpi(std::move(mpi)) {
    int n_devices = 0;
    cudaError_t rc = cudaGetDeviceCount(&n_devices);
    RHEAD_CHECK(rc == cudaSuccess && n_devices > 0, CommError, "[comm] backend 'nccl' on rank ", m_mpi->rank(),
                ": no CUDA device is visible (", cudaGetErrorString(rc),
                "). Hint: run on GPU nodes with one rank per GPU, or use --comm mpi on CPUs");
    check_cuda(cudaSetDevice(m_mpi->rank() % n_devices), "cudaSetDevice");
    ncclUniqueId id;
    if (m_mpi->rank() == 0) check_nccl(ncclGetUniqueId(&id), "get unique id");
    m_mpi->broadcast(&id, sizeof id, 0);
    check_nccl(ncclCommInitRank(&m_nccl, m_mpi->size(), id, m_mpi->rank()), "comm init");
  }
  ~NcclCommunicator() override {
    if (m_nccl) ncclCommDestroy(m_nccl);
  }

  int rank() const override { return m_mpi->rank(); }
  int size() const override { return m_mpi->size(); }
  std::string backend() const override { return "nccl"; }
  void barrier() override { m_mpi->barrier(); }
  void allreduce_sum(float* d, size_t n) override { m_mpi->allreduce_sum(d, n); }
  void allreduce_sum(double* d, size_t n) override { m_mpi->allreduce_sum(d, n); }
  void allreduce_sum(int64_t* d, size_t n) override { m_mpi->allreduce_sum(d, n); }
  bool supports_device_buffers() const override { return true; }
  void allreduce_sum_device(void* data, size_t n, ElementType type, void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    check_nccl(ncclAllReduce(data, data, n, nccl_type(type), ncclSum, m_nccl, s), "all-reduce");
    check_cuda(cudaStreamSynchronize(s), "stream synchronize after all-reduce");
  }
  void broadcast(void* data, size_t bytes, int root) override { m_mpi->broadcast(data, bytes, root); }
  std::vector<std::string> gather_bytes(const std::string& blob, int root) override {
    return m_mpi->gather_bytes(blob, root);
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return std::make_unique<NcclCommunicator>(m_mpi->split(color, key));
  }
  [[noreturn]] void abort(int code, const std::string& message) override {
    if (m_nccl) ncclCommAbort(m_nccl);
    m_mpi->abort(code, message);
    std::_Exit(code);  // not reached: the MPI abort ends the process
  }

 private:
  std::unique_ptr<Communicator> m_mpi;
  ncclComm_t m_nccl = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_world(std::unique_ptr<Communicator> mpi_world) {
  return std::make_unique<NcclCommunicator>(std::move(mpi_world));
}

}  // namespace pipeline::detail
