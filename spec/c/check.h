/*
** check.h: the C unit tests' assertions. A failed CHECK prints where and
** what, and the test exits 1 at the end ('check_done'); each test case is
** a function run by RUN, which names it in the output.
*/
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    check_count++;                                                             \
    if (!(cond)) {                                                             \
      check_failures++;                                                        \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);            \
    check_count++;                                                             \
    if (check_a_ != check_b_) {                                                \
      check_failures++;                                                        \
      fprintf(stderr,                                                          \
              "%s:%d: check failed: %s == %s (%lld != %lld)\n",                \
              __FILE__,                                                        \
              __LINE__,                                                        \
              #a,                                                              \
              #b,                                                              \
              check_a_,                                                        \
              check_b_);                                                       \
    }                                                                          \
  } while (0)

#define RUN(fn)                                                                \
  do {                                                                         \
    int check_before_ = check_failures;                                        \
    fn();                                                                      \
    printf("%s %s\n", check_failures == check_before_ ? "ok" : "FAIL", #fn);   \
  } while (0)

static int check_done(void) {
  printf("%d checks, %d failed\n", check_count, check_failures);
  return check_failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
