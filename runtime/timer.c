/*
** The hub's timers: one binary min-heap of deadlines, keyed by (due, seq).
**
** Why not one uv_timer_t per sleeping thread: a uv_timer_t is ~150 bytes
** and must be closed through the loop before its memory is freed, which
** ties a thread's record to a close callback. A gl_timer_t is 32 bytes,
** embedded in the thread or Timeout record, and stopping it is immediate.
** The hub arms one uv_timer_t at the earliest deadline only when it is
** about to block in the poller.
*/
#include <stdlib.h>

#include "gl.h"


static int before(const gl_timer_t *a, const gl_timer_t *b) {
  /* seq wraps after 2^32 timers: compared as a serial number (RFC 1982),
     right while equal deadlines were armed within 2^31 of each other */
  return a->due < b->due ||
         (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}


static void place(gl_hub_t *hub, gl_timer_t *tm, unsigned i) {
  hub->heap[i] = tm;
  tm->idx = i + 1;
}


/* Publish the earliest deadline for the watchdog (see gl_probe). */
static void publish(gl_hub_t *hub) {
  uint64_t due = hub->nheap > 0 ? hub->heap[0]->due : UINT64_MAX;
  __atomic_store_n(&hub->probe.next_due, due, __ATOMIC_RELAXED);
}


static void sift_up(gl_hub_t *hub, unsigned i) {
  gl_timer_t *tm = hub->heap[i];
  while (i > 0) {
    unsigned parent = (i - 1) / 2;
    if (!before(tm, hub->heap[parent]))
      break;
    place(hub, hub->heap[parent], i);
    i = parent;
  }
  place(hub, tm, i);
}


static void sift_down(gl_hub_t *hub, unsigned i) {
  gl_timer_t *tm = hub->heap[i];
  unsigned n = hub->nheap;
  for (;;) {
    unsigned c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && before(hub->heap[c + 1], hub->heap[c]))
      c++;
    if (!before(hub->heap[c], tm))
      break;
    place(hub, hub->heap[c], i);
    i = c;
  }
  place(hub, tm, i);
}


/*
** Arm 'tm' to fire at 'due' (uv_hrtime nanoseconds). A timer already armed
** is moved. Returns UV_ENOMEM, leaving 'tm' disarmed, if the heap cannot
** grow.
*/
int gl_timer_start(gl_hub_t *hub, gl_timer_t *tm, uint64_t due,
                   gl_timer_cb cb) {
  if (tm->idx != 0)
    gl_timer_stop(hub, tm);
  tm->due = due;
  tm->seq = hub->seq++;
  tm->cb = cb;
  if (hub->nheap == hub->capheap) {
    unsigned cap = hub->capheap ? hub->capheap * 2 : 64;
    gl_timer_t **h = realloc(hub->heap, cap * sizeof(*h));
    if (h == NULL)
      return UV_ENOMEM;
    hub->heap = h;
    hub->capheap = cap;
  }
  place(hub, tm, hub->nheap++);
  sift_up(hub, hub->nheap - 1);
  if (tm->idx == 1)
    publish(hub);
  return 0;
}


/* Disarm 'tm'; harmless if it is not armed. */
void gl_timer_stop(gl_hub_t *hub, gl_timer_t *tm) {
  unsigned i;
  gl_timer_t *last;
  if (tm->idx == 0)
    return;
  i = tm->idx - 1;
  tm->idx = 0;
  last = hub->heap[--hub->nheap];
  if (i != hub->nheap) {
    place(hub, last, i);
    if (i > 0 && before(last, hub->heap[(i - 1) / 2]))
      sift_up(hub, i);
    else
      sift_down(hub, i);
  }
  if (i == 0)
    publish(hub);
}


/*
** Fire every timer due at 'now'. A callback may arm or stop timers; only
** timers that were due when this call started fire in it, so a callback
** that re-arms for 'now' cannot loop forever. Returns how many fired.
*/
int gl_timer_expire(gl_hub_t *hub, uint64_t now) {
  int n = 0;
  uint32_t limit = hub->seq;
  while (hub->nheap > 0) {
    gl_timer_t *tm = hub->heap[0];
    if (tm->due > now || (int32_t)(tm->seq - limit) >= 0) /* armed since */
      break;
    gl_timer_stop(hub, tm);
    tm->cb(tm);
    n++;
  }
  return n;
}


uint64_t gl_timer_next(const gl_hub_t *hub) {
  return hub->nheap > 0 ? hub->heap[0]->due : UINT64_MAX;
}
