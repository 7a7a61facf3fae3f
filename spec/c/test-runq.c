/*
** The run queue and thread states (runtime/hub.c): FIFO order, and what
** gl_interrupt, gl_wake and gl_finish do in each state of a thread.
*/
#include <string.h>

#include "gl.h"

#include "check.h"

static gl_hub_t hub;
static int canceled;             /* calls of on_cancel */
static gl_wait_t *canceled_wait; /* what it received */


static void on_cancel(gl_wait_t *w) {
  canceled++;
  canceled_wait = w;
}


static void on_timer(gl_timer_t *tm) {
  (void)tm;
  CHECK(!"a stopped timer fired");
}


static void setup(gl_thread_t *t, int n) {
  int i;
  CHECK_EQ(gl_hub_init(&hub, NULL), 0);
  for (i = 0; i < n; i++) {
    gl_thread_init(&t[i], &hub);
    t[i].id = i + 1;
    t[i].state = GL_RUNNING;
  }
  canceled = 0;
  canceled_wait = NULL;
}


static void teardown(void) {
  gl_hub_close(&hub);
}


static void test_fifo(void) {
  gl_thread_t t[5];
  int i;
  setup(t, 5);
  CHECK(gl_next_ready(&hub) == NULL);
  for (i = 0; i < 5; i++)
    gl_ready(&t[i]);
  CHECK_EQ(hub.nready, 5);
  CHECK(hub.head == &t[0] && hub.tail == &t[4]);
  for (i = 0; i < 5; i++) {
    CHECK(gl_next_ready(&hub) == &t[i]);
    CHECK(t[i].next == NULL);
  }
  CHECK(gl_next_ready(&hub) == NULL);
  CHECK(hub.head == NULL && hub.tail == NULL);
  CHECK_EQ(hub.nready, 0);
  /* interleaved: a thread readied while others wait goes last */
  gl_ready(&t[0]);
  gl_ready(&t[1]);
  CHECK(gl_next_ready(&hub) == &t[0]);
  gl_ready(&t[2]);
  gl_ready(&t[0]);
  CHECK(gl_next_ready(&hub) == &t[1]);
  CHECK(gl_next_ready(&hub) == &t[2]);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK(gl_next_ready(&hub) == NULL);
  CHECK_EQ(hub.nready, 0);
  teardown();
}


/* Suspended: the wait is undone (its cancel gets the wait), it leaves its
   queue, its deadline stops, and the thread is queued to raise. */
static void test_interrupt_suspended(void) {
  gl_thread_t t[2];
  gl_waitq_t q;
  int data;
  setup(t, 2);
  gl_waitq_init(&q);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, &data);
  gl_waitq_push(&q, &t[0].w);
  CHECK_EQ(gl_wait_deadline(&t[0].w, gl_now() + 1000000000), 0);
  CHECK_EQ(hub.nheap, 1);
  CHECK_EQ(t[0].state, GL_SUSPENDED);
  CHECK_EQ(gl_interrupt(&t[0]), 1);
  CHECK_EQ(canceled, 1);
  CHECK(canceled_wait == &t[0].w);
  CHECK(canceled_wait->data == &data);
  CHECK_EQ(t[0].w.status, GL_W_CANCELED);
  CHECK(t[0].flags & GL_F_PENDING);
  CHECK_EQ(t[0].state, GL_READY);
  CHECK(gl_waitq_empty(&q));
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(hub.nready, 1);
  CHECK(gl_next_ready(&hub) == &t[0]);
  /* a waker arriving afterwards changes nothing */
  CHECK_EQ(gl_wake(&t[0], 0), 0);
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 0);
  CHECK_EQ(t[0].w.status, GL_W_CANCELED);
  CHECK_EQ(hub.nready, 0);
  teardown();
}


/* Ready (its wait already ended): flagged, not queued twice, and the
   outcome delivered stays for the continuation to give back. */
static void test_interrupt_ready(void) {
  gl_thread_t t[1];
  setup(t, 1);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, NULL);
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 1);
  CHECK_EQ(t[0].state, GL_READY);
  CHECK_EQ(hub.nready, 1);
  CHECK_EQ(gl_interrupt(&t[0]), 1);
  CHECK(t[0].flags & GL_F_PENDING);
  CHECK_EQ(canceled, 0);
  CHECK_EQ(t[0].w.status, GL_W_OK);
  CHECK_EQ(hub.nready, 1);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK(gl_next_ready(&hub) == NULL);
  teardown();
}


