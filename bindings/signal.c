/*
** signal.c: green signals over uv_signal_t (lua/green/signal.lua builds
** green.signal and green.signal.wait on these). A watch is a
** 'green.SignalHandle' userdata holding a pointer to a malloc'd record
** (freed in the handle's close callback): libuv's callback only counts
** the delivery and ends the wait of the thread blocked in signal_next,
** as every primitive's libuv side does (docs/internals.md, "One way to
** block"). green.signal's dispatcher thread waits there and spawns the
** handler once per delivery.
**
** Keeping the hub alive. A handler is registered for as long as the
** program runs, so it must not keep a finished program alive: the hub
** still goes idle when the main chunk and every other thread are done.
** But a thread blocked in something only a handler can end (the common
** `stop:wait()` with `green.signal("TERM", function() stop:send() end)`)
** must not be a deadlock. So a handler's watch (a "daemon") keeps the
** hub alive exactly while some green thread other than the handlers'
** dispatchers is blocked, or the host's main thread is blocked in
** anything but green.run(): the hub's 'blocking' hook, called each time
** the hub is about to block in the poller, refs or unrefs the daemons
** accordingly, and a check handle refs them again after each poll, so a
** hub that is busy still polls, and sees a delivery, at the end of each
** pass. A watch made for green.signal.wait keeps the hub alive while its
** caller waits, like a socket's reader.
*/
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lsignal.h"

#define LGREEN_SIGNAL "green.SignalHandle"
#define STATE_KEY "green.signal.state"

/* A wait ended by cancel(): signal_next answers nil, "cancelled". */
#define W_CANCELLED (-100101)


/*
** {======================================================
** Names
** =======================================================
*/

static const struct {
  const char *name;
  int signum;
} names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT},
    {"ILL", SIGILL},   {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
    {"BUS", SIGBUS},   {"FPE", SIGFPE},       {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},     {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},
    {"URG", SIGURG},   {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"SYS", SIGSYS},
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
    {NULL, 0}};


const char *lgreen_signame(int signum) {
  int i;
  for (i = 0; names[i].name != NULL; i++)
    if (names[i].signum == signum)
      return names[i].name;
  return NULL;
}


/* The signal at 'idx' (a number or a name), or -1. */
static int signum_at(lua_State *L, int idx, int allow0) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n;
    if (!lua_isinteger(L, idx) && !lua_numbertointeger(lua_tonumber(L, idx),
                                                         &n))
      return -1;
    n = lua_tointeger(L, idx);
    return n >= (allow0 ? 0 : 1) && n < NSIG ? (int)n : -1;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
    int i;
    if (strlen(s) != len) /* "TERM\0junk" is no name */
      return -1;
    for (i = 0; names[i].name != NULL; i++)
      if (strcasecmp(names[i].name, name) == 0)
        return names[i].signum;
  }
  return -1;
}


/* [-0, +1, m] The message for the unknown signal name at 'idx'. */
static const char *push_unknown(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len)
    return lua_pushliteral(L, "unknown signal (the name holds a zero byte)");
  return lua_pushfstring(L, "unknown signal '%s'", s);
}


int lgreen_signum(lua_State *L, int idx, int allow0) {
  int signum = signum_at(L, idx, allow0);
  if (signum < 0) {
    if (lua_type(L, idx) == LUA_TSTRING)
      luaL_argerror(L, idx, push_unknown(L, idx));
    else if (lua_type(L, idx) == LUA_TNUMBER)
      luaL_argerror(L, idx, "not a signal number");
    else
      luaL_typeerror(L, idx, "signal name or number");
  }
  return signum;
}

/* }====================================================== */


/*
** {======================================================
** Dispositions (process-wide, like signals)
** =======================================================
*/

static pthread_mutex_t disp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  unsigned users;       /* green.core's watchers of the signal */
  struct sigaction old; /* the disposition before the first one */
} disp[NSIG];
/* libuv's handler, learnt from the first watcher: a disposition that is
   libuv's own (another loop's watchers) is libuv's to reset. */
static void (*uv_handler)(int);


