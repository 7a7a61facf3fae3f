/*
** The hub's timer heap (runtime/timer.c): order, FIFO among equal
** deadlines, stopping anywhere, re-arming, what one expiry fires, and the
** out-of-memory path (realloc is wrapped: -Wl,--wrap=realloc).
*/
#include <stdint.h>
#include <string.h>

#include "gl.h"

#include "check.h"

/* The runtime's realloc, failing the next 'fail_realloc' calls. */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static int fail_realloc = 0;
static int reallocs = 0;

void *__wrap_realloc(void *p, size_t n) {
  reallocs++;
  if (fail_realloc > 0) {
    fail_realloc--;
    return NULL;
  }
  return __real_realloc(p, n);
}


typedef struct tt {
  gl_timer_t tm;
  int id;
  int rearm;        /* on firing, re-arm itself this many more times */
  gl_timer_t *arm;  /* on firing, arm this timer at the same deadline, once */
  gl_timer_t *stop; /* on firing, stop this timer */
} tt;

#define MAXFIRED 4096
static int fired[MAXFIRED];
static int nfired;
static gl_hub_t hub;


static void on_fire(gl_timer_t *tm) {
  tt *x = GL_CONTAINER(tm, tt, tm);
  if (nfired < MAXFIRED)
    fired[nfired++] = x->id;
  if (x->rearm > 0) {
    x->rearm--;
    CHECK_EQ(gl_timer_start(&hub, tm, tm->due, on_fire), 0);
  }
  if (x->arm != NULL) { /* once */
    CHECK_EQ(gl_timer_start(&hub, x->arm, tm->due, on_fire), 0);
    x->arm = NULL;
  }
  if (x->stop != NULL)
    gl_timer_stop(&hub, x->stop);
}


static void init(tt *x, int n) {
  int i;
  memset(x, 0, n * sizeof(*x));
  for (i = 0; i < n; i++)
    x[i].id = i;
}


static void setup(void) {
  CHECK_EQ(gl_hub_init(&hub, NULL), 0);
  nfired = 0;
  fail_realloc = 0;
}


static void teardown(void) {
  gl_hub_close(&hub);
}


