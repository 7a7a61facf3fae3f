/*
** greenlua runtime: the hub, green threads and timers.
**
** The runtime schedules Lua coroutines on a libuv loop. It returns 0 or a
** negative UV_E* code and never raises: only bindings/ call lua_error.
** libuv callbacks never run Lua code; they record an outcome and put the
** waiting thread on the run queue ('gl_wake'). The hub resumes threads.
**
** The runtime calls Lua only where it resumes coroutines and marks them
** (resume.c); the run queue, thread states, timers and waits (hub.c,
** timer.c, wait.c) build without Lua's headers. What the runtime needs
** from its host (the bindings) is the per-hub 'gl_hub_hooks'; a host
** keeps its own per-hub state by embedding the gl_hub_t in a record of
** its own and finding that record with GL_CONTAINER.
*/
#ifndef GL_H
#define GL_H

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cstack.h"

/* Lua's state, declared here so that this header needs no lua.h. */
struct lua_State;

#define GL_VERSION "0.1.0"

/* libuv has no UV_EDEADLK; like libuv, a negated errno. */
#define GL_EDEADLK (-EDEADLK)

typedef struct gl_hub gl_hub_t;
typedef struct gl_thread gl_thread_t;
typedef struct gl_timer gl_timer_t;
typedef struct gl_link gl_link_t;
typedef struct gl_wait gl_wait_t;
typedef struct gl_waitq gl_waitq_t;
typedef struct gl_hub_hooks gl_hub_hooks;

/* Undoes the pending operation of wait 'w' when it times out or is
   interrupted (kill, Timeout). Never runs Lua code. */
typedef void (*gl_wait_cb)(gl_wait_t *w);

/* Called by the hub when a timer is due. Never runs Lua code. */
typedef void (*gl_timer_cb)(gl_timer_t *tm);


/* Intrusive doubly linked list node; a list head is a node too. */
struct gl_link {
  gl_link_t *prev;
  gl_link_t *next;
};


/* A deadline in the hub's timer heap. */
struct gl_timer {
  uint64_t due;   /* uv_hrtime() nanoseconds */
  gl_timer_cb cb; /* run by the hub once due */
  uint32_t seq;   /* insertion order (wrapping: compared as a serial
                     number): equal deadlines fire FIFO */
  unsigned idx;   /* position in the heap + 1; 0 when not armed */
};


/* Wait outcomes ('gl_wait.status'); primitives may also end a wait with
   any negative UV_E* code of their own. */
#define GL_W_PENDING  1            /* not over yet */
#define GL_W_OK       0            /* ended by its waker */
#define GL_W_TIMEOUT  UV_ETIMEDOUT /* its deadline passed */
#define GL_W_CANCELED UV_ECANCELED /* a kill or Timeout interrupted it */


/*
** The one pending operation of a suspended green thread (wait.c). Each
** thread has one ('gl_thread.w') for waits that need nothing else; a
** primitive with more state embeds a gl_wait_t in its own record.
*/
struct gl_wait {
  gl_thread_t *thread; /* the thread waiting in it */
  gl_wait_cb cancel;   /* undoes the operation on timeout/interrupt, or NULL */
  void *data;          /* the object waited on, for 'cancel' (or NULL) */
  const char *what;    /* what it waits in ("socket:receive"), for messages */
  gl_link_t link;      /* its place in a wait queue; self-linked in none */
  gl_timer_t timer;    /* its deadline, when armed ('gl_wait_deadline') */
  int status;          /* GL_W_PENDING, then the outcome */
  int final;           /* once ended (GL_W_OK) its outcome cannot be undone
                          (a put whose item was taken): a Timeout due
                          before the thread runs again waits for its next
                          blocking call instead of overriding it. 0 from
                          gl_wait_start; set and cleared by the bindings */
  gl_wait_cb drop;     /* frees what the wait handed over, if its thread
                          never runs again: called by gl_hub_close for a
                          thread still queued after its wait ended (the
                          state closes before the continuation runs).
                          NULL from gl_wait_start; set by the primitive */
};


/* A FIFO of pending waits. */
struct gl_waitq {
  gl_link_t head;
};


/* Thread states. */
enum gl_state {
  GL_NEW,       /* spawned, on the run queue, never resumed */
  GL_DELAYED,   /* spawn_after: waiting for its timer, never resumed */
  GL_READY,     /* on the run queue */
  GL_RUNNING,   /* being resumed by the hub (or the main thread running) */
  GL_SUSPENDED, /* blocked in a wait; 'cancel' undoes it */
  GL_DEAD
};

