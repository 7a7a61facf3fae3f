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


static void dump(lua_State *L, lgreen_state_t *g);

/*
** The hook 'green_dump' sets on the coroutine that is running: the dump
** is written from there, at its next Lua instruction (or when the C
** function it is in returns), so a thread that keeps the hub -- the
** stuck program a dump is wanted for -- does not keep it from being
** printed. The hook that was there before is put back.
*/
static lua_Hook dump_prev;
static int dump_prev_mask, dump_prev_count;

static void ldump(lua_State *L, lua_Debug *ar) {
  gl_hub_t *hub = lgreen_gethub(L);
  lua_Hook prev = dump_prev;
  int mask = dump_prev_mask, count = dump_prev_count;
  (void)ar;
  /* Taken before the hook goes: a SIGQUIT from here on either finds
     ldump still set (and leaves the saved hook alone) or saves the one
     put back. */
  dump_prev = NULL;
  dump_prev_mask = dump_prev_count = 0;
  lua_sethook(L, prev, mask, count);
  if (hub != NULL)
    dump(L, lgreen_state(hub));
}


/* The hook 'green_interrupt' sets on the coroutine that was running. */
static void lstop(lua_State *L, lua_Debug *ar) {
  gl_hub_t *hub = lgreen_gethub(L);
  gl_thread_t *t;
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (hub == NULL)
    return;
  dump(L, lgreen_state(hub)); /* if asked for too (its signal left this
                                 hook alone: see 'green_dump') */
  t = lgreen_base(hub, L);
  /* Raise here only in the target's own code; elsewhere the hub delivers
     it at the target's blocking call. */
  if (lgreen_state(hub)->interrupted && t != NULL &&
      t == lgreen_state(hub)->interrupt_target) {
    if (lgreen_in_library(L)) {
      /* Not inside greenlua's own modules (a pool's count, a queue's
         list half updated, as the time slice spares them): at the first
         instruction outside, or at a blocking call there (the hub's). */
      lua_sethook(L, lstop,
                  LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT,
                  1);
      return;
    }
    lgreen_state(hub)->interrupted = 0;
    lgreen_state(hub)->delivered = 1;
    luaL_error(L, "interrupted!");
  }
}


/* [-0, +1, e] green.debug.dump() (lua/green/debug.lua), looked up in
   package.loaded; pushes whether it was there. */
static int call_dump(lua_State *L) {
  int found;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  found = lua_getfield(L, -1, "green.debug") == LUA_TTABLE &&
          lua_getfield(L, -1, "dump") == LUA_TFUNCTION;
  if (found)
    lua_call(L, 0, 0);
  lua_pushboolean(L, found);
  return 1;
}


/* Print green.debug.dump() on stderr if one was asked for. Protected as
   a whole: the look-up too may raise (a package.loaded or green.debug
   with an __index), and an error must reach neither the hub nor the
   thread the dump interrupts. Before green.debug is loaded (a SIGQUIT
   at startup) the request stays, for the hub or a later hook. */
static void dump(lua_State *L, lgreen_state_t *g) {
  if (!g->dump)
    return;
  g->dump = 0;
  lua_checkstack(L, 2);
  lua_pushcfunction(L, call_dump);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK && !lua_toboolean(L, -1))
    g->dump = 1; /* not loaded yet */
  lua_pop(L, 1); /* (an error: stderr itself failed, nothing to tell) */
}


/* The error an interrupt raises, made when green loads: the hub cannot
   raise one of its own (out of memory) while it delivers it. */
static const char interrupted_key = 0;


/* hooks.signal: runs in the hub (no thread running) after a Ctrl-C or a
   dump request. It must not raise: nothing in the hub would catch it. */
static void on_signal(gl_hub_t *hub, lua_State *L) {
  lgreen_state_t *g = lgreen_state(hub);
  gl_thread_t *t = g->interrupt_target;
  dump(L, g); /* protected */
  lua_checkstack(L, 4);
  if (!g->interrupted)
    return;
  g->interrupted = 0;
  g->delivered = 1;
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
  if (g->interrupted || g->delivered)
    return 1; /* the second Ctrl-C: as lua.c, the process ends */
  g->interrupted = 1;
  gl_hub_signal(hub);
  t = hub->current;
  if (t != NULL && t->L != NULL)
    lua_sethook(t->L, lstop, mask, 1); /* signal-safe, as lua.c relies on */
  return 0;
}


void green_dump(green_hub *g) {
  lua_State *co = g->hub.probe.running;
  lua_Hook h;
  g->dump = 1;
  gl_hub_signal(&g->hub);
  if (co == NULL)
    return; /* in the hub: it dumps before it resumes anything */
  h = lua_gethook(co);
  if (h == ldump || h == lstop)
    return; /* set already; an interrupt's is left alone */
  dump_prev = h;
  dump_prev_mask = lua_gethookmask(co);
  dump_prev_count = lua_gethookcount(co);
  lua_sethook(co, ldump, LUA_MASKCOUNT | LUA_MASKRET, 1); /* as lua.c */
}


/* core.interrupt_target(gt): the thread Ctrl-C interrupts (anchored). */
static int l_interrupt_target(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = lgreen_checkthread(L, 1);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, TARGET_KEY);
  lgreen_state(hub)->interrupt_target = t;
  lgreen_state(hub)->delivered = 0; /* armed again: a prompt's new line */
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
