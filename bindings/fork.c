/*
** fork.c: green.fork() and green.on_fork(fn), fork with defined semantics.
**
** In the child only the calling green thread goes on. Every other green
** thread of the parent is gone without running another instruction: its
** wait is undone (so no queue, socket or timer refers to it), it leaves
** the run queue, and it is buried as if killed -- its outcome is
** green.GreenletExit, but its <close> handlers, pcall cleanups and links
** belong to the parent and do not run in the child (a thread's cleanup
** closing a connection would close the parent's). The host's main thread
** is one of them when another thread forked: its wait is undone too, and
** the child has no main thread to go back to, so it ends as a process
** whose last thread ended does (lgreen_fork_exit): once nothing is left
** to run -- the forking thread and whatever it spawned are done -- the
** child exits, with status 1 if the forking thread died of an error, 0
** otherwise, without closing the Lua state (as os.exit does: the
** parent's finalizers do not run in the child either). Any exit() of the
** child flushes stdio and ends the process without the parent's exit
** handlers and library destructors (child_exit).
**
** The order in the child: libuv's loop is re-initialised (uv_loop_fork);
** the early resets run ('lgreen_on_fork_early': locks that an OS thread
** of the parent, absent here, may have held are made usable -- the
** thread pool's -- before anything takes them); the threads are buried
** (their cancels run then); each part of green.core forgets what belongs
** to the parent (its reset, registered with 'lgreen_on_fork': the
** resolver's channels, the watchdog's thread, the sockets' watchers, the
** thread pool's and libuv's pool's requests, signal watches, children);
** then the signals blocked around fork() are unblocked (l_fork says why),
** and the green.on_fork hooks run, in the caller's thread, before fork()
** returns 0.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lgreen.h"

#define HOOKS_KEY "green.on_fork" /* registry: the list of Lua hooks */


static void add_reset(gl_hub_t *hub, lgreen_forkfn fn, void *ud,
                      int early) {
  lgreen_state_t *g = lgreen_state(hub);
  /* A fixed table: the parts of green.core register once each when the
     module opens. Outgrowing it is a bug of ours, never silently. */
  if (g->nforks >= LGREEN_MAXFORKS) {
    fprintf(stderr, "green: too many fork resets (raise LGREEN_MAXFORKS)\n");
    abort();
  }
  g->forks[g->nforks].fn = fn;
  g->forks[g->nforks].early = early;
  g->forks[g->nforks++].ud = ud;
}


void lgreen_on_fork(gl_hub_t *hub, lgreen_forkfn fn, void *ud) {
  add_reset(hub, fn, ud, 0);
}


void lgreen_on_fork_early(gl_hub_t *hub, lgreen_forkfn fn, void *ud) {
  add_reset(hub, fn, ud, 1);
}


/* Every exit() of a child ends here, before the exit handlers and library
   destructors the parent registered: they are the parent's, and libuv's
   (1.44: uv_library_shutdown) joins the parent's thread-pool workers,
   which do not exist in the child (it crashed the child whose parent had
   used the pool). stdio is flushed, as exit() would. */
static void child_exit(int status, void *ud) {
  (void)ud;
  lgreen_fs_exit_flush();
  fflush(NULL);
  _exit(status);
}


/* The main thread of a child is gone and nothing is left to run: the
   child ends (see the header). Called where the main thread would have
   gone on. */
void lgreen_fork_exit(gl_hub_t *hub) {
  fflush(NULL);
  exit(lgreen_state(hub)->forkstatus);
}


/* Undo the wait of 't' (GL_SUSPENDED) or its start (GL_DELAYED): it will
   never run again. */
static void stop_thread(gl_hub_t *hub, gl_thread_t *t) {
  if (t->state == GL_SUSPENDED) {
    gl_wait_abandon(t->wait, GL_W_CANCELED);
    t->state = GL_NEW; /* neither suspended nor ready: it never runs */
  } else if (t->state == GL_DELAYED) {
    gl_timer_stop(hub, &t->w.timer);
  }
}


