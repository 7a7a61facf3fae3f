/*
** Shared helpers of the green.core bindings.
**
** The one yield protocol (docs/internals.md, "One way to block"): a
** blocking primitive calls 'lgreen_begin' (which raises if the caller
** cannot block), starts its wait with 'gl_wait_start' (or queues itself
** for a pure yield), then returns 'lgreen_block', which makes a hub yield
** (no values, 'hub->hubyield' set) with a continuation, or, on the host's
** main thread, runs the hub until the wait is over and calls the
** continuation itself. Continuations start with 'lgreen_waited'.
*/
#ifndef LGREEN_H
#define LGREEN_H

#include <lauxlib.h>
#include <lua.h>

#include "../runtime/gl.h"
#include "green.h"

#define LGREEN_HUB "green.hub" /* registry: the hub userdata (a box
                                  holding the record's address: green.c) */
#define LGREEN_HUB_MT "green.Hub"   /* its metatable */
/* registry: true in a green.tpool worker's state, which green.core refuses
   whether or not the host's hub is still open (a task abandoned at the
   host's close runs on after it) */
#define LGREEN_TPOOL_WORKER "green.tpool.worker"
#define LGREEN_THREAD "green.GreenThread"
#define LGREEN_TIMEOUT "green.Timeout"


/* User values of a GreenThread userdata. */
#define LGREEN_UV_CO 1     /* the coroutine while alive */
#define LGREEN_UV_VALUE 2  /* pending error while alive; result once dead */
/* 3: the function that called spawn, until the thread needs an "extras"
   table (name, links, locals, traceback, ...), which then takes the slot
   and holds the function at "site": most threads never need one, and a
   user value less makes every GreenThread 16 bytes smaller (one malloc
   size class: issue 8's floor). Read them with lgreen_pushsite and
   lgreen_pushextras. */
#define LGREEN_UV_SITE 3
#define LGREEN_UV_EXTRAS 3
#define LGREEN_NUV 3

/* A part of green.core's reset in the child of green.fork (fork.c): it
   forgets what belongs to the parent ('ud' is what the part registered). */
typedef void (*lgreen_forkfn)(lua_State *L, gl_hub_t *hub, void *ud);
#define LGREEN_MAXFORKS 16 /* the parts of green.core register 8 */

/*
** The bindings' per-hub state: what the runtime does not need. The hub
** userdata holds this record's address (it is malloc'd: green.c keeps a
** closed hub for what may still use it); the runtime's hub is its first
** member, so the
** gl_hub_t every function of green.core has as upvalue 1 is its address
** too, and 'lgreen_state' costs nothing.
*/
struct lgreen_state {
  gl_hub_t hub;          /* first member */
  int anchors;           /* registry ref: table of live GreenThreads by slot */
  int boundary_depth;    /* green resumes entered from code that cannot
                            yield (inside a C-call boundary) */
  lua_State *boundary_L; /* the outermost such resumer, for messages */
  lua_Integer lastid;    /* the last id given to a spawned thread */
  size_t nalive;         /* live threads, main excluded */
  const char *whats[8];  /* cache of anchored suspend() descriptions */
  uint64_t whathits;     /* suspend() descriptions found in 'whats' */
  gl_thread_t *interrupt_target; /* who Ctrl-C interrupts (interrupt.c) */
  int main_anchor; /* registry reference of the main thread's GreenThread */
  volatile sig_atomic_t interrupted; /* a Ctrl-C waits to be delivered */
  volatile sig_atomic_t delivered; /* one was: the next ends the process
                                      until the target is named again */
  volatile sig_atomic_t dump;        /* a thread dump was asked for */
  void *signals; /* signal.c's per-hub state (hooks.blocking), or NULL */
  struct {                      /* what each part resets in the child */
    lgreen_forkfn fn;           /* of green.fork (fork.c) */
    void *ud;
    int early;                  /* runs before the threads are buried */
  } forks[LGREEN_MAXFORKS];
  int nforks;
  int orphaned;        /* a child of green.fork whose main thread is gone */
  int forkstatus;      /* its exit status: 1 if 'forker' died of an error */
  gl_thread_t *forker; /* the thread that forked it, until it dies */
  gl_link_t owned;     /* records their boxes hold (box.c) */
  int boxes;           /* registry ref: box -> its kind, weak keys */
  size_t nboxes;       /* boxes made since the last sweep */
  size_t sweepat;      /* ... that make the next one sweep */
  unsigned boxmark;    /* the last sweep's mark */
  size_t orphans;      /* records given back without their box's __gc */
  uv_timer_t sweeper;  /* sweeps while the hub polls (box.c), unref'd */
  uint64_t sweptat;    /* the loop's time (ms) at the last sweep */
  size_t swept;        /* boxes the last sweep walked */
  int notick;          /* core.box_timer(false): no timer sweeps */
  void *fs;            /* fs.c's per-hub state (hooks.stuck), or NULL */
  struct lgreen_state *closed; /* on green.c's list of closed hubs */
  int held;            /* its loop is left open (gl_hub_close): kept */
  int gone;            /* hub_gc has run */
  uv_timer_t unref_timer;   /* sleep_unref's one timer (debug.c), unref'd */
  gl_link_t unref_sleepers; /* their waits, by 'link' */
};
typedef struct lgreen_state lgreen_state_t;

