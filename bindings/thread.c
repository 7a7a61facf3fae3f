/*
** GreenThread: spawn, the trampoline every green thread runs, death,
** wait, kill and the object's methods.
**
** A green thread's coroutine starts in 'trampoline', which calls the user
** function under a yieldable pcall (lua_pcallk). So an error, or a kill,
** unwinds inside the coroutine: pcall cleanup and <close> variables run
** there and may themselves block. The message handler records the
** traceback before the stack unwinds.
*/
#include <stdio.h>
#include <string.h>

#include "lgreen.h"

#define EXIT_KEY "green.GreenletExit"
#define END_HOOK "green.thread_end"


void lgreen_pushexit(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, EXIT_KEY);
}


/*
** {======================================================
** The trampoline and death
** =======================================================
*/

/* Message handler: record the traceback where the error was raised. */
static int msgh(lua_State *L) {
  gl_thread_t *t = lgreen_base(lgreen_gethub(L), L);
  lgreen_pushexit(L);
  if (t != NULL && !lua_rawequal(L, 1, -1)) {
    lgreen_pushthread(L, t);
    lgreen_pushextras(L, -1);
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "traceback");
  }
  lua_settop(L, 1);
  return 1;
}


/*
** After the end hook: an error of its own (out of memory: it reports and
** runs the links, Lua code) and the hook runs again after a sleep(0),
** from where it stopped, a few times (memory may be back: the links
** would be lost, and whoever waits on one for ever); then it is
** printed. The thread's outcome, stored already, stands. Stack: [ud]
** and, after a failure, the error; 'ctx': the tries made, times 2, plus
** the hook's 'unobserved' argument.
*/
#define END_TRIES 8

static int end_again_k(lua_State *L, int status, lua_KContext ctx);

static int end_k(lua_State *L, int status, lua_KContext ctx) {
  gl_thread_t *t = (gl_thread_t *)lua_touserdata(L, 1);
  if (status != LUA_OK && status != LUA_YIELD) {
    const char *msg;
    if (ctx / 2 < END_TRIES) {
      gl_thread_t *self = lgreen_begin(L, t->hub, "green.thread_end");
      lua_settop(L, 1);
      self->state = GL_READY;
      gl_ready(self);
      return lgreen_block(L, self, end_again_k, ctx + 2);
    }
    msg = lua_tostring(L, -1);
    fprintf(stderr, "green: the end of green thread %lld failed: %s\n",
            (long long)t->id, msg != NULL ? msg : luaL_typename(L, -1));
    fflush(stderr);
  }
  return 0;
}

static int end_again_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_getfield(L, LUA_REGISTRYINDEX, END_HOOK);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, (int)(ctx & 1));
  return end_k(L, lua_pcallk(L, 2, 0, 0, ctx, end_k), ctx);
}


/* report_raw's work, called protected: [error, the thread's userdata]. */
static int report_f(lua_State *L) {
  gl_thread_t *t = (gl_thread_t *)lua_touserdata(L, 2);
  const char *msg = luaL_tolstring(L, 1, NULL);
  fprintf(stderr, "green thread %lld died: %s\n", (long long)t->id, msg);
  lua_pop(L, 1);
  lgreen_pushextras(L, 2);
  if (lua_getfield(L, -1, "traceback") == LUA_TSTRING)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  fflush(stderr);
  return 0;
}


/* [-1, +0, -] Print the error on the top, which nobody observes, when the
   Lua layer is not loaded ('ud': the thread). Never raises: it also runs
   in the hub (a coroutine that failed outside its trampoline), where an
   error would leave the hub's frames with nothing to catch it. */
static void report_raw(lua_State *L, gl_thread_t *t, int ud) {
  ud = lua_absindex(L, ud);
  lua_pushcfunction(L, report_f);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, ud);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* out of memory: the bare error */
    const char *msg = lua_tostring(L, -2);
    fprintf(stderr, "green thread %lld died: %s\n", (long long)t->id,
            msg != NULL ? msg : lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}