static int before(const gl_timer_t *a, const gl_timer_t *b) {
  return a->due < b->due ||
         (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}


/* Every parent fires before its children; every idx is its place + 1. */
static int heap_ok(void) {
  unsigned i;
  for (i = 0; i < hub.nheap; i++) {
    if (hub.heap[i]->idx != i + 1)
      return 0;
    if (i > 0 && before(hub.heap[i], hub.heap[(i - 1) / 2]))
      return 0;
  }
  return 1;
}


static unsigned lcg(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (*s >> 16) & 0x7fff;
}


/* Random deadlines, many equal: they fire by deadline, then start order. */
static void test_order(void) {
  enum { N = 1000 };
  static tt x[N];
  unsigned seed = 42, i;
  uint64_t min = UINT64_MAX;
  setup();
  init(x, N);
  CHECK_EQ(gl_timer_next(&hub), UINT64_MAX);
  for (i = 0; i < N; i++) {
    uint64_t due = 1000 + lcg(&seed) % 64;
    if (due < min)
      min = due;
    CHECK_EQ(gl_timer_start(&hub, &x[i].tm, due, on_fire), 0);
  }
  CHECK_EQ(hub.nheap, N);
  CHECK(heap_ok());
  CHECK_EQ(gl_timer_next(&hub), min);
  CHECK_EQ(gl_timer_expire(&hub, 2000), N);
  CHECK_EQ(nfired, N);
  for (i = 1; i < N; i++) {
    tt *a = &x[fired[i - 1]], *b = &x[fired[i]];
    CHECK(a->tm.due < b->tm.due || (a->tm.due == b->tm.due && a->id < b->id));
  }
  for (i = 0; i < N; i++)
    CHECK_EQ(x[i].tm.idx, 0);
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(gl_timer_next(&hub), UINT64_MAX);
  teardown();
}


static void test_fifo_equal(void) {
  enum { N = 20 };
  tt x[N];
  int i;
  setup();
  init(x, N);
  for (i = 0; i < N; i++)
    gl_timer_start(&hub, &x[i].tm, 500, on_fire);
  CHECK_EQ(gl_timer_expire(&hub, 500), N);
  for (i = 0; i < N; i++)
    CHECK_EQ(fired[i], i);
  teardown();
}


/* Insertion numbers wrap at 2^32: equal deadlines armed across the wrap
   still fire FIFO, and only timers due at entry fire in one expire. */
static void test_seq_wraps(void) {
  enum { N = 8 };
  tt x[N];
  int i;
  setup();
  init(x, N);
  hub.seq = UINT32_MAX - 3; /* the wrap falls among the N */
  for (i = 0; i < N; i++)
    gl_timer_start(&hub, &x[i].tm, 500, on_fire);
  CHECK(heap_ok());
  x[0].arm = &x[0].tm; /* armed from a callback, after the wrap: next call */
  CHECK_EQ(gl_timer_expire(&hub, 500), N);
  for (i = 0; i < N; i++)
    CHECK_EQ(fired[i], i);
  CHECK_EQ(hub.nheap, 1);
  CHECK_EQ(gl_timer_expire(&hub, 500), 1);
  teardown();
}


/* Stop the root, the last, and others in the middle: the rest still fire
   in order, the stopped never. */
static void test_stop_middle(void) {
  enum { N = 200 };
  static tt x[N];
  unsigned seed = 7;
  int i, stopped = 0;
  setup();
  init(x, N);
  for (i = 0; i < N; i++)
    gl_timer_start(&hub, &x[i].tm, lcg(&seed) % 50, on_fire);
  /* the root */
  {
    tt *root = GL_CONTAINER(hub.heap[0], tt, tm);
    gl_timer_stop(&hub, &root->tm);
    CHECK_EQ(root->tm.idx, 0);
    root->id = -1;
    stopped++;
  }
  /* the last slot */
  {
    tt *last = GL_CONTAINER(hub.heap[hub.nheap - 1], tt, tm);
    gl_timer_stop(&hub, &last->tm);
    last->id = -1;
    stopped++;
  }
  CHECK(heap_ok());
  for (i = 0; i < N; i += 3) {
    if (x[i].tm.idx != 0) {
      gl_timer_stop(&hub, &x[i].tm);
      x[i].id = -1;
      stopped++;
      CHECK(heap_ok());
    }
    gl_timer_stop(&hub, &x[i].tm); /* again: harmless */
    CHECK_EQ(x[i].tm.idx, 0);
  }
  CHECK_EQ(hub.nheap, N - stopped);
  CHECK(heap_ok());
  CHECK_EQ(gl_timer_expire(&hub, 1000), N - stopped);
  for (i = 0; i < nfired; i++)
    CHECK(fired[i] != -1);
  for (i = 1; i < nfired; i++) {
    tt *a = &x[fired[i - 1]], *b = &x[fired[i]];
    CHECK(a->tm.due < b->tm.due || (a->tm.due == b->tm.due && a->id < b->id));
  }
  teardown();
}


/* Stopping a timer can move the heap's last one up: with deadlines
   1 10 2 11 12 3 4 the heap is that array; stopping 11 puts 4 under 10. */
static void test_stop_sift_up(void) {
  static const uint64_t due[] = {1, 10, 2, 11, 12, 3, 4};
  tt x[7];
  int i;
  setup();
  init(x, 7);
  for (i = 0; i < 7; i++)
    gl_timer_start(&hub, &x[i].tm, due[i], on_fire);
  for (i = 0; i < 7; i++)
    CHECK_EQ(x[i].tm.idx, i + 1);
  gl_timer_stop(&hub, &x[3].tm);
  CHECK(heap_ok());
  CHECK_EQ(gl_timer_expire(&hub, 100), 6);
  CHECK_EQ(fired[0], 0);
  CHECK_EQ(fired[1], 2);
  CHECK_EQ(fired[2], 5);
  CHECK_EQ(fired[3], 6);
  CHECK_EQ(fired[4], 1);
  CHECK_EQ(fired[5], 4);
  teardown();
}


/* Re-arming moves a timer (no duplicate) and renews its place among equal
   deadlines. */
static void test_rearm(void) {
  tt x[4];
  setup();
  init(x, 4);
  gl_timer_start(&hub, &x[0].tm, 10, on_fire);
  gl_timer_start(&hub, &x[1].tm, 20, on_fire);
  gl_timer_start(&hub, &x[2].tm, 10, on_fire);
  gl_timer_start(&hub, &x[3].tm, 30, on_fire);
  CHECK_EQ(gl_timer_start(&hub, &x[0].tm, 10, on_fire), 0); /* after 2 */
  CHECK_EQ(gl_timer_start(&hub, &x[1].tm, 5, on_fire), 0);  /* first */
  CHECK_EQ(gl_timer_start(&hub, &x[3].tm, 40, on_fire), 0); /* later */
  CHECK_EQ(hub.nheap, 4);
  CHECK(heap_ok());
  CHECK_EQ(gl_timer_next(&hub), 5);
  CHECK_EQ(gl_timer_expire(&hub, 30), 3);
  CHECK_EQ(nfired, 3);
  CHECK_EQ(fired[0], 1);
  CHECK_EQ(fired[1], 2);
  CHECK_EQ(fired[2], 0);
  CHECK_EQ(x[3].tm.idx, 1);
  CHECK_EQ(gl_timer_expire(&hub, 40), 1);
  CHECK_EQ(fired[3], 3);
  teardown();
}


/* One expiry fires only the timers due when it began: not those a
   callback arms or re-arms for 'now', nor later ones; and not one a
   callback stopped. */
static void test_expire_at_entry(void) {
  tt x[5];
  setup();
  init(x, 5);
  x[0].rearm = 3;       /* re-arms itself for the same 'now' */
  x[0].arm = &x[1].tm;  /* and arms 1 for 'now' */
  x[2].stop = &x[3].tm; /* stops 3, which is due too */
  gl_timer_start(&hub, &x[0].tm, 100, on_fire);
  gl_timer_start(&hub, &x[2].tm, 100, on_fire);
  gl_timer_start(&hub, &x[3].tm, 100, on_fire);
  gl_timer_start(&hub, &x[4].tm, 101, on_fire);
  CHECK_EQ(gl_timer_expire(&hub, 99), 0);
  CHECK_EQ(nfired, 0);
  CHECK_EQ(gl_timer_expire(&hub, 100), 2);
  CHECK_EQ(nfired, 2);
  CHECK_EQ(fired[0], 0);
  CHECK_EQ(fired[1], 2);
  CHECK_EQ(x[3].tm.idx, 0); /* stopped, never fired */
  CHECK(x[0].tm.idx != 0 && x[1].tm.idx != 0 && x[4].tm.idx != 0);
  CHECK(heap_ok());
  /* the next expiry fires what the callbacks armed, in arming order */
  CHECK_EQ(gl_timer_expire(&hub, 100), 2);
  CHECK_EQ(fired[2], 0);
  CHECK_EQ(fired[3], 1);
  CHECK_EQ(gl_timer_expire(&hub, 100), 1); /* 0 once more per expiry */
  CHECK_EQ(x[0].rearm, 0);
  CHECK_EQ(gl_timer_expire(&hub, 100), 1); /* its last firing */
  CHECK_EQ(gl_timer_expire(&hub, 100), 0);
  CHECK_EQ(nfired, 6);
  CHECK_EQ(hub.nheap, 1); /* 4, due later */
  CHECK_EQ(gl_timer_expire(&hub, 101), 1);
  CHECK_EQ(fired[nfired - 1], 4);
  teardown();
}


/* The heap cannot grow: UV_ENOMEM, the timer left disarmed, the heap
   intact; a re-arm in a full heap needs no memory. */
static void test_enomem(void) {
  enum { N = 64 }; /* the heap's first capacity */
  static tt x[N + 2];
  int i, before_reallocs;
  setup();
  init(x, N + 2);
  fail_realloc = 1; /* the very first allocation */
  CHECK_EQ(gl_timer_start(&hub, &x[0].tm, 1, on_fire), UV_ENOMEM);
  CHECK_EQ(x[0].tm.idx, 0);
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(gl_timer_next(&hub), UINT64_MAX);
  for (i = 0; i < N; i++)
    CHECK_EQ(gl_timer_start(&hub, &x[i].tm, 1000 - i, on_fire), 0);
  CHECK_EQ(hub.capheap, N);
  before_reallocs = reallocs;
  fail_realloc = 1;
  CHECK_EQ(gl_timer_start(&hub, &x[N].tm, 1, on_fire), UV_ENOMEM);
  CHECK_EQ(reallocs, before_reallocs + 1);
  CHECK_EQ(x[N].tm.idx, 0);
  CHECK_EQ(hub.nheap, N);
  CHECK(heap_ok());
  /* re-arming an armed timer of a full heap: no allocation, no failure */
  fail_realloc = 1;
  CHECK_EQ(gl_timer_start(&hub, &x[5].tm, 2, on_fire), 0);
  CHECK_EQ(reallocs, before_reallocs + 1);
  fail_realloc = 0;
  CHECK_EQ(gl_timer_next(&hub), 2);
  CHECK_EQ(gl_timer_start(&hub, &x[N + 1].tm, 3, on_fire), 0);
  CHECK_EQ(hub.nheap, N + 1);
  CHECK(heap_ok());
  CHECK_EQ(gl_timer_expire(&hub, 2000), N + 1);
  CHECK_EQ(fired[0], 5);
  CHECK_EQ(fired[1], N + 1);
  for (i = 0; i < nfired; i++)
    CHECK(fired[i] != N); /* the one that failed never fires */
  teardown();
}


int main(void) {
  RUN(test_order);
  RUN(test_fifo_equal);
  RUN(test_seq_wraps);
  RUN(test_stop_middle);
  RUN(test_stop_sift_up);
  RUN(test_rearm);
  RUN(test_expire_at_entry);
  RUN(test_enomem);
  return check_done();
}
