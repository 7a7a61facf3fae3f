/*
** green.core: the hub as a Lua module, and the helpers every blocking
** primitive shares (the one yield protocol, C-boundary errors).
*/
#include <string.h>

#include "lgreen.h"

/*
** {======================================================
** The yield protocol
** =======================================================
*/

void lgreen_pushthread(lua_State *L, gl_thread_t *t) {
  if (t->slot != 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lgreen_state(t->hub)->anchors);
    lua_rawgeti(L, -1, t->slot);
    lua_remove(L, -2);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->anchor); /* main */
  }
}


gl_thread_t *lgreen_checkthread(lua_State *L, int idx) {
  return (gl_thread_t *)luaL_checkudata(L, idx, LGREEN_THREAD);
}


/*
** [-0, +1, m] Push the error that t's blocking call is to raise (a kill
** or a Timeout). While t's function runs it is kept in the GreenThread's
** value slot; once the function has returned that slot holds the outcome,
** and an error for the link callbacks still running goes in the extras
** table.
*/
void lgreen_pushpending(lua_State *L, gl_thread_t *t) {
  lgreen_pushthread(L, t);
  if (t->flags & GL_F_DONE) {
    lgreen_pushextras(L, -1);
    lua_getfield(L, -1, "pending");
    lua_remove(L, -2);
  } else {
    lua_getiuservalue(L, -1, LGREEN_UV_VALUE);
  }
  lua_remove(L, -2);
}


/* [-0, +0, m] Store the value at 'idx' as t's pending error. */
static void setpending(lua_State *L, gl_thread_t *t, int idx) {
  idx = lua_absindex(L, idx);
  lgreen_pushthread(L, t);
  if (t->flags & GL_F_DONE) {
    lgreen_pushextras(L, -1);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "pending");
    lua_pop(L, 1);
  } else {
    lua_pushvalue(L, idx);
    lua_setiuservalue(L, -2, LGREEN_UV_VALUE);
  }
  lua_pop(L, 1);
}


/* [-0, +0, v] raise t's stored error (its pending or kill error). */
static int raise_value(lua_State *L, gl_thread_t *t) {
  lgreen_pushpending(L, t);
  return lua_error(L);
}


/*
** Is 'L' running a finalizer? Lua 5.4.4 stops the collector while it runs
** one, and lua_gc then answers -1 to everything.
*/
int lgreen_in_finalizer(lua_State *L) {
  return lua_gc(L, LUA_GCISRUNNING) < 0;
}


/*
** Can the caller block now, without raising? A green thread outside
** C-call boundaries, or the host's main thread, and not in a finalizer:
** the main thread blocks by running the hub, which would run close
** callbacks that free what the interrupted code may still be using.
*/
int lgreen_canblock(lua_State *L, gl_hub_t *hub) {
  gl_thread_t *t = hub->current;
  if (t == NULL || lgreen_in_finalizer(L))
    return 0;
  return (t->flags & GL_F_MAIN) || lgreen_yieldable(L, hub);
}


/* The uncommon cases of 'lgreen_begin' (lgreen.h). */
gl_thread_t *lgreen_begin_slow(lua_State *L, gl_hub_t *hub,
                               const char *what) {
  gl_thread_t *t = hub->current;
  if (t == NULL)
    luaL_error(L,
               "%s: cannot block here: no green thread is running (a "
               "finalizer or a hub callback cannot block; spawn a green "
               "thread for blocking work)",
               what);
  if (lgreen_in_finalizer(L))
    luaL_error(L,
               "%s: cannot block inside a finalizer (__gc): finalizers "
               "run in the middle of whatever code allocated memory. "
               "Spawn a green thread from __gc to do the blocking work.",
               what);
  if (t->flags & GL_F_KILLED)
    raise_value(L, t);
  if (!(t->flags & GL_F_MAIN) && !lgreen_yieldable(L, hub))
    lgreen_boundary_error(L, hub, what);
  return t;
}


/*
** {======================================================
** Durations
** =======================================================
*/

/*
** Seconds to nanoseconds, for a deadline 'gl_now() + ns': negative is 0,
** and at most 1e18 (31 years: "never" without overflowing the sum).
** 's' is not NaN (the checkers below refuse it).
*/
uint64_t lgreen_ns(lua_Number s) {
  if (s <= 0)
    return 0;
  return s >= 1e9 ? (uint64_t)1e18 : (uint64_t)(s * 1e9);
}


