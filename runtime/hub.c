/*
** The hub: the run queue, the loop, and the states of green threads.
**
** One pass over the run queue resumes the threads that were ready when
** the pass began (threads readied during the pass wait for the next one),
** then polls I/O without blocking and fires due timers. So 'sleep(0)'
** lets every other ready thread and every ready socket in, and a thread
** that keeps yielding cannot starve the poller. The hub blocks in the
** poller only when nothing is ready.
*/
#include <stdlib.h>
#include <string.h>

#include "gl.h"


void (*gl_on_death)(gl_hub_t *hub, lua_State *L, gl_thread_t *t,
                    int status) = NULL;
void (*gl_on_interrupt)(gl_hub_t *hub, lua_State *L) = NULL;


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
  gl_link_init(&t->timeouts);
  t->id = 0;
  t->state = GL_NEW;
  t->flags = 0;
  t->nargs = 0;
  t->anchor = -2; /* LUA_NOREF */
  t->nres = 0;
  t->line = -1;
  t->slot = 0;
}


/* Put 't' at the tail of the run queue. */
void gl_ready(gl_thread_t *t) {
  gl_hub_t *hub = t->hub;
  t->next = NULL;
  if (hub->tail != NULL)
    hub->tail->next = t;
  else
    hub->head = t;
  hub->tail = t;
  hub->nready++;
}


static gl_thread_t *pop(gl_hub_t *hub) {
  gl_thread_t *t = hub->head;
  if (t != NULL) {
    hub->head = t->next;
    if (hub->head == NULL)
      hub->tail = NULL;
    hub->nready--;
    t->next = NULL;
  }
  return t;
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
** Coroutine marks
** =======================================================
*/

void gl_mark_set(lua_State *co, uintptr_t mark) {
  memcpy(lua_getextraspace(co), &mark, sizeof(mark));
}


uintptr_t gl_mark_get(lua_State *co) {
  uintptr_t mark;
  memcpy(&mark, lua_getextraspace(co), sizeof(mark));
  return mark;
}


/* Give 't' (whose coroutine is 't->L') a slot and mark its coroutine. */
int gl_base_attach(gl_hub_t *hub, gl_thread_t *t) {
  unsigned slot;
  if (hub->nfree > 0) {
    slot = hub->freebases[--hub->nfree];
  } else {
    if (hub->nbases == hub->capbases) {
      unsigned cap = hub->capbases ? hub->capbases * 2 : 256;
      gl_thread_t **b = realloc(hub->bases, cap * sizeof(*b));
      unsigned *f;
      if (b == NULL)
        return UV_ENOMEM;
      hub->bases = b;
      f = realloc(hub->freebases, cap * sizeof(*f));
      if (f == NULL)
        return UV_ENOMEM;
      hub->freebases = f;
      hub->capbases = cap;
    }
    slot = hub->nbases++;
  }
  hub->bases[slot] = t;
  t->slot = slot + 1;
  gl_mark_set(t->L, t->slot);
  return 0;
}


void gl_base_detach(gl_hub_t *hub, gl_thread_t *t) {
  if (t->slot == 0)
    return;
  hub->bases[t->slot - 1] = NULL;
  hub->freebases[hub->nfree++] = t->slot - 1;
  if (t->L != NULL)
    gl_mark_set(t->L, 0);
  t->slot = 0;
}


gl_thread_t *gl_base_of(gl_hub_t *hub, lua_State *co) {
  uintptr_t mark = gl_mark_get(co);
  gl_thread_t *t;
  if (mark == 0 || mark > hub->nbases)
    return NULL;
  t = hub->bases[mark - 1];
  return t != NULL && t->L == co ? t : NULL;
}

/* }====================================================== */


/*
** {======================================================
** The loop
** =======================================================
*/

int gl_hub_init(gl_hub_t *hub) {
  int r = uv_loop_init(&hub->loop);
  if (r < 0)
    return r;
  r = uv_timer_init(&hub->loop, &hub->timer);
  if (r < 0) {
    uv_loop_close(&hub->loop);
    return r;
  }
  /* The hub's timer keeps the loop alive only while the hub blocks. */
  uv_unref((uv_handle_t *)&hub->timer);
  hub->head = hub->tail = NULL;
  hub->nready = 0;
  hub->current = NULL;
  hub->main = NULL;
  hub->L = NULL;
  hub->heap = NULL;
  hub->nheap = hub->capheap = 0;
  hub->seq = 0;
  hub->lastid = 0;
  hub->nalive = 0;
  gl_waitq_init(&hub->idlers);
  hub->hubyield = 0;
  memset(hub->whats, 0, sizeof(hub->whats));
  hub->whathits = 0;
  hub->depth = 0;
  hub->boundary_depth = 0;
  hub->boundary_L = NULL;
  hub->bases = NULL;
  hub->nbases = hub->capbases = 0;
  hub->freebases = NULL;
  hub->nfree = 0;
  hub->interrupt = 0;
  hub->interrupt_target = NULL;
  return 0;
}


static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL); /* owners free their memory in their own __gc */
}


