/*
** watchdog.c: the hub never starves silently. Blocking detection (a green
** thread that keeps the hub while others wait to run) and the preemptive
** time slice (such a thread is made to yield at its next Lua
** instruction), both driven by one OS thread, the watchdog.
**
** The hub publishes, in 'hub->probe', a counter bumped when a resume
** starts and when it ends (odd: a green thread is running), the innermost
** coroutine running, and its earliest deadline: two plain stores per
** switch and no clock reads, so detection costs nothing measurable on the
** switch path. The watchdog samples them every quarter of the threshold
** (or of the slice). The same odd value seen again means the same resume
** is still running; its length is measured from the first sighting.
** Something else waits to run when the run queue is not empty, a deadline
** has passed, or the loop's epoll descriptor has a ready event (epoll_wait
** with a zero timeout from this thread: level-triggered, so it consumes
** nothing).
**
** The watchdog never touches Lua state: it sends SIGURG to the hub's OS
** thread, whose handler only calls lua_sethook on the running coroutine
** (what lua.c's SIGINT handler does). The hook then runs in the offending
** green thread at its next Lua instruction -- or, for a thread stuck in a
** C function, when that function returns (a return hook) -- and there it
** reports, raises green.BlockingError, or yields to the hub. A thread
** still inside C after a moment gets a one-line early warning written by
** the watchdog itself (only its id: nothing else is safe to read).
**
** One watchdog per process (a signal handler can reach only process
** state): the hub that enables it first owns it.
*/
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "lgreen.h"

#define ON_BLOCKING_KEY "green.on_blocking"
#define BLOCKING_ERROR_KEY "green.BlockingError"
#define LIBDIR_KEY "green.libdir"

/* Requests from the watchdog to the hook. */
#define REQ_REPORT 0x1
#define REQ_PREEMPT 0x2

typedef struct watchdog {
  gl_hub_t *hub;
  pthread_t thread;         /* the watchdog */
  pthread_t hub_thread;     /* the OS thread that runs the hub */
  pthread_mutex_t mu;       /* guards the settings and 'cv' */
  pthread_cond_t cv;
  int started, stop;
  int running;              /* the thread is up (start waits for it) */
  /* Settings (hub thread writes under 'mu'). */
  uint64_t threshold;       /* blocking detection, ns; 0: off */
  uint64_t slice;           /* time slice, ns; 0: off */
  int raise;                /* detection raises green.BlockingError */
  int custom;               /* a reporter of the user's: no early warning */
  /* Episode state (watchdog thread). */
  uint64_t seen;            /* the probe epoch last sampled */
  uint64_t since;           /* gl_now() when 'seen' was first sampled */
  uint64_t reported;        /* the epoch already reported */
  volatile uint64_t stuck;  /* the epoch found stuck inside a C function */
  /* Between the watchdog and the hook. */
  volatile sig_atomic_t request; /* REQ_*, read by the signal handler */
  volatile uint64_t episode;     /* epoch of the episode being handled */
  volatile uint64_t start;       /* gl_now() when it began */
  volatile uint64_t acked;       /* epoch the hook has handled */
  /* Counters (hub thread). */
  uint64_t episodes;
  uint64_t preemptions;
} watchdog;

static watchdog *active; /* the process's watchdog (see the header) */


static uint64_t load64(volatile uint64_t *p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}


static void store64(volatile uint64_t *p, uint64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}


/*
** {======================================================
** The watchdog thread (no Lua, no hub state but the probe)
** =======================================================
*/

/* Is something other than the running thread waiting to run? */
static int others_wait(watchdog *wd, uint64_t now) {
  gl_hub_t *hub = wd->hub;
  struct epoll_event ev;
  if (__atomic_load_n(&hub->nready, __ATOMIC_RELAXED) > 0)
    return 1;
  if (load64(&hub->probe.next_due) <= now)
    return 1;
  return epoll_wait(uv_backend_fd(&hub->loop), &ev, 1, 0) > 0;
}


/* The early warning for a thread still inside a C function: the watchdog
   writes it itself (write(2), no stdio locks). */
