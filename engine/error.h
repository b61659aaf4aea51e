// sparo::Error: what every layer throws for bad input.
#pragma once

#include <stdexcept>

namespace sparo {

// Every error sparo raises for bad input: the message names the op (or file, or field), the
// shapes involved, and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sparo