/*
** [-0, +0, v] Raise unless duration 's' (named by 'what') is a number.
** NaN compares false with everything: it would pass every range check
** and then be cast to an integer (undefined behaviour).
*/
lua_Number lgreen_notnan(lua_State *L, lua_Number s, const char *what) {
  if (s != s)
    luaL_error(L, "%s is NaN (a number of seconds expected)", what);
  return s;
}


/* [-0, +0, v] The duration in seconds at argument 'arg'; NaN raises. */
lua_Number lgreen_checkseconds(lua_State *L, int arg) {
  lua_Number s = luaL_checknumber(L, arg);
  if (s != s)
    luaL_argerror(L, arg, "number of seconds expected, got NaN");
  return s;
}


/* [-0, +0, v] As 'lgreen_checkseconds', 'def' when absent or nil. */
lua_Number lgreen_optseconds(lua_State *L, int arg, lua_Number def) {
  return lua_isnoneornil(L, arg) ? def : lgreen_checkseconds(L, arg);
}

/* }====================================================== */


/* Hand control to the hub until the wait of 't' is over, then run 'k'. */
int lgreen_block(lua_State *L, gl_thread_t *t, lua_KFunction k,
                 lua_KContext ctx) {
  if (t->flags & GL_F_MAIN) {
    gl_hub_t *hub = t->hub;
    lua_State *saved = t->L;
    int r;
    t->L = L; /* Lua-level wake values for main land on L */
    r = gl_hub_run(hub, L, t);
    t->L = saved;
    if (r == GL_EDEADLK) {
      gl_wait_t *w = t->wait;
      const char *what = w->what ? w->what : "a wait";
      int luawait = t->flags & GL_F_LUAWAIT;
      gl_wait_abandon(w, GL_EDEADLK);
      t->state = GL_RUNNING;
      if (luawait) {
        lua_pushboolean(L, 0);
        lua_pushfstring(L,
                        "deadlock: the main thread is blocked in %s and no "
                        "green thread, timer or I/O is left to wake it",
                        what);
        return 2;
      }
      return luaL_error(L,
                        "deadlock: the main thread is blocked in %s and no "
                        "green thread, timer or I/O is left to wake it",
                        what);
    }
    return k(L, LUA_YIELD, ctx);
  }
  /* A hub yield carries no values: the hub's flag tells it (and any green
     coroutine.resume in between) from a user's yield. */
  t->hub->hubyield = 1;
  return lua_yieldk(L, 0, ctx, k);
}


void lgreen_resumed(lua_State *L, gl_thread_t *t) {
  if (t->flags & GL_F_PENDING) {
    t->flags &= ~GL_F_PENDING;
    raise_value(L, t);
  }
}


/*
** [-0, +0, v] The top of every continuation: the outcome of wait 'w'
** (GL_W_OK, GL_W_TIMEOUT or the primitive's own code). If the thread was
** interrupted (a kill or Timeout) -- while it waited, or after its wait
** had ended but before it ran again -- 'undo' (if not NULL) first gives
** back what the wait obtained, then the error is raised.
*/
int lgreen_waited(lua_State *L, gl_wait_t *w, gl_wait_cb undo) {
  gl_thread_t *t = w->thread;
  if (t->flags & GL_F_PENDING) {
    if (undo != NULL)
      undo(w);
    t->flags &= ~GL_F_PENDING;
    raise_value(L, t);
  }
  return w->status;
}


/* A continuation with nothing to return: raises a pending kill. */
int lgreen_done_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, (gl_wait_t *)ctx, NULL);
  return 0;
}


/*
** [-0, +0, v] Arm the deadline of wait 'w' (just started by the running
** thread), or give the wait up and raise if there is no memory for it.
*/
void lgreen_deadline(lua_State *L, gl_wait_t *w, uint64_t due) {
  if (gl_wait_deadline(w, due) < 0) {
    gl_wait_abandon(w, UV_ENOMEM);
    w->thread->state = GL_RUNNING;
    luaL_error(L, "not enough memory");
  }
}


int lgreen_throw(lua_State *L, gl_thread_t *t, int idx, int sticky) {
  if (t->state == GL_DEAD)
    return 0;
  if ((t->flags & GL_F_DONE) && sticky)
    return 0; /* its function has returned: the outcome stands */
  if ((t->flags & GL_F_KILLED) && !sticky)
    return 0; /* a killed thread keeps raising its kill error */
  setpending(L, t, idx);
  if (sticky)
    t->flags |= GL_F_KILLED;
  return gl_interrupt(t);
}

/* }====================================================== */


/*
** {======================================================
** C-call boundaries
** =======================================================
*/

/* [-0, +(0|1), m] Push "table.sort" for the function at 'fidx', as
   lauxlib's traceback names it; 0 if it has no global name. */
