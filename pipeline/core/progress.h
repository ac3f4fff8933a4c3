// Progress of a long stage: cells done / total, rate and ETA per rank, summarised on rank 0.
//
// Each rank atomically rewrites a tiny status file (<dir>/rank<k>.txt: "done total elapsed") at most
// every `interval_s` seconds; rank 0 reads all of them when it reports. No collective is involved, so a
// slow or dead rank can never stall the others.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace pipeline {

class Progress {
 public:
  Progress(std::string stage, int64_t total, int rank, int size, std::filesystem::path dir,
           double interval_s = 10.0);
  void advance(int64_t n = 1);  // n more cells finished on this rank
  void finish();                // final per-rank line and status file

  // "12m05s" style duration; "--" for negative or non-finite values.
  static std::string format_duration(double seconds);

 private:
  void report(bool force);

  std::string m_stage;
  int64_t m_total;
  int64_t m_done = 0;
  int m_rank;
  int m_size;
  std::filesystem::path m_dir;
  double m_interval_s;
  double m_start_s;
  double m_last_report_s;
};

}  // namespace pipeline