/*
** Stack: [ud, msgh, results...] or [ud, msgh, error]. Store the outcome in
** the userdata, then let the Lua layer report an unobserved error and run
** the links, still inside this green thread (so they may block).
*/
static int trampoline_k(lua_State *L, int status, lua_KContext ctx) {
  gl_thread_t *t = (gl_thread_t *)ctx;
  int report, haslinks, hashooks;
  if (status == LUA_OK || status == LUA_YIELD) {
    int n = lua_gettop(L) - 2;
    t->nres = n;
    if (n == 0) {
      lua_pushnil(L);
    } else if (n > 1) {
      int i;
      lua_createtable(L, n, 0);
      lua_insert(L, 3);
      for (i = n; i >= 1; i--)
        lua_rawseti(L, 3, i);
    }
    lua_setiuservalue(L, 1, LGREEN_UV_VALUE);
  } else {
    lgreen_pushexit(L);
    t->flags |= lua_rawequal(L, -1, -2) ? GL_F_EXIT : GL_F_ERROR;
    lua_pop(L, 1);
    lua_setiuservalue(L, 1, LGREEN_UV_VALUE);
  }
  lua_settop(L, 1);
  /* The function has ended: a kill before now was its outcome; one after
     now changes nothing, and the link callbacks may block. */
  t->flags |= GL_F_DONE;
  t->flags &= ~(GL_F_KILLED | GL_F_PENDING);
  haslinks = hashooks = 0;
  if (lua_getiuservalue(L, 1, LGREEN_UV_EXTRAS) == LUA_TTABLE) {
    haslinks = lua_getfield(L, 2, "links") != LUA_TNIL;
    hashooks = lua_getfield(L, 2, "hooks") != LUA_TNIL;
  }
  lua_settop(L, 1);
  /* Reported only if no wait() and no link observes it (the toolkit's own
     end hooks, such as a GreenPool's, do not count). */
  report = (t->flags & GL_F_ERROR) && gl_waitq_empty(&t->waiters) &&
           !(t->flags & GL_F_NOTIFY) && !haslinks;
  if (!report && !haslinks && !hashooks)
    return 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, END_HOOK) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (report) {
      lua_getiuservalue(L, 1, LGREEN_UV_VALUE);
      report_raw(L, t, 1);
    }
    return 0;
  }
  lua_pushvalue(L, 1);
  lua_pushboolean(L, report);
  return end_k(L, lua_pcallk(L, 2, 0, 0, report, end_k), report);
}


/* Stack: [ud, fn, args...]. */
static int trampoline(lua_State *L) {
  gl_thread_t *t = (gl_thread_t *)lua_touserdata(L, 1);
  int n = lua_gettop(L) - 2;
  if (t->flags & GL_F_KILLED) { /* killed before it started: never runs */
    t->flags &= ~GL_F_PENDING;
    lua_settop(L, 1);
    lua_pushnil(L);
    lua_getiuservalue(L, 1, LGREEN_UV_VALUE);
    return trampoline_k(L, LUA_ERRRUN, (lua_KContext)t);
  }
  lua_pushcfunction(L, msgh);
  lua_insert(L, 2);
  return trampoline_k(L, lua_pcallk(L, n, LUA_MULTRET, 2, (lua_KContext)t,
                                    trampoline_k),
                      (lua_KContext)t);
}


/*
** spawn_closing's threads: 'closer(arg, err)' runs in the thread once its
** function has ended, however it ended (return: err nil; error or kill:
** err the error; killed before it started: the kill's error), as a
** to-be-closed variable's __close would, and before the outcome is
** stored (an error of the closer's is the thread's outcome). What
** green.serve needs per connection, with no Lua frame, table or closure
** per connection: the closer and its argument stay in the trampoline's
** frame. Stack: [ud, closer, arg, msgh, results...] or [..., error].
*/
static int closed_k(lua_State *L, int status, lua_KContext ctx);

static int closing_k(lua_State *L, int status, lua_KContext ctx) {
  int ok = status == LUA_OK || status == LUA_YIELD;
  lua_pushvalue(L, 2); /* the closer */
  lua_pushvalue(L, 3); /* its argument */
  if (ok)
    lua_pushnil(L);
  else
    lua_pushvalue(L, -3); /* the error */
  lua_pushboolean(L, ok); /* the function's status, for closed_k */
  lua_replace(L, 2);
  return closed_k(L, lua_pcallk(L, 2, 0, 4, ctx, closed_k), ctx);
}