int lgreen_signal_start(uv_signal_t *h, uv_signal_cb cb, int signum) {
  int r;
  if (signum <= 0 || signum >= NSIG)
    return UV_EINVAL;
  pthread_mutex_lock(&disp_lock);
  if (disp[signum].users == 0)
    sigaction(signum, NULL, &disp[signum].old);
  r = uv_signal_start(h, cb, signum);
  if (r == 0) {
    struct sigaction now;
    disp[signum].users++;
    if (uv_handler == NULL && sigaction(signum, NULL, &now) == 0)
      uv_handler = now.sa_handler;
  }
  pthread_mutex_unlock(&disp_lock);
  return r;
}


void lgreen_signal_stop(uv_signal_t *h) {
  int signum = h->signum;
  struct sigaction now;
  if (signum <= 0 || signum >= NSIG)
    return;
  pthread_mutex_lock(&disp_lock);
  uv_signal_stop(h);
  /* libuv reset the signal to SIG_DFL if that was the last watcher of the
     process (of any loop): put back what was there before ours. */
  if (--disp[signum].users == 0 && sigaction(signum, NULL, &now) == 0 &&
      now.sa_handler == SIG_DFL &&
      disp[signum].old.sa_handler != SIG_DFL &&
      disp[signum].old.sa_handler != uv_handler)
    sigaction(signum, &disp[signum].old, NULL);
  pthread_mutex_unlock(&disp_lock);
}

/* }====================================================== */


/*
** {======================================================
** Watches, and the hub's state
** =======================================================
*/

typedef struct sigstate sigstate;

typedef struct watch {
  uv_signal_t h;
  lgreen_owned own;   /* while 'boxed' (box.c) */
  int boxed;          /* its userdata points to it */
  int shut;           /* cancelled (by its handle, or by C: green.fork) */
  int closed;         /* its handle's close callback has run */
  sigstate *st;
  gl_link_t link;     /* in st->watches */
  gl_waitq_t waiters; /* threads in signal_next */
  unsigned pending;   /* deliveries nobody took yet */
  int signum;
  int daemon;         /* green.signal's (see the header comment) */
} watch;


/* Per hub: its watches (daemons and waits), and the check handle that
   refs the daemons again. */
struct sigstate {
  gl_hub_t *hub;
  gl_link_t watches;
  unsigned ndaemons;
  uv_check_t *check; /* malloc'd on first use; freed by its close */
};


#define WATCH(l) GL_CONTAINER(l, watch, link)


/* Freed once its handle is closed and no userdata points to it. */
static void on_close(uv_handle_t *h) {
  watch *w = (watch *)h->data;
  w->closed = 1;
  if (!w->boxed)
    free(w);
}


static void free_handle(uv_handle_t *h) {
  free(h);
}


/* A thread other than a dispatcher is blocked: something a handler might
   end. At the hub's 'blocking' hook, nothing is ready and nothing runs,
   so every live green thread is suspended. */
static int others_blocked(sigstate *st) {
  gl_hub_t *hub = st->hub;
  long n = (long)lgreen_state(hub)->nalive;
  gl_link_t *l;
  if (hub->main != NULL && hub->main->state == GL_SUSPENDED)
    n++;
  for (l = hub->idlers.head.next; l != &hub->idlers.head; l = l->next)
    n--; /* in green.run(): waiting for the hub to idle, not for us */
  for (l = st->watches.next; l != &st->watches; l = l->next) {
    gl_link_t *q = &WATCH(l)->waiters.head, *m;
    if (!WATCH(l)->daemon)
      continue;
    for (m = q->next; m != q; m = m->next)
      n--; /* a dispatcher */
  }
  return n > 0;
}


static void ref_daemons(sigstate *st, int on) {
  gl_link_t *l;
  for (l = st->watches.next; l != &st->watches; l = l->next) {
    uv_handle_t *h = (uv_handle_t *)&WATCH(l)->h;
    if (!WATCH(l)->daemon)
      continue;
    if (on)
      uv_ref(h);
    else
      uv_unref(h);
  }
}


