/*
** The hub's state: lists, the run queue and the states of green threads,
** the hub's creation and destruction, and signals. No Lua here: the loop
** that resumes coroutines is loop.c.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gl.h"


/*
** {======================================================
** Lists
** =======================================================
*/

void gl_link_init(gl_link_t *l) {
  l->prev = l->next = l;
}


void gl_link_push(gl_link_t *head, gl_link_t *node) {
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}


void gl_link_remove(gl_link_t *node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node->next = node;
}


int gl_link_empty(const gl_link_t *head) {
  return head->next == head;
}

/* }====================================================== */


/*
** {======================================================
** Thread states
** =======================================================
*/

void gl_thread_init(gl_thread_t *t, gl_hub_t *hub) {
  t->hub = hub;
  t->L = NULL;
  t->next = NULL;
  t->wait = NULL;
  gl_wait_init(&t->w);
  t->w.thread = t;
  gl_waitq_init(&t->waiters);
  t->timeouts = NULL;
  t->ended = NULL;
  t->id = 0;
  t->state = GL_NEW;
  t->flags = 0;
  t->nargs = 0;
  t->nres = 0;
  t->line = -1;
  t->slot = 0;
  t->restarts = 0;
  t->parking = 0;
}


/* Put 't' at the tail of the run queue. */
void gl_ready(gl_thread_t *t) {
  gl_hub_t *hub = t->hub;
  t->since = (uint32_t)hub->loop.time; /* uv_now() without the call */
  t->next = NULL;
  if (hub->tail != NULL)
    hub->tail->next = t;
  else
    hub->head = t;
  hub->tail = t;
  hub->nready++;
}


/* Take 't' (GL_READY or GL_NEW) off the run queue: a walk, for the rare
   blocking call that queued itself and then could not block. */
void gl_unready(gl_thread_t *t) {
  gl_hub_t *hub = t->hub;
  gl_thread_t *p = NULL, *q;
  for (q = hub->head; q != NULL; p = q, q = q->next) {
    if (q != t)
      continue;
    if (p != NULL)
      p->next = t->next;
    else
      hub->head = t->next;
    if (hub->tail == t)
      hub->tail = p;
    hub->nready--;
    t->next = NULL;
    return;
  }
}


/*
** End the wait of a suspended thread (GL_W_OK) and queue it; 'nargs'
** values are already on its stack (Lua-level wake). Returns 0, changing
** nothing, if 't' is not suspended (already woken, canceled, or dead).
*/
int gl_wake(gl_thread_t *t, int nargs) {
  if (t->state != GL_SUSPENDED || !gl_wait_end(t->wait, GL_W_OK))
    return 0;
  t->nargs = nargs;
  return 1;
}


/*
** Make the blocking call of 't' raise at its next resume: cancel a pending
** wait (GL_W_CANCELED), or override an outcome that was delivered but not
** yet seen (the primitive's continuation then gives back what it was
** handed; values a Lua-level waker left on the stack stay for it). The
** caller has stored the error value and set GL_F_KILLED if sticky. A
** thread that never started is queued so the bindings can finish it
** without running its function. Returns 1 if the thread will see the
** error.
*/
int gl_interrupt(gl_thread_t *t) {
  switch (t->state) {
  case GL_SUSPENDED:
    t->flags |= GL_F_PENDING;
    gl_wait_cancel(t->wait, GL_W_CANCELED);
    return 1;
  case GL_READY:
    t->flags |= GL_F_PENDING;
    return 1;
  case GL_DELAYED:
    gl_timer_stop(t->hub, &t->w.timer);
    t->state = GL_NEW;
    gl_ready(t);
    return 1;
  case GL_NEW:
    return 1;
  default: /* running (raises itself) or dead */
    return 0;
  }
}


/* Wake every thread in wait() on 't', which has just died. */
void gl_finish(gl_thread_t *t) {
  t->state = GL_DEAD;
  gl_waitq_wake_all(&t->waiters, GL_W_OK);
}

/* }====================================================== */


/*
** {======================================================
** Native stacks: threads parked inside C-call boundaries
** =======================================================
*/

/* The slot 't' parks in ('segs' grows with 'bases', only once used). */
static gl_cseg_t **seg_slot(gl_thread_t *t) {
  gl_hub_t *hub = t->hub;
  if (t->slot == 0)
    return NULL;
  if (t->slot > hub->capsegs) {
    unsigned cap = hub->capbases > t->slot ? hub->capbases : t->slot;
    gl_cseg_t **s = realloc(hub->segs, cap * sizeof(*s));
    if (s == NULL)
      return NULL;
    memset(s + hub->capsegs, 0, (cap - hub->capsegs) * sizeof(*s));
    hub->segs = s;
    hub->capsegs = cap;
  }
  return &hub->segs[t->slot - 1];
}


int gl_park(gl_thread_t *t) {
  gl_cseg_t **slot = seg_slot(t);
  if (slot == NULL)
    return t->slot == 0 ? UV_ENOTSUP : UV_ENOMEM;
  return gl_cs_park(&t->hub->cs, slot);
}


gl_cseg_t *gl_parked(gl_thread_t *t) {
  gl_hub_t *hub = t->hub;
  if (hub->cs.nparked == 0 || t->slot == 0 || t->slot > hub->capsegs)
    return NULL;
  return hub->segs[t->slot - 1];
}


void gl_unpark(gl_thread_t *t) {
  gl_cseg_t *seg = gl_parked(t);
  if (seg != NULL) {
    t->hub->segs[t->slot - 1] = NULL;
    gl_cs_drop(&t->hub->cs, seg);
  }
}

/* }====================================================== */


