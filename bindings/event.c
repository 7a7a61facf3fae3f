/*
** green.Event in C (lua/green/event.lua is its module): a one-shot event
** after eventlet's. Any number of threads wait; one send wakes them all,
** in the order they started waiting, without switching threads.
**
** The values sent are the Event's user value: nothing (send()), the one
** value, or a table {n = ..., ...} for several; an exception is the error
** value. 'send' pushes the kind and that value onto each waiter's stack,
** so a waiter woken before a 'reset' still gets what woke it.
*/
#include "lwaitq.h"

#define EVENT "green.Event"

/* What an Event holds ('event.kind'). */
#define EV_FRESH 0 /* not sent */
#define EV_NONE 1  /* sent with no value */
#define EV_ONE 2   /* sent with one value (the user value) */
#define EV_MANY 3  /* sent with a table {n = ..., ...} */
#define EV_EXC 4   /* sent with send_exception (the error value) */

typedef struct event {
  lgreen_wq waiters;
  int kind;
} event;


static event *toevent(lua_State *L) {
  return (event *)lgreen_wq_check(L, 1, EVENT);
}


/* A waiter left (timeout, kill) before the event was sent. */
static void wait_cancel(gl_wait_t *w) {
  ((event *)lgreen_wq_object(w))->waiters.n--;
}


/* [-0, +n, v] What 'wait' returns for 'kind' with the value at 'v'. */
static int results(lua_State *L, int kind, int v) {
  switch (kind) {
  case EV_NONE:
    return 0;
  case EV_ONE:
    lua_pushvalue(L, v);
    return 1;
  case EV_MANY: {
    int i, n;
    lua_getfield(L, v, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results to unpack");
    for (i = 1; i <= n; i++)
      lua_rawgeti(L, v, i);
    return n;
  }
  default: /* EV_EXC: as it is, no position added */
    lua_pushvalue(L, v);
    return lua_error(L);
  }
}


/* Woken by send (kind and value pushed), or timed out. */
static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = (gl_wait_t *)ctx;
  int top;
  (void)status;
  if (lgreen_waited(L, w, NULL) == GL_W_TIMEOUT) { /* raises if killed */
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  top = lua_gettop(L);
  return results(L, (int)lua_tointeger(L, top - 1), top);
}


/*
** ev:wait([timeout]): the values sent, at once if sent already; nil,
** "timeout" if 'timeout' seconds pass first. Raises the error given to
** send_exception.
*/
static int ev_wait(lua_State *L) {
  event *ev = toevent(L);
  lua_Number s;
  int top = lua_gettop(L);
  int timed = top >= 2 && lgreen_wq_opttimeout(L, 2, &s);
  gl_thread_t *t;
  if (ev->kind != EV_FRESH) {
    lua_getiuservalue(L, 1, 1);
    return results(L, ev->kind, lua_gettop(L));
  }
  t = lgreen_begin(L, lgreen_hub(L), "Event:wait");
  if (top != 1)
    lua_settop(L, 1); /* send pushes its kind and value at 2 and 3 */
  return lgreen_wq_wait(L, t, &ev->waiters, "Event:wait", wait_cancel,
                        timed ? &s : NULL, wait_k, 0);
}


/* [-1, +0, e] Make the value on top what the event holds, wake all. */
static void deliver(lua_State *L, event *ev, int kind) {
  gl_wait_t *w;
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 1);
  ev->kind = kind;
  lua_pushinteger(L, kind);
  while ((w = lgreen_wq_wake(&ev->waiters)) != NULL) {
    lgreen_wq_give(L, w, -1);
    lgreen_wq_give(L, w, -2);
  }
  lua_pop(L, 2);
}


static void check_fresh(lua_State *L, event *ev) {
  if (ev->kind != EV_FRESH)
    luaL_error(L, "Trying to re-send() an already-triggered event");
}


/* ev:send(...): wake every waiter with '...'; once. Never switches. */
static int ev_send(lua_State *L) {
  event *ev = toevent(L);
  int n = lua_gettop(L) - 1, kind, i;
  check_fresh(L, ev);
  if (n <= 1) {
    kind = n == 0 ? EV_NONE : EV_ONE;
    lua_settop(L, 2);
  } else { /* before anything changes: this may raise */
    kind = EV_MANY;
    lua_createtable(L, n, 1);
    for (i = 1; i <= n; i++) {
      lua_pushvalue(L, i + 1);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
  }
  deliver(L, ev, kind);
  return 0;
}


/* ev:send_exception(err): wake every waiter raising 'err'; once. */
static int ev_send_exception(lua_State *L) {
  event *ev = toevent(L);
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "error value expected");
  check_fresh(L, ev);
  lua_settop(L, 2);
  deliver(L, ev, EV_EXC);
  return 0;
}


static int ev_ready(lua_State *L) {
  lua_pushboolean(L, toevent(L)->kind != EV_FRESH);
  return 1;
}


static int ev_has_exception(lua_State *L) {
  lua_pushboolean(L, toevent(L)->kind == EV_EXC);
  return 1;
}


static int ev_waiting(lua_State *L) {
  lua_pushinteger(L, toevent(L)->waiters.n);
  return 1;
}


/* ev:reset(): a sent event becomes fresh again. */
static int ev_reset(lua_State *L) {
  event *ev = toevent(L);
  if (ev->kind == EV_FRESH)
    return luaL_error(L, "Trying to re-reset() a fresh event");
  ev->kind = EV_FRESH;
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  return 0;
}


/* event.new(): a fresh Event. */
static int ev_new(lua_State *L) {
  event *ev = (event *)lua_newuserdatauv(L, sizeof(*ev), 1);
  lgreen_wq_init(&ev->waiters);
  ev->kind = EV_FRESH;
  luaL_setmetatable(L, EVENT);
  return 1;
}


static const luaL_Reg ev_methods[] = {
    {"wait", ev_wait},
    {"send", ev_send},
    {"send_exception", ev_send_exception},
    {"ready", ev_ready},
    {"has_exception", ev_has_exception},
    {"waiting", ev_waiting},
    {"reset", ev_reset},
    {NULL, NULL}};

static const luaL_Reg ev_funcs[] = {{"new", ev_new}, {NULL, NULL}};


/* core.event = {new = ..., Event_mt = the metatable}. */
void lgreen_open_event(lua_State *L, gl_hub_t *hub) {
  int core = lua_gettop(L);
  int mod = lgreen_wq_module(L, hub);
  lgreen_wq_class(L, mod, EVENT, ev_methods, "Event_mt");
  lgreen_wq_setfuncs(L, mod, ev_funcs);
  lgreen_wq_register(L, core, "event", mod);
}
