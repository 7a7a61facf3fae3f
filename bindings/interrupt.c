/*
** Ctrl-C for a host program (green.h): interrupt the main chunk as
** lua5.4 does.
**
** The host's SIGINT handler calls 'green_interrupt', which only does
** async-signal-safe things: it asks the hub to act ('gl_hub_signal', which
** wakes the poller) and sets a hook on the running coroutine, as lua.c
** does. If the interrupt target is running Lua code, the hook raises
** "interrupted!" in it at once. Otherwise the hub, between two resumes,
** makes the target's blocking call raise it ('on_signal'), or, if the
** target has not started yet, ends it with it before it runs; once the
** target has ended, the host's main thread's (green.run() in the
** executable).
*/
#include "lgreen.h"

#define TARGET_KEY "green.interrupt_target" /* registry: anchors it */


/* The hook 'green_interrupt' sets on the coroutine that was running. */
static void lstop(lua_State *L, lua_Debug *ar) {
  gl_hub_t *hub = lgreen_gethub(L);
  gl_thread_t *t;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (hub == NULL)
    return;
  t = lgreen_base(hub, L);
  /* Raise here only in the target's own code; elsewhere the hub delivers
     it at the target's blocking call. */
  if (lgreen_state(hub)->interrupted && t != NULL &&
      t == lgreen_state(hub)->interrupt_target) {
    lgreen_state(hub)->interrupted = 0;
    luaL_error(L, "interrupted!");
  }
}


/* Print green.debug.dump() on stderr (lua/green/debug.lua); called
   protected. */
static int dump(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "green.debug") == LUA_TTABLE &&
      lua_getfield(L, -1, "dump") == LUA_TFUNCTION)
    lua_call(L, 0, 0);
  return 0;
}


/* The error an interrupt raises, made when green loads: the hub cannot
   raise one of its own (out of memory) while it delivers it. */
static const char interrupted_key = 0;


/* hooks.signal: runs in the hub (no thread running) after a Ctrl-C or a
   dump request. It must not raise: nothing in the hub would catch it. */
static void on_signal(gl_hub_t *hub, lua_State *L) {
  lgreen_state_t *g = lgreen_state(hub);
  gl_thread_t *t = g->interrupt_target;
  lua_checkstack(L, 4);
  if (g->dump) {
    g->dump = 0;
    lua_pushcfunction(L, dump);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK)
      lua_pop(L, 1); /* (stderr itself failed, or memory: nothing to tell) */
  }
  if (!g->interrupted)
    return;
  g->interrupted = 0;
  if (t == NULL || t->state == GL_DEAD)
    t = hub->main; /* the main chunk has ended: stop waiting for the rest */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &interrupted_key);
  /* A target that has not started yet (the executable's main chunk just
     spawned, a spawn_after's): a pending error only reaches a blocking
     call, and a thread never resumed has none yet, so its first run
     started the function as if no Ctrl-C had come (the hub handles the
     signal before it runs its queue). The interrupt is its outcome
     instead, as a kill before the start is: it ends with "interrupted!"
     without running. */
  lgreen_throw(L, t, -1, t->state == GL_NEW || t->state == GL_DELAYED);
  lua_pop(L, 1);
}


green_hub *green_interruptible(lua_State *L) {
  gl_hub_t *hub = lgreen_gethub(L);
  if (hub == NULL || gl_hub_signal_init(hub) < 0)
    return NULL;
  return lgreen_state(hub);
}


int green_interrupt(green_hub *g) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  gl_hub_t *hub = &g->hub;
  gl_thread_t *t;
  if (g->interrupted)
    return 1;
  g->interrupted = 1;
  gl_hub_signal(hub);
  t = hub->current;
  if (t != NULL && t->L != NULL)
    lua_sethook(t->L, lstop, mask, 1); /* signal-safe, as lua.c relies on */
  return 0;
}


void green_dump(green_hub *g) {
  g->dump = 1;
  gl_hub_signal(&g->hub);
}


/* core.interrupt_target(gt): the thread Ctrl-C interrupts (anchored). */
static int l_interrupt_target(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, TARGET_KEY);
  lgreen_state(hub)->interrupt_target = t;
  return 0;
}


/* [-0, +0, m] Adds to the module table on the top of the stack. */
void lgreen_open_interrupt(lua_State *L, gl_hub_t *hub) {
  lua_pushliteral(L, "interrupted!");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &interrupted_key);
  hub->hooks.signal = on_signal;
  lua_pushlightuserdata(L, hub);
  lua_pushcclosure(L, l_interrupt_target, 1);
  lua_setfield(L, -2, "interrupt_target");
}
