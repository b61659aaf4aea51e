// Shared by the test suites: assert that code throws sparo::Error with a clear message.
#pragma once

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

// Asserts that `fn` throws sparo::Error matching `regex` within `seconds`, for code whose
// failure mode was a hang: it runs in a child process that an alarm ends, so a regression
// fails the test (the child dies of SIGALRM) instead of hanging the suite.
template <typename F>
void expect_error_within(int seconds, F fn, const std::string& regex) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the engine's thread pool may already run
  EXPECT_EXIT(
      {
        alarm(static_cast<unsigned>(seconds));
        try {
          fn();
          std::fprintf(stderr, "no error was thrown\n");
        } catch (const Error& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::_Exit(0);
        }
        std::_Exit(1);
      },
      ::testing::ExitedWithCode(0), regex);
}

// Caps this process's address space, for code run in expect_error_within's child: a reader
// that has regressed to reading without bound then fails there at once (bad_alloc) instead of
// taking the machine's memory before the alarm ends it.
// AddressSanitizer reserves terabytes of address space for its shadow memory, so under it no
// limit is set: the Release build's run of the same test holds the bound.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSpaceCanBeLimited = false;
#else
inline constexpr bool kAddressSpaceCanBeLimited = true;
#endif

inline void limit_address_space(uint64_t bytes) {
  if (!kAddressSpaceCanBeLimited) return;
  const rlimit limit{bytes, bytes};
  ::setrlimit(RLIMIT_AS, &limit);
}

}  // namespace sparo