static inline lgreen_state_t *lgreen_state(gl_hub_t *hub) {
  return GL_CONTAINER(hub, lgreen_state_t, hub);
}

/* Every function of green.core has the hub as upvalue 1. */
#define lgreen_hub(L) ((gl_hub_t *)lua_touserdata(L, lua_upvalueindex(1)))

/* The green thread whose base coroutine is 'co', or NULL. */
#define lgreen_base(hub, co) gl_base_of((hub), (co))

gl_thread_t *lgreen_checkthread(lua_State *L, int idx);
void lgreen_pushthread(lua_State *L, gl_thread_t *t); /* [-0, +1, -] */

gl_thread_t *lgreen_begin_slow(lua_State *L, gl_hub_t *hub,
                               const char *what);

/*
** Can the running green thread (not the host's main thread) suspend from
** 'L' now: not inside a C-call boundary, directly or through a user
** coroutine resumed from one, and a hub yield from 'L' reaches the hub:
** 'L' is the thread's own coroutine, or a user coroutine that the green
** coroutine.resume runs (GL_MARK_CHAINED; not the stock lua_resume of a
** library that kept it, which would take the hub yield for the
** coroutine's own: that is a C-call boundary too).
*/
static inline int lgreen_yieldable(lua_State *L, gl_hub_t *hub) {
  return lgreen_state(hub)->boundary_depth == 0 && lua_isyieldable(L) &&
         hub->current != NULL &&
         (hub->current->L == L || gl_mark_get(L) == GL_MARK_CHAINED);
}

/*
** Check that the caller of blocking primitive 'what' can block, and return
** its thread. Raises the thread's kill error if it was killed (kill is
** sticky), and a clear error where blocking is impossible. The common case
** (a green thread, not killed, yieldable) is inline.
*/
static inline gl_thread_t *lgreen_begin(lua_State *L, gl_hub_t *hub,
                                        const char *what) {
  gl_thread_t *t = hub->current;
  if (t != NULL && (t->flags & (GL_F_KILLED | GL_F_MAIN)) == 0 &&
      lgreen_yieldable(L, hub))
    return t;
  return lgreen_begin_slow(L, hub, what);
}
/* Durations in seconds (NaN raises), and as nanoseconds for deadlines. */
uint64_t lgreen_ns(lua_Number s);
lua_Number lgreen_notnan(lua_State *L, lua_Number s, const char *what);
lua_Number lgreen_checkseconds(lua_State *L, int arg);
lua_Number lgreen_optseconds(lua_State *L, int arg, lua_Number def);
lua_Number lgreen_optwait(lua_State *L, int arg);
/* An options table's keys all among 'known' (NULL-terminated), else an
   argument error (lgreen.c). */