static int closed_k(lua_State *L, int status, lua_KContext ctx) {
  int ok = lua_toboolean(L, 2);
  if (status != LUA_OK && status != LUA_YIELD) { /* the closer failed */
    lua_copy(L, -1, 5); /* its error replaces the outcome */
    lua_settop(L, 5);
    ok = 0;
  }
  lua_remove(L, 2);
  lua_remove(L, 2); /* [ud, msgh, results...] */
  return trampoline_k(L, ok ? LUA_OK : LUA_ERRRUN, ctx);
}


/* Stack: [ud, closer, arg, fn, args...]. */
static int trampoline_closing(lua_State *L) {
  gl_thread_t *t = (gl_thread_t *)lua_touserdata(L, 1);
  int n = lua_gettop(L) - 4;
  lua_pushcfunction(L, msgh);
  lua_insert(L, 4);
  if (t->flags & GL_F_KILLED) { /* killed before it started */
    t->flags &= ~GL_F_PENDING;
    lua_settop(L, 4);
    lua_getiuservalue(L, 1, LGREEN_UV_VALUE);
    return closing_k(L, LUA_ERRRUN, (lua_KContext)t);
  }
  return closing_k(L, lua_pcallk(L, n, LUA_MULTRET, 4, (lua_KContext)t,
                                 closing_k),
                   (lua_KContext)t);
}


/*
** A coroutine's first resume makes its first call's CallInfo and stack
** room. Out of memory there, the thread died before its trampoline ran:
** its closer (spawn_closing: green.serve's connection slot), its links
** and its end hooks would never run. Such a coroutine still holds the
** trampoline and its arguments, below the error: move them to a new
** coroutine, to be resumed again (at most END_TRIES times, as the end
** hook is tried). Called protected, with the thread.
*/
static int restart(lua_State *L) {
  gl_thread_t *t = (gl_thread_t *)lua_touserdata(L, 1);
  lua_State *co = t->L, *fresh;
  int n = lua_gettop(co) - 1; /* [tramp, ud, pre..., fn, args..., error] */
  fresh = lua_newthread(L);
  if (!lua_checkstack(fresh, n))
    return luaL_error(L, "not enough memory");
  lgreen_pushthread(L, t);
  lua_insert(L, -2);
  lua_setiuservalue(L, -2, LGREEN_UV_CO); /* the thread's coroutine */
  lua_pop(co, 1);
  lua_xmove(co, fresh, n);
  gl_mark_set(co, 0);
  t->L = fresh;
  gl_mark_set(fresh, t->slot);
  t->nargs = n - 1;
  return 0;
}


/* Called by the hub when a thread's coroutine has returned (or failed). */
static void on_death(gl_hub_t *hub, lua_State *L, gl_thread_t *t,
                     int status) {
  lua_State *co = t->L;
  lua_Debug ar;
  int ud;
  lua_checkstack(L, 8);
  if (status != LUA_OK && t->restarts < END_TRIES &&
      !lua_getstack(co, 0, &ar)) {
    /* it never started: again, a few times (see restart) */
    t->restarts++;
    lua_pushcfunction(L, restart);
    lua_pushlightuserdata(L, t);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
      t->state = GL_NEW;
      gl_ready(t);
      return;
    }
    lua_pop(L, 1);
  }
  lgreen_pushthread(L, t);
  ud = lua_gettop(L);
  if (status != LUA_OK) { /* escaped the trampoline: out of memory, ... */
    lua_xmove(co, L, 1);
    t->flags |= GL_F_ERROR | GL_F_DONE; /* (wait() returns at once) */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ud, LGREEN_UV_VALUE);
    report_raw(L, t, ud);
    lua_resetthread(co); /* close its pending to-be-closed variables */
  }
  lua_settop(L, ud - 1);
  if (t == lgreen_state(hub)->forker) { /* see fork.c */
    lgreen_state(hub)->forkstatus = (t->flags & GL_F_ERROR) ? 1 : 0;
    lgreen_state(hub)->forker = NULL;
  }
  lgreen_thread_bury(L, hub, t);
}


