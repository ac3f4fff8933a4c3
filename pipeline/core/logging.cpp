#include "pipeline/core/logging.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace pipeline::log {

namespace {

struct State {
  int rank = 0;
  int size = 1;
  Level level = Level::Info;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::mutex mutex;
  State() {
    if (const char* env = std::getenv("RHEAD_LOG_LEVEL")) {
      try {
        level = parse_level(env);
      } catch (const Error&) {
        std::fprintf(stderr, "warning: RHEAD_LOG_LEVEL='%s' is not debug|info|warn|error; using info\n", env);
      }
    }
  }
};

State& state() {
  static State s;
  return s;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "?";
}

}  // namespace

void set_rank(int rank, int size) {
  state().rank = rank;
  state().size = size;
}

void set_level(Level level) { state().level = level; }

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "warn") return Level::Warn;
  if (name == "error") return Level::Error;
  throw ConfigError(str_cat("[log] level '", name, "': expected debug, info, warn or error"));
}

double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - state().start).count();
}

void write(Level level, const std::string& message, bool every_rank) {
  State& s = state();
  if (level < s.level) return;
  if (level < Level::Warn && !every_rank && s.rank != 0) return;
  std::lock_guard<std::mutex> lock(s.mutex);
  std::fprintf(stderr, "[r%d/%d +%.1fs] %s: %s\n", s.rank, s.size, seconds_since_start(), level_name(level),
               message.c_str());
  std::fflush(stderr);
}

}  // namespace pipeline::log