int lgreen_funcname(lua_State *L, int fidx) {
  fidx = lua_absindex(L, fidx);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fidx)) {
          const char *mod = lua_tostring(L, -4);
          if (strcmp(mod, LUA_GNAME) == 0)
            lua_pushvalue(L, -2);
          else
            lua_pushfstring(L, "%s.%s", mod, lua_tostring(L, -2));
          lua_replace(L, -6);
          lua_pop(L, 4);
          return 1;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}


static const struct {
  const char *name;
  const char *fix;
} hints[] = {
    {"table.sort", "Do the blocking work before sorting (fetch what the "
                   "comparator needs first), then sort with a comparator "
                   "that does not block."},
    {"string.gsub", "Collect the matches first (string.gmatch), do the "
                    "blocking work in a loop, then substitute."},
    {"require", "A module's main chunk must not block: move the blocking "
                "call into a function the module exports (for example "
                "M.init()) and call it after require returns."},
    {"tostring", "__tostring must not block: compute the string before "
                 "calling tostring."},
    {"print", "__tostring must not block: compute the string before "
              "printing."},
    {"string.format", "__tostring must not block: compute the string "
                      "before formatting."},
    {"__gc", "A finalizer cannot block: spawn a green thread from __gc to "
             "do the blocking work."},
    {NULL, NULL}};


/*
** Raise the error for a blocking call made where Lua 5.4 cannot suspend
** a coroutine: inside a C function that called back into Lua without a
** continuation. Names the boundary and says how to fix it.
*/
int lgreen_boundary_error(lua_State *L, gl_hub_t *hub, const char *what) {
  lgreen_state_t *g = lgreen_state(hub);
  lua_State *S = g->boundary_depth > 0 ? g->boundary_L : L;
  lua_Debug ar;
  const char *name = NULL, *fix = NULL;
  int level, i;
  for (level = 1; lua_getstack(S, level, &ar); level++) {
    lua_getinfo(S, "Snf", &ar);
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "metamethod") == 0 &&
        ar.name != NULL && strcmp(ar.name, "__gc") == 0) {
      lua_pop(S, 1);
      name = "__gc";
      break;
    }
    if (*ar.what == 'C') {
      lua_CFunction f = lua_tocfunction(S, -1);
      if (f != NULL && lua_getupvalue(S, -1, 1) != NULL) {
        int ours = lua_touserdata(S, -1) == (void *)hub;
        lua_pop(S, 1);
        if (ours) { /* our own coroutine.resume/wrap: look further */
          lua_pop(S, 1);
          continue;
        }
      }
      if (lgreen_funcname(S, -1)) {
        const char *g = lua_tostring(S, -1);
        if (strcmp(g, "pcall") == 0 || strcmp(g, "xpcall") == 0) {
          lua_pop(S, 2); /* yieldable in itself: the boundary is further */
          continue;
        }
        lua_xmove(S, L, 1);
        name = lua_tostring(L, -1);
      } else if (ar.name != NULL) {
        name = lua_pushstring(L, ar.name);
      } else {
        name = "a C function";
      }
      lua_pop(S, 1);
      break;
    }
    lua_pop(S, 1);
  }
  if (name == NULL)
    name = "a C function";
  for (i = 0; hints[i].name != NULL; i++)
    if (strcmp(hints[i].name, name) == 0)
      fix = hints[i].fix;
  if (fix == NULL)
    fix = "Move the blocking call out of the callback (before or after the "
          "C call), or spawn a green thread for it.";
  return luaL_error(L,
                    "%s: cannot block inside %s: a green thread cannot be "
                    "suspended across this C-call boundary (a C function "
                    "calling back into Lua, which Lua 5.4 cannot suspend). "
                    "%s",
                    what, name, fix);
}

/* }====================================================== */


/*
** {======================================================
** Hub-level functions
** =======================================================
*/

/*
** sleep([seconds]): 0 or nil yields to every other ready thread and to
** I/O. A positive value below the 1 ms resolution sleeps 1 ms.
*/
static int l_sleep(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  int isnum;
  lua_Number s = lua_tonumberx(L, 1, &isnum); /* sleep(0) is the hot path */
  gl_thread_t *t;
  if (!isnum || s != s)
    s = lgreen_optseconds(L, 1, 0); /* nil, or raise the argument error */
  t = lgreen_begin(L, hub, "green.sleep");
  if (s > 0) {
    uint64_t ns = lgreen_ns(s);
    if (ns < 1000000)
      ns = 1000000;
    gl_wait_start(t, &t->w, "green.sleep", NULL, NULL); /* a timeout */
    lgreen_deadline(L, &t->w, gl_now() + ns);
  } else {
    t->state = GL_READY;
    gl_ready(t);
  }
  return lgreen_block(L, t, lgreen_done_k, (lua_KContext)&t->w);
}