/*
** [-0, +0, m] The C part of a thread's death: drop its Timeouts, links
** and locals, un-anchor it and its coroutine, free its slot, wake the
** threads in wait() on it. Its outcome is stored already. (fork.c buries
** the parent's threads in a child this way, none of their code running.)
*/
void lgreen_thread_bury(lua_State *L, gl_hub_t *hub, gl_thread_t *t) {
  int ud;
  lua_checkstack(L, 8);
  lgreen_pushthread(L, t);
  ud = lua_gettop(L);
  lgreen_timeouts_drop(L, t);
  if (lua_getiuservalue(L, ud, LGREEN_UV_EXTRAS) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_setfield(L, -2, "links");
    lua_pushnil(L);
    lua_setfield(L, -2, "hooks");
    lua_pushnil(L);
    lua_setfield(L, -2, "locals"); /* green.Local fields die with it */
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, ud, LGREEN_UV_CO);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lgreen_state(hub)->anchors);
  lua_pushnil(L);
  lua_rawseti(L, -2, t->slot);
  lua_pop(L, 1);
  gl_base_detach(hub, t);
  t->L = NULL;
  t->flags &= ~(GL_F_PENDING | GL_F_LUAWAIT);
  lgreen_state(hub)->nalive--;
  gl_finish(t);
  lua_settop(L, ud - 1);
}

/* }====================================================== */


/*
** {======================================================
** Spawning
** =======================================================
*/

#define INTERNAL_KEY "green.internal"

/*
** [-0, +0, m] Record where the thread on the top was spawned: the caller
** of spawn, skipping C functions (pcall) and the toolkit's own wrappers
** (marked with core.internal), so reports name the user's line, not
** GreenPool's.
*/
static void record_site(lua_State *L, gl_thread_t *t) {
  lua_Debug ar;
  int level;
  for (level = 1; level <= 8 && lua_getstack(L, level, &ar); level++) {
    int internal;
    lua_getinfo(L, "fl", &ar);
    lua_pushvalue(L, -1);
    internal = lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL ||
               lua_iscfunction(L, -2);
    lua_pop(L, 1);
    if (!internal) {
      t->line = ar.currentline;
      lua_setiuservalue(L, -2, LGREEN_UV_SITE);
      break;
    }
    lua_pop(L, 1);
  }
}


/* core.internal(fn): fn spawns on its caller's behalf (see record_site). */
static int l_internal(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_getfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  return 0;
}


/*
** [-0, +1, m] Create a thread that will run the callable at 'first' with
** the values above it, and push its GreenThread. Not yet queued. Its
** coroutine starts in 'tramp' with [ud, the 'pre' values below 'first',
** fn, args...].
*/
static gl_thread_t *newthread(lua_State *L, gl_hub_t *hub, int first,
                              lua_CFunction tramp, int pre) {
  gl_thread_t *t;
  lua_State *co;
  int n;
  unsigned slot;
  lgreen_checkopen(L, hub); /* its slot and queue are the closed hub's */
  lgreen_checkcallable(L, first);
  n = lua_gettop(L) - first + pre; /* arguments, and the 'pre' values */
  t = (gl_thread_t *)lua_newuserdatauv(L, sizeof(*t), LGREEN_NUV);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  gl_thread_init(t, hub);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, LGREEN_UV_CO);
  record_site(L, t);
  /* [.. pre fn args ud] -> [.. ud ud pre fn args]; move [ud pre fn args]
     to co */
  first -= pre;
  lua_insert(L, first);
  lua_pushvalue(L, first);
  lua_insert(L, first);
  if (!lua_checkstack(co, n + 3))
    luaL_error(L, "too many arguments to spawn");
  lua_pushcfunction(co, tramp);
  lua_xmove(L, co, n + 2);
  t->L = co;
  t->nargs = n + 2;
  /* Anchored at its slot before it takes the slot: the anchor may raise
     (out of memory: the table grows), and a slot holding a thread Lua
     then frees is a use-after-free for whoever walks the slots. Nothing
     in between runs the collector, so the slot is the one peeked at. */
  slot = gl_base_next(hub);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lgreen_state(hub)->anchors);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, slot);
  if (gl_base_attach(hub, t) < 0) {
    lua_pushnil(L);
    lua_rawseti(L, -2, slot);
    luaL_error(L, "not enough memory");
  }
  lua_pop(L, 1);
  t->id = ++lgreen_state(hub)->lastid;
  lgreen_state(hub)->nalive++;
  return t;
}


/* spawn(fn, ...): the thread starts on a later hub turn, never inside. */
static int l_spawn(lua_State *L) {
  gl_thread_t *t = newthread(L, lgreen_hub(L), 1, trampoline, 0);
  gl_ready(t);
  return 1;
}


