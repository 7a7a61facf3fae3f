/*
** Native stacks by copying (runtime/cstack.c), standalone: calls that
** park deep in their stack and continue later from shallower and deeper
** stacks than the one they started on, several parked at once, values on
** the stack (and pointers to them) intact, the continuer's own frames
** intact, a call ending after a continue, and the refusals.
*/
#include <string.h>

#include <uv.h>

#include "cstack.h"

#include "check.h"

#if GL_CS_SUPPORTED

static gl_cstack_t cs;

/* One "thread": the function running under gl_cs_call and its segment. */
typedef struct task {
  gl_cseg_t *seg; /* parked, or NULL */
  int depth;      /* recursion depth at which it parks */
  int parks;      /* how many times it parks before returning */
  int *progress;  /* a counter on the task's own stack (checked outside) */
  long sum;       /* the result it computed */
} task;

#define NOINLINE __attribute__((noinline, noclone))

/*
** Recurse 'n' levels, each with a local array filled from its level; at
** the bottom, park 'tk->parks' times; on the way up, check every array
** (they were on the stack while it was elsewhere) and sum them.
*/
static NOINLINE long dive(task *tk, int n) {
  volatile long local[16];
  long s = 0;
  int i;
  for (i = 0; i < 16; i++)
    local[i] = (long)n * 1000 + i;
  if (n == 0) {
    int p;
    for (p = 0; p < tk->parks; p++) {
      CHECK_EQ(gl_cs_park(&cs, &tk->seg), 0);
      (*tk->progress)++; /* a pointer into this segment's stack */
    }
  } else {
    s = dive(tk, n - 1);
  }
  for (i = 0; i < 16; i++) {
    CHECK_EQ(local[i], (long)n * 1000 + i);
    s += local[i];
  }
  return s;
}


static int task_fn(void *arg) {
  task *tk = arg;
  int progress = 0; /* lives in the segment */
  tk->progress = &progress;
  tk->sum = dive(tk, tk->depth);
  CHECK_EQ(progress, tk->parks);
  return 7;
}


static long expected_sum(int depth) {
  long s = 0;
  int n, i;
  for (n = 0; n <= depth; n++)
    for (i = 0; i < 16; i++)
      s += (long)n * 1000 + i;
  return s;
}


/* Continue 'tk' from 'extra' frames deeper than the caller, checking that
   the continuer's own locals survive the segment being copied over them. */
static NOINLINE int continue_at(task *tk, int extra) {
  volatile long mine[32];
  int r, i;
  for (i = 0; i < 32; i++)
    mine[i] = extra * 100 + i;
  if (extra > 0)
    r = continue_at(tk, extra - 1);
  else {
    gl_cseg_t *seg = tk->seg;
    tk->seg = NULL;
    r = gl_cs_continue(&cs, seg);
  }
  for (i = 0; i < 32; i++)
    CHECK_EQ(mine[i], extra * 100 + i);
  return r;
}


static void test_plain(void) {
  task tk = {NULL, 5, 0, NULL, 0};
  gl_cs_init(&cs);
  CHECK_EQ(gl_cs_call(&cs, task_fn, &tk), 7);
  CHECK_EQ(tk.sum, expected_sum(5));
  CHECK(tk.seg == NULL);
  CHECK_EQ(cs.nparked, 0);
  gl_cs_close(&cs);
}


static void test_park_continue(void) {
  task tk = {NULL, 20, 3, NULL, 0};
  int r;
  gl_cs_init(&cs);
  CHECK_EQ(gl_cs_call(&cs, task_fn, &tk), GL_CS_PARKED);
  CHECK(tk.seg != NULL);
  CHECK_EQ(cs.nparked, 1);
  CHECK(gl_cs_size(tk.seg) > 20 * 16 * sizeof(long));
  CHECK_EQ(cs.bytes, gl_cs_size(tk.seg));
  /* The same depth, a deeper stack (the continuer's frames lie where the
     segment goes), then a shallower one. */
  CHECK_EQ(continue_at(&tk, 0), GL_CS_PARKED);
  CHECK_EQ(continue_at(&tk, 60), GL_CS_PARKED);
  CHECK_EQ(cs.nparked, 1);
  r = continue_at(&tk, 2);
  CHECK_EQ(r, 7);
  CHECK_EQ(tk.sum, expected_sum(20));
  CHECK(tk.seg == NULL);
  CHECK_EQ(cs.nparked, 0);
  CHECK_EQ(cs.bytes, 0);
  CHECK_EQ(cs.parks, 3);
  CHECK_EQ(cs.continues, 3);
  gl_cs_close(&cs);
}


