// The tiny check harness of the plain C++ tests: CHECK counts and reports, main() prints the tally.
#pragma once
#include <cstdio>

static int failures = 0, checks = 0;
#define CHECK(cond, ...)                               \
  do {                                                 \
    ++checks;                                          \
    if (!(cond)) {                                     \
      ++failures;                                      \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)