static int l_spawn_n(lua_State *L) {
  gl_thread_t *t = newthread(L, lgreen_hub(L), 1, trampoline, 0);
  gl_ready(t);
  return 0;
}


/*
** spawn_closing(closer, arg, fn, ...): spawn(fn, ...), and 'closer(arg,
** err)' runs in the thread when fn ends (see trampoline_closing).
** green.serve's per-connection slot; internal (green.core only).
*/
static int l_spawn_closing(lua_State *L) {
  gl_thread_t *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  t = newthread(L, lgreen_hub(L), 3, trampoline_closing, 2);
  gl_ready(t);
  return 1;
}


static void delayed_start(gl_timer_t *tm) {
  gl_thread_t *t = GL_CONTAINER(GL_CONTAINER(tm, gl_wait_t, timer),
                                gl_thread_t, w);
  t->state = GL_NEW;
  gl_ready(t);
}


static int l_spawn_after(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  uint64_t ns = lgreen_ns(lgreen_checkseconds(L, 1));
  /* (newthread raises once the hub is closed: no timer in its heap) */
  gl_thread_t *t = newthread(L, hub, 2, trampoline, 0);
  t->state = GL_DELAYED;
  if (gl_timer_start(hub, &t->w.timer, gl_now() + ns, delayed_start) < 0) {
    lgreen_thread_bury(L, hub, t); /* (not left delayed for ever) */
    return luaL_error(L, "not enough memory");
  }
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** GreenThread methods
** =======================================================
*/

/*
** Push the outcome of dead thread 'idx': its results, GreenletExit if it
** was killed with the default error, or raise its error. A string error
** comes back with the dead thread's traceback appended.
*/
static int push_outcome(lua_State *L, gl_thread_t *t, int idx) {
  if (t->flags & GL_F_EXIT) {
    lgreen_pushexit(L);
    return 1;
  }
  lua_getiuservalue(L, idx, LGREEN_UV_VALUE);
  if (t->flags & GL_F_ERROR) {
    if (lua_type(L, -1) == LUA_TSTRING) {
      lgreen_pushextras(L, idx);
      if (lua_getfield(L, -1, "traceback") == LUA_TSTRING) {
        lua_pushfstring(L, "%s\n[in green thread %I", lua_tostring(L, -3),
                        t->id);
        if (lua_getfield(L, -3, "name") == LUA_TSTRING)
          lua_pushfstring(L, " '%s'", lua_tostring(L, -1));
        else
          lua_pushliteral(L, "");
        lua_remove(L, -2);
        lua_pushliteral(L, "] ");
        lua_pushvalue(L, -4);
        lua_concat(L, 4);
      } else { /* no traceback (killed before it started): as it is */
        lua_pop(L, 2);
      }
    }
    return lua_error(L);
  }
  if (t->nres <= 1)
    return t->nres;
  {
    int i, n = t->nres;
    luaL_checkstack(L, n, "too many results");
    for (i = 1; i <= n; i++)
      lua_rawgeti(L, -i, i);
    return n;
  }
}


static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, (gl_wait_t *)ctx, NULL);
  lua_settop(L, 1);
  return push_outcome(L, lgreen_checkthread(L, 1), 1);
}


/* gt:wait(): its results; re-raises its error. */
static int gt_wait(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1), *self;
  if (t->flags & GL_F_DONE) /* ended (perhaps still running its links) */
    return push_outcome(L, t, 1);
  if (t->flags & GL_F_MAIN)
    return luaL_error(L, "cannot wait for the main thread");
  self = lgreen_begin(L, t->hub, "GreenThread:wait");
  if (self == t)
    return luaL_error(L, "a green thread cannot wait for itself");
  lua_settop(L, 1);
  gl_wait_start(self, &self->w, "GreenThread:wait", NULL, NULL);
  gl_waitq_push(&t->waiters, &self->w);
  return lgreen_block(L, self, wait_k, (lua_KContext)&self->w);
}