/* hooks.blocking: the hub is about to block in the poller. */
static void on_blocking(gl_hub_t *hub) {
  sigstate *st = (sigstate *)lgreen_state(hub)->signals;
  if (st != NULL && st->ndaemons > 0)
    ref_daemons(st, others_blocked(st));
}


/* After each poll: back to counting (see the header comment). */
static void on_check(uv_check_t *h) {
  ref_daemons((sigstate *)h->data, 1);
}


/* Keep the waiters' handle alive while they wait (not for daemons). */
static void reref(watch *w) {
  if (w->daemon)
    return;
  if (gl_waitq_empty(&w->waiters))
    uv_unref((uv_handle_t *)&w->h);
  else
    uv_ref((uv_handle_t *)&w->h);
}


/* libuv side: count, and end the first waiter's wait. */
static void on_signal(uv_signal_t *h, int signum) {
  watch *w = (watch *)h->data;
  (void)signum;
  w->pending++;
  gl_waitq_wake(&w->waiters, GL_W_OK);
  reref(w);
}


/* Stop and close: the userdata reads cancelled, every waiter is woken
   with "cancelled", the disposition comes back. No Lua. */
static void shut(watch *w) {
  sigstate *st = w->st;
  if (w->shut)
    return;
  w->shut = 1;
  gl_link_remove(&w->link);
  if (w->daemon && --st->ndaemons == 0 && st->check != NULL)
    uv_check_stop(st->check);
  gl_waitq_wake_all(&w->waiters, W_CANCELLED);
  lgreen_signal_stop(&w->h);
  uv_close((uv_handle_t *)&w->h, on_close);
}