static void warn_in_c(watchdog *wd, uint64_t now) {
  char buf[256];
  gl_thread_t *t = wd->hub->current;
  int n = snprintf(buf, sizeof(buf),
                   "green: green thread %lld has kept the hub for %.1f s "
                   "inside a C function while others wait to run; the "
                   "report follows when it returns\n",
                   t != NULL ? (long long)t->id : -1LL,
                   (double)(now - wd->start) / 1e9);
  if (n > 0) {
    ssize_t w = write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n
                                                      : sizeof(buf) - 1);
    (void)w;
  }
}


static void sample(watchdog *wd) {
  gl_hub_t *hub = wd->hub;
  uint64_t now = gl_now();
  uint64_t epoch = load64(&hub->probe.epoch);
  int req = 0;
  if ((epoch & 1) == 0 || epoch != wd->seen) { /* in the hub, or a new */
    wd->seen = epoch;                          /* resume since last time */
    wd->since = now;
    return;
  }
  if (wd->slice != 0 && now - wd->since >= wd->slice &&
      others_wait(wd, now))
    req |= REQ_PREEMPT;
  if (wd->threshold != 0 && now - wd->since >= wd->threshold &&
      wd->reported != epoch && others_wait(wd, now)) {
    req |= REQ_REPORT;
    wd->reported = epoch;
  }
  if (req != 0) {
    store64(&wd->episode, epoch);
    store64(&wd->start, wd->since);
    wd->request = req;
    pthread_kill(wd->hub_thread, SIGURG);
  } else if (wd->reported == epoch && load64(&wd->stuck) != epoch &&
             load64(&wd->acked) != epoch &&
             now - wd->since >= wd->threshold + wd->threshold / 4) {
    store64(&wd->stuck, epoch); /* no Lua instruction ran since: in C */
    if (!wd->custom)
      warn_in_c(wd, now);
  }
}


static void *run(void *arg) {
  watchdog *wd = (watchdog *)arg;
  sigset_t all;
  sigfillset(&all); /* signals are the hub thread's business */
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&wd->mu);
  wd->running = 1;
  pthread_cond_broadcast(&wd->cv);
  while (!wd->stop) {
    uint64_t period = UINT64_MAX;
    struct timespec ts;
    if (wd->threshold != 0)
      period = wd->threshold / 4;
    if (wd->slice != 0 && wd->slice / 4 < period)
      period = wd->slice / 4;
    if (period == UINT64_MAX) { /* both off: sleep until changed */
      pthread_cond_wait(&wd->cv, &wd->mu);
      continue;
    }
    if (period < 1000000)
      period = 1000000;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(period / 1000000000);
    ts.tv_nsec += (long)(period % 1000000000);
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    if (!wd->stop)
      sample(wd);
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

/* }====================================================== */


/*
** {======================================================
** The hub thread: the signal, the hook
** =======================================================
*/

static void hook(lua_State *L, lua_Debug *ar);

/* The hook that was installed on the coroutine before ours (a spec
   deadline's, a debugger's): put back once ours has run. */
static lua_Hook prev_hook;
static int prev_mask, prev_count;


/* SIGURG on the hub thread: only lua_sethook (as lua.c's SIGINT). */
static void on_sigurg(int sig) {
  watchdog *wd = active;
  lua_State *co;
  (void)sig;
  if (wd == NULL || wd->request == 0)
    return;
  co = __atomic_load_n(&wd->hub->probe.running, __ATOMIC_RELAXED);
  if (co == NULL)
    return;
  if (lua_gethook(co) != hook) {
    prev_hook = lua_gethook(co);
    prev_mask = lua_gethookmask(co);
    prev_count = lua_gethookcount(co);
  }
  lua_sethook(co, hook, LUA_MASKCOUNT | LUA_MASKRET, 1);
}


static void restore_hook(lua_State *L) {
  lua_sethook(L, prev_hook, prev_mask, prev_count);
  prev_hook = NULL;
  prev_mask = prev_count = 0;
}


/*
** Is the code that runs on from a hook in L greenlua's own (a Lua module
** of green's)? The running function, or, if that is a C function (the
** hook came as it was called or as it returned), the Lua function that
** called it.
*/
int lgreen_in_library(lua_State *L) {
  lua_Debug ar;
  const char *dir;
  size_t n;
  int lib;
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "S", &ar))
    return 0;
  if (ar.what[0] == 'C' &&
      (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "S", &ar)))
    return 0;
  if (ar.source[0] != '@')
    return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, LIBDIR_KEY);
  dir = lua_tolstring(L, -1, &n);
  lib = dir != NULL && strncmp(ar.source + 1, dir, n) == 0;
  lua_pop(L, 1);
  return lib;
}