/* Delayed (spawn_after): its timer stops and it is queued as new, so the
   bindings can finish it without running its function. */
static void test_interrupt_delayed(void) {
  gl_thread_t t[1];
  setup(t, 1);
  t[0].state = GL_DELAYED;
  CHECK_EQ(gl_timer_start(&hub, &t[0].w.timer, 10, on_timer), 0);
  CHECK_EQ(gl_interrupt(&t[0]), 1);
  CHECK_EQ(t[0].w.timer.idx, 0);
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(t[0].state, GL_NEW);
  CHECK_EQ(t[0].flags & GL_F_PENDING, 0);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK_EQ(gl_timer_expire(&hub, 100), 0);
  teardown();
}


/* New (spawned, queued, never run): it will see the error when it starts;
   nothing else changes. */
static void test_interrupt_new(void) {
  gl_thread_t t[1];
  setup(t, 1);
  t[0].state = GL_NEW;
  gl_ready(&t[0]);
  CHECK_EQ(gl_interrupt(&t[0]), 1);
  CHECK_EQ(t[0].state, GL_NEW);
  CHECK_EQ(t[0].flags, 0);
  CHECK_EQ(hub.nready, 1);
  teardown();
}


/* Running (raises by itself) and dead: nothing to do. */
static void test_interrupt_running_dead(void) {
  gl_thread_t t[2];
  setup(t, 2);
  CHECK_EQ(gl_interrupt(&t[0]), 0);
  CHECK_EQ(t[0].state, GL_RUNNING);
  CHECK_EQ(t[0].flags, 0);
  t[1].state = GL_DEAD;
  CHECK_EQ(gl_interrupt(&t[1]), 0);
  CHECK_EQ(t[1].flags, 0);
  CHECK_EQ(hub.nready, 0);
  teardown();
}


/* gl_wake ends a suspended thread's wait once, with its values. */
static void test_wake(void) {
  gl_thread_t t[1];
  setup(t, 1);
  CHECK_EQ(gl_wake(&t[0], 1), 0); /* running: not suspended */
  CHECK_EQ(t[0].nargs, 0);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, NULL);
  t[0].flags |= GL_F_LUAWAIT;
  CHECK_EQ(gl_wake(&t[0], 2), 1);
  CHECK_EQ(t[0].nargs, 2);
  CHECK_EQ(t[0].w.status, GL_W_OK);
  CHECK_EQ(t[0].flags & GL_F_LUAWAIT, 0);
  CHECK_EQ(t[0].state, GL_READY);
  CHECK_EQ(gl_wake(&t[0], 3), 0);
  CHECK_EQ(t[0].nargs, 2);
  CHECK_EQ(hub.nready, 1);
  CHECK_EQ(canceled, 0);
  teardown();
}


/* gl_finish: dead, and every thread in wait() on it queued in order. */
static void test_finish(void) {
  gl_thread_t t[4];
  int i;
  setup(t, 4);
  for (i = 1; i < 4; i++) {
    gl_wait_start(&t[i], &t[i].w, "GreenThread:wait", NULL, NULL);
    gl_waitq_push(&t[0].waiters, &t[i].w);
  }
  gl_finish(&t[0]);
  CHECK_EQ(t[0].state, GL_DEAD);
  CHECK(gl_waitq_empty(&t[0].waiters));
  CHECK_EQ(hub.nready, 3);
  for (i = 1; i < 4; i++) {
    CHECK(gl_next_ready(&hub) == &t[i]);
    CHECK_EQ(t[i].w.status, GL_W_OK);
  }
  teardown();
}


int main(void) {
  RUN(test_fifo);
  RUN(test_interrupt_suspended);
  RUN(test_interrupt_ready);
  RUN(test_interrupt_delayed);
  RUN(test_interrupt_new);
  RUN(test_interrupt_running_dead);
  RUN(test_wake);
  RUN(test_finish);
  return check_done();
}