void lgreen_checkopts(lua_State *L, int arg, const char *const known[],
                      int array);

/* A function, or a value with a __call metamethod (lgreen.c); the check
   raises Lua's 'function expected, got T' argument error. */
int lgreen_iscallable(lua_State *L, int idx);
void lgreen_checkcallable(lua_State *L, int arg);

int lgreen_in_finalizer(lua_State *L);
int lgreen_canblock(lua_State *L, gl_hub_t *hub); /* without raising */
int lgreen_block(lua_State *L, gl_thread_t *t, lua_KFunction k,
                 lua_KContext ctx);
void lgreen_resumed(lua_State *L, gl_thread_t *t); /* raises if pending */
int lgreen_waited(lua_State *L, gl_wait_t *w, gl_wait_cb undo);
int lgreen_done_k(lua_State *L, int status, lua_KContext ctx); /* ctx: w */
void lgreen_deadline(lua_State *L, gl_wait_t *w, uint64_t due);
int lgreen_boundary_error(lua_State *L, gl_hub_t *hub, const char *what);

/* Store the value at 'idx' as t's error and make its blocking call raise
   it; 'sticky' makes every later blocking call raise it too (kill). */
int lgreen_throw(lua_State *L, gl_thread_t *t, int idx, int sticky);

void lgreen_pushexit(lua_State *L); /* push green.GreenletExit */
void lgreen_pushextras(lua_State *L, int idx); /* [-0, +1, m] */
int lgreen_pushsite(lua_State *L, int idx); /* [-0, +1, -]; 1 if a site */
void lgreen_pushpending(lua_State *L, gl_thread_t *t); /* [-0, +1, m] */

/* [-nup, +0, m] Add 'funcs' to the table below the 'nup' values on the
   top, each with the hub and those values (popped) as upvalues. */
void lgreen_register(lua_State *L, const luaL_Reg *funcs, int nup);

/*
** Boxes (box.c; docs/internals.md, "When Lua skips a finalizer"): a
** userdata whose first word points to a C record (malloc'd), or is NULL.
** Lua may free a box without running its __gc, so no record points back
** into its box, and each record a box holds is "owned": on the hub's
** list, with its kind's 'orphan' to give it back if its box is freed
** without its finalizer (found by a sweep, or at lua_close).
*/
typedef struct lgreen_owned lgreen_owned;
typedef struct lgreen_boxkind {
  size_t off; /* where the record keeps its 'lgreen_owned' */
  /* Its box is gone and its __gc never ran: do what the __gc would have
     done (the record is off the list already). No Lua. */
  void (*orphan)(lgreen_owned *o);
} lgreen_boxkind;
struct lgreen_owned {
  gl_link_t link; /* in the hub's 'owned' while a box holds the record */
  const lgreen_boxkind *kind;
  unsigned mark;
};
/* [-0, +0, v] Raise if lua_close has closed the hub: a finalizer that
   runs after green's own (its object had its __gc before green loaded)
   would make libuv handles on a closed loop. */
void lgreen_checkopen(lua_State *L, gl_hub_t *hub);
/* [-0, +1, m] A new box of kind 'k' (first word NULL) with 'nuv' user
   values; may first give back orphans of any kind (no Lua runs). Raises
   once the hub is closed (lgreen_checkopen). */
void **lgreen_newbox(lua_State *L, gl_hub_t *hub, int nuv,
                     const lgreen_boxkind *k);
/* The box now points to the record holding 'o' (no allocation). */
void lgreen_own(gl_hub_t *hub, lgreen_owned *o, const lgreen_boxkind *k);
void lgreen_disown(lgreen_owned *o); /* its box let go of it; idempotent */
/* The box of 'old' now points to the record of 'o' instead. */
void lgreen_own_replace(lgreen_owned *old, lgreen_owned *o);

