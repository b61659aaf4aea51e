// Shared by the test suites: assert that code throws sparo::Error with a clear message.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "engine/tensor.h"

namespace sparo {

// Asserts that `fn` throws sparo::Error whose message contains every fragment.
template <typename F>
void expect_error(F fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing \"" << *fragments.begin() << "\"";
  } catch (const Error& e) {
    for (const std::string& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "message: " << e.what() << "\nmissing: " << f;
  }
}

}  // namespace sparo
