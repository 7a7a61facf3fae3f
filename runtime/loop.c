/*
** The loop: one pass over the run queue resumes the threads that were
** ready when the pass began (threads readied during the pass wait for the
** next one), then polls I/O without blocking and fires due timers. So
** 'sleep(0)' lets every other ready thread and every ready socket in, and
** a thread that keeps yielding cannot starve the poller. The hub blocks
** in the poller only when nothing is ready.
**
** The runtime's only Lua calls are here: resuming a green thread's
** coroutine, and the marks in a coroutine's extra space.
*/
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "gl.h"


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
/*
** A free slot of 'bases' holds the next free slot + 1 (0: none), shifted
** left and tagged with 1: a thread pointer is never odd, so the free list
** costs no memory of its own.
*/
#define FREE_SLOT(next1) ((gl_thread_t *)(((uintptr_t)(next1) << 1) | 1))
#define IS_FREE(p) (((uintptr_t)(p)&1) != 0)
#define NEXT_FREE(p) ((unsigned)((uintptr_t)(p) >> 1))


int gl_base_attach(gl_hub_t *hub, gl_thread_t *t) {
  unsigned slot;
  if (hub->freehead != 0) {
    slot = hub->freehead - 1;
    hub->freehead = NEXT_FREE(hub->bases[slot]);
  } else {
    if (hub->nbases == hub->capbases) {
      unsigned cap = hub->capbases ? hub->capbases * 2 : 256;
      gl_thread_t **b = realloc(hub->bases, cap * sizeof(*b));
      if (b == NULL)
        return UV_ENOMEM;
      hub->bases = b;
      hub->capbases = cap;
    }
    slot = hub->nbases++;
  }
  hub->bases[slot] = t;
  t->slot = slot + 1;
  gl_mark_set(t->L, t->slot);
  return 0;
}


/* The slot + 1 the next 'gl_base_attach' gives. */
unsigned gl_base_next(const gl_hub_t *hub) {
  return hub->freehead != 0 ? hub->freehead : hub->nbases + 1;
}


void gl_base_detach(gl_hub_t *hub, gl_thread_t *t) {
  if (t->slot == 0)
    return;
  gl_unpark(t); /* buried while parked (fork): its C frames go */
  hub->bases[t->slot - 1] = FREE_SLOT(hub->freehead);
  hub->freehead = t->slot;
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
  return !IS_FREE(t) && t->L == co ? t : NULL;
}


/* The live thread in slot 'i' (0-based, below 'nbases'), or NULL. */
gl_thread_t *gl_base_at(gl_hub_t *hub, unsigned i) {
  gl_thread_t *t = hub->bases[i];
  return IS_FREE(t) ? NULL : t;
}

/* }====================================================== */


/*
** {======================================================
** The loop
** =======================================================
*/

/*
** Resume 't' once. This function's frame is the base of the C stack a
** thread parks inside a C-call boundary (cstack.h): a first park lands in
** 'gl_hub_run' (which does the rest of what follows the resume), a later
** one in the 'gl_cs_continue' below. A continued thread whose resume
** returns hands its status to the continuer at 'gl_cs_leave', and the
** continuer goes on from there.
*/
void __attribute__((noinline)) gl_hub_resume(gl_hub_t *hub, lua_State *L,
                                              gl_thread_t *t) {
  lua_State *co = t->L;
  int nargs = t->nargs, nres, status;
  gl_probe *p = &hub->probe;
  uint32_t lag = (uint32_t)hub->loop.time - t->since; /* mod 2^32 ms */
  gl_cseg_t *seg = hub->cs.nparked != 0 ? gl_parked(t) : NULL;
  gl_wait_t *ended = t->ended;
  t->ended = NULL; /* its continuation takes what the wait handed over */
  t->nargs = 0;
  t->state = GL_RUNNING;
  hub->current = t;
  p->switches++;
  if (lag > p->lag_max)
    p->lag_max = lag;
  p->lag_sum += lag;
  p->lag_n++;
  hub->ra.nargs = nargs;
  /* For the watchdog: 'running' before the odd epoch, cleared after the
     even one (it may read them in any order: both are checked). */
  __atomic_store_n(&p->running, co, __ATOMIC_RELAXED);
  __atomic_store_n(&p->epoch, p->epoch + 1, __ATOMIC_RELEASE);
  if (seg == NULL) {
    gl_cs_enter(&hub->cs, GL_CS_BASE());
    status = lua_resume(co, L, nargs, &nres);
    hub->ra.nres = nres;
    gl_cs_leave(&hub->cs, status);
  } else { /* parked inside a C-call boundary: the wait ends there */
    hub->segs[t->slot - 1] = NULL;
    status = gl_cs_continue(&hub->cs, seg);
    nres = hub->ra.nres;
    if (status == UV_ENOMEM) { /* no memory to save the hub's stack */
      hub->segs[t->slot - 1] = seg;
      t->nargs = nargs;
      t->ended = ended;
      status = GL_CS_PARKED;
      t->state = GL_READY;
      gl_ready(t); /* try again on the next pass */
    }
  }
  __atomic_store_n(&p->epoch, p->epoch + 1, __ATOMIC_RELEASE);
  __atomic_store_n(&p->running, NULL, __ATOMIC_RELAXED);
  hub->current = NULL;
  if (status == GL_CS_PARKED) /* by a green primitive: it set the state */
    return;
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
  hub->hooks.death(hub, L, t, status);
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
    uint64_t due;
    if (hub->hooks.blocking != NULL)
      hub->hooks.blocking(hub);
    due = gl_timer_next(hub);
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
    } else if (gl_hub_busy(hub, 0)) {
      uv_run(&hub->loop, UV_RUN_ONCE);
    } else if (!hub->signaled) {
      return 0;
    }
  }
  if (hub->nheap > 0)
    gl_timer_expire(hub, gl_now());
  return 1;
}


