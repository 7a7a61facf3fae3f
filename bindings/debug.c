/*
** Introspection: the list of live green threads (green.debug.threads,
** which green.debug.dump formats), and a sleep that does not keep the hub
** running (the spec helper's deadline).
**
** Nothing here changes a thread: 'threads' only reads the hub's table of
** live threads and their coroutines' stacks, so it may be called from any
** green thread, from the host's main thread, or while a dump is wanted
** because something is stuck.
*/
#include <stdlib.h>

#include "lgreen.h"

static const char *const state_names[] = {"new",     "delayed",   "ready",
                                          "running", "suspended", "dead"};


/* Order of the list: spawn order, the main thread (id 0) first. */
static int by_id(const void *a, const void *b) {
  lua_Integer x = (*(gl_thread_t *const *)a)->id;
  lua_Integer y = (*(gl_thread_t *const *)b)->id;
  return (x > y) - (x < y);
}


/*
** [-0, +1, m] Push the traceback of 't' as a string, or nil for a thread
** that has not started (its coroutine has no frame yet). 'L' is the
** caller: the running thread is traced from its caller's frame.
*/
static void push_traceback(lua_State *L, gl_hub_t *hub, gl_thread_t *t) {
  lua_Debug ar;
  if (t == hub->current) {
    luaL_traceback(L, L, NULL, 1);
    return;
  }
  if (t->L == NULL || t->state == GL_NEW || t->state == GL_DELAYED ||
      !lua_getstack(t->L, 0, &ar)) {
    lua_pushnil(L);
    return;
  }
  luaL_traceback(L, t->L, NULL, 0);
}


/* [-0, +1, m] Push the description of 't' (see 'l_threads'). */
static void push_info(lua_State *L, gl_hub_t *hub, gl_thread_t *t,
                      uint64_t now) {
  int ud;
  lua_Debug ar;
  lua_createtable(L, 0, 9);
  lgreen_pushthread(L, t);
  ud = lua_gettop(L);
  lua_pushvalue(L, ud);
  lua_setfield(L, -3, "thread");
  lua_pushinteger(L, t->id);
  lua_setfield(L, -3, "id");
  if (lua_getiuservalue(L, ud, LGREEN_UV_EXTRAS) == LUA_TTABLE) {
    lua_getfield(L, -1, "name");
    lua_setfield(L, -4, "name");
  }
  lua_pop(L, 1);
  lua_pushstring(L, state_names[t->state]);
  lua_setfield(L, -3, "state");
  if (t->state == GL_SUSPENDED) {
    lua_pushstring(L, t->wait->what != NULL ? t->wait->what : "a wait");
    lua_setfield(L, -3, "waiting_in");
    lua_pushnumber(L, (lua_Number)((uint32_t)now - t->since) / 1e3);
    lua_setfield(L, -3, "waiting_for");
  }
  if (lgreen_pushsite(L, ud) &&
      lua_getinfo(L, ">S", &ar)) {
    lua_pushfstring(L, "%s:%d", ar.short_src, t->line);
    lua_setfield(L, -3, "site");
  } else {
    lua_pop(L, 1);
  }
  push_traceback(L, hub, t);
  lua_setfield(L, -3, "traceback");
  lua_pop(L, 1); /* the GreenThread */
}


/*
** threads() -> a list of every live green thread, the host's main thread
** (id 0) first, then in spawn order. Each entry: thread (the GreenThread),
** id, name, state ("new", "delayed", "ready", "running", "suspended"),
** waiting_in and waiting_for (seconds, by the loop's clock, which advances
** at each poll) while suspended, site ("file:line" of the spawn) and
** traceback (nil until the thread has started).
*/
static int l_threads(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t **list;
  unsigned i, n = 0;
  uint64_t now;
  list = (gl_thread_t **)lua_newuserdatauv(
      L, (hub->nbases + 1) * sizeof(*list), 0);
  if (hub->main != NULL)
    list[n++] = hub->main;
  for (i = 0; i < hub->nbases; i++)
    if (gl_base_at(hub, i) != NULL)
      list[n++] = hub->bases[i];
  qsort(list, n, sizeof(*list), by_id);
  uv_update_time(&hub->loop); /* the clock 'gl_suspend' stamps with */
  now = uv_now(&hub->loop);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    luaL_checkstack(L, 8, "too many green threads");
    push_info(L, hub, list[i], now);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}


/*
** {======================================================
** sleep_unref: a sleep that does not keep the hub running
** =======================================================
*/

/*
** The sleepers' waits are on the hub's list 'unref_sleepers' (by the
** wait's 'link', so a kill or an abandon takes one off), in due order,
** each with its due time (the loop's ms) as its 'data'; one unref'd
** timer of the hub's, closed with its other handles, fires at the
** earliest. No memory per sleep: a sleeper parked at lua_close leaves
** nothing behind (a timer malloc'd per sleep was lost then).
*/
#define DUE(w) ((uint64_t)(uintptr_t)(w)->data)

static void on_due(uv_timer_t *h);