/* Thread flags. */
#define GL_F_MAIN    0x01 /* the pseudo-thread of the host's main thread */
#define GL_F_KILLED  0x02 /* sticky: every blocking call raises 'kill error' */
#define GL_F_PENDING 0x04 /* an error waits for the blocking call to raise */
#define GL_F_ERROR   0x08 /* died of an error */
#define GL_F_EXIT    0x10 /* died of GreenletExit (killed with the default) */
#define GL_F_LUAWAIT 0x20 /* suspended in core.suspend (woken by core.wake) */
#define GL_F_NOTIFY  0x40 /* its creator observes the outcome (run(fn)) */
#define GL_F_DONE    0x80 /* its function has ended: the outcome is stored */


/*
** The C record of a green thread. It lives inside the GreenThread
** userdata, which the bindings anchor (in their table of live threads, at
** 'slot') while the thread is alive. User values of that userdata: 1 the
** coroutine, 2 the pending error while alive and the result (or error)
** once dead, 3 the spawn site function, 4 an "extras" table (name, links,
** locals, traceback).
*/
struct gl_thread {
  gl_hub_t *hub;
  struct lua_State *L; /* the coroutine; NULL once dead (and for main) */
  union {              /* a thread is on the run queue or suspended */
    gl_thread_t *next; /* run queue link (GL_NEW, GL_READY) */
    gl_wait_t *wait;   /* the wait it is suspended in (GL_SUSPENDED) */
  };
  gl_wait_t w;         /* its own wait record (its timer: spawn_after) */
  gl_waitq_t waiters;  /* threads blocked in wait()/kill() on this one */
  void *timeouts;      /* the bindings' Timeouts armed by this thread */
  gl_wait_t *ended;    /* its ended wait with a 'drop', its continuation
                          yet to run; NULL once the thread runs */
  long long id;        /* 1, 2, ... in spawn order (main is 0); a
                          lua_Integer in Lua's default build */
  uint32_t since;      /* the loop's clock (ms, wrapping) when it was last
                          suspended or put on the run queue */
  unsigned slot;       /* index in the hub's 'bases' + 1; 0 if none */
  int nargs;           /* values on L's stack to pass at the next resume */
  int nres;            /* number of results once dead */
  int line;            /* spawn site line, or -1 */
  uint8_t state;       /* enum gl_state */
  uint8_t flags;       /* GL_F_* */
  uint8_t parking;     /* its blocking call must park its C stack (it is
                          inside a C-call boundary): set by the bindings'
                          lgreen_begin, cleared by lgreen_block */
  uint8_t restarts;    /* new coroutines the bindings gave it: its first
                          resume failed (out of memory) */
};


/*
** What the runtime calls in its host, per hub (set by 'gl_hub_init'). The
** hooks run in the hub context: no green thread is running and 'L' is
** the state running the loop ('hub->L'). They must not raise (not even
** "not enough memory": what may allocate runs under lua_pcall): no
** handler is between them and the loop's frames, which an error would
** skip, leaving the hub half in its loop.
*/
struct gl_hub_hooks {
  /* Thread 't''s coroutine has ended, with lua_resume's 'status': store
     the outcome and 'gl_finish' it. Required once threads run. */
  void (*death)(gl_hub_t *hub, struct lua_State *L, gl_thread_t *t, int status);
  /* 'gl_hub_signal' was called (from a signal handler): act on it now,
     between two resumes. Optional: without it the request is dropped. */
  void (*signal)(gl_hub_t *hub, struct lua_State *L);
  /* The hub is about to block in the poller (nothing is ready): the host
     may change which of its handles keep the loop alive (uv_ref,
     uv_unref) before the hub decides whether it is idle. Optional. */
  void (*blocking)(gl_hub_t *hub);
  /* How many of the loop's active requests may never end and matter to
     nobody: with 'closing' 0, those no thread waits for any more (a read
     of a FIFO whose reader was killed); with 'closing' 1 (the hub is
     closing: no thread will ever run), every one that may never end.
     They keep neither the hub from idling nor its close from ending.
     Optional; the host reads the loop's thread-pool state under its
     'wq_mutex'. */
  unsigned (*stuck)(gl_hub_t *hub, int closing);
};