/* Is the running thread inside green.atomic? */
static int atomic(lua_State *L, gl_thread_t *t) {
  int r = 0;
  lgreen_pushthread(L, t);
  if (lua_getiuservalue(L, -1, LGREEN_UV_EXTRAS) == LUA_TTABLE &&
      lua_getfield(L, -1, "atomic") != LUA_TNIL)
    r = lua_toboolean(L, -1);
  lua_settop(L, lua_gettop(L) - 3);
  return r;
}


/*
** Can 't' be made to yield here? Not inside C (a count hook never runs
** there), not across a C boundary, not in greenlua's own modules (their
** state updates are atomic by design), not inside green.atomic, not the
** host's main thread.
*/
static int preemptible(lua_State *L, gl_hub_t *hub, gl_thread_t *t) {
  return !(t->flags & GL_F_MAIN) && lgreen_yieldable(L, hub) &&
         !lgreen_in_library(L) && !atomic(L, t);
}


/* [-1, +1, e] tostring of the error value given (luaL_tolstring). */
static int tostring_error(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}


/* Report the episode through green.debug.on_blocking's function:
   fn(gt, seconds, where), where being a traceback. */
static void report(lua_State *L, watchdog *wd, gl_thread_t *t,
                   lua_Debug *ar) {
  int killed, status;
  double secs = (double)(gl_now() - load64(&wd->start)) / 1e9;
  lua_checkstack(L, 8);
  if (lua_getfield(L, LUA_REGISTRYINDEX, ON_BLOCKING_KEY) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lgreen_pushthread(L, t);
  lua_pushnumber(L, secs);
  if (ar->event == LUA_HOOKRET && load64(&wd->stuck) == load64(&wd->episode)
      && lua_getinfo(L, "Sn", ar) && ar->what[0] == 'C') {
    /* no Lua instruction ran until this C function returned */
    lua_getinfo(L, "f", ar);
    if (!lgreen_funcname(L, -1))
      lua_pushstring(L, ar->name != NULL ? ar->name : "?");
    lua_remove(L, -2);
    luaL_traceback(L, L, lua_pushfstring(L, "inside the C function '%s'",
                                         lua_tostring(L, -1)), 0);
    lua_remove(L, -2);
    lua_remove(L, -2);
  } else {
    luaL_traceback(L, L, "running Lua code", 0);
  }
  killed = t->flags & GL_F_KILLED;
  status = lua_pcall(L, 3, 0, 0);
  if (!killed && (t->flags & GL_F_KILLED)) {
    /* The reporter killed its thread (gt:kill(), its error caught or
       not): not a failure of the reporter but the thread's end, which
       goes on from here (a kill is delivered at a blocking call, and a
       thread starving the hub makes none). */
    if (status != LUA_OK)
      lua_pop(L, 1);
    lgreen_pushpending(L, t);
    lua_error(L);
  }
  if (status != LUA_OK) {
    /* Any error value (a kill's GreenletExit, a table): tostring'd,
       itself protected (a __tostring may raise too). */
    lua_pushcfunction(L, tostring_error);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "(an error value that tostring cannot show)");
    }
    fprintf(stderr, "green: the blocking reporter failed: %s\n",
            lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}


static void hook(lua_State *L, lua_Debug *ar) {
  watchdog *wd = active;
  gl_hub_t *hub;
  gl_thread_t *t;
  int req;
  restore_hook(L);
  if (wd == NULL)
    return;
  hub = wd->hub;
  t = hub->current;
  req = wd->request;
  wd->request = 0;
  if (t == NULL || load64(&hub->probe.epoch) != load64(&wd->episode))
    return; /* that episode is over */
  if (req & REQ_REPORT) {
    store64(&wd->acked, load64(&wd->episode));
    wd->episodes++;
    report(L, wd, t, ar);
    if (wd->raise) {
      lua_getfield(L, LUA_REGISTRYINDEX, BLOCKING_ERROR_KEY);
      lua_error(L);
    }
  }
  if (req & REQ_PREEMPT) {
    if (ar->event != LUA_HOOKCOUNT || !preemptible(L, hub, t)) {
      /* Not here: look again a little later. */
      wd->request = REQ_PREEMPT;
      prev_hook = lua_gethook(L);
      prev_mask = lua_gethookmask(L);
      prev_count = lua_gethookcount(L);
      lua_sethook(L, hook, LUA_MASKCOUNT, 100);
      return;
    }
    wd->preemptions++;
    t->state = GL_READY; /* as sleep(0): behind every ready thread */
    gl_ready(t);
    hub->hubyield = 1;
    lua_yield(L, 0); /* a count hook may yield, with no values, last */
  }
}

/* }====================================================== */


/*
** {======================================================
** Settings and the module
** =======================================================
*/

/* Start the watchdog thread (once), owned by 'hub'. 0 or an error. */
static const char *start(watchdog *wd) {
  struct sigaction sa, old;
  if (wd->started)
    return NULL;
  if (active != NULL && active != wd)
    return "another hub of this process owns the watchdog";
  if (sigaction(SIGURG, NULL, &old) == 0 && old.sa_handler != SIG_DFL &&
      old.sa_handler != SIG_IGN && old.sa_handler != on_sigurg)
    return "SIGURG has a handler already (the watchdog signals with it)";
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigurg;
  sa.sa_flags = SA_RESTART; /* interrupted system calls go on */
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGURG, &sa, NULL) < 0)
    return strerror(errno);
  wd->hub_thread = pthread_self();
  wd->stop = 0;
  active = wd;
  wd->running = 0;
  if (pthread_create(&wd->thread, NULL, run, wd) != 0) {
    active = NULL;
    return "cannot start the watchdog thread";
  }
  /* Wait until the thread is in its loop: a fork (green.fork) must not
     catch it starting up, inside the C library or a sanitizer's
     allocator with a lock that the child would inherit held. */
  pthread_mutex_lock(&wd->mu);
  while (!wd->running)
    pthread_cond_wait(&wd->cv, &wd->mu);
  pthread_mutex_unlock(&wd->mu);
  wd->started = 1;
  return NULL;
}