static void arm(lgreen_state_t *g, uint64_t now, uint64_t due) {
  uint64_t in = due > now ? due - now : 0;
  if (!uv_is_active((uv_handle_t *)&g->unref_timer) ||
      uv_timer_get_due_in(&g->unref_timer) > in)
    uv_timer_start(&g->unref_timer, on_due, in, 0);
}


static void on_due(uv_timer_t *h) {
  lgreen_state_t *g = GL_CONTAINER(h, lgreen_state_t, unref_timer);
  uint64_t now = uv_now(h->loop), next = UINT64_MAX;
  gl_link_t *l = g->unref_sleepers.next;
  int woke = 0;
  while (l != &g->unref_sleepers) { /* in due order: the due ones first */
    gl_wait_t *w = GL_CONTAINER(l, gl_wait_t, link);
    l = l->next;
    if (DUE(w) > now) {
      next = DUE(w);
      break;
    }
    gl_link_remove(&w->link);
    woke |= gl_wait_end(w, GL_W_OK);
  }
  if (next != UINT64_MAX)
    arm(g, now, next);
  /* A timer can fire before the poll of the same uv_run: stop it, or the
     poll would block with the sleeper ready. */
  if (woke)
    uv_stop(h->loop);
}


/*
** sleep_unref(seconds): suspend the calling green thread for 'seconds'
** on a libuv timer that, like any uv_unref'd handle, does not keep the hub
** running: if nothing else is left to do, the hub is idle (green.run()
** returns, a main thread blocked on the sleeper gets its deadlock error)
** and the sleep goes on only when the hub runs again. While the hub blocks
** in the poller, the timer bounds the wait, so a sleeper wakes on time
** even if the poller would otherwise block for good.
*/
static int l_sleep_unref(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  lua_Number sec = lgreen_checkseconds(L, 1); /* NaN: no cast of it */
  uint64_t ms = sec <= 0 ? 0 : sec >= 1e12 ? (uint64_t)1e15
                                           : (uint64_t)(sec * 1e3 + 0.999);
  gl_thread_t *t = lgreen_begin(L, hub, "green.sleep_unref");
  lgreen_state_t *g = lgreen_state(hub);
  uint64_t now;
  gl_link_t *at = &g->unref_sleepers;
  uv_update_time(&hub->loop); /* from now, as green.sleep (gl_now) */
  now = uv_now(&hub->loop);
  gl_wait_start(t, &t->w, "green.sleep_unref", NULL,
                (void *)(uintptr_t)(now + ms));
  /* kept in due order, equal ones in the order they slept: sleepers due
     together (a late turn) wake in their deadlines' order */
  while (at->prev != &g->unref_sleepers &&
         DUE(GL_CONTAINER(at->prev, gl_wait_t, link)) > now + ms)
    at = at->prev;
  gl_link_push(at, &t->w.link); /* before 'at' */
  arm(g, now, now + ms);
  return lgreen_block(L, t, lgreen_done_k, (lua_KContext)&t->w);
}

/* }====================================================== */


/*
** {======================================================
** A count hook that new coroutines inherit
** =======================================================
*/

#define HOOK_KEY "green.inherited_hook"

/*
** Lua 5.4 copies a thread's hook into each coroutine it creates, but
** debug.sethook's hook looks its Lua function up per thread, so it does
** nothing in the new ones. This C hook calls one function for all.
*/
static void inherited_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOK_KEY) == LUA_TFUNCTION)
    lua_call(L, 0, 0); /* may raise, in the hooked code */
  else
    lua_pop(L, 1);
}


/*
** inherited_hook(fn, count): every 'count' instructions, call fn() in the
** calling thread and in every coroutine (green threads included) created
** from it, or from those, while the hook is set there. inherited_hook():
** clear the hook of the calling thread only; the threads that inherited
** it go on calling the last 'fn'. For the spec helper's deadline.
*/
static int l_inherited_hook(lua_State *L) {
  int count;
  if (lua_isnoneornil(L, 1)) {
    lua_sethook(L, NULL, 0, 0);
    return 0;
  }
  luaL_checktype(L, 1, LUA_TFUNCTION);
  count = (int)luaL_checkinteger(L, 2);
  luaL_argcheck(L, count > 0, 2, "positive count expected");
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, HOOK_KEY);
  lua_sethook(L, inherited_hook, LUA_MASKCOUNT, count);
  return 0;
}

/* }====================================================== */


static const luaL_Reg debug_funcs[] = {{"threads", l_threads},
                                       {"sleep_unref", l_sleep_unref},
                                       {"inherited_hook", l_inherited_hook},
                                       {NULL, NULL}};


/* [-0, +0, m] Adds to the module table on the top of the stack. */
void lgreen_open_debug(lua_State *L, gl_hub_t *hub) {
  lgreen_state_t *g = lgreen_state(hub);
  gl_link_init(&g->unref_sleepers);
  if (uv_timer_init(&hub->loop, &g->unref_timer) < 0)
    luaL_error(L, "green.core: cannot initialize the event loop");
  uv_unref((uv_handle_t *)&g->unref_timer);
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, debug_funcs, 1);
}