/*
** {======================================================
** Creation, destruction, signals
** =======================================================
*/

/*
** A process started with stdin, stdout or stderr closed (`prog <&-`) gets
** /dev/null there, as node does: else the loop's epoll descriptor (or a
** socket, a child's pipe) takes the number, libuv aborts when it closes
** a descriptor below 3 (uv__close's assertion: every greenlua program
** with stdin closed died at exit), and a child that inherits "stdin"
** would get it.
*/
static void stdio_guard(void) {
  int fd;
  for (fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (n > 2) /* another thread took 'fd' meanwhile */
        close(n);
    }
}


int gl_hub_init(gl_hub_t *hub, const gl_hub_hooks *hooks) {
  int r;
  stdio_guard();
  r = uv_loop_init(&hub->loop);
  if (r < 0)
    return r;
  r = uv_timer_init(&hub->loop, &hub->timer);
  if (r < 0) {
    uv_loop_close(&hub->loop);
    return r;
  }
  /* The hub's timer keeps the loop alive only while the hub blocks. */
  uv_unref((uv_handle_t *)&hub->timer);
  if (hooks != NULL)
    hub->hooks = *hooks;
  else
    memset(&hub->hooks, 0, sizeof(hub->hooks));
  hub->head = hub->tail = NULL;
  hub->nready = 0;
  hub->current = NULL;
  hub->main = NULL;
  hub->L = NULL;
  hub->heap = NULL;
  hub->nheap = hub->capheap = 0;
  hub->seq = 0;
  gl_waitq_init(&hub->idlers);
  memset(&hub->probe, 0, sizeof(hub->probe));
  hub->probe.epoch = 1; /* the host's thread is running */
  hub->probe.next_due = UINT64_MAX;
  hub->hubyield = 0;
  hub->depth = 0;
  hub->signalable = 0;
  hub->signaled = 0;
  hub->bases = NULL;
  hub->nbases = hub->capbases = 0;
  hub->freehead = 0;
  gl_cs_init(&hub->cs);
  hub->segs = NULL;
  hub->capsegs = 0;
  memset(&hub->ra, 0, sizeof(hub->ra));
  return 0;
}


static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL); /* owners free their memory in their own __gc */
}


/*
** Close every handle still open, run their callbacks and the requests'
** (a write is written); then the threads still queued after their wait
** ended never run: each such wait's 'drop' frees what it handed over.
** Close the loop. A request that may never end (a
** read of a FIFO nobody writes, in a worker of libuv's pool) would make
** this wait forever: once only such requests are left, the loop is left
** open for them (1).
*/
int gl_hub_close(gl_hub_t *hub) {
  gl_thread_t *t;
  unsigned i;
  int left;
  hub->signalable = 0;
  uv_walk(&hub->loop, close_any, NULL);
  while (gl_hub_busy(hub, 1))
    uv_run(&hub->loop, UV_RUN_ONCE);
  for (t = hub->head; t != NULL; t = t->next) /* never to run again */
    if (t->ended != NULL) {
      gl_wait_t *w = t->ended;
      t->ended = NULL;
      w->drop(w);
    }
  left = uv_loop_alive(&hub->loop);
  if (!left)
    uv_loop_close(&hub->loop);
  for (i = 0; i < hub->nheap; i++) /* disarmed: a later stop (a Timeout's */
    hub->heap[i]->idx = 0; /* cancel, a kill) must not read the heap */
  free(hub->heap);
  hub->heap = NULL;
  hub->nheap = hub->capheap = 0;
  free(hub->bases);
  hub->bases = NULL;
  for (i = 0; i < hub->capsegs; i++) /* threads parked for good */
    if (hub->segs[i] != NULL)
      gl_cs_drop(&hub->cs, hub->segs[i]);
  free(hub->segs);
  hub->segs = NULL;
  hub->capsegs = 0;
  gl_cs_close(&hub->cs);
  hub->nbases = hub->capbases = hub->freehead = 0;
  return left;
}


uint64_t gl_now(void) {
  return uv_hrtime();
}


int gl_hub_busy(gl_hub_t *hub, int closing) {
  uv_loop_t *loop = &hub->loop;
  unsigned n;
  if (!uv_loop_alive(loop))
    return 0;
  if (hub->hooks.stuck == NULL || loop->active_handles > 0 ||
      loop->closing_handles != NULL || loop->active_reqs.count == 0)
    return 1;
  n = hub->hooks.stuck(hub, closing); /* rare: requests alone keep it */
  return n == 0 || loop->active_reqs.count > n;
}


int gl_hub_idle(gl_hub_t *hub) {
  return hub->nready == 0 && hub->nheap == 0 && !gl_hub_busy(hub, 0);
}


/* The loop checks 'signaled' itself: waking the poller is enough. */
static void on_wakeup(uv_async_t *h) {
  (void)h;
}


int gl_hub_signal_init(gl_hub_t *hub) {
  int r;
  if (hub->signalable)
    return 0;
  r = uv_async_init(&hub->loop, &hub->wakeup, on_wakeup);
  if (r < 0)
    return r;
  uv_unref((uv_handle_t *)&hub->wakeup); /* never keeps the hub alive */
  hub->signalable = 1;
  return 0;
}


/*
** Async-signal-safe: a flag and uv_async_send (a write to an eventfd).
** The loop sees the flag between two resumes and at the end of a pass,
** and does not go idle while it is set.
*/
int gl_hub_signal(gl_hub_t *hub) {
  if (hub->signaled)
    return 1;
  hub->signaled = 1;
  if (hub->signalable)
    uv_async_send(&hub->wakeup);
  return 0;
}

/* }====================================================== */