static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)gl_now() / 1e9);
  return 1;
}


static int l_getcurrent(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  if (hub->current == NULL)
    lua_pushnil(L);
  else
    lgreen_pushthread(L, hub->current);
  return 1;
}


/*
** suspend(): the Lua-level wait. Returns true plus the values given to
** wake(), or false plus the error when the wait is canceled (kill,
** Timeout) so the caller can undo its part before raising it.
*/
static int suspend_k(lua_State *L, int status, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  int n = lua_gettop(L) - (int)ctx;
  (void)status;
  if (t->flags & GL_F_PENDING) {
    t->flags &= ~GL_F_PENDING;
    lua_settop(L, (int)ctx);
    lua_pushboolean(L, 0);
    lgreen_pushpending(L, t);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(n + 1));
  return n + 1;
}


/*
** The description of a wait must outlive it (tostring, deadlock messages)
** but 't->what' is a bare pointer: anchor each distinct description in a
** registry table. Primitives use a handful; past 256 distinct ones, fall
** back to a generic name rather than grow without bound.
*/
static const char *anchor_what(lua_State *L, gl_hub_t *hub, int idx) {
  /* Descriptions anchored already, by address: short strings are interned,
     so a primitive's literal is the same string object every call. */
  lgreen_state_t *g = lgreen_state(hub);
  const char **seen = g->whats;
  const char *what = "green.suspend", *s;
  unsigned h;
  if (lua_isnoneornil(L, idx))
    return what;
  luaL_checktype(L, idx, LUA_TSTRING);
  s = lua_tostring(L, idx);
  h = (unsigned)(((uintptr_t)s >> 4) & 7);
  if (seen[h] == s) {
    g->whathits++;
    return s;
  }
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "green.whats") == 0 ||
      lua_rawlen(L, -1) < 256) {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pushvalue(L, idx);
      lua_rawseti(L, -3, (lua_Integer)lua_rawlen(L, -3) + 1);
      lua_pushvalue(L, idx);
      lua_pushboolean(L, 1);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    what = lua_tostring(L, idx); /* anchored as a key of the table */
    seen[h] = what;
  } else {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TNIL)
      what = lua_tostring(L, idx);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return what;
}


static int l_suspend(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  const char *what = anchor_what(L, hub, 1);
  if (t != NULL && (t->flags & GL_F_KILLED)) {
    lua_pushboolean(L, 0);
    lgreen_pushpending(L, t);
    return 2;
  }
  t = lgreen_begin(L, hub, what);
  gl_wait_start(t, &t->w, what, NULL, NULL);
  t->flags |= GL_F_LUAWAIT;
  lua_settop(L, 0);
  return lgreen_block(L, t, suspend_k, 0);
}


/*
** wake(gt, ...): end gt's suspend() with true, ... . Returns false, doing
** nothing, unless gt is suspended in suspend() (already woken, canceled,
** blocked in something else, or dead). Never switches.
*/
static int l_wake(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  int n = lua_gettop(L) - 1;
  if (t->state != GL_SUSPENDED || !(t->flags & GL_F_LUAWAIT)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (n > 0) {
    if (!lua_checkstack(t->L, n + LUA_MINSTACK))
      return luaL_error(L, "too many values to wake");
    lua_xmove(L, t->L, n);
  }
  gl_wake(t, n);
  lua_pushboolean(L, 1);
  return 1;
}


/*
** run(): until no thread, timer or server is left. From a green thread,
** waits until every other thread is done or blocked forever. With a
** function, green.lua spawns it and waits for it (see init.lua).
*/
static int l_run(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t;
  if (hub->current == NULL)
    return luaL_error(L, "green.run: cannot run the hub from a finalizer "
                         "or a hub callback");
  t = lgreen_begin(L, hub, "green.run");
  gl_wait_start(t, &t->w, "green.run", NULL, NULL);
  gl_waitq_push(&hub->idlers, &t->w);
  return lgreen_block(L, t, lgreen_done_k, (lua_KContext)&t->w);
}


static int l_stats(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  lgreen_state_t *g = lgreen_state(hub);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)g->nalive);
  lua_setfield(L, -2, "threads");
  lua_pushinteger(L, (lua_Integer)hub->nready);
  lua_setfield(L, -2, "ready");
  lua_pushinteger(L, (lua_Integer)hub->nheap);
  lua_setfield(L, -2, "timers");
  lua_pushboolean(L, uv_loop_alive(&hub->loop));
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, g->lastid);
  lua_setfield(L, -2, "spawned");
  lua_pushinteger(L, (lua_Integer)g->whathits);
  lua_setfield(L, -2, "suspend_cache_hits");
  return 1;
}


