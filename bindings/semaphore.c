/*
** green.Semaphore and green.BoundedSemaphore in C (lua/green/semaphore.lua
** is their module, and builds CappedSemaphore from two of them).
**
** A release hands its unit straight to the longest waiter (FIFO), so a
** later acquire cannot overtake it, and release never switches threads.
** A free unit therefore means nobody waits. A waiter interrupted after it
** was handed a unit (woken, then killed or timed out by a foreign Timeout
** before it ran) releases the unit again, to the next waiter or the count.
*/
#include "lwaitq.h"

#define SEMAPHORE "green.Semaphore"
#define BOUNDED "green.BoundedSemaphore"

typedef struct sem {
  lgreen_wq waiters;
  lua_Integer counter;
  lua_Integer bound; /* BoundedSemaphore: highest count; else -1 */
} sem;


static sem *tosem(lua_State *L) {
  return (sem *)lgreen_wq_check(L, 1, SEMAPHORE);
}


/* One unit back: to the longest waiter, else the count. */
static void release(sem *s) {
  if (lgreen_wq_wake(&s->waiters) == NULL)
    s->counter++;
}


/* An acquire timed out or interrupted while it waited. */
static void acquire_cancel(gl_wait_t *w) {
  ((sem *)lgreen_wq_object(w))->waiters.n--;
}


/* Interrupted after a release handed it a unit: pass the unit on. */
static void acquire_undo(gl_wait_t *w) {
  if (w->status == GL_W_OK)
    release((sem *)lgreen_wq_object(w));
}


static int acquire_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_pushboolean(L, lgreen_waited(L, (gl_wait_t *)ctx, acquire_undo) ==
                         GL_W_OK);
  return 1;
}


/*
** sem:acquire([blocking], [timeout]): true once a unit is taken; false if
** 'blocking' is false and none is free, or 'timeout' seconds passed.
*/
static int sem_acquire(lua_State *L) {
  sem *s = tosem(L);
  lua_Number secs;
  int top = lua_gettop(L), timed = 0, nonblocking = 0;
  gl_thread_t *t;
  if (top >= 2) {
    timed = top >= 3 && lgreen_wq_opttimeout(L, 3, &secs);
    nonblocking = lua_type(L, 2) == LUA_TBOOLEAN && !lua_toboolean(L, 2);
    if (timed && nonblocking)
      luaL_argerror(L, 3, "timeout given for a non-blocking acquire");
  }
  if (s->counter > 0) { /* no switch; a free unit means no waiters */
    s->counter--;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (nonblocking) {
    lua_pushboolean(L, 0);
    return 1;
  }
  t = lgreen_begin(L, lgreen_hub(L), "Semaphore:acquire");
  if (top != 1)
    lua_settop(L, 1);
  return lgreen_wq_wait(L, t, &s->waiters, "Semaphore:acquire",
                        acquire_cancel, timed ? &secs : NULL, acquire_k, 0);
}


/* sem:release(): true. Never switches threads. */
static int sem_release(lua_State *L) {
  sem *s = tosem(L);
  if (s->bound >= 0 && s->counter >= s->bound)
    return luaL_error(L, "Semaphore released too many times");
  if (s->counter == LUA_MAXINTEGER) /* (a free unit: nobody waits) */
    return luaL_error(L, "Semaphore released too many times (its count "
                         "is math.maxinteger)");
  release(s);
  lua_pushboolean(L, 1);
  return 1;
}


static int sem_locked(lua_State *L) {
  lua_pushboolean(L, tosem(L)->counter <= 0);
  return 1;
}


static int sem_balance(lua_State *L) {
  sem *s = tosem(L);
  lua_pushinteger(L, s->counter - s->waiters.n);
  return 1;
}


static int sem_waiting(lua_State *L) {
  lua_pushinteger(L, tosem(L)->waiters.n);
  return 1;
}


/*
** semaphore.new(value, [bound]): a Semaphore with 'value' units, or with
** 'bound' a BoundedSemaphore. The Lua layer has checked the arguments.
*/
static int sem_new(lua_State *L) {
  lua_Integer value = luaL_checkinteger(L, 1);
  lua_Integer bound = luaL_optinteger(L, 2, -1);
  sem *s = (sem *)lua_newuserdatauv(L, sizeof(*s), 0);
  lgreen_wq_init(&s->waiters);
  s->counter = value;
  s->bound = bound;
  luaL_setmetatable(L, bound >= 0 ? BOUNDED : SEMAPHORE);
  return 1;
}


static const luaL_Reg sem_methods[] = {
    {"acquire", sem_acquire}, {"release", sem_release},
    {"locked", sem_locked},   {"balance", sem_balance},
    {"waiting", sem_waiting}, {NULL, NULL}};

static const luaL_Reg sem_funcs[] = {{"new", sem_new}, {NULL, NULL}};


/*
** core.semaphore = {new = ..., Semaphore_mt = ..., BoundedSemaphore_mt =
** ...}. The classes have the same methods (a bounded semaphore's release
** checks its bound), each closed over its own metatable.
*/
void lgreen_open_semaphore(lua_State *L, gl_hub_t *hub) {
  int core = lua_gettop(L);
  int mod = lgreen_wq_module(L, hub);
  lgreen_wq_class(L, mod, SEMAPHORE, sem_methods, "Semaphore_mt");
  lgreen_wq_class(L, mod, BOUNDED, sem_methods, "BoundedSemaphore_mt");
  lgreen_wq_setfuncs(L, mod, sem_funcs);
  lgreen_wq_register(L, core, "semaphore", mod);
}
