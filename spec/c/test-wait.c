/*
** Wait records and wait queues (runtime/wait.c): start, end, cancel,
** abandon, deadlines, FIFO queues, and that a wait ends only once.
*/
#include <string.h>

#include "gl.h"

#include "check.h"

static gl_hub_t hub;
static gl_waitq_t queue;
static int canceled;
static gl_wait_t *canceled_wait;
static int was_queued; /* was the wait still in 'queue' when canceled? */


static void on_cancel(gl_wait_t *w) {
  canceled++;
  canceled_wait = w;
  was_queued = gl_waitq_first(&queue) == w || w->link.next != &w->link;
}


static void setup(gl_thread_t *t, int n) {
  int i;
  CHECK_EQ(gl_hub_init(&hub, NULL), 0);
  gl_waitq_init(&queue);
  for (i = 0; i < n; i++) {
    gl_thread_init(&t[i], &hub);
    t[i].state = GL_RUNNING;
  }
  canceled = was_queued = 0;
  canceled_wait = NULL;
}


static void teardown(void) {
  gl_hub_close(&hub);
}


/* A primitive's record embedding its wait. */
typedef struct op {
  int before;
  gl_wait_t base;
  int after;
} op;


static void test_start_end(void) {
  gl_thread_t t[1];
  int data;
  setup(t, 1);
  gl_wait_start(&t[0], &t[0].w, "test:op", on_cancel, &data);
  CHECK_EQ(t[0].state, GL_SUSPENDED);
  CHECK(t[0].wait == &t[0].w);
  CHECK(t[0].w.thread == &t[0]);
  CHECK_EQ(t[0].w.status, GL_W_PENDING);
  CHECK(strcmp(t[0].w.what, "test:op") == 0);
  CHECK(t[0].w.data == &data);
  CHECK_EQ(t[0].since, uv_now(&hub.loop));
  t[0].flags |= GL_F_LUAWAIT;
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 1);
  CHECK_EQ(t[0].w.status, GL_W_OK);
  CHECK_EQ(t[0].state, GL_READY);
  CHECK_EQ(t[0].flags & GL_F_LUAWAIT, 0);
  CHECK_EQ(hub.nready, 1);
  CHECK_EQ(canceled, 0);
  /* ended twice, or canceled after: no-ops */
  CHECK_EQ(gl_wait_end(&t[0].w, UV_ECONNRESET), 0);
  CHECK_EQ(gl_wait_cancel(&t[0].w, GL_W_CANCELED), 0);
  gl_wait_abandon(&t[0].w, GL_EDEADLK);
  CHECK_EQ(t[0].w.status, GL_W_OK);
  CHECK_EQ(hub.nready, 1);
  CHECK_EQ(canceled, 0);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK(gl_next_ready(&hub) == NULL);
  teardown();
}


/* A primitive's own code is the outcome; the thread is queued once. */
static void test_end_with_code(void) {
  gl_thread_t t[1];
  op o;
  setup(t, 1);
  gl_wait_init(&o.base);
  gl_wait_start(&t[0], &o.base, "test:read", on_cancel, NULL);
  CHECK(t[0].wait == &o.base);
  CHECK_EQ(gl_wait_end(&o.base, UV_ECONNRESET), 1);
  CHECK_EQ(o.base.status, UV_ECONNRESET);
  CHECK_EQ(gl_wait_end(&o.base, GL_W_OK), 0);
  CHECK_EQ(o.base.status, UV_ECONNRESET);
  CHECK_EQ(hub.nready, 1);
  teardown();
}


/* Cancel: the callback gets the wait itself (the primitive finds its
   record from it) while the wait still holds its place in the queue. */