static int l_isyieldable(lua_State *L) {
  /* Can the caller block? (a green thread outside C-call boundaries, or
     the main thread when the hub is not running; not in a finalizer) */
  lua_pushboolean(L, lgreen_canblock(L, lgreen_hub(L)));
  return 1;
}

/* }====================================================== */


static int hub_gc(lua_State *L) {
  gl_hub_t *hub = (gl_hub_t *)luaL_checkudata(L, 1, LGREEN_HUB_MT);
  if (hub->loop.data != NULL) { /* once */
    hub->loop.data = NULL;
    gl_hub_close(hub);
  }
  return 0;
}


static const luaL_Reg core_funcs[] = {
    {"sleep", l_sleep},
    {"now", l_now},
    {"getcurrent", l_getcurrent},
    {"suspend", l_suspend},
    {"wake", l_wake},
    {"run", l_run},
    {"stats", l_stats},
    {"cansuspend", l_isyieldable},
    {NULL, NULL}};


/*
** [-nup, +0, m] Set the functions of 'funcs' in the table just below the
** 'nup' values on the top (the module table, a metatable), each with the
** hub as upvalue 1 (see 'lgreen_hub') and those values, which it pops, as
** upvalues 2 to nup + 1. How the files of green.core add functions.
*/
void lgreen_register(lua_State *L, const luaL_Reg *funcs, int nup) {
  lua_pushlightuserdata(L, lgreen_gethub(L));
  lua_insert(L, -(nup + 1));
  luaL_setfuncs(L, funcs, nup + 1);
}


gl_hub_t *lgreen_gethub(lua_State *L) {
  gl_hub_t *hub;
  lua_getfield(L, LUA_REGISTRYINDEX, LGREEN_HUB);
  hub = (gl_hub_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return hub;
}


int luaopen_green_core(lua_State *L) {
  gl_hub_t *hub = lgreen_gethub(L);
  lgreen_state_t *g;
  if (hub != NULL) { /* loaded twice into one state: share the hub */
    lua_getfield(L, LUA_REGISTRYINDEX, "green.core");
    return 1;
  }
  g = (lgreen_state_t *)lua_newuserdatauv(L, sizeof(*g), 0);
  memset(g, 0, sizeof(*g)); /* every field starts empty, the new ones too */
  hub = &g->hub;
  /* The hooks are installed by the files that define them
     (lgreen_open_thread, lgreen_open_interrupt). */
  if (gl_hub_init(hub, NULL) < 0)
    return luaL_error(L, "green.core: cannot initialize the event loop");
  hub->loop.data = hub; /* marks it open, for __gc */
  g->boundary_depth = 0;
  g->boundary_L = NULL;
  g->lastid = 0;
  g->nalive = 0;
  memset(g->whats, 0, sizeof(g->whats));
  g->whathits = 0;
  g->interrupt_target = NULL;
  g->interrupted = 0;
  g->dump = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  gl_mark_set(lua_tothread(L, -1), 0); /* copied into new coroutines */
  hub->probe.running = lua_tothread(L, -1); /* the host runs it (watchdog) */
  lua_pop(L, 1);
  luaL_newmetatable(L, LGREEN_HUB_MT);
  lua_pushcfunction(L, hub_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LGREEN_HUB);
  /* Live threads by slot: anchoring with rawseti at a slot the hub already
     allocated is several times cheaper than luaL_ref. */
  lua_createtable(L, 256, 0);
  g->anchors = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 40);
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, core_funcs, 1);
  lgreen_open_thread(L, hub);
  lgreen_open_interrupt(L, hub);
  lgreen_open_timeout(L, hub);
  lgreen_open_coro(L, hub);
  lgreen_open_stdio(L, hub);
  lgreen_open_socket(L, hub);
  lgreen_open_stream(L, hub);
  lgreen_open_conn(L, hub);
  lgreen_open_tcp(L, hub);
  lgreen_open_pipe(L, hub);
  lgreen_open_udp(L, hub);
  lgreen_open_select(L, hub);
  lgreen_open_dns(L, hub);
  lgreen_open_debug(L, hub);
  lgreen_open_watchdog(L, hub);
  lgreen_open_event(L, hub);
  lgreen_open_semaphore(L, hub);
  lgreen_open_queue(L, hub);
  lua_pushliteral(L, GL_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "green.core");
  return 1;
}