/* Parts of green.core defined in their own files. */
void lgreen_open_thread(lua_State *L, gl_hub_t *hub);
void lgreen_open_interrupt(lua_State *L, gl_hub_t *hub);
void lgreen_open_coro(lua_State *L, gl_hub_t *hub);
void lgreen_open_timeout(lua_State *L, gl_hub_t *hub);
void lgreen_open_stdio(lua_State *L, gl_hub_t *hub);
void lgreen_open_watchdog(lua_State *L, gl_hub_t *hub);
void lgreen_open_fork(lua_State *L, gl_hub_t *hub);
void lgreen_on_fork(gl_hub_t *hub, lgreen_forkfn fn, void *ud);
/* A reset that must run before the parent's waits are undone (it makes
   locks that a vanished OS thread may hold usable again); no Lua. */
void lgreen_on_fork_early(gl_hub_t *hub, lgreen_forkfn fn, void *ud);
void lgreen_fork_exit(gl_hub_t *hub); /* a child whose main is gone ends */
void lgreen_thread_bury(lua_State *L, gl_hub_t *hub, gl_thread_t *t);
int lgreen_funcname(lua_State *L, int fidx); /* [-0, +(0|1), m] */
void lgreen_newsingleton(lua_State *L, const char *name, const char *field,
                         lua_CFunction tostr); /* [-0, +0, m] */
void lgreen_open_socket(lua_State *L, gl_hub_t *hub); /* sockets: the core, */
void lgreen_open_stream(lua_State *L, gl_hub_t *hub); /* then each kind */
void lgreen_open_conn(lua_State *L, gl_hub_t *hub);
void lgreen_open_tcp(lua_State *L, gl_hub_t *hub);
void lgreen_open_pipe(lua_State *L, gl_hub_t *hub);
void lgreen_open_udp(lua_State *L, gl_hub_t *hub);
void lgreen_open_select(lua_State *L, gl_hub_t *hub);
void lgreen_open_dns(lua_State *L, gl_hub_t *hub);
void lgreen_open_debug(lua_State *L, gl_hub_t *hub);
void lgreen_open_event(lua_State *L, gl_hub_t *hub);     /* event.c */
void lgreen_open_semaphore(lua_State *L, gl_hub_t *hub); /* semaphore.c */
void lgreen_open_queue(lua_State *L, gl_hub_t *hub);     /* queue.c */
void lgreen_open_tpool(lua_State *L, gl_hub_t *hub);     /* tpool.c */
void lgreen_open_fs(lua_State *L, gl_hub_t *hub);        /* fs.c */
void lgreen_open_tls(lua_State *L, gl_hub_t *hub);       /* tls.c */
void lgreen_open_signal(lua_State *L, gl_hub_t *hub);   /* signal.c */
void lgreen_open_process(lua_State *L, gl_hub_t *hub);  /* process.c */
void lgreen_open_http(lua_State *L, gl_hub_t *hub);      /* http.c */
void lgreen_open_ws(lua_State *L, gl_hub_t *hub);        /* ws.c */
void lgreen_open_box(lua_State *L, gl_hub_t *hub);       /* box.c, last */
void lgreen_timeouts_drop(lua_State *L, gl_thread_t *t); /* at death */

/* Keep green.core's code mapped for good (tpool.c): code of it that runs
   after the host's state has closed (an abandoned worker, an exit
   handler) would be gone when stock lua5.4 dlcloses green/core.so. */
void lgreen_pin_code(void);

/* The hub of a state where green.core is open, or NULL. */
gl_hub_t *lgreen_gethub(lua_State *L);

/* The hub closed and left its loop open for requests of green.fs that
   may never end (fs.c): they are the process's now, kept for its exit. */
void lgreen_fs_abandon(gl_hub_t *hub);
/* The hub closed (before lgreen_fs_abandon): what green.fs handed to
   threads that never ran again is freed (fs.c). */
void lgreen_fs_closed(gl_hub_t *hub);
void lgreen_fs_exit_flush(void); /* fs.c: for fork.c's child_exit */

/* [-0, +0, -] In a hook: does the code that runs on come from greenlua's
   own Lua modules (watchdog.c: their state updates are not to be cut)? */
int lgreen_in_library(lua_State *L);

#endif