static void test_cancel(void) {
  gl_thread_t t[1];
  op o;
  setup(t, 1);
  gl_wait_init(&o.base);
  gl_wait_start(&t[0], &o.base, "test:op", on_cancel, &o);
  gl_waitq_push(&queue, &o.base);
  CHECK_EQ(gl_wait_cancel(&o.base, GL_W_CANCELED), 1);
  CHECK_EQ(canceled, 1);
  CHECK(canceled_wait == &o.base);
  CHECK(GL_CONTAINER(canceled_wait, op, base) == &o);
  CHECK(was_queued);
  CHECK(gl_waitq_empty(&queue));
  CHECK(o.base.link.next == &o.base.link); /* self-linked: in no queue */
  CHECK_EQ(o.base.status, GL_W_CANCELED);
  CHECK_EQ(t[0].state, GL_READY);
  CHECK_EQ(hub.nready, 1);
  CHECK_EQ(gl_wait_cancel(&o.base, GL_W_CANCELED), 0);
  CHECK_EQ(gl_wait_end(&o.base, GL_W_OK), 0);
  CHECK_EQ(canceled, 1);
  CHECK_EQ(hub.nready, 1);
  /* without a cancel callback */
  (void)gl_next_ready(&hub);
  t[0].state = GL_RUNNING;
  gl_wait_start(&t[0], &t[0].w, "test", NULL, NULL);
  CHECK_EQ(gl_wait_cancel(&t[0].w, GL_W_CANCELED), 1);
  CHECK_EQ(t[0].w.status, GL_W_CANCELED);
  CHECK_EQ(hub.nready, 1);
  teardown();
}


/* Abandon: undone like a cancel, but the thread (running again without
   the hub) is not queued; its deadline stops. */
static void test_abandon(void) {
  gl_thread_t t[1];
  setup(t, 1);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, NULL);
  gl_waitq_push(&queue, &t[0].w);
  CHECK_EQ(gl_wait_deadline(&t[0].w, 500), 0);
  t[0].flags |= GL_F_LUAWAIT;
  gl_wait_abandon(&t[0].w, GL_EDEADLK);
  CHECK_EQ(canceled, 1);
  CHECK(was_queued);
  CHECK(gl_waitq_empty(&queue));
  CHECK_EQ(t[0].w.status, GL_EDEADLK);
  CHECK_EQ(t[0].w.timer.idx, 0);
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(t[0].flags & GL_F_LUAWAIT, 0);
  CHECK_EQ(hub.nready, 0);
  gl_wait_abandon(&t[0].w, GL_W_CANCELED);
  CHECK_EQ(canceled, 1);
  CHECK_EQ(t[0].w.status, GL_EDEADLK);
  CHECK_EQ(gl_timer_expire(&hub, 1000), 0);
  teardown();
}


/* A deadline cancels the wait with GL_W_TIMEOUT when it passes, and stops
   when the wait ends first. */
static void test_deadline(void) {
  gl_thread_t t[2];
  setup(t, 2);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, NULL);
  gl_waitq_push(&queue, &t[0].w);
  CHECK_EQ(gl_wait_deadline(&t[0].w, 100), 0);
  CHECK_EQ(gl_timer_next(&hub), 100);
  CHECK_EQ(gl_timer_expire(&hub, 99), 0);
  CHECK_EQ(t[0].w.status, GL_W_PENDING);
  CHECK_EQ(gl_timer_expire(&hub, 100), 1);
  CHECK_EQ(canceled, 1);
  CHECK(canceled_wait == &t[0].w);
  CHECK(was_queued);
  CHECK_EQ(t[0].w.status, GL_W_TIMEOUT);
  CHECK(gl_waitq_empty(&queue));
  CHECK_EQ(t[0].state, GL_READY);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 0); /* too late */
  /* ended first: the deadline is stopped */
  gl_wait_start(&t[1], &t[1].w, "test", on_cancel, NULL);
  CHECK_EQ(gl_wait_deadline(&t[1].w, 200), 0);
  CHECK_EQ(gl_wait_end(&t[1].w, GL_W_OK), 1);
  CHECK_EQ(t[1].w.timer.idx, 0);
  CHECK_EQ(hub.nheap, 0);
  CHECK_EQ(gl_timer_expire(&hub, 1000), 0);
  CHECK_EQ(t[1].w.status, GL_W_OK);
  CHECK_EQ(canceled, 1);
  /* re-armed deadline: the later one counts */
  t[1].state = GL_RUNNING;
  (void)gl_next_ready(&hub);
  gl_wait_start(&t[1], &t[1].w, "test", on_cancel, NULL);
  CHECK_EQ(gl_wait_deadline(&t[1].w, 300), 0);
  CHECK_EQ(gl_wait_deadline(&t[1].w, 400), 0);
  CHECK_EQ(hub.nheap, 1);
  CHECK_EQ(gl_timer_expire(&hub, 300), 0);
  CHECK_EQ(gl_timer_expire(&hub, 400), 1);
  CHECK_EQ(t[1].w.status, GL_W_TIMEOUT);
  teardown();
}


