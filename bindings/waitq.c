/*
** The toolkit's wait queues: blocking in an Event, a Semaphore or a Queue,
** handing a value to a waiter, and the class plumbing of those types. See
** lwaitq.h for the protocol; event.c, semaphore.c and queue.c use it.
**
** Why C, and why no record per wait: in Lua each wait was a table and a
** weak-table entry, and a thread parked in Event:wait held three Lua
** frames (wait, block, suspend); 100,000 parked threads took 2.7 KB each
** and were spawned at 0.37 of the bare coroutine rate. Here a parked
** thread holds one C frame and its embedded 't->w', the same as a thread
** parked in core.suspend.
*/
#include "lwaitq.h"


void lgreen_wq_init(lgreen_wq *wq) {
  gl_waitq_init(&wq->q);
  wq->n = 0;
}


/*
** [-0, +0, v] The optional timeout at argument 'arg': 0 if absent or nil,
** else 1 with the seconds in '*s'. Anything but a number, and NaN, raise
** (as the Lua layer's checks did: a string is not a duration).
*/
int lgreen_wq_opttimeout(lua_State *L, int arg, lua_Number *s) {
  switch (lua_type(L, arg)) {
  case LUA_TNONE:
  case LUA_TNIL:
    return 0;
  case LUA_TNUMBER:
    *s = lua_tonumber(L, arg);
    if (*s != *s)
      luaL_argerror(L, arg, "number or nil expected, got NaN");
    return 1;
  default:
    return luaL_typeerror(L, arg, "number or nil");
  }
}


/*
** [-0, +0, v] Block running thread 't' (from 'lgreen_begin') in 'wq' until
** a waker ends its wait, for at most '*s' seconds if 's' is not NULL,
** then continue in 'k' (its context is the wait). 'what' names the wait
** and must outlive it (a literal); 'cancel' takes a timed-out or
** interrupted wait's count back ('wq->n'). 'final' marks a wait whose
** waker's hand-off cannot be undone (a put: the item is taken): 'k' must
** clear 'w->final' first thing (see gl_wait.final). The caller has checked
** everything that can raise: from here to the yield nothing allocates, so
** no finalizer can run between the caller's decision to block and the
** wait being queued.
*/
int lgreen_wq_wait(lua_State *L, gl_thread_t *t, lgreen_wq *wq,
                   const char *what, gl_wait_cb cancel, const lua_Number *s,
                   lua_KFunction k, int final) {
  gl_wait_t *w = &t->w;
  gl_wait_start(t, w, what, cancel, L);
  w->final = final;
  gl_waitq_push(&wq->q, w);
  wq->n++;
  if (s != NULL)
    lgreen_deadline(L, w, gl_now() + lgreen_ns(*s)); /* ENOMEM: cancel */
  return lgreen_block(L, t, k, (lua_KContext)w);
}


/*
** End the longest wait of 'wq' (GL_W_OK; its thread is queued) and return
** it, so the caller can hand it a value; NULL if none. Never switches.
*/
gl_wait_t *lgreen_wq_wake(lgreen_wq *wq) {
  gl_wait_t *w = gl_waitq_wake(&wq->q, GL_W_OK);
  if (w != NULL)
    wq->n--;
  return w;
}


/*
** [-0, +0, -] Hand the value at 'idx' to wait 'w', just ended by
** 'lgreen_wq_wake': it goes on top of the waiting call's stack. The
** waiting C function reserved LUA_MINSTACK slots and left at most a few
** in use, so there is room for the one or two values the toolkit pushes
** without allocating.
*/
void lgreen_wq_give(lua_State *L, gl_wait_t *w, int idx) {
  lua_pushvalue(L, idx);
  lua_xmove(L, lgreen_wq_state(w), 1);
}


/* [-0, +1, -] Push the value at 'slot' of pending wait w's frame. */
void lgreen_wq_take(lua_State *L, gl_wait_t *w, int slot) {
  lua_State *W = lgreen_wq_state(w);
  lua_pushvalue(W, slot);
  lua_xmove(W, L, 1);
}


/*
** [-0, +0, v] The object at 'idx' if it is of the running method's class
** (its metatable is upvalue 2), else raise a type error naming that
** class (its __name; 'tname' if it has none): a LightQueue method given
** a Queue says "green.LightQueue expected, got green.Queue", where
** naming the family ('tname') said "green.Queue expected, got
** green.Queue". luaL_checkudata's test without the registry lookup by
** name, which made the check the largest cost of a Queue hand-off
** (callgrind: ~190 of ~1,900 instructions per call).
*/
void *lgreen_wq_check(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_getmetatable(L, idx)) {
    const void *mt = lua_topointer(L, -1); /* cheaper than lua_rawequal */
    lua_pop(L, 1);
    if (mt == lua_topointer(L, lua_upvalueindex(2)))
      return p;
  }
  if (lua_getfield(L, lua_upvalueindex(2), "__name") == LUA_TSTRING)
    tname = lua_tostring(L, -1); /* (stays on the stack: anchored) */
  luaL_typeerror(L, idx, tname);
  return NULL;
}


/*
** {======================================================
** Registration
** =======================================================
*/

/*
** [-0, +2, m] Start a module (a table of green.core): push it and the
** hub, and return the module's index.
*/
int lgreen_wq_module(lua_State *L, gl_hub_t *hub) {
  lua_newtable(L);
  lua_pushlightuserdata(L, hub);
  return lua_gettop(L) - 1;
}


/*
** [-0, +0, m] Register class 'tname': a metatable in the registry (as
** luaL_newmetatable makes it, with __name) whose __index is a table of
** the methods 'l', which get the hub and the metatable as upvalues 1 and
** 2; store the metatable in the module as 'field' (the Lua layer adds
** its own methods through it).
*/
void lgreen_wq_class(lua_State *L, int mod, const char *tname,
                     const luaL_Reg *l, const char *field) {
  luaL_newmetatable(L, tname);
  lua_newtable(L);
  lua_pushvalue(L, mod + 1);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, l, 2);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, mod, field);
}


/* [-0, +0, m] Set the functions 'l' (upvalue: the hub) in the module. */
void lgreen_wq_setfuncs(lua_State *L, int mod, const luaL_Reg *l) {
  lua_pushvalue(L, mod);
  lua_pushvalue(L, mod + 1);
  luaL_setfuncs(L, l, 1);
  lua_pop(L, 1);
}


/*
** [-2, +0, m] Store the module at 'mod' as field 'name' of the table at
** 'core' and pop everything down to it.
*/
void lgreen_wq_register(lua_State *L, int core, const char *name, int mod) {
  lua_pushvalue(L, mod);
  lua_setfield(L, core, name);
  lua_settop(L, mod - 1);
}

/* }====================================================== */
