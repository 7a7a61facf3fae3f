/*
** lgreen.c: the helpers every part of green.core shares: thread records
** as Lua values, the one way to block (lgreen_begin, lgreen_block,
** lgreen_waited, kill and Timeout delivery), durations, C-call boundary
** errors and registration. It calls into no other file of bindings/, so
** the files form a DAG: green.c opens them all, they all use this one.
*/
#include <string.h>

#include "lgreen.h"


/* [-0, +1, -] Push the function that spawned the thread at 'idx' (see
   LGREEN_UV_SITE); returns 1, or pushes nil and returns 0. */
int lgreen_pushsite(lua_State *L, int idx) {
  if (lua_getiuservalue(L, idx, LGREEN_UV_SITE) == LUA_TTABLE) {
    lua_getfield(L, -1, "site");
    lua_remove(L, -2);
  }
  return lua_type(L, -1) == LUA_TFUNCTION;
}


/* [-0, +1, m] push the extras table of the thread at 'idx'. */
void lgreen_pushextras(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, LGREEN_UV_EXTRAS) != LUA_TTABLE) {
    lua_createtable(L, 0, 3); /* the site function (or nil) moves in */
    lua_insert(L, -2);
    lua_setfield(L, -2, "site");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, LGREEN_UV_EXTRAS);
  }
}


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
    lua_rawgeti(L, LUA_REGISTRYINDEX, lgreen_state(t->hub)->main_anchor);
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
  return (t->flags & GL_F_MAIN) || lgreen_yieldable(L, hub) ||
         gl_cs_can_park(&hub->cs);
}


/* The uncommon cases of 'lgreen_begin' (lgreen.h). */
gl_thread_t *lgreen_begin_slow(lua_State *L, gl_hub_t *hub,
                               const char *what) {
  gl_thread_t *t = hub->current;
  lgreen_checkopen(L, hub); /* a finalizer after lua_close: say so */
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
  if (!(t->flags & GL_F_MAIN) && !lgreen_yieldable(L, hub)) {
    /* Inside a C-call boundary: lgreen_block parks the C stack. */
    if (!gl_cs_can_park(&hub->cs))
      lgreen_boundary_error(L, hub, what);
    t->parking = 1;
  }
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


/*
** [-0, +0, v] The options table at argument 'arg' (if it is a table)
** names no option outside 'known' (NULL-terminated): "bad argument #2 to
** 'udp' (unknown option 'famly')", or "(option name expected, got
** number)" for a key that is not a string, as the Lua functions' check
** (lua/green/opts.lua). With 'array', the keys 1..#t are allowed too (a
** program and its arguments). One pass over the table; a lookup is a
** few strcmp.
*/
void lgreen_checkopts(lua_State *L, int arg, const char *const known[],
                      int array) {
  lua_Integer n;
  arg = lua_absindex(L, arg);
  if (!lua_istable(L, arg))
    return;
  n = array ? (lua_Integer)lua_rawlen(L, arg) : 0;
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *k = lua_tolstring(L, -1, &len);
      while (known[i] != NULL &&
             !(strlen(known[i]) == len && memcmp(known[i], k, len) == 0))
        i++;
      if (known[i] == NULL)
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", k));
    } else if (!(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
                 lua_tointeger(L, -1) <= n)) {
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "option name expected, got %s",
                                    luaL_typename(L, -1)));
    }
  }
}


/*
** [-0, +0, -] Whether the value at 'idx' can be called as Lua calls it: a
** function, or a value whose metatable has a raw __call (a callable table
** or userdata). The one check of every public function that takes a
** function (green.opts.callable is the Lua modules' own).
*/
int lgreen_iscallable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION)
    return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL)
    return 0;
  lua_pop(L, 1);
  return 1;
}


/* [-0, +0, v] 'bad argument #arg to 'f' (function expected, got T)' unless
   the value at 'arg' is callable (lgreen_iscallable). */