static void stop(watchdog *wd) {
  if (!wd->started)
    return;
  pthread_mutex_lock(&wd->mu);
  wd->stop = 1;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->mu);
  pthread_join(wd->thread, NULL);
  wd->started = 0;
  if (active == wd)
    active = NULL;
}


#define towd(L) ((watchdog *)lua_touserdata(L, lua_upvalueindex(2)))


/* Seconds (NaN and negatives refused; 0: off) to nanoseconds. */
static uint64_t seconds_opt(lua_State *L, int idx, const char *what) {
  lua_Number s = lgreen_notnan(L, luaL_checknumber(L, idx), what);
  uint64_t ns;
  if (s < 0)
    luaL_error(L, "%s must not be negative", what);
  ns = lgreen_ns(s);
  return ns == 0 && s > 0 ? 1 : ns; /* below 1 ns is not "off" */
}


/*
** core.watchdog{threshold =, slice =, raise =, custom =}: set what the
** fields say (seconds; 0 turns a feature off). Returns the settings.
*/
static int l_watchdog(lua_State *L) {
  watchdog *wd = towd(L);
  const char *err = NULL;
  uint64_t threshold = wd->threshold, slice = wd->slice;
  int raise = wd->raise, custom = wd->custom;
  lgreen_checkopen(L, wd->hub); /* its OS thread would read a freed hub */
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "threshold") != LUA_TNIL)
      threshold = seconds_opt(L, -1, "threshold");
    if (lua_getfield(L, 1, "slice") != LUA_TNIL)
      slice = seconds_opt(L, -1, "slice");
    if (lua_getfield(L, 1, "raise") != LUA_TNIL)
      raise = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "custom") != LUA_TNIL)
      custom = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "libdir") != LUA_TNIL) { /* green's modules */
      luaL_checktype(L, -1, LUA_TSTRING);
      lua_setfield(L, LUA_REGISTRYINDEX, LIBDIR_KEY);
    }
    lua_settop(L, 1);
  }
  if ((threshold != 0 || slice != 0) && (err = start(wd)) != NULL)
    return luaL_error(L, "green.debug: %s", err);
  pthread_mutex_lock(&wd->mu);
  wd->threshold = threshold;
  wd->slice = slice;
  wd->raise = raise;
  wd->custom = custom;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->mu);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)threshold / 1e9);
  lua_setfield(L, -2, "threshold");
  lua_pushnumber(L, (lua_Number)slice / 1e9);
  lua_setfield(L, -2, "slice");
  lua_pushboolean(L, raise);
  lua_setfield(L, -2, "raise");
  lua_pushboolean(L, custom);
  lua_setfield(L, -2, "custom");
  return 1;
}


