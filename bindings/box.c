/*
** box.c: boxes, the userdata that hold a pointer to a C record, and what
** happens to the record when Lua frees its box without running its
** finalizer (docs/internals.md, "When Lua skips a finalizer").
**
** Lua 5.4 skips a finalizer that a collection step calls in a thread
** whose stack is at its limit (a handler catching "stack overflow"): the
** call of __gc fails, Lua prints "error in __gc (...)" as a warning, and
** the userdata is freed at the next cycle without our code knowing. So:
**
**  - No C record points into a box (no back-pointer): C code that closes
**    a record (a connect given up, green.fork's child) marks the record
**    itself, and the Lua side finds that mark the next time it looks
**    through the box. A record lives while a box points to it.
**  - Every owned record is on the hub's list ('lgreen_state.owned'), so
**    that what a skipped finalizer would have given back is given back
**    all the same: at lua_close (the state userdata made last by
**    luaopen_green_core is finalized after every box), and during the
**    run by a sweep.
**
** The sweep. Every box is a key of a table with weak keys (the registry
** reference 'lgreen_state.boxes'), its value the box's kind. Lua removes
** a weak key only when the object is freed: an object waiting for its
** finalizer, or resurrected by one, keeps its entry (weak *values* are
** cleared before finalizers run, which would make a pending finalizer
** look skipped; weak keys are not). So a record still owned whose box is
** no longer a key has lost its box without its finalizer having run: an
** orphan. The sweep marks the record of every box in the table, then
** hands each owned record left unmarked to its kind's 'orphan' (no Lua:
** it does what the finalizer would have done). Nothing runs between the
** table's traversal and the orphans' release that could run the
** collector. It runs:
**
**  - when a box is made, once as many boxes were made since the last
**    sweep as the table held then (at least LGREEN_SWEEP_MIN; the table
**    also holds boxes that are garbage not collected yet): amortized
**    O(1) per box. An orphan is given back within that many boxes made
**    after it lost its box;
**  - from a timer, for a program that stops making boxes (a server
**    whose traffic stopped would keep its orphans' descriptors): while
**    anything is owned, 'sweeper' ticks every LGREEN_SWEEP_EVERY ms,
**    unref'd (it never keeps the hub from going idle), and sweeps if the
**    last sweep, of either kind, is older than LGREEN_SWEEP_EVERY ms or
**    than LGREEN_SWEEP_PAUSE ms per box it walked, whichever is longer:
**    a walk costs 0.03 to 0.2 us a box (measured: 27 ns a box for 1,000
**    boxes, 141 ns for 130,000 whose records have left the caches), so
**    the timer's sweeps take at most ~0.1 % of the hub's time however
**    many boxes live, and an orphan is given back within max(1 s,
**    0.2 ms x live boxes) of Lua freeing its box, if the hub polls
**    meanwhile. A sweep needs a Lua stack: the tick sweeps only in the
**    hub's own poll ('hub->L', no thread running), and skips a tick in
**    the poll of a socket call with timeout 0 (lgreen_sock_poll). Nothing
**    on the tick's path allocates but lua_checkstack, which runs no
**    finalizer and raises no error.
*/
#include "lgreen.h"

/* Boxes made before the first sweep; the least between two sweeps. */
#define LGREEN_SWEEP_MIN 64

/* The timer's tick (ms), and the least pause between its sweeps per box
   the last one walked (ms): see the file's header. */
#define LGREEN_SWEEP_EVERY 1000
#define LGREEN_SWEEP_PAUSE 0.2


/* [-0, +0, -] Mark the record of every live box; hand the owned records
   left unmarked to their kind. */
static void sweep(lua_State *L, lgreen_state_t *g) {
  gl_link_t orphans, *l;
  unsigned mark = ++g->boxmark;
  size_t boxes = 0;
  if (!lua_checkstack(L, 3))
    return; /* (a thread at its stack limit: the next box tries again) */
  g->nboxes = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->boxes);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const lgreen_boxkind *k = (const lgreen_boxkind *)lua_touserdata(L, -1);
    char *rec = *(char **)lua_touserdata(L, -2);
    if (rec != NULL)
      ((lgreen_owned *)(rec + k->off))->mark = mark;
    lua_pop(L, 1);
    boxes++;
  }
  lua_pop(L, 1);
  gl_link_init(&orphans);
  l = g->owned.next;
  while (l != &g->owned) {
    lgreen_owned *o = GL_CONTAINER(l, lgreen_owned, link);
    l = l->next;
    if (o->mark == mark)
      continue;
    gl_link_remove(&o->link);
    gl_link_push(&orphans, &o->link);
  }
  g->sweepat = boxes > LGREEN_SWEEP_MIN ? boxes : LGREEN_SWEEP_MIN;
  g->sweptat = uv_now(&g->hub.loop);
  g->swept = boxes;
  while (!gl_link_empty(&orphans)) { /* a release may free the others' */
    lgreen_owned *o = GL_CONTAINER(orphans.next, lgreen_owned, link);
    gl_link_remove(&o->link);
    g->orphans++;
    o->kind->orphan(o);
  }
}