/*
** The hub idles: wake the threads blocked in run(), the green threads
** first. The host's main thread only when no green thread was: a green
** thread's run() returning gives it more to do, and the main thread's
** run() (a script's last call) must not return while that is ready to
** run, or it never would. Returns how many were woken.
*/
static int wake_idlers(gl_hub_t *hub) {
  gl_link_t *l, *next;
  int n = 0;
  for (l = hub->idlers.head.next; l != &hub->idlers.head; l = next) {
    gl_wait_t *w = GL_CONTAINER(l, gl_wait_t, link);
    next = l->next;
    if (!(w->thread->flags & GL_F_MAIN) && w->status == GL_W_PENDING) {
      gl_link_remove(l);
      gl_wait_end(w, GL_W_OK);
      n++;
    }
  }
  return n > 0 ? n : gl_waitq_wake_all(&hub->idlers, GL_W_OK);
}


/* Act on a 'gl_hub_signal'. */
static void check_signal(gl_hub_t *hub, lua_State *L) {
  if (hub->signaled) {
    hub->signaled = 0;
    if (hub->hooks.signal != NULL)
      hub->hooks.signal(hub, L);
  }
}


/*
** The loop of 'gl_hub_run'. What must survive a thread parking (which
** lands in gl_hub_run, leaving this frame) is in '*budget', in memory.
*/
static int __attribute__((noinline)) run_loop(gl_hub_t *hub, lua_State *L,
                                              gl_thread_t *until,
                                              size_t *budget) {
  for (;;) {
    gl_thread_t *t;
    if (*budget == 0) { /* end of a pass: let I/O and timers in */
      check_signal(hub, L);
      poll_io(hub, 0);
      *budget = hub->nready;
      hub->probe.turns++;
    }
    t = gl_next_ready(hub);
    if (t != NULL) {
      (*budget)--;
      if (t == until) {
        t->state = GL_RUNNING;
        t->ended = NULL;
        return 0;
      }
      gl_hub_resume(hub, L, t);
      continue;
    }
    *budget = 0;
    check_signal(hub, L);
    if (hub->nready > 0)
      continue;
    if (!poll_io(hub, 1) && !wake_idlers(hub))
      return until != NULL ? GL_EDEADLK : 0;
  }
}


int gl_hub_run(gl_hub_t *hub, lua_State *L, gl_thread_t *until) {
  gl_thread_t *saved = hub->current;
  lua_State *savedL = hub->L;
  /* Threads left in this pass. The host's main thread that queued itself
     (its sleep(0)) starts a pass of its own, which ends when its turn
     comes: I/O and timers come first, or a main thread looping on
     sleep(0) would never let them in (no Timeout, no sleeper's wake). */
  size_t budget =
      until != NULL && until->state == GL_READY ? 0 : hub->nready;
  jmp_buf land, *outer = hub->cs.land;
  int r;
  if (hub->depth++ == 0) { /* the host's thread stops running Lua */
    __atomic_store_n(&hub->probe.epoch, hub->probe.epoch + 1,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hub->probe.running, NULL, __ATOMIC_RELAXED);
  }
  hub->L = L;
  hub->current = NULL;
  /* A thread parking inside a C-call boundary for the first time lands
     here, out of its gl_hub_resume: finish that resume as a hub yield. */
  hub->cs.land = &land;
  if (_setjmp(land) != 0) {
    __atomic_store_n(&hub->probe.epoch, hub->probe.epoch + 1,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&hub->probe.running, NULL, __ATOMIC_RELAXED);
    hub->current = NULL;
  }
  r = run_loop(hub, L, until, &budget);
  hub->cs.land = outer;
  if (--hub->depth == 0) { /* the host's thread runs Lua again */
    __atomic_store_n(&hub->probe.running, L, __ATOMIC_RELAXED);
    __atomic_store_n(&hub->probe.epoch, hub->probe.epoch + 1,
                     __ATOMIC_RELEASE);
  }
  hub->L = savedL;
  hub->current = saved;
  return r;
}


/* Poll, then run one pass (as the main thread's sleep(0) does). */
int gl_hub_pass(gl_hub_t *hub, lua_State *L) {
  gl_thread_t *self = hub->current;
  self->state = GL_READY;
  gl_ready(self);
  return gl_hub_run(hub, L, self);
}

/* }====================================================== */