/* Close every handle still open, run their callbacks, close the loop. */
void gl_hub_close(gl_hub_t *hub) {
  uv_walk(&hub->loop, close_any, NULL);
  uv_run(&hub->loop, UV_RUN_DEFAULT);
  uv_loop_close(&hub->loop);
  free(hub->heap);
  hub->heap = NULL;
  hub->nheap = hub->capheap = 0;
  free(hub->bases);
  free(hub->freebases);
  hub->bases = NULL;
  hub->freebases = NULL;
  hub->nbases = hub->capbases = hub->nfree = 0;
}


uint64_t gl_now(void) {
  return uv_hrtime();
}


void gl_hub_resume(gl_hub_t *hub, lua_State *L, gl_thread_t *t) {
  lua_State *co = t->L;
  int nargs = t->nargs, nres, status;
  t->nargs = 0;
  t->state = GL_RUNNING;
  hub->current = t;
  status = lua_resume(co, L, nargs, &nres);
  hub->current = NULL;
  if (status == LUA_YIELD) {
    if (hub->hubyield) { /* a green primitive: it set the state */
      hub->hubyield = 0;
      return;
    }
    /* A yield that did not come through a green primitive (a library
       that cached the stock coroutine.yield): treat it as sleep(0). */
    lua_pop(co, nres);
    if (t->state == GL_RUNNING) {
      t->state = GL_READY;
      gl_ready(t);
    }
    return;
  }
  gl_on_death(hub, L, t, status);
}


/*
** The hub's timer only has to end the poll. libuv runs due timers before
** it computes the poll timeout: if the millisecond this timer was armed
** for ticks over between 'uv_update_time' and 'uv_run''s own update, the
** timer fires there, before the poll, and nothing else is armed; with a
** socket open the poll would then block forever with sleeps pending.
** 'uv_stop' makes that poll's timeout 0 (uv_backend_timeout), wherever
** in the iteration the timer fires.
*/
static void deadline_cb(uv_timer_t *h) {
  uv_stop(h->loop);
}


int gl_hub_idle(gl_hub_t *hub) {
  return hub->nready == 0 && hub->nheap == 0 && !uv_loop_alive(&hub->loop);
}


/*
** Poll I/O and fire due timers. Without 'block', never waits, and skips
** the poller when no handle is active (so pure switching costs no system
** call). With 'block', waits until a handle is ready or the earliest
** timer is due. Returns 0 if the hub is idle (nothing could ever happen).
*/
static int poll_io(gl_hub_t *hub, int block) {
  if (!block) {
    if (uv_loop_alive(&hub->loop))
      uv_run(&hub->loop, UV_RUN_NOWAIT);
  } else {
    uint64_t due = gl_timer_next(hub);
    if (due != UINT64_MAX) {
      uint64_t now = gl_now();
      if (due > now) {
        /* Round up: a deadline 0.3 ms away waits 1 ms, never spins. */
        uint64_t ms = (due - now + 999999) / 1000000;
        uv_update_time(&hub->loop);
        uv_timer_start(&hub->timer, deadline_cb, ms, 0);
        uv_ref((uv_handle_t *)&hub->timer);
        uv_run(&hub->loop, UV_RUN_ONCE);
        uv_unref((uv_handle_t *)&hub->timer);
        uv_timer_stop(&hub->timer);
      }
    } else if (uv_loop_alive(&hub->loop)) {
      uv_run(&hub->loop, UV_RUN_ONCE);
    } else if (!hub->interrupt) {
      return 0;
    }
  }
  if (hub->nheap > 0)
    gl_timer_expire(hub, gl_now());
  return 1;
}


/* Wake every thread blocked in run() until the hub idles. */
static int wake_idlers(gl_hub_t *hub) {
  return gl_waitq_wake_all(&hub->idlers, GL_W_OK);
}


static void check_interrupt(gl_hub_t *hub, lua_State *L) {
  if (hub->interrupt && gl_on_interrupt != NULL)
    gl_on_interrupt(hub, L);
}


int gl_hub_run(gl_hub_t *hub, lua_State *L, gl_thread_t *until) {
  gl_thread_t *saved = hub->current;
  lua_State *savedL = hub->L;
  size_t budget = hub->nready; /* threads left in this pass */
  int r = 0;
  hub->depth++;
  hub->L = L;
  hub->current = NULL;
  for (;;) {
    gl_thread_t *t;
    if (budget == 0) { /* end of a pass: let I/O and timers in */
      check_interrupt(hub, L);
      poll_io(hub, 0);
      budget = hub->nready;
    }
    t = pop(hub);
    if (t != NULL) {
      budget--;
      if (t == until) {
        t->state = GL_RUNNING;
        break;
      }
      gl_hub_resume(hub, L, t);
      continue;
    }
    budget = 0;
    check_interrupt(hub, L);
    if (hub->nready > 0)
      continue;
    if (!poll_io(hub, 1) && !wake_idlers(hub)) {
      r = until != NULL ? GL_EDEADLK : 0;
      break;
    }
  }
  hub->depth--;
  hub->L = savedL;
  hub->current = saved;
  return r;
}


/* Run one pass (the main thread's sleep(0)). */
int gl_hub_pass(gl_hub_t *hub, lua_State *L) {
  gl_thread_t *self = hub->current;
  self->state = GL_READY;
  gl_ready(self);
  return gl_hub_run(hub, L, self);
}

/* }====================================================== */