/* Queues are FIFO; wake pops and ends the longest waiter and returns it;
   wake_all ends them all in order; leaving from the middle keeps the
   order of the others. */
static void test_queue(void) {
  enum { N = 5 };
  gl_thread_t t[N];
  int i;
  setup(t, N);
  CHECK(gl_waitq_empty(&queue));
  CHECK(gl_waitq_first(&queue) == NULL);
  CHECK(gl_waitq_wake(&queue, GL_W_OK) == NULL);
  CHECK_EQ(gl_waitq_wake_all(&queue, GL_W_OK), 0);
  for (i = 0; i < N; i++) {
    gl_wait_start(&t[i], &t[i].w, "test", on_cancel, NULL);
    gl_waitq_push(&queue, &t[i].w);
  }
  CHECK(!gl_waitq_empty(&queue));
  CHECK(gl_waitq_first(&queue) == &t[0].w);
  CHECK(gl_waitq_wake(&queue, 7) == &t[0].w);
  CHECK_EQ(t[0].w.status, 7);
  CHECK(t[0].w.link.next == &t[0].w.link);
  CHECK(gl_waitq_first(&queue) == &t[1].w);
  CHECK_EQ(gl_wait_cancel(&t[2].w, GL_W_CANCELED), 1); /* the middle */
  CHECK_EQ(gl_waitq_wake_all(&queue, GL_W_OK), 3);
  CHECK(gl_waitq_empty(&queue));
  CHECK_EQ(canceled, 1);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK(gl_next_ready(&hub) == &t[2]); /* canceled before the others woke */
  CHECK(gl_next_ready(&hub) == &t[1]);
  CHECK(gl_next_ready(&hub) == &t[3]);
  CHECK(gl_next_ready(&hub) == &t[4]);
  CHECK(gl_next_ready(&hub) == NULL);
  for (i = 1; i < N; i++)
    if (i != 2)
      CHECK_EQ(t[i].w.status, GL_W_OK);
  teardown();
}


/* A waker's gl_wait_end leaves a queued wait in its queue (the waker
   decides: a socket's first reader keeps its place); the wait is over,
   so a later cancel does nothing. */
static void test_end_keeps_place(void) {
  gl_thread_t t[2];
  setup(t, 2);
  gl_wait_start(&t[0], &t[0].w, "test", on_cancel, NULL);
  gl_waitq_push(&queue, &t[0].w);
  gl_wait_start(&t[1], &t[1].w, "test", on_cancel, NULL);
  gl_waitq_push(&queue, &t[1].w);
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 1);
  CHECK(gl_waitq_first(&queue) == &t[0].w);
  CHECK_EQ(gl_wait_cancel(&t[0].w, GL_W_CANCELED), 0);
  CHECK(gl_waitq_first(&queue) == &t[0].w);
  CHECK_EQ(canceled, 0);
  gl_link_remove(&t[0].w.link); /* the waker's part */
  CHECK(gl_waitq_first(&queue) == &t[1].w);
  CHECK_EQ(hub.nready, 1);
  teardown();
}