void lgreen_checkcallable(lua_State *L, int arg) {
  if (!lgreen_iscallable(L, arg))
    luaL_typeerror(L, arg, "function");
}


/* [-0, +0, v] As 'lgreen_checkseconds', 'def' when absent or nil. */
lua_Number lgreen_optseconds(lua_State *L, int arg, lua_Number def) {
  return lua_isnoneornil(L, arg) ? def : lgreen_checkseconds(L, arg);
}


/*
** [-0, +0, v] The timeout of one call at argument 'arg', the toolkit's
** rule (eventlet's): nil or absent is no limit (-1 here), a negative
** number is 0 (do not wait: expire at once), NaN raises.
*/
lua_Number lgreen_optwait(lua_State *L, int arg) {
  lua_Number s;
  if (lua_isnoneornil(L, arg))
    return -1;
  s = lgreen_checkseconds(L, arg);
  return s < 0 ? 0 : s;
}

/* }====================================================== */


/*
** Block inside a C-call boundary: park the C stack (runtime/cstack.c)
** until the wait is over, then run 'k' here. The boundary counter of the
** green coroutine.resume is this thread's: others run with it at zero.
** If the stack cannot park, undo the wait and raise.
*/
static int park(lua_State *L, gl_thread_t *t, lua_KFunction k,
                lua_KContext ctx) {
  gl_hub_t *hub = t->hub;
  lgreen_state_t *g = lgreen_state(hub);
  int depth = g->boundary_depth, r, n;
  lua_State *outer = g->boundary_L;
  g->boundary_depth = 0;
  g->boundary_L = NULL;
  r = gl_park(t);
  g->boundary_depth = depth;
  g->boundary_L = outer;
  if (r < 0) {
    const char *what = t->state == GL_SUSPENDED && t->wait->what != NULL
                           ? t->wait->what
                           : "green.sleep";
    if (t->state == GL_SUSPENDED)
      gl_wait_abandon(t->wait, r);
    else if (t->state == GL_READY)
      gl_unready(t);
    t->state = GL_RUNNING;
    if (r == UV_E2BIG)
      return luaL_error(L,
                        "cannot block here: the C stack inside this C-call "
                        "boundary is deeper than %d KB (too much recursion "
                        "below the blocking call)",
                        (int)(hub->cs.limit / 1024));
    if (r == UV_ENOMEM)
      return luaL_error(L, "not enough memory");
    return lgreen_boundary_error(L, hub, what);
  }
  /* Continued by the hub: this coroutine runs (for the watchdog), and
     values given by a Lua-level waker are on the thread's base coroutine. */
  __atomic_store_n(&hub->probe.running, L, __ATOMIC_RELAXED);
  n = hub->ra.nargs;
  if (n > 0 && L != t->L) {
    if (!lua_checkstack(L, n)) {
      lua_pop(t->L, n);
      return luaL_error(L, "not enough memory");
    }
    lua_xmove(t->L, L, n);
  }
  return k(L, LUA_YIELD, ctx);
}


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
    if (r == GL_EDEADLK && lgreen_state(hub)->orphaned)
      lgreen_fork_exit(hub); /* a child of green.fork: its threads ended */
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
  if (t->parking) {
    t->parking = 0;
    if (!lgreen_yieldable(L, t->hub))
      return park(L, t, k, ctx);
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
** [-0, +0, m] A unique error value (an empty table whose metatable's
** __name is 'name' and __tostring is 'tostr'), stored in the registry at
** 'name' and in the module table on the top of the stack at 'field'. For
** values compared with ==: green.GreenletExit, green.BlockingError.
*/
void lgreen_newsingleton(lua_State *L, const char *name, const char *field,
                         lua_CFunction tostr) {
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushcfunction(L, tostr);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, name);
  lua_setfield(L, -2, field);
}


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
  hub = (gl_hub_t *)lua_touserdata(L, -1); /* green.c: the record's box */
  hub = hub != NULL ? *(gl_hub_t **)(void *)hub : NULL;
  lua_pop(L, 1);
  return hub;
}
