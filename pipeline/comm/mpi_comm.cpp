// MPI backend: host buffers, barriers, byte gathers, communicator splits, job-wide abort.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <limits>

#include "pipeline/comm/comm_backends.h"
#include "pipeline/core/error.h"

namespace pipeline::detail {

namespace {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw CommError(str_cat("[comm] mpi ", what, " failed: ", std::string(text, len)));
}

int checked_count(size_t n, const char* what) {
  RHEAD_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()), CommError, "[comm] mpi ", what,
              ": ", n, " elements exceed MPI's int count; split the buffer");
  return static_cast<int>(n);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owns_comm, bool finalize_at_exit)
      : m_comm(comm), m_owns_comm(owns_comm), m_finalize(finalize_at_exit) {
    MPI_Comm_rank(m_comm, &m_rank);
    MPI_Comm_size(m_comm, &m_size);
    // Errors come back as return codes so they become CommError exceptions with the MPI text.
    MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (m_owns_comm) MPI_Comm_free(&m_comm);
    if (m_finalize) MPI_Finalize();
  }

  int rank() const override { return m_rank; }
  int size() const override { return m_size; }
  std::string backend() const override { return "mpi"; }

  void barrier() override { check_mpi(MPI_Barrier(m_comm), "barrier"); }
  void allreduce_sum(float* data, size_t n) override { reduce(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, size_t n) override { reduce(data, n, MPI_DOUBLE); }
  void allreduce_sum(int64_t* data, size_t n) override { reduce(data, n, MPI_INT64_T); }

  void broadcast(void* data, size_t bytes, int root) override {
    check_mpi(MPI_Bcast(data, checked_count(bytes, "broadcast"), MPI_BYTE, root, m_comm), "broadcast");
  }

  std::vector<std::string> gather_bytes(const std::string& blob, int root) override {
    int mine = checked_count(blob.size(), "gather");
    std::vector<int> sizes(m_rank == root ? m_size : 0);
    check_mpi(MPI_Gather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, m_comm), "gather (sizes)");
    std::vector<int> offsets(sizes.size(), 0);
    size_t total = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      offsets[r] = checked_count(total, "gather");
      total += static_cast<size_t>(sizes[r]);
    }
    std::string joined(total, '\0');
    check_mpi(MPI_Gatherv(blob.data(), mine, MPI_BYTE, joined.data(), sizes.data(), offsets.data(), MPI_BYTE,
                          root, m_comm),
              "gather (data)");
    std::vector<std::string> out;
    for (size_t r = 0; r < sizes.size(); ++r) out.push_back(joined.substr(offsets[r], sizes[r]));
    return out;
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(m_comm, color, key, &sub), "comm split");
    return std::make_unique<MpiCommunicator>(sub, true, false);
  }

  [[noreturn]] void abort(int code, const std::string& message) override {
    if (!message.empty()) std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]] if it ever did
  }

 private:
  void reduce(void* data, size_t n, MPI_Datatype type) {
    if (n == 0) return;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, checked_count(n, "allreduce"), type, MPI_SUM, m_comm),
              "allreduce");
  }

  MPI_Comm m_comm;
  bool m_owns_comm;
  bool m_finalize;
  int m_rank = 0;
  int m_size = 1;
};

}  // namespace

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(var)) return true;
  }
  return false;
}

std::unique_ptr<Communicator> make_mpi_world(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  bool we_init = false;
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
    we_init = true;
  }
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false, we_init);
}

}  // namespace pipeline::detail