/* [-0, +0, m] Bury every thread but 'self' (see the header). */
static void discard_threads(lua_State *L, gl_hub_t *hub, gl_thread_t *self) {
  gl_thread_t *main = hub->main, *t;
  int orphan = main != NULL && self != main;
  unsigned i;
  /* Undo their waits first: a cancel may end another's wait (a socket
     hands its place on), which then sits on the run queue. */
  for (i = 0; i < hub->nbases; i++) {
    t = gl_base_at(hub, i);
    if (t != NULL && t != self)
      stop_thread(hub, t);
  }
  if (orphan) /* blocked in the hub (lgreen_block), below 'self' */
    stop_thread(hub, main);
  /* Empty the run queue (the main thread too, when it is not 'self'). */
  while (gl_next_ready(hub) != NULL)
    ;
  if (orphan) {
    lgreen_state_t *g = lgreen_state(hub);
    main->state = GL_NEW; /* never ready again: the hub runs until idle */
    g->orphaned = 1;
    g->forker = self;
    g->forkstatus = 0;
  }
  lgreen_pushexit(L);
  for (i = 0; i < hub->nbases; i++) {
    t = gl_base_at(hub, i);
    if (t == NULL || t == self)
      continue;
    t->flags |= GL_F_DONE | GL_F_EXIT;
    t->flags &= ~(GL_F_ERROR | GL_F_NOTIFY);
    t->nres = 0;
    lgreen_pushthread(L, t);
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, LGREEN_UV_VALUE);
    lua_pop(L, 1);
    lgreen_thread_bury(L, hub, t);
  }
  lua_pop(L, 1);
}


/* [-0, +0, m] Run the green.on_fork hooks; a failing one is reported. */
static void run_hooks(lua_State *L) {
  lua_Integer i, n;
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      fprintf(stderr, "green: an on_fork hook failed: %s\n",
              lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object)");
      fflush(stderr);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}


/***
** green.fork(): the child's pid in the parent, 0 in the child (see the
** header); nil, message, errno if the process cannot fork.
*/
static int l_fork(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *self = hub->current;
  lgreen_state_t *g = lgreen_state(hub);
  sigset_t all, old;
  pid_t pid;
  int i, r;
  if (self == NULL || lgreen_in_finalizer(L))
    return luaL_error(L, "green.fork: call it from a green thread or the "
                         "main thread (not a finalizer or a hub callback)");
  fflush(NULL); /* or both processes would write what stdio buffered */
  /* Signals wait until the child has its own loop and has dropped the
     parent's watches: one caught in between ran libuv's handler on the
     parent's copies, whose message went down the parent's signal pipe
     (before uv_loop_fork: the parent ran its handler for the child's
     signal) or to a watch about to close (the signal was lost, and a
     closing watch whose signal was never dispatched made the child's
     loop spin). Blocked, it comes once the child is ready for it. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = fork();
  if (pid != 0) {
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
  }
  if (pid < 0)
    return luaL_fileresult(L, 0, NULL);
  if (pid > 0) {
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
  }
  if ((r = uv_loop_fork(&hub->loop)) < 0) {
    fprintf(stderr, "green.fork: the child cannot use the event loop: %s\n",
            uv_strerror(r));
    _exit(127);
  }
  if (on_exit(child_exit, NULL) != 0) {
    fprintf(stderr, "green.fork: the child cannot register its exit\n");
    _exit(127);
  }
  for (i = 0; i < g->nforks; i++)
    if (g->forks[i].early)
      g->forks[i].fn(L, hub, g->forks[i].ud);
  discard_threads(L, hub, self);
  for (i = 0; i < g->nforks; i++)
    if (!g->forks[i].early)
      g->forks[i].fn(L, hub, g->forks[i].ud);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  run_hooks(L);
  lua_pushinteger(L, 0);
  return 1;
}


/* green.on_fork(fn): run fn() in the child of every later green.fork. */
static int l_on_fork(lua_State *L) {
  lgreen_checkcallable(L, 1);
  lua_settop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
  }
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}


/*
** {======================================================
** Stamps: clocks shared with the children (the prefork master's view of
** its workers' hubs, lua/green/prefork.lua)
** =======================================================
*/

#define STAMPS "green.stamps"

/* A box (box.c): the userdata holds a pointer to this record, whose
   mapping is unmapped even if Lua frees the userdata without its __gc. */
typedef struct stamps {
  lgreen_owned own;
  uint64_t *v; /* n words in a shared anonymous mapping; NULL once freed */
  size_t n;
} stamps;


static stamps *checkstamps(lua_State *L, size_t *i) {
  stamps *s = *(stamps **)luaL_checkudata(L, 1, STAMPS);
  lua_Integer k = luaL_checkinteger(L, 2);
  luaL_argcheck(L, s != NULL && s->v != NULL, 1, "stamps freed");
  luaL_argcheck(L, k >= 1 && (lua_Unsigned)k <= s->n, 2, "index out of range");
  *i = (size_t)k - 1;
  return s;
}


/* stamps:set(i): stamp i is now (gl_now(): CLOCK_MONOTONIC, which every
   process of the machine shares). */
