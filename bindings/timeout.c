/*
** green.Timeout: if the block is still running after 'seconds', its
** current blocking call raises the Timeout (or the given error).
**
**   local t <close> = green.Timeout(5)
**
** A Timeout belongs to the thread that created it. It fires only at a
** blocking point of that thread (never inside a release path, which does
** not block), it is canceled by __close, cancel() or the thread's death,
** and an armed Timeout is anchored so that it fires even if the caller
** dropped its reference.
*/
#include "lgreen.h"

typedef struct timeout {
  gl_timer_t timer;
  struct timeout *next; /* in the owner's list ('timeouts') while armed */
  gl_thread_t *thread;  /* owner */
  gl_hub_t *hub;
  lua_Number seconds;    /* as given (never: nil was) */
  int never;
  int anchor;           /* registry reference while armed */
  int fired;
} timeout;


static timeout *totimeout(lua_State *L) {
  return (timeout *)luaL_checkudata(L, 1, LGREEN_TIMEOUT);
}


/* Disarm 'to' (armed: it holds an anchor); harmless if it is not. The
   owner's list is singly linked: a thread arms a handful at most. */
static void disarm(lua_State *L, timeout *to) {
  timeout **p = (timeout **)&to->thread->timeouts;
  gl_timer_stop(to->hub, &to->timer);
  if (to->anchor == LUA_NOREF)
    return;
  while (*p != NULL && *p != to)
    p = &(*p)->next;
  if (*p == to)
    *p = to->next;
  to->next = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, to->anchor);
  to->anchor = LUA_NOREF;
}


/* Has 't''s blocking call ended in an outcome that cannot be undone, and
   't' not run since? (See gl_wait.final.) */
static int final_ended(const gl_thread_t *t) {
  return t->state == GL_READY && t->w.final && t->w.status == GL_W_OK &&
         !(t->flags & GL_F_KILLED);
}


/*
** Runs in the hub (no Lua code runs: only stack operations on hub->L).
** A thread raises one error at a time: if another (an outer Timeout due
** at the same moment) waits to be raised, this one would overwrite it and
** that Timeout would be lost, its deadline never enforced. It fires after
** that one instead: at the thread's next blocking call (the next poll
** once the thread has run). A kill needs no such care: it is sticky.
** So does a Timeout due when the thread's blocking call has already
** completed for good (a put whose item was taken: 'final_ended') and the
** thread has not run since: raised there it would say the put failed.
*/
static void on_fire(gl_timer_t *tm) {
  timeout *to = GL_CONTAINER(tm, timeout, timer);
  lua_State *L = to->hub->L;
  gl_thread_t *t = to->thread;
  if (((t->flags & (GL_F_PENDING | GL_F_KILLED)) == GL_F_PENDING ||
       final_ended(t)) &&
      t->state != GL_DEAD &&
      gl_timer_start(to->hub, &to->timer, gl_now() + 1, on_fire) == 0)
    return; /* (on ENOMEM it fires now: the older error is replaced) */
  to->fired = 1;
  lua_checkstack(L, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, to->anchor);
  if (lua_getiuservalue(L, -1, 1) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1); /* raise the Timeout itself */
  }
  lgreen_throw(L, to->thread, -1, 0);
  lua_pop(L, 2);
  disarm(L, to);
}


/* Timeout(seconds, [err]): armed for the calling thread. nil: never. */
static int l_timeout(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  timeout *to;
  lua_Number s = lgreen_optseconds(L, 1, 0);
  int never = lua_isnoneornil(L, 1);
  lua_settop(L, 2);
  lgreen_checkopen(L, hub); /* its timer would be the closed hub's */
  if (hub->current == NULL)
    return luaL_error(L, "green.Timeout: no green thread is running");
  to = (timeout *)lua_newuserdatauv(L, sizeof(*to), 1);
  to->timer.idx = 0;
  to->next = NULL;
  to->thread = hub->current;
  to->hub = hub;
  to->seconds = s;
  to->never = never;
  to->anchor = LUA_NOREF;
  to->fired = 0;
  luaL_setmetatable(L, LGREEN_TIMEOUT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  if (!never) {
    /* Anchored before it is armed: luaL_ref may raise (out of memory),
       and a timer armed for a Timeout Lua then frees would fire in it */
    lua_pushvalue(L, -1);
    to->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    if (gl_timer_start(hub, &to->timer, gl_now() + lgreen_ns(s), on_fire) <
        0) {
      luaL_unref(L, LUA_REGISTRYINDEX, to->anchor);
      to->anchor = LUA_NOREF;
      return luaL_error(L, "not enough memory");
    }
    to->next = (timeout *)to->thread->timeouts;
    to->thread->timeouts = to;
  }
  return 1;
}


/* t:cancel(): it will not fire. Also __close. */
static int to_cancel(lua_State *L) {
  timeout *to = totimeout(L);
  if (to->timer.idx != 0)
    disarm(L, to);
  return 0;
}


static int to_pending(lua_State *L) {
  lua_pushboolean(L, totimeout(L)->timer.idx != 0);
  return 1;
}


static int to_index(lua_State *L) {
  timeout *to = totimeout(L);
  const char *k = luaL_checkstring(L, 2);
  if (k[0] == 's' && k[1] == 'e' && k[2] == 'c' && lua_rawlen(L, 2) == 7) {
    if (to->never)
      lua_pushnil(L);
    else
      lua_pushnumber(L, to->seconds);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}


static int to_tostring(lua_State *L) {
  timeout *to = totimeout(L);
  if (to->never)
    lua_pushliteral(L, "Timeout (never)");
  else
    lua_pushfstring(L, "Timeout: %f seconds", (double)to->seconds);
  return 1;
}


static int l_is_timeout(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, LGREEN_TIMEOUT) != NULL);
  return 1;
}


/* The owner died: its armed Timeouts can never fire. */
void lgreen_timeouts_drop(lua_State *L, gl_thread_t *t) {
  while (t->timeouts != NULL)
    disarm(L, (timeout *)t->timeouts);
}


static const luaL_Reg to_methods[] = {
    {"cancel", to_cancel}, {"pending", to_pending}, {NULL, NULL}};


void lgreen_open_timeout(lua_State *L, gl_hub_t *hub) {
  luaL_newmetatable(L, LGREEN_TIMEOUT);
  lua_newtable(L);
  luaL_setfuncs(L, to_methods, 0);
  lua_pushcclosure(L, to_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, to_cancel);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, to_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, hub);
  lua_pushcclosure(L, l_timeout, 1);
  lua_setfield(L, -2, "Timeout");
  lua_pushcfunction(L, l_is_timeout);
  lua_setfield(L, -2, "is_timeout");
}
