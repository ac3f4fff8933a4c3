#include "pipeline/core/progress.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "pipeline/core/logging.h"

namespace pipeline {

namespace fs = std::filesystem;

Progress::Progress(std::string stage, int64_t total, int rank, int size, fs::path dir, double interval_s)
    : m_stage(std::move(stage)),
      m_total(total),
      m_rank(rank),
      m_size(size),
      m_dir(std::move(dir)),
      m_interval_s(interval_s),
      m_start_s(log::seconds_since_start()),
      m_last_report_s(m_start_s) {
  std::error_code ec;
  fs::create_directories(m_dir, ec);
  report(true);
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  long s = std::lround(seconds);
  char buf[64];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

void Progress::advance(int64_t n) {
  m_done += n;
  report(false);
}

void Progress::finish() { report(true); }

void Progress::report(bool force) {
  double now = log::seconds_since_start();
  if (!force && now - m_last_report_s < m_interval_s) return;
  m_last_report_s = now;
  double elapsed = now - m_start_s;

  // This rank's status file: write a temp file, then rename (readers never see half a file).
  fs::path mine = m_dir / ("rank" + std::to_string(m_rank) + ".txt");
  {
    std::ofstream out(mine.string() + ".tmp");
    out << m_done << " " << m_total << " " << elapsed << "\n";
  }
  std::error_code ec;
  fs::rename(mine.string() + ".tmp", mine, ec);

  double rate = elapsed > 0 ? m_done / elapsed : 0.0;
  double eta = rate > 0 ? (m_total - m_done) / rate : -1.0;
  log::debug(m_stage, ": rank ", m_rank, " ", m_done, "/", m_total, " cells, ", rate, " cells/s, ETA ",
             format_duration(eta));
  if (m_rank != 0) return;

  // Rank 0 summarises every rank that has reported so far.
  int64_t done = 0, total = 0;
  double worst_eta = 0;
  bool eta_unknown = false;
  int worst_rank = 0, seen = 0;
  std::ostringstream per_rank;
  for (int r = 0; r < m_size; ++r) {
    std::ifstream in(m_dir / ("rank" + std::to_string(r) + ".txt"));
    int64_t d = 0, t = 0;
    double e = 0;
    if (!(in >> d >> t >> e)) continue;
    ++seen;
    done += d;
    total += t;
    double rr = e > 0 ? d / e : 0.0;
    double re = d >= t ? 0.0 : (rr > 0 ? (t - d) / rr : -1.0);
    if (re < 0) {
      eta_unknown = true;  // no cell finished yet on that rank
      worst_rank = r;
    } else if (!eta_unknown && re > worst_eta) {
      worst_eta = re;
      worst_rank = r;
    }
    per_rank << " r" << r << "=" << d << "/" << t;
  }
  double total_rate = elapsed > 0 ? done / elapsed : 0.0;
  char rate_buf[32];
  std::snprintf(rate_buf, sizeof rate_buf, "%.2f", total_rate);
  log::info(m_stage, ": ", done, "/", total, " cells (", total ? 100 * done / total : 100, "%), ", rate_buf,
            " cells/s, ETA ", format_duration(eta_unknown ? -1.0 : worst_eta), " (slowest rank ", worst_rank, "; ", seen, "/",
            m_size, " ranks reporting:", per_rank.str(), ")");
}

}  // namespace pipeline