static int stamps_set(lua_State *L) {
  size_t i;
  stamps *s = checkstamps(L, &i);
  uint64_t now = gl_now();
  __atomic_store_n(&s->v[i], now != 0 ? now : 1, __ATOMIC_RELEASE);
  return 0;
}


/* stamps:clear(i): stamp i was never set. */
static int stamps_clear(lua_State *L) {
  size_t i;
  stamps *s = checkstamps(L, &i);
  __atomic_store_n(&s->v[i], 0, __ATOMIC_RELEASE);
  return 0;
}


/* stamps:age(i): seconds since stamp i was set, or nil if it never was. */
static int stamps_age(lua_State *L) {
  size_t i;
  stamps *s = checkstamps(L, &i);
  uint64_t t = __atomic_load_n(&s->v[i], __ATOMIC_ACQUIRE), now = gl_now();
  if (t == 0)
    return 0;
  lua_pushnumber(L, now > t ? (lua_Number)(now - t) / 1e9 : 0.0);
  return 1;
}


static void stamps_free(stamps *s) {
  if (s->v != NULL)
    munmap(s->v, s->n * sizeof(uint64_t));
  free(s);
}


static int stamps_gc(lua_State *L) {
  stamps **ps = (stamps **)luaL_checkudata(L, 1, STAMPS);
  stamps *s = *ps;
  if (s != NULL) {
    *ps = NULL;
    lgreen_disown(&s->own);
    stamps_free(s);
  }
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void stamps_orphan(lgreen_owned *o) {
  stamps_free(GL_CONTAINER(o, stamps, own));
}

static const lgreen_boxkind stamps_box = {offsetof(stamps, own),
                                          stamps_orphan};


/* core.stamps(n): n clocks (all never set) in memory shared with every
   child forked later; nil, message on failure. */
static int l_stamps(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  void **box;
  stamps *s;
  void *p;
  luaL_argcheck(L, n >= 1 && n <= 65536, 1, "1 to 65536 expected");
  box = lgreen_newbox(L, lgreen_hub(L), 0, &stamps_box);
  luaL_setmetatable(L, STAMPS);
  if ((s = (stamps *)calloc(1, sizeof(*s))) == NULL)
    return luaL_error(L, "not enough memory");
  s->n = (size_t)n;
  *box = s;
  lgreen_own(lgreen_hub(L), &s->own, &stamps_box);
  p = mmap(NULL, s->n * sizeof(uint64_t), PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return luaL_fileresult(L, 0, "green.stamps");
  s->v = (uint64_t *)p; /* zeroed: never set */
  return 1;
}


/***
** core.kill_pid(pid, signum): send a signal to a process; true, or nil,
** message, errno.
*/
static int l_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  lua_Integer sig = luaL_checkinteger(L, 2);
  luaL_argcheck(L, pid > 0 && pid <= INT32_MAX, 1, "a process id expected");
  luaL_argcheck(L, sig >= 0 && sig < 65, 2, "a signal number expected");
  return luaL_fileresult(L, kill((pid_t)pid, (int)sig) == 0, NULL);
}

/*** core.getpid(): this process's id. */
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}


/***
** core.on_parent_death(signum, ppid): have the kernel send 'signum' to
** this process when its parent ends (a prefork worker whose master was
** killed drains and exits instead of serving on as an orphan). If the
** parent is no longer 'ppid' -- it ended before the call -- the signal
** is sent at once. true, or nil, message, errno.
*/
static int l_on_parent_death(lua_State *L) {
  lua_Integer sig = luaL_checkinteger(L, 1);
  lua_Integer ppid = luaL_checkinteger(L, 2);
  luaL_argcheck(L, sig > 0 && sig < 65, 1, "a signal number expected");
  if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig) < 0)
    return luaL_fileresult(L, 0, NULL);
  if ((lua_Integer)getppid() != ppid)
    kill(getpid(), (int)sig);
  lua_pushboolean(L, 1);
  return 1;
}

/* }====================================================== */


void lgreen_open_fork(lua_State *L, gl_hub_t *hub) {
  static const luaL_Reg funcs[] = {
      {"fork", l_fork},
      {"on_fork", l_on_fork},
      {"stamps", l_stamps},
      {"kill_pid", l_kill},
      {"getpid", l_getpid},
      {"on_parent_death", l_on_parent_death},
      {NULL, NULL},
  };
  static const luaL_Reg meth[] = {
      {"set", stamps_set},
      {"clear", stamps_clear},
      {"age", stamps_age},
      {"__gc", stamps_gc},
      {NULL, NULL},
  };
  (void)hub;
  if (luaL_newmetatable(L, STAMPS)) {
    luaL_setfuncs(L, meth, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lgreen_register(L, funcs, 0);
}