/*
** gt:kill([err]): raise err (default GreenletExit) in gt at its blocking
** point and return once it is dead. Killing yourself raises. A caller that
** cannot block (a finalizer, a C-call boundary) delivers and returns. The
** host's main thread cannot die: its kill is not sticky (it raises at its
** next blocking call, once, as a Ctrl-C does).
*/
static int gt_kill(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1), *self;
  gl_hub_t *hub = t->hub;
  lgreen_checkopen(L, hub); /* a delayed thread's timer: a freed heap */
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lgreen_pushexit(L);
    lua_replace(L, 2);
  }
  if (t->state == GL_DEAD)
    return 0;
  self = hub->current;
  if (t->flags & GL_F_DONE) { /* returned, running its links: the outcome */
    if (t == self)            /* stands, and we only wait for the end */
      return 0;
  } else if (t == self) {
    if (!(t->flags & GL_F_MAIN)) { /* the main thread never dies: its */
      t->flags |= GL_F_KILLED;     /* kill raises once, not for good */
      lua_pushvalue(L, 2);
      lua_setiuservalue(L, 1, LGREEN_UV_VALUE);
    }
    lua_pushvalue(L, 2);
    return lua_error(L);
  } else {
    lgreen_throw(L, t, 2, !(t->flags & GL_F_MAIN));
  }
  if ((t->flags & GL_F_MAIN) || !lgreen_canblock(L, hub))
    return 0; /* delivered; a finalizer or a C boundary cannot wait */
  self = lgreen_begin(L, hub, "green.kill");
  gl_wait_start(self, &self->w, "green.kill", NULL, NULL);
  gl_waitq_push(&t->waiters, &self->w);
  return lgreen_block(L, self, lgreen_done_k, (lua_KContext)&self->w);
}


/* gt:cancel([err]): kill, but only if it has not started. Never blocks. */
static int gt_cancel(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lgreen_checkopen(L, t->hub); /* as kill */
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lgreen_pushexit(L);
    lua_replace(L, 2);
  }
  if ((t->state == GL_NEW || t->state == GL_DELAYED) &&
      !(t->flags & GL_F_KILLED))
    lgreen_throw(L, t, 2, 1);
  return 0;
}


static int gt_dead(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_pushboolean(L, t->state == GL_DEAD);
  return 1;
}


static const char *const state_names[] = {"new",       "delayed", "ready",
                                          "running",   "suspended", "dead"};


static int gt_status(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_pushstring(L, state_names[t->state]);
  if (t->state == GL_SUSPENDED && t->wait->what != NULL) {
    lua_pushstring(L, t->wait->what);
    return 2;
  }
  return 1;
}


/* The extras table (links, locals, name): used by the Lua layer. */
static int l_extras(lua_State *L) {
  lgreen_checkthread(L, 1);
  lgreen_pushextras(L, 1);
  return 1;
}


static int gt_index(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  const char *k;
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
    return 1;
  k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "name") == 0) {
    if (lua_getiuservalue(L, 1, LGREEN_UV_EXTRAS) != LUA_TTABLE)
      return 0;
    lua_getfield(L, -1, "name");
    return 1;
  }
  if (k != NULL && strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  return 0;
}


static int gt_newindex(lua_State *L) {
  const char *k;
  lgreen_checkthread(L, 1);
  k = lua_tostring(L, 2);
  if (k == NULL || strcmp(k, "name") != 0)
    return luaL_error(L, "GreenThread: cannot set field '%s' (only 'name')",
                      k ? k : luaL_typename(L, 2));
  if (!lua_isnil(L, 3))
    luaL_checktype(L, 3, LUA_TSTRING);
  lgreen_pushextras(L, 1);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "name");
  return 0;
}