/* gl_waitq_wake skips a wait that its waker ended but left in the queue:
   it is not ended (nor queued to run) a second time; the next pending
   one is woken, and the ended one keeps its place. */
static void test_wake_skips_ended(void) {
  gl_thread_t t[3];
  int i;
  setup(t, 3);
  for (i = 0; i < 3; i++) {
    gl_wait_start(&t[i], &t[i].w, "test", on_cancel, NULL);
    gl_waitq_push(&queue, &t[i].w);
  }
  CHECK_EQ(gl_wait_end(&t[0].w, 5), 1);
  CHECK(gl_waitq_wake(&queue, GL_W_OK) == &t[1].w);
  CHECK_EQ(t[0].w.status, 5);
  CHECK(gl_waitq_first(&queue) == &t[0].w);
  CHECK_EQ(gl_waitq_wake_all(&queue, GL_W_OK), 1); /* t[2] only */
  CHECK_EQ(hub.nready, 3);
  CHECK(gl_next_ready(&hub) == &t[0]);
  CHECK(gl_next_ready(&hub) == &t[1]);
  CHECK(gl_next_ready(&hub) == &t[2]);
  CHECK(gl_next_ready(&hub) == NULL);
  gl_link_remove(&t[0].w.link);
  teardown();
}


/* What gl_hub_close's drops saw: the waits, in call order. */
static gl_wait_t *dropped[4];
static int ndropped;

static void on_drop(gl_wait_t *w) {
  if (ndropped < 4)
    dropped[ndropped] = w;
  ndropped++;
}


/* The hub's close calls the drop of every queued thread whose wait ended
   (handed over, or canceled), once; not of a wait still pending, nor of
   one without a drop; gl_wait_start clears a drop set before. */
static void test_drop(void) {
  gl_thread_t t[5];
  setup(t, 5);
  ndropped = 0;
  gl_wait_start(&t[0], &t[0].w, "test", NULL, NULL);
  t[0].w.drop = on_drop;
  gl_wait_start(&t[1], &t[1].w, "test", NULL, NULL); /* no drop */
  gl_wait_start(&t[2], &t[2].w, "test", on_cancel, NULL);
  t[2].w.drop = on_drop;
  gl_wait_start(&t[3], &t[3].w, "test", NULL, NULL); /* stays pending */
  t[3].w.drop = on_drop;
  t[4].w.drop = on_drop; /* cleared by the start */
  gl_wait_start(&t[4], &t[4].w, "test", NULL, NULL);
  CHECK(t[4].w.drop == NULL);
  CHECK_EQ(gl_wait_end(&t[0].w, GL_W_OK), 1);
  CHECK(t[0].ended == &t[0].w);
  CHECK_EQ(gl_wait_end(&t[1].w, GL_W_OK), 1);
  CHECK(t[1].ended == NULL);
  CHECK_EQ(gl_wait_cancel(&t[2].w, GL_W_TIMEOUT), 1);
  CHECK(t[2].ended == &t[2].w);
  CHECK_EQ(gl_wait_end(&t[4].w, GL_W_OK), 1);
  CHECK(t[4].ended == NULL);
  CHECK_EQ(ndropped, 0); /* only the close drops */
  teardown();
  CHECK_EQ(ndropped, 2);
  CHECK(dropped[0] == &t[0].w);
  CHECK(dropped[1] == &t[2].w);
  CHECK(t[0].ended == NULL && t[2].ended == NULL);
}


int main(void) {
  RUN(test_start_end);
  RUN(test_end_with_code);
  RUN(test_cancel);
  RUN(test_abandon);
  RUN(test_deadline);
  RUN(test_queue);
  RUN(test_end_keeps_place);
  RUN(test_wake_skips_ended);
  RUN(test_drop);
  return check_done();
}
