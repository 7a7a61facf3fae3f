/*
** Green-aware coroutine.*: user coroutines keep working inside green
** threads.
**
** A blocking call inside a user coroutine makes a hub yield (no values,
** 'hub->hubyield' set), which would reach the coroutine's resumer. Our
** resume recognises it and passes the yield on to its own resumer, and so on up to the hub (cqueues-style
** propagation); when the hub resumes the green thread, each level resumes
** the one below with the hub's values. The user's own yields go to their
** resumer as usual, so a generator that sleeps still yields its values to
** its caller, and a plain library generator never sees the sentinel.
**
** Outside green threads (and on the main thread) these behave exactly
** like Lua 5.4.4's lcorolib.
*/
#include "lgreen.h"

/* A user coroutine passing a hub yield on is marked GL_MARK_BLOCKED. */
static int is_blocked(lua_State *co) {
  return gl_mark_get(co) == GL_MARK_BLOCKED;
}


/* Would lua_resume run 'co' (suspended, or not started), not refuse it
   (running, normal or dead)? */
static int resumable(lua_State *co) {
  lua_Debug ar;
  int status = lua_status(co);
  return status == LUA_YIELD ||
         (status == LUA_OK && !lua_getstack(co, 0, &ar) &&
          lua_gettop(co) > 0);
}


static lua_State *getco(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return co;
}


/*
** Resume 'co' with 'narg' values from L; like lcorolib's auxresume, but a
** hub yield from inside 'co' makes L yield to its own resumer, continuing
** in 'k' ('base' values stay below on L's stack). Returns the number of
** results moved to L, or -1 with the error on L's top.
*/
static int auxresume(lua_State *L, lua_State *co, int narg, int base,
                     lua_KFunction k) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *cur = hub->current;
  int status, nres, guard, chain;
  int blocked = is_blocked(co);
  if (blocked || (co != L && lgreen_base(hub, co) != NULL)) {
    lua_pushstring(L, blocked
                          ? "cannot resume a coroutine blocked in a green wait"
                          : "cannot resume a green thread's coroutine");
    return -1;
  }
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  chain = resumable(co); /* (else lua_resume refuses: leave its mark) */
  lua_xmove(L, co, narg);
  /* From code that cannot yield, a blocking call below must fail cleanly
     instead of making a hub yield into this frame. */
  guard = cur != NULL && !(cur->flags & GL_F_MAIN) && !lua_isyieldable(L);
  if (guard && lgreen_state(hub)->boundary_depth++ == 0)
    lgreen_state(hub)->boundary_L = L;
  /* A hub yield from 'co' reaches the hub if one from L does (see
     lgreen_yieldable): L is the thread's coroutine or chained itself. */
  if (chain)
    gl_mark_set(co, cur != NULL && !(cur->flags & GL_F_MAIN) &&
                            (L == cur->L ||
                             gl_mark_get(L) == GL_MARK_CHAINED)
                        ? GL_MARK_CHAINED
                        : 0);
  /* The watchdog hooks the innermost coroutine running (a hook is per
     coroutine). */
  __atomic_store_n(&hub->probe.running, co, __ATOMIC_RELAXED);
  status = lua_resume(co, L, narg, &nres);
  __atomic_store_n(&hub->probe.running, L, __ATOMIC_RELAXED);
  if (guard)
    lgreen_state(hub)->boundary_depth--;
  if (chain)
    gl_mark_set(co, 0);
  if (status == LUA_YIELD && hub->hubyield) {
    /* 'co' blocked in the hub: pass the hub yield on (the flag stays set
       until the hub sees it). */
    gl_mark_set(co, GL_MARK_BLOCKED);
    return lua_yieldk(L, 0, (lua_KContext)base, k);
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}


/* After the hub resumed us: pass its values down to 'co' and go on. */
static int pass_down(lua_State *L, lua_State *co, int base, lua_KFunction k) {
  int n = lua_gettop(L) - base;
  gl_mark_set(co, 0);
  return auxresume(L, co, n, base, k);
}


static int resume_result(lua_State *L, int r) {
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}


static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return resume_result(L, pass_down(L, lua_tothread(L, 1), (int)ctx,
                                    resume_k));
}


static int co_resume(lua_State *L) {
  lua_State *co = getco(L);
  return resume_result(L, auxresume(L, co, lua_gettop(L) - 1, 1, resume_k));
}


static int wrap_result(lua_State *L, lua_State *co, int r) {
  if (r < 0) { /* as lcorolib's auxwrap */
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) {
      stat = lua_resetthread(co);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}


static int wrap_k(lua_State *L, int status, lua_KContext ctx) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  (void)status;
  return wrap_result(L, co, pass_down(L, co, (int)ctx, wrap_k));
}


static int auxwrap(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  return wrap_result(L, co, auxresume(L, co, lua_gettop(L), 0, wrap_k));
}


static int co_wrap(lua_State *L) {
  lua_State *NL;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  NL = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, NL, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* hub */
  lua_insert(L, -2);
  lua_pushcclosure(L, auxwrap, 2);
  return 1;
}


/* In a green thread's own coroutine there is no resumer to yield to. */
static int co_yield(lua_State *L) {
  if (lgreen_base(lgreen_hub(L), L) != NULL)
    return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}


static int co_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : getco(L);
  lua_pushboolean(L, lua_isyieldable(co) &&
                         lgreen_base(lgreen_hub(L), co) == NULL);
  return 1;
}


static int co_status(lua_State *L) {
  lua_State *co = getco(L);
  if (L == co) {
    lua_pushliteral(L, "running");
  } else if (is_blocked(co) || lgreen_base(lgreen_hub(L), co) != NULL) {
    lua_pushliteral(L, "normal"); /* part of a green thread's chain */
  } else {
    switch (lua_status(co)) {
    case LUA_YIELD:
      lua_pushliteral(L, "suspended");
      break;
    case LUA_OK: {
      lua_Debug ar;
      if (lua_getstack(co, 0, &ar))
        lua_pushliteral(L, "normal");
      else if (lua_gettop(co) == 0)
        lua_pushliteral(L, "dead");
      else
        lua_pushliteral(L, "suspended");
      break;
    }
    default:
      lua_pushliteral(L, "dead");
      break;
    }
  }
  return 1;
}


static int co_close(lua_State *L) {
  lua_State *co = getco(L);
  int status;
  if (is_blocked(co))
    return luaL_error(L, "cannot close a coroutine blocked in a green wait");
  if (lgreen_base(lgreen_hub(L), co) != NULL)
    return luaL_error(L, "cannot close a green thread's coroutine");
  if (L == co)
    return luaL_error(L, "cannot close a running coroutine");
  status = lua_status(co);
  if (status == LUA_OK) {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar))
      return luaL_error(L, "cannot close a normal coroutine");
  }
  status = lua_resetthread(co);
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}


static const luaL_Reg co_funcs[] = {{"resume", co_resume},
                                    {"wrap", co_wrap},
                                    {"yield", co_yield},
                                    {"isyieldable", co_isyieldable},
                                    {"status", co_status},
                                    {"close", co_close},
                                    {NULL, NULL}};


/* core.coroutine: the green versions, installed by init.lua. */
void lgreen_open_coro(lua_State *L, gl_hub_t *hub) {
  lua_createtable(L, 0, 6);
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, co_funcs, 1);
  lua_setfield(L, -2, "coroutine");
}