static int gt_tostring(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_Debug ar;
  int top;
  lua_settop(L, 1);
  top = lua_gettop(L);
  lua_pushfstring(L, "GreenThread %I", t->id);
  if (lua_getiuservalue(L, 1, LGREEN_UV_EXTRAS) == LUA_TTABLE &&
      lua_getfield(L, -1, "name") == LUA_TSTRING) {
    lua_pushfstring(L, " '%s'", lua_tostring(L, -1));
    lua_replace(L, top + 2);
  } else {
    lua_pushliteral(L, "");
    lua_replace(L, top + 2);
  }
  lua_settop(L, top + 2);
  if (t->flags & GL_F_MAIN) {
    lua_pushliteral(L, " (main)");
  } else if (t->state == GL_SUSPENDED && t->wait->what != NULL) {
    lua_pushfstring(L, " (suspended in %s)", t->wait->what);
  } else {
    lua_pushfstring(L, " (%s)", state_names[t->state]);
  }
  if (lgreen_pushsite(L, 1) &&
      lua_getinfo(L, ">S", &ar))
    lua_pushfstring(L, " spawned at %s:%d", ar.short_src, t->line);
  else {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  lua_concat(L, 4);
  return 1;
}

/* }====================================================== */


static int l_set_thread_end(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_setfield(L, LUA_REGISTRYINDEX, END_HOOK);
  return 0;
}


/* The raw outcome value of an ended thread (its error, for reporters). */
static int l_outcome(lua_State *L) {
  lgreen_checkthread(L, 1);
  lua_getiuservalue(L, 1, LGREEN_UV_VALUE);
  return 1;
}


/* "file:line" where the thread was spawned, or nil. */
static int l_site(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_Debug ar;
  if (!lgreen_pushsite(L, 1) ||
      !lua_getinfo(L, ">S", &ar))
    return 0;
  lua_pushfstring(L, "%s:%d", ar.short_src, t->line);
  return 1;
}


/* The kill error of 'gt' if it was killed (a kill is for good: every
   blocking call of its raises it again), else nothing. For greenlua's
   prompt, which must end rather than read on. */
static int l_killed(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  if (!(t->flags & GL_F_KILLED))
    return 0;
  lgreen_pushpending(L, t);
  return 1;
}


/* Mark a thread's death as observed by its creator (the executable's
   main chunk, green.run(fn)): its error is not reported on stderr. */
static int l_observe(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  t->flags |= GL_F_NOTIFY;
  return 0;
}


static const luaL_Reg gt_methods[] = {
    {"wait", gt_wait},     {"kill", gt_kill},     {"cancel", gt_cancel},
    {"dead", gt_dead},     {"status", gt_status}, {NULL, NULL}};

static const luaL_Reg spawn_funcs[] = {{"spawn", l_spawn},
                                       {"spawn_n", l_spawn_n},
                                       {"spawn_closing", l_spawn_closing},
                                       {"spawn_after", l_spawn_after},
                                       {NULL, NULL}};

static const luaL_Reg thread_funcs[] = {{"kill", gt_kill},
                                        {"extras", l_extras},
                                        {"set_thread_end", l_set_thread_end},
                                        {"observe", l_observe},
                                        {"internal", l_internal},
                                        {"outcome", l_outcome},
                                        {"site", l_site},
                                        {"killed", l_killed},
                                        {NULL, NULL}};


static int exit_tostring(lua_State *L) {
  lua_pushliteral(L, "GreenletExit");
  return 1;
}


/* [-0, +0, m] Adds to the module table on the top of the stack. */
void lgreen_open_thread(lua_State *L, gl_hub_t *hub) {
  gl_thread_t *main;
  hub->hooks.death = on_death;
  /* GreenletExit: a unique value, printed as "GreenletExit". */
  lgreen_newsingleton(L, EXIT_KEY, "GreenletExit", exit_tostring);

  luaL_newmetatable(L, LGREEN_THREAD);
  lua_pushlightuserdata(L, hub);
  lua_newtable(L); /* methods */
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, gt_methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -5, "GreenThread"); /* core.GreenThread = methods */
  lua_pushcclosure(L, gt_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gt_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, gt_tostring);
  lua_setfield(L, -2, "__tostring");
  /* spawn functions, in the module: upvalues hub, the metatable and the
     set of functions that spawn for their caller (weak keys) */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
  lua_pushvalue(L, -3);          /* module */
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, -4);          /* metatable */
  lua_pushvalue(L, -4);          /* internal set */
  luaL_setfuncs(L, spawn_funcs, 3);
  lua_pop(L, 2);

  /* The host's main thread has a GreenThread too (id 0). */
  main = (gl_thread_t *)lua_newuserdatauv(L, sizeof(*main), LGREEN_NUV);
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  gl_thread_init(main, hub);
  main->flags = GL_F_MAIN;
  main->state = GL_RUNNING;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lgreen_pushextras(L, -1);
  lua_pushliteral(L, "main");
  lua_setfield(L, -2, "name");
  lua_pop(L, 1);
  lgreen_state(hub)->main_anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  hub->main = main;
  hub->current = main;
  lua_pop(L, 1); /* metatable */

  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, thread_funcs, 1);
}