/* Many tasks parked at once, continued in an interleaved order. */
static void test_many(void) {
  enum { N = 200 };
  static task tk[N];
  int i, round, done = 0;
  gl_cs_init(&cs);
  for (i = 0; i < N; i++) {
    tk[i].seg = NULL;
    tk[i].depth = i % 13;
    tk[i].parks = 1 + i % 4;
    tk[i].sum = 0;
    CHECK_EQ(gl_cs_call(&cs, task_fn, &tk[i]), GL_CS_PARKED);
  }
  CHECK_EQ(cs.nparked, N);
  for (round = 0; round < 4; round++)
    for (i = N - 1; i >= 0; i--) {
      if (tk[i].seg == NULL)
        continue;
      if (continue_at(&tk[i], (i * 7) % 11) == 7) {
        CHECK_EQ(tk[i].sum, expected_sum(tk[i].depth));
        done++;
      }
    }
  CHECK_EQ(done, N);
  CHECK_EQ(cs.nparked, 0);
  gl_cs_close(&cs);
}


static int park_once(void *arg) {
  gl_cseg_t **slot = arg;
  int r = gl_cs_park(&cs, slot);
  return r == 0 ? 1 : 100 - r;
}


static NOINLINE int deep_park(void *arg) {
  volatile char big[64 * 1024];
  big[0] = 1;
  big[sizeof(big) - 1] = 1;
  return park_once(arg) + big[0] + big[sizeof(big) - 1];
}


static void test_refusals(void) {
  gl_cseg_t *seg = NULL;
  gl_cs_init(&cs);
  /* Outside a call, and continuing while a call runs. */
  CHECK_EQ(gl_cs_park(&cs, &seg), UV_ENOTSUP);
  CHECK(seg == NULL);
  /* Over the limit: refused, the call goes on, nothing parked. */
  cs.limit = 16 * 1024;
  CHECK_EQ(gl_cs_call(&cs, deep_park, &seg), 100 - UV_E2BIG + 2);
  CHECK(seg == NULL);
  CHECK_EQ(cs.nparked, 0);
  cs.limit = GL_CS_LIMIT;
  CHECK_EQ(gl_cs_call(&cs, deep_park, &seg), GL_CS_PARKED);
  CHECK(seg != NULL);
  CHECK(gl_cs_size(seg) > 64 * 1024);
  /* Dropped without continuing: freed (the leak checker would see it). */
  gl_cs_drop(&cs, seg);
  CHECK_EQ(cs.nparked, 0);
  CHECK_EQ(cs.bytes, 0);
  gl_cs_close(&cs);
}


static int nested_fn(void *arg) {
  task *tk = arg;
  /* A call inside a call is a plain call: a park parks the outer one. */
  return gl_cs_call(&cs, task_fn, tk) + 1;
}


static void test_nested(void) {
  task tk = {NULL, 3, 1, NULL, 0};
  gl_cs_init(&cs);
  CHECK_EQ(gl_cs_call(&cs, nested_fn, &tk), GL_CS_PARKED);
  CHECK_EQ(continue_at(&tk, 1), 8);
  CHECK_EQ(tk.sum, expected_sum(3));
  gl_cs_close(&cs);
}


/*
** Does a park succeed here? Under ASan with detect_stack_use_after_return
** locals live on fake stacks, so parking is refused with UV_ENOTSUP.
*/
static int can_park(void) {
  gl_cseg_t *seg = NULL;
  int r;
  gl_cs_init(&cs);
  r = gl_cs_call(&cs, park_once, &seg);
  if (r == GL_CS_PARKED)
    r = gl_cs_continue(&cs, seg);
  else
    CHECK_EQ(r, 100 - UV_ENOTSUP);
  gl_cs_close(&cs);
  return r == 1;
}

#endif


int main(void) {
#if GL_CS_SUPPORTED
  if (!can_park()) {
    printf("parking is refused here (ASan's fake stacks): only that was "
           "checked\n");
    return check_done();
  }
  RUN(test_plain);
  RUN(test_park_continue);
  RUN(test_many);
  RUN(test_refusals);
  RUN(test_nested);
#else
  printf("native stacks are not supported on this platform: skipped\n");
#endif
  return check_done();
}