/*
** The hub: one per Lua state. Every field is the runtime's own: what only
** the bindings need (the registry anchors of threads, the C-call boundary
** counter, suspend()'s description cache, Ctrl-C's target) lives in the
** bindings' record that embeds the hub (bindings/lgreen.h). Two fields
** look like bindings state but are the runtime's protocol with its host:
** 'hubyield' (a yield made by a green primitive, which 'gl_hub_resume'
** must tell from a stray user yield) and 'signaled' (set by
** 'gl_hub_signal' in a signal handler, read by the loop, which must not
** go idle while it is set).
*/
/*
** What the hub publishes as it runs, for the watchdog (bindings/
** watchdog.c, another OS thread, reads these words without locks) and for
** green.debug.stats. Plain stores on the hub's side: no clock is read.
*/
typedef struct gl_probe {
  uint64_t epoch;            /* +1 as a thread starts running (a resume, or
                                the host's main thread leaving the loop),
                                +1 as it stops: odd while one runs */
  struct lua_State *running; /* the innermost coroutine running, or NULL */
  uint64_t next_due;         /* the earliest timer's due, or UINT64_MAX */
  uint64_t switches;         /* resumes */
  uint64_t turns;            /* passes over the run queue */
  uint64_t lag_max;          /* ready-to-running delays (ms), since the */
  uint64_t lag_sum;          /* last reset by green.debug.stats */
  uint64_t lag_n;
} gl_probe;


struct gl_hub {
  uv_loop_t loop;
  uv_timer_t timer;  /* armed at the earliest deadline when blocking */
  uv_async_t wakeup; /* wakes the poller for 'gl_hub_signal' */
  gl_hub_hooks hooks;
  gl_thread_t *head; /* run queue (FIFO) */
  gl_thread_t *tail;
  size_t nready;        /* threads on the run queue */
  gl_thread_t *current; /* running thread, main outside runs, NULL in hub */
  gl_thread_t *main;    /* pseudo-thread of the host's main thread */
  struct lua_State *L;  /* the state that runs the loop (hub context) */
  gl_timer_t **heap;    /* min-heap of armed timers */
  unsigned nheap;
  unsigned capheap;
  uint32_t seq;         /* the next timer's insertion number */
  gl_waitq_t idlers; /* threads blocked in run() until the hub idles */
  gl_probe probe;    /* published for the watchdog and stats */
  int hubyield;      /* the pending yield is a hub yield (not a user's) */
  int depth;         /* nested loop runs (only main may nest) */
  int signalable;    /* 'wakeup' is initialised ('gl_hub_signal_init') */
  volatile sig_atomic_t signaled; /* 'gl_hub_signal' was called */
  gl_thread_t **bases;            /* live threads by slot, to validate marks */
  unsigned nbases;                /* slots in use or freed (high-water mark) */
  unsigned capbases;
  unsigned freehead;   /* first free slot + 1, 0 if none (loop.c) */
  /* Native stacks (cstack.h): threads parked inside C-call boundaries. */
  gl_cstack_t cs;
  gl_cseg_t **segs; /* parked segments by slot (as 'bases'), or NULL */
  unsigned capsegs;
  struct {          /* the resume in progress (stable while it parks) */
    struct lua_State *co, *from;
    int nargs, nres;
  } ra;
};


/* Lists. */
void gl_link_init(gl_link_t *l);
void gl_link_push(gl_link_t *head, gl_link_t *node); /* at the tail */
void gl_link_remove(gl_link_t *node); /* leaves 'node' self-linked */
int gl_link_empty(const gl_link_t *head);

#define GL_CONTAINER(ptr, type, field)                                         \
  ((type *)((char *)(ptr)-offsetof(type, field)))

/* Hub (hub.c). 'hooks' is copied; NULL is no hooks (tests). */
int gl_hub_init(gl_hub_t *hub, const gl_hub_hooks *hooks);
/* Close every handle and run the loop until only requests 'hooks.stuck'
   counts are left; then close the loop and return 0, or return 1 if such
   requests hold it: the loop is left open, its memory must outlive them
   (their workers post to it when they end). */
int gl_hub_close(gl_hub_t *hub);
uint64_t gl_now(void);            /* monotonic nanoseconds */
int gl_hub_idle(gl_hub_t *hub);   /* nothing can run or wake any more */
/* Is the loop alive for more than its stuck requests ('hooks.stuck')? */
int gl_hub_busy(gl_hub_t *hub, int closing);

/*
** Signals: 'gl_hub_signal' is async-signal-safe. It asks the loop to
** clear 'signaled' and call 'hooks.signal' between two resumes, waking
** the poller if it blocks. Returns 1, doing nothing, while an earlier
** request is still pending (a handler may then fall back to the signal's
** default action), else 0. A host that acts on the request before the
** loop does clears 'signaled' itself. 'gl_hub_signal_init' (0 or a UV_E*
** code) must have been called first, outside the handler.
*/
int gl_hub_signal_init(gl_hub_t *hub);
int gl_hub_signal(gl_hub_t *hub);

/* Loop (resume.c, the runtime's Lua side). */

/*
** Run the loop from 'L'. With 'until' set, return 0 as soon as 'until'
** is no longer GL_SUSPENDED, or GL_EDEADLK when nothing is left that could
** wake it. With 'until' NULL, return 0 once the hub is idle (no thread
** ready, no timer, no active handle).
*/
int gl_hub_run(gl_hub_t *hub, struct lua_State *L, gl_thread_t *until);
int gl_hub_pass(gl_hub_t *hub, struct lua_State *L); /* poll, one pass */

