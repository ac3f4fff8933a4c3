// Typed errors for the whole project. Message format (docs/ARCHITECTURE.md, "Errors"):
//   [component] object: what is wrong; got X, expected Y. Hint: what to do
// Library code throws; only main() turns an error into an exit status (and a communicator abort).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace pipeline {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigError : public Error {  // job files, family files, command line
 public:
  using Error::Error;
};
class StoreError : public Error {  // HDF5 stores: file + dataset path in the message
 public:
  using Error::Error;
};
class CommError : public Error {  // collectives and backends
 public:
  using Error::Error;
};
class InputError : public Error {  // user data: model folders, tokenizers, haystacks, needles
 public:
  using Error::Error;
};
class ShapeError : public Error {  // tensor shapes that disagree with a spec
 public:
  using Error::Error;
};
class InternalError : public Error {  // a bug: "should not happen, please report"
 public:
  using Error::Error;
};

// Concatenates anything streamable: str_cat("[store] ", path, ": got ", n, " cells").
template <class... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

}  // namespace pipeline

// Always-on check for inputs and invariants: RHEAD_CHECK(n > 0, pipeline::ConfigError, "[config] ...", n).
#define RHEAD_CHECK(cond, ErrorType, ...)              \
  do {                                                 \
    if (!(cond)) {                                     \
      throw ErrorType(::pipeline::str_cat(__VA_ARGS__)); \
    }                                                  \
  } while (0)
