/*
** Wait records and wait queues: the one way a green thread blocks.
**
** A blocking primitive starts a wait ('gl_wait_start') on the calling
** thread, optionally puts it in a wait queue and arms a deadline, then
** yields. Exactly one of three things ends it:
**
**   - its waker calls 'gl_wait_end' (or 'gl_waitq_wake'): the outcome is
**     what the waker says (GL_W_OK, or a negative UV_E* code);
**   - its deadline passes: the wait's 'cancel' undoes the operation, the
**     outcome is GL_W_TIMEOUT;
**   - a kill or a green.Timeout interrupts the thread ('gl_interrupt' in
**     hub.c): 'cancel' undoes the operation, the outcome is GL_W_CANCELED
**     and the continuation raises.
**
** Whichever comes first, the deadline is stopped and the thread goes on
** the run queue (a timed-out or interrupted wait also leaves its queue);
** the others then find the wait over and do nothing. 'cancel' receives
** the wait itself, so a primitive whose record embeds a gl_wait_t finds
** its own state with GL_CONTAINER. No Lua code runs here.
*/
#include "gl.h"


void gl_wait_init(gl_wait_t *w) {
  w->thread = NULL;
  w->cancel = NULL;
  w->data = NULL;
  w->what = NULL;
  gl_link_init(&w->link);
  w->timer.idx = 0;
  w->status = GL_W_OK;
  w->final = 0;
  w->drop = NULL;
}


/*
** Suspend 't' in 'w' ('t' is running; the caller yields next). 'what' names
** the wait in messages and must outlive it; 'cancel' (may be NULL) undoes
** the pending operation on timeout or interrupt; 'data' is the object
** waited on, for 'cancel'.
*/
void gl_wait_start(gl_thread_t *t, gl_wait_t *w, const char *what,
                   gl_wait_cb cancel, void *data) {
  w->thread = t;
  w->cancel = cancel;
  w->data = data;
  w->what = what;
  w->status = GL_W_PENDING;
  w->final = 0;
  w->drop = NULL;
  t->wait = w;
  t->state = GL_SUSPENDED;
  t->since = (uint32_t)t->hub->loop.time; /* uv_now() without the call */
}


/* Stop the deadline, record the outcome, queue the thread. */
static void finish(gl_wait_t *w, int status) {
  gl_thread_t *t = w->thread;
  if (w->timer.idx != 0)
    gl_timer_stop(t->hub, &w->timer);
  w->status = status;
  t->ended = w->drop != NULL ? w : NULL;
  t->flags &= ~GL_F_LUAWAIT;
  t->state = GL_READY;
  gl_ready(t);
}


/*
** End the pending wait 'w' with 'status' (GL_W_OK or a negative code) and
** queue its thread. Never runs Lua code and never resumes. Returns 0,
** changing nothing, if 'w' is not pending (already ended or canceled).
** A wait in a queue stays there: the waker decides (a socket's first
** reader keeps its place until its read is complete); 'gl_waitq_wake'
** takes it out.
*/
int gl_wait_end(gl_wait_t *w, int status) {
  if (w->status != GL_W_PENDING)
    return 0;
  finish(w, status);
  return 1;
}


/*
** Undo the pending wait 'w' (its 'cancel', then the runtime's part) and end
** it with 'status', queueing its thread. For the hub (timeouts, interrupts)
** and for a host thread that gives up a wait. Returns 0 if 'w' was not
** pending.
*/
int gl_wait_cancel(gl_wait_t *w, int status) {
  if (w->status != GL_W_PENDING)
    return 0;
  if (w->cancel != NULL)
    w->cancel(w); /* before leaving the queue: it may hand its place on */
  gl_link_remove(&w->link);
  finish(w, status);
  return 1;
}


/*
** Give up the pending wait 'w' of a thread that is running again without
** the hub (the host's main thread, when nothing is left to wake it): undo
** it as a cancel does, but do not queue the thread.
*/
void gl_wait_abandon(gl_wait_t *w, int status) {
  if (w->status != GL_W_PENDING)
    return;
  if (w->cancel != NULL)
    w->cancel(w);
  gl_link_remove(&w->link);
  if (w->timer.idx != 0)
    gl_timer_stop(w->thread->hub, &w->timer);
  w->status = status;
  w->thread->flags &= ~GL_F_LUAWAIT;
}


static void on_deadline(gl_timer_t *tm) {
  gl_wait_cancel(GL_CONTAINER(tm, gl_wait_t, timer), GL_W_TIMEOUT);
}


/*
** Arm the deadline of pending wait 'w' at 'due' (gl_now() nanoseconds):
** then the wait is canceled with GL_W_TIMEOUT. Returns 0, or UV_ENOMEM
** (the wait is left without a deadline).
*/
int gl_wait_deadline(gl_wait_t *w, uint64_t due) {
  return gl_timer_start(w->thread->hub, &w->timer, due, on_deadline);
}


/*
** {======================================================
** Wait queues (FIFO)
** =======================================================
*/

void gl_waitq_init(gl_waitq_t *q) {
  gl_link_init(&q->head);
}


int gl_waitq_empty(const gl_waitq_t *q) {
  return gl_link_empty(&q->head);
}


/* Append pending wait 'w'; it leaves the queue when it ends. */
void gl_waitq_push(gl_waitq_t *q, gl_wait_t *w) {
  gl_link_push(&q->head, &w->link);
}


/* The longest waiter, or NULL. */
gl_wait_t *gl_waitq_first(const gl_waitq_t *q) {
  if (gl_link_empty(&q->head))
    return NULL;
  return GL_CONTAINER(q->head.next, gl_wait_t, link);
}


/*
** Take the longest pending wait out of 'q', end it with 'status' and
** return it (the caller may then hand it something), or NULL if no wait
** of 'q' is pending. A wait that its waker ended with 'gl_wait_end' but
** left in the queue (a socket's first reader keeps its place while it
** runs) stays where it is.
*/
gl_wait_t *gl_waitq_wake(gl_waitq_t *q, int status) {
  gl_link_t *l;
  for (l = q->head.next; l != &q->head; l = l->next) {
    gl_wait_t *w = GL_CONTAINER(l, gl_wait_t, link);
    if (w->status == GL_W_PENDING) {
      gl_link_remove(&w->link);
      finish(w, status);
      return w;
    }
  }
  return NULL;
}


/* End every wait of 'q' with 'status', in FIFO order; how many. */
int gl_waitq_wake_all(gl_waitq_t *q, int status) {
  int n = 0;
  while (gl_waitq_wake(q, status) != NULL)
    n++;
  return n;
}

/* }====================================================== */