/* Resume 't' once (the loop's step; 'hooks.death' when it ends). */
void gl_hub_resume(gl_hub_t *hub, struct lua_State *L, gl_thread_t *t);

/* Threads and the run queue (hub.c). */
void gl_thread_init(gl_thread_t *t, gl_hub_t *hub);
void gl_ready(gl_thread_t *t);          /* push on the run queue */
void gl_unready(gl_thread_t *t);        /* take it off again (O(n)) */
int gl_wake(gl_thread_t *t, int nargs); /* end t's wait (GL_W_OK) */
int gl_interrupt(gl_thread_t *t);       /* cancel wait, set pending */
void gl_finish(gl_thread_t *t);         /* mark dead, wake waiters */

/* Take the first thread off the run queue, or NULL (the loop's hot path:
   inline). */
static inline gl_thread_t *gl_next_ready(gl_hub_t *hub) {
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

/* Waits (wait.c). */
void gl_wait_init(gl_wait_t *w);
void gl_wait_start(gl_thread_t *t, gl_wait_t *w, const char *what,
                   gl_wait_cb cancel, void *data); /* t suspended in w */
int gl_wait_deadline(gl_wait_t *w, uint64_t due);  /* 0 or UV_ENOMEM */
int gl_wait_end(gl_wait_t *w, int status);      /* by its waker; 1 if ended */
int gl_wait_cancel(gl_wait_t *w, int status);   /* undo, end; 1 if ended */
void gl_wait_abandon(gl_wait_t *w, int status); /* undo, thread not queued */
void gl_waitq_init(gl_waitq_t *q);
int gl_waitq_empty(const gl_waitq_t *q);
void gl_waitq_push(gl_waitq_t *q, gl_wait_t *w);
gl_wait_t *gl_waitq_first(const gl_waitq_t *q);
gl_wait_t *gl_waitq_wake(gl_waitq_t *q, int status); /* pop, end; or NULL */
int gl_waitq_wake_all(gl_waitq_t *q, int status);

/*
** Marks in a coroutine's extra space (resume.c; LUA_EXTRASPACE bytes). A
** green thread's coroutine holds its slot + 1; a user coroutine passing a hub
** yield on holds GL_MARK_BLOCKED; one running under the green
** coroutine.resume, which passes a hub yield on, holds GL_MARK_CHAINED;
** others hold 0. Lua 5.4.4 copies the main thread's extra space, which it
** never initialises, into each new coroutine, so a mark is trusted only
** once 'gl_base_of' validated it.
*/
#define GL_MARK_BLOCKED UINTPTR_MAX
#define GL_MARK_CHAINED (UINTPTR_MAX - 1)
void gl_mark_set(struct lua_State *co, uintptr_t mark);
uintptr_t gl_mark_get(struct lua_State *co);
int gl_base_attach(gl_hub_t *hub, gl_thread_t *t); /* 0 or UV_ENOMEM */
unsigned gl_base_next(const gl_hub_t *hub); /* the slot + 1 attach gives */
void gl_base_detach(gl_hub_t *hub, gl_thread_t *t);
gl_thread_t *gl_base_at(gl_hub_t *hub, unsigned i); /* or NULL if free */
gl_thread_t *gl_base_of(gl_hub_t *hub, struct lua_State *co); /* or NULL */

/*
** Native stacks (hub.c): the running thread 't', inside a C-call boundary,
** has started its wait (or queued itself); park its C stack. Returns 0
** once the hub continued it ('gl_hub_resume', after the wait ended), with
** 'hub->ra.nargs' values given on its coroutine; or a UV_E* code
** (UV_ENOTSUP, UV_E2BIG, UV_ENOMEM) without parking. 'gl_parked' is the
** segment 't' is parked in, or NULL; 'gl_unpark' drops it (a thread
** buried without running again).
*/
int gl_park(gl_thread_t *t);
gl_cseg_t *gl_parked(gl_thread_t *t);
void gl_unpark(gl_thread_t *t);

/* Timers (timer.c). */
int gl_timer_start(gl_hub_t *hub, gl_timer_t *tm, uint64_t due,
                   gl_timer_cb cb); /* 0 or UV_ENOMEM */
void gl_timer_stop(gl_hub_t *hub, gl_timer_t *tm);
int gl_timer_expire(gl_hub_t *hub, uint64_t now); /* fires due timers */
uint64_t gl_timer_next(const gl_hub_t *hub); /* earliest due, or UINT64_MAX */

#endif