void lgreen_checkopen(lua_State *L, gl_hub_t *hub) {
  if (hub->loop.data == NULL) /* hub_gc closed it (green.c) */
    luaL_error(L, "green: the hub is closed (lua_close): a finalizer that "
                  "runs after it cannot use green");
}


void **lgreen_newbox(lua_State *L, gl_hub_t *hub, int nuv,
                     const lgreen_boxkind *k) {
  lgreen_state_t *g = lgreen_state(hub);
  void **box;
  lgreen_checkopen(L, hub);
  if (++g->nboxes >= g->sweepat)
    sweep(L, g);
  box = (void **)lua_newuserdatauv(L, sizeof(void *), nuv);
  *box = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->boxes);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, (void *)k);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return box;
}


/* The timer's tick (see the file's header). */
static void on_tick(uv_timer_t *h) {
  lgreen_state_t *g = GL_CONTAINER(h, lgreen_state_t, sweeper);
  gl_hub_t *hub = &g->hub;
  double pause = (double)g->swept * LGREEN_SWEEP_PAUSE;
  if (gl_link_empty(&g->owned)) { /* no orphan can appear: rest */
    uv_timer_stop(h);
    return;
  }
  if (hub->L == NULL || hub->current != NULL)
    return; /* not the hub's poll: no stack to sweep on */
  if ((double)(uv_now(h->loop) - g->sweptat) <
      (pause > LGREEN_SWEEP_EVERY ? pause : LGREEN_SWEEP_EVERY))
    return;
  sweep(hub->L, g);
}


void lgreen_own(gl_hub_t *hub, lgreen_owned *o, const lgreen_boxkind *k) {
  lgreen_state_t *g = lgreen_state(hub);
  o->kind = k;
  o->mark = g->boxmark;
  gl_link_push(&g->owned, &o->link);
  /* (uv_is_active reads the handle's flags: one load per record) */
  if (!uv_is_active((uv_handle_t *)&g->sweeper) && !g->notick)
    uv_timer_start(
        &g->sweeper, on_tick, LGREEN_SWEEP_EVERY, LGREEN_SWEEP_EVERY);
}


void lgreen_disown(lgreen_owned *o) {
  gl_link_remove(&o->link);
}


void lgreen_own_replace(lgreen_owned *old, lgreen_owned *o) {
  o->kind = old->kind;
  o->mark = old->mark;
  o->link.prev = old->link.prev;
  o->link.next = old->link.next;
  o->link.prev->next = &o->link;
  o->link.next->prev = &o->link;
  gl_link_init(&old->link);
}


/* At lua_close, after the finalizer of every box (they are newer): what
   is still owned lost its box without its finalizer. */
static int owned_gc(lua_State *L) {
  lgreen_state_t *g = *(lgreen_state_t **)lua_touserdata(L, 1);
  while (!gl_link_empty(&g->owned)) {
    lgreen_owned *o = GL_CONTAINER(g->owned.next, lgreen_owned, link);
    gl_link_remove(&o->link);
    g->orphans++;
    o->kind->orphan(o);
  }
  return 0;
}


/* core.boxes(): owned (records their boxes hold), orphans (records given
   back because Lua freed their box without its finalizer, ever). For
   the specs. */
static int l_boxes(lua_State *L) {
  lgreen_state_t *g = lgreen_state(lgreen_hub(L));
  lua_Integer n = 0;
  gl_link_t *l;
  for (l = g->owned.next; l != &g->owned; l = l->next)
    n++;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "owned");
  lua_pushinteger(L, (lua_Integer)g->orphans);
  lua_setfield(L, -2, "orphans");
  return 1;
}


/* core.box_timer(on): start or stop the timer's sweeps, for the specs
   of what happens to orphans no sweep finds (lua_close, green.fork's
   child, a child ending, a signal). */
static int l_box_timer(lua_State *L) {
  lgreen_state_t *g = lgreen_state(lgreen_hub(L));
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  g->notick = !lua_toboolean(L, 1);
  if (g->notick)
    uv_timer_stop(&g->sweeper);
  else if (!gl_link_empty(&g->owned))
    uv_timer_start(
        &g->sweeper, on_tick, LGREEN_SWEEP_EVERY, LGREEN_SWEEP_EVERY);
  return 0;
}


void lgreen_open_box(lua_State *L, gl_hub_t *hub) {
  static const luaL_Reg funcs[] = {
      {"boxes", l_boxes}, {"box_timer", l_box_timer}, {NULL, NULL}};
  lgreen_state_t *g = lgreen_state(hub);
  lgreen_state_t **p;
  gl_link_init(&g->owned);
  g->sweepat = LGREEN_SWEEP_MIN;
  /* Closed with the hub's other handles (gl_hub_close); stopped by its
     tick while nothing is owned. */
  if (uv_timer_init(&hub->loop, &g->sweeper) < 0)
    luaL_error(L, "green.core: cannot initialize the event loop");
  uv_unref((uv_handle_t *)&g->sweeper);
  lua_newtable(L); /* box -> its kind, weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  g->boxes = luaL_ref(L, LUA_REGISTRYINDEX);
  p = (lgreen_state_t **)lua_newuserdatauv(L, sizeof(*p), 0);
  *p = g;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, owned_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  luaL_ref(L, LUA_REGISTRYINDEX);
  lgreen_register(L, funcs, 0);
}