static void setint(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}


/*
** core.debug_stats() (green.debug.stats): live and ready threads, resumes
** and passes so far, the loop lag -- the longest and mean delay between a
** thread being put on the run queue and running, in seconds, since the
** previous call -- and the blocking episodes and preemptions so far.
*/
static int l_debug_stats(lua_State *L) {
  watchdog *wd = towd(L);
  gl_hub_t *hub = wd->hub;
  gl_probe *p = &hub->probe;
  lua_createtable(L, 0, 8);
  setint(L, "threads", (uint64_t)lgreen_state(hub)->nalive);
  setint(L, "ready", (uint64_t)hub->nready);
  setint(L, "switches", p->switches);
  setint(L, "turns", p->turns);
  lua_pushnumber(L, (lua_Number)p->lag_max / 1e3);
  lua_setfield(L, -2, "lag_max");
  lua_pushnumber(L, p->lag_n > 0 ? (lua_Number)p->lag_sum / 1e3 /
                                       (lua_Number)p->lag_n
                                 : 0.0);
  lua_setfield(L, -2, "lag_mean");
  setint(L, "blocking", wd->episodes);
  setint(L, "preemptions", wd->preemptions);
  p->lag_max = p->lag_sum = p->lag_n = 0;
  return 1;
}


/*
** In the child of green.fork, which has only the thread that called fork:
** the watchdog thread is not there, and its mutex may have been held by
** it at the fork. Start again from nothing, with the same settings.
*/
static void wd_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  watchdog *wd = (watchdog *)ud;
  (void)hub;
  pthread_mutex_init(&wd->mu, NULL);
  pthread_cond_init(&wd->cv, NULL);
  wd->started = wd->stop = 0;
  wd->seen = wd->since = wd->reported = 0;
  wd->stuck = 0;
  wd->request = 0;
  wd->episode = wd->start = wd->acked = 0;
  if (active == wd)
    active = NULL;
  if ((wd->threshold != 0 || wd->slice != 0) && start(wd) != NULL) {
    fprintf(stderr, "green.fork: the child runs without the watchdog\n");
    wd->threshold = wd->slice = 0;
  }
  (void)L;
}


static int wd_gc(lua_State *L) {
  stop((watchdog *)lua_touserdata(L, 1));
  return 0;
}


static int blocking_tostring(lua_State *L) {
  lua_pushliteral(L, "BlockingError: a green thread kept the hub too long "
                     "while others waited to run");
  return 1;
}


void lgreen_open_watchdog(lua_State *L, gl_hub_t *hub) {
  static const luaL_Reg funcs[] = {
      {"watchdog", l_watchdog},
      {"debug_stats", l_debug_stats},
      {NULL, NULL},
  };
  watchdog *wd = (watchdog *)lua_newuserdatauv(L, sizeof(*wd), 0);
  memset(wd, 0, sizeof(*wd));
  wd->hub = hub;
  pthread_mutex_init(&wd->mu, NULL);
  pthread_cond_init(&wd->cv, NULL);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, wd_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  /* module funcs: upvalues hub, the watchdog */
  lua_pushlightuserdata(L, hub);
  lua_insert(L, -2);
  luaL_setfuncs(L, funcs, 2);
  lgreen_newsingleton(L, BLOCKING_ERROR_KEY, "BlockingError",
                      blocking_tostring);
  lgreen_on_fork(hub, wd_forked, wd);
}

/* }====================================================== */
