// Rank-prefixed log lines on stderr:  [r1/4 +12.3s] warn: message
// info/debug print on rank 0 only unless asked for every rank; warn and error print on every rank.
#pragma once

#include <string>

#include "pipeline/core/error.h"

namespace pipeline::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_rank(int rank, int size);         // called once the communicator exists
void set_level(Level level);               // default Info; RHEAD_LOG_LEVEL=debug|info|warn|error
Level parse_level(const std::string& name);  // throws ConfigError on an unknown name
void write(Level level, const std::string& message, bool every_rank = false);
double seconds_since_start();

template <class... Args>
void debug(Args&&... args) { write(Level::Debug, str_cat(std::forward<Args>(args)...)); }
template <class... Args>
void info(Args&&... args) { write(Level::Info, str_cat(std::forward<Args>(args)...)); }
// Info from every rank (per-rank progress, per-rank resume counts).
template <class... Args>
void info_all(Args&&... args) { write(Level::Info, str_cat(std::forward<Args>(args)...), true); }
template <class... Args>
void warn(Args&&... args) { write(Level::Warn, str_cat(std::forward<Args>(args)...), true); }
template <class... Args>
void error(Args&&... args) { write(Level::Error, str_cat(std::forward<Args>(args)...), true); }

}  // namespace pipeline::log