/* Its userdata lets go of it (cancelled, or collected). */
static void unbox(watch *w) {
  w->boxed = 0;
  lgreen_disown(&w->own);
  if (!w->shut)
    shut(w); /* its close callback frees it */
  else if (w->closed)
    free(w);
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void watch_orphan(lgreen_owned *o) {
  unbox(GL_CONTAINER(o, watch, own));
}

static const lgreen_boxkind watch_box = {offsetof(watch, own), watch_orphan};


#define toslot(L) ((watch **)luaL_checkudata(L, 1, LGREEN_SIGNAL))

/* The watch of the handle at 1, or NULL once cancelled. */
static watch *towatch(lua_State *L) {
  watch **ud = toslot(L);
  if (*ud != NULL && (*ud)->shut) { /* cancelled by C: let go of it */
    watch *w = *ud;
    *ud = NULL;
    unbox(w);
  }
  return *ud;
}

/* }====================================================== */


/*
** {======================================================
** Functions and methods
** =======================================================
*/

/* Raise 'fmt' without a position: lua/green/signal.lua raises it again
   at its caller's line (luaL_error's was a line of signal.lua). */
static int refuse(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}


/*
** core.signal_watch(sig, daemon): a new watch of 'sig', started. Refuses
** (raising) what a green thread cannot handle: KILL and STOP cannot be
** caught, the faults (SEGV, BUS, FPE, ILL) would re-run the faulting
** instruction forever, and SIGURG is the watchdog's.
*/
static int l_signal_watch(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  sigstate *st = (sigstate *)lua_touserdata(L, lua_upvalueindex(2));
  int signum = lgreen_signum(L, 1, 0), daemon = lua_toboolean(L, 2), r;
  const char *name = lgreen_signame(signum);
  watch **ud, *w;
  lgreen_checkopen(L, hub); /* before the check handle below */
  if (signum == SIGKILL || signum == SIGSTOP)
    return refuse(L, "green.signal: SIG%s cannot be caught", name);
  if (signum == SIGSEGV || signum == SIGBUS || signum == SIGFPE ||
      signum == SIGILL)
    return refuse(L,
                      "green.signal: SIG%s is a fault of the running code: "
                      "its handler cannot wait for a green thread",
                      name);
  if (signum == SIGURG)
    return refuse(L, "green.signal: SIGURG is used by greenlua's "
                         "watchdog (green.debug.hub_blocking_detection)");
  if (daemon && st->check == NULL) {
    uv_check_t *c = (uv_check_t *)malloc(sizeof(*c));
    if (c == NULL || uv_check_init(&hub->loop, c) < 0) {
      free(c);
      return luaL_error(L, "not enough memory");
    }
    c->data = st;
    uv_unref((uv_handle_t *)c);
    st->check = c;
  }
  ud = (watch **)lgreen_newbox(L, hub, 0, &watch_box);
  luaL_setmetatable(L, LGREEN_SIGNAL);
  w = (watch *)calloc(1, sizeof(*w));
  if (w == NULL)
    return luaL_error(L, "not enough memory");
  if ((r = uv_signal_init(&hub->loop, &w->h)) < 0) {
    free(w);
    return luaL_error(L, "green.signal: %s", uv_strerror(r));
  }
  w->h.data = w;
  w->st = st;
  w->signum = signum;
  w->daemon = daemon;
  gl_link_init(&w->link);
  gl_link_init(&w->own.link);
  gl_waitq_init(&w->waiters);
  if ((r = lgreen_signal_start(&w->h, on_signal, signum)) < 0) {
    uv_close((uv_handle_t *)&w->h, on_close);
    return refuse(L, "green.signal: cannot catch signal %d: %s", signum,
                      uv_strerror(r));
  }
  w->boxed = 1;
  *ud = w;
  lgreen_own(hub, &w->own, &watch_box);
  gl_link_push(&st->watches, &w->link);
  if (daemon) {
    if (st->ndaemons++ == 0)
      uv_check_start(st->check, on_check);
  } else {
    reref(w);
  }
  return 1;
}


/* The wait of signal_next leaves its queue (timeout, kill). */
static void next_cancel(gl_wait_t *gw) {
  watch *w = (watch *)gw->data;
  gl_link_remove(&gw->link);
  reref(w);
}


static int next_wait(lua_State *L, watch *w, uint64_t due);


/* Stack: [handle, timeout]. */
static int next_k(lua_State *L, int status, lua_KContext ctx) {
  gl_thread_t *t = lgreen_hub(L)->current;
  int st = lgreen_waited(L, &t->w, NULL);
  watch *w = towatch(L);
  (void)status;
  if (w == NULL || st == W_CANCELLED) {
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled");
    return 2;
  }
  if (w->pending > 0) { /* taken even if the deadline came too */
    lua_pushinteger(L, (lua_Integer)w->pending);
    w->pending = 0;
    return 1;
  }
  if (st == GL_W_TIMEOUT) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return next_wait(L, w, (uint64_t)ctx); /* another waiter took them */
}


static int next_wait(lua_State *L, watch *w, uint64_t due) {
  gl_thread_t *t = lgreen_begin(L, lgreen_hub(L), "green.signal.wait");
  gl_wait_start(t, &t->w, "green.signal.wait", next_cancel, w);
  gl_waitq_push(&w->waiters, &t->w);
  reref(w);
  if (due != 0)
    lgreen_deadline(L, &t->w, due);
  return lgreen_block(L, t, next_k, (lua_KContext)due);
}


/*
** core.signal_next(handle, [timeout]): the number of deliveries since the
** last call (at least 1), waiting for one if there is none; nil, "timeout"
** or nil, "cancelled" (the handle was cancelled, before or meanwhile).
*/
static int l_signal_next(lua_State *L) {
  double timeout = lgreen_optwait(L, 2); /* negative: 0 */
  watch *w = towatch(L);
  uint64_t due = timeout < 0 ? 0 : gl_now() + lgreen_ns(timeout) + 1;
  lua_settop(L, 2);
  if (w == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled");
    return 2;
  }
  if (w->pending > 0) {
    lua_pushinteger(L, (lua_Integer)w->pending);
    w->pending = 0;
    return 1;
  }
  if (timeout == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return next_wait(L, w, due);
}


/* core.signum(sig): the number of signal 'sig' (a number or a name), or
   nil, message: green.signal raises at its caller's level. */
static int l_signum(lua_State *L) {
  int signum = signum_at(L, 1, 0);
  if (signum >= 0) {
    lua_pushinteger(L, signum);
    return 1;
  }
  lua_pushnil(L);
  if (lua_type(L, 1) == LUA_TSTRING)
    push_unknown(L, 1);
  else if (lua_type(L, 1) == LUA_TNUMBER)
    lua_pushliteral(L, "not a signal number");
  else
    lua_pushfstring(L, "signal name or number expected, got %s",
                    luaL_typename(L, 1));
  return 2;
}


/* core.signal_ignored(signum): is the signal ignored (SIG_IGN) now? An
   ignored signal is inherited as such by children (process.lua's execute
   leaves it alone). */
static int l_signal_ignored(lua_State *L) {
  int signum = lgreen_signum(L, 1, 0);
  struct sigaction sa;
  lua_pushboolean(L, sigaction(signum, NULL, &sa) == 0 &&
                         sa.sa_handler == SIG_IGN);
  return 1;
}


/*** handle:cancel(): stop handling the signal (idempotent); the signal's
** previous disposition comes back once no handle watches it. Never
** blocks. Also its __close and __gc. */
static int sig_cancel(lua_State *L) {
  watch **ud = toslot(L);
  watch *w = *ud;
  if (w != NULL) {
    *ud = NULL;
    unbox(w);
  }
  return 0;
}


static int sig_tostring(lua_State *L) {
  watch *w = towatch(L);
  const char *name;
  if (w == NULL) {
    lua_pushliteral(L, "green.SignalHandle (cancelled)");
    return 1;
  }
  name = lgreen_signame(w->signum);
  if (name != NULL)
    lua_pushfstring(L, "green.SignalHandle (SIG%s)", name);
  else
    lua_pushfstring(L, "green.SignalHandle (signal %d)", w->signum);
  return 1;
}


/*
** In a child of green.fork: the parent's handlers and waits are gone. The
** dispatcher threads and the waiters were the parent's (fork.c buried
** them), so a watch left started would catch its signal and nobody would
** run anything: every watch is cancelled, as handle:cancel() does (the
** handles read cancelled, each signal gets back the disposition it had
** before green.signal), and the child registers its own.
*/
static void sig_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  sigstate *st = (sigstate *)ud;
  (void)L;
  (void)hub;
  while (!gl_link_empty(&st->watches))
    shut(WATCH(st->watches.next));
}


/* At lua_close, after every handle's __gc (newer finalizers run first),
   and box.c's for those collected without it. */
static int state_gc(lua_State *L) {
  sigstate *st = (sigstate *)lua_touserdata(L, 1);
  lgreen_state(st->hub)->signals = NULL;
  while (!gl_link_empty(&st->watches))
    shut(WATCH(st->watches.next));
  if (st->check != NULL) {
    uv_close((uv_handle_t *)st->check, free_handle);
    st->check = NULL;
  }
  return 0;
}


static const luaL_Reg handle_meth[] = {
    {"cancel", sig_cancel},
    {"__close", sig_cancel},
    {"__gc", sig_cancel},
    {"__tostring", sig_tostring},
    {NULL, NULL},
};


static const luaL_Reg funcs[] = {
    {"signal_watch", l_signal_watch},
    {"signal_next", l_signal_next},
    {"signum", l_signum},
    {"signal_ignored", l_signal_ignored},
    {NULL, NULL},
};


/* [-0, +0, m] The functions in the module table on the top; the state. */
void lgreen_open_signal(lua_State *L, gl_hub_t *hub) {
  sigstate *st = (sigstate *)lua_newuserdatauv(L, sizeof(*st), 0);
  st->hub = hub;
  gl_link_init(&st->watches);
  st->ndaemons = 0;
  st->check = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  lgreen_state(hub)->signals = st;
  hub->hooks.blocking = on_blocking;
  lgreen_on_fork(hub, sig_forked, st);
  lgreen_register(L, funcs, 1); /* pops the state: upvalue 2 */
  luaL_newmetatable(L, LGREEN_SIGNAL);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, handle_meth, 0);
  lua_setfield(L, -2, "SignalHandle");
}
