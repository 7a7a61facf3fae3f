/*
** green.core: the module. Opens every part of it (each file's
** lgreen_open_*) and defines the hub-level functions (sleep, suspend,
** wake, run, ...). Nothing calls into this file: the helpers every part
** shares are in lgreen.c.
*/
#include <stdlib.h>
#include <string.h>

#include "lgreen.h"

/*
** {======================================================
** Hub-level functions
** =======================================================
*/

/*
** sleep([seconds]): 0 or nil yields to every other ready thread and to
** I/O. A positive value below the 1 ms resolution sleeps 1 ms.
*/
static int l_sleep(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  int isnum;
  lua_Number s = lua_tonumberx(L, 1, &isnum); /* sleep(0) is the hot path */
  gl_thread_t *t;
  if (!isnum || s != s)
    s = lgreen_optseconds(L, 1, 0); /* nil, or raise the argument error */
  t = lgreen_begin(L, hub, "green.sleep");
  if (s > 0) {
    uint64_t ns = lgreen_ns(s);
    if (ns < 1000000)
      ns = 1000000;
    gl_wait_start(t, &t->w, "green.sleep", NULL, NULL); /* a timeout */
    lgreen_deadline(L, &t->w, gl_now() + ns);
  } else {
    t->state = GL_READY;
    gl_ready(t);
  }
  return lgreen_block(L, t, lgreen_done_k, (lua_KContext)&t->w);
}


static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)gl_now() / 1e9);
  return 1;
}


static int l_getcurrent(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  if (hub->current == NULL)
    lua_pushnil(L);
  else
    lgreen_pushthread(L, hub->current);
  return 1;
}


/*
** suspend(): the Lua-level wait. Returns true plus the values given to
** wake(), or false plus the error when the wait is canceled (kill,
** Timeout) so the caller can undo its part before raising it.
*/
static int suspend_k(lua_State *L, int status, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  int n = lua_gettop(L) - (int)ctx;
  (void)status;
  if (t->flags & GL_F_PENDING) {
    t->flags &= ~GL_F_PENDING;
    lua_settop(L, (int)ctx);
    lua_pushboolean(L, 0);
    lgreen_pushpending(L, t);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(n + 1));
  return n + 1;
}


/*
** The description of a wait must outlive it (tostring, deadlock messages)
** but 't->what' is a bare pointer: anchor each distinct description in a
** registry table. Primitives use a handful; past 256 distinct ones, fall
** back to a generic name rather than grow without bound.
*/
static const char *anchor_what(lua_State *L, gl_hub_t *hub, int idx) {
  /* Descriptions anchored already, by address: short strings are interned,
     so a primitive's literal is the same string object every call. */
  lgreen_state_t *g = lgreen_state(hub);
  const char **seen = g->whats;
  const char *what = "green.suspend", *s;
  unsigned h;
  if (lua_isnoneornil(L, idx))
    return what;
  luaL_checktype(L, idx, LUA_TSTRING);
  s = lua_tostring(L, idx);
  h = (unsigned)(((uintptr_t)s >> 4) & 7);
  if (seen[h] == s) {
    g->whathits++;
    return s;
  }
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "green.whats") == 0 ||
      lua_rawlen(L, -1) < 256) {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pushvalue(L, idx);
      lua_rawseti(L, -3, (lua_Integer)lua_rawlen(L, -3) + 1);
      lua_pushvalue(L, idx);
      lua_pushboolean(L, 1);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    what = lua_tostring(L, idx); /* anchored as a key of the table */
    seen[h] = what;
  } else {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TNIL)
      what = lua_tostring(L, idx);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return what;
}


static int l_suspend(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  const char *what = anchor_what(L, hub, 1);
  if (t != NULL && (t->flags & GL_F_KILLED)) {
    lua_pushboolean(L, 0);
    lgreen_pushpending(L, t);
    return 2;
  }
  t = lgreen_begin(L, hub, what);
  gl_wait_start(t, &t->w, what, NULL, NULL);
  t->flags |= GL_F_LUAWAIT;
  lua_settop(L, 0);
  return lgreen_block(L, t, suspend_k, 0);
}


/*
** wake(gt, ...): end gt's suspend() with true, ... . Returns false, doing
** nothing, unless gt is suspended in suspend() (already woken, canceled,
** blocked in something else, or dead). Never switches.
*/
static int l_wake(lua_State *L) {
  gl_thread_t *t = lgreen_checkthread(L, 1);
  int n = lua_gettop(L) - 1;
  if (t->state != GL_SUSPENDED || !(t->flags & GL_F_LUAWAIT)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (n > 0) {
    if (!lua_checkstack(t->L, n + LUA_MINSTACK))
      return luaL_error(L, "too many values to wake");
    lua_xmove(L, t->L, n);
  }
  gl_wake(t, n);
  lua_pushboolean(L, 1);
  return 1;
}


/*
** run(): until no thread, timer or server is left. From a green thread,
** waits until every other thread is done or blocked forever. With a
** function, green.lua spawns it and waits for it (see init.lua).
*/
static int l_run(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t;
  if (hub->current == NULL)
    return luaL_error(L, "green.run: cannot run the hub from a finalizer "
                         "or a hub callback");
  t = lgreen_begin(L, hub, "green.run");
  gl_wait_start(t, &t->w, "green.run", NULL, NULL);
  gl_waitq_push(&hub->idlers, &t->w);
  return lgreen_block(L, t, lgreen_done_k, (lua_KContext)&t->w);
}


static int l_stats(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  lgreen_state_t *g = lgreen_state(hub);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)g->nalive);
  lua_setfield(L, -2, "threads");
  lua_pushinteger(L, (lua_Integer)hub->nready);
  lua_setfield(L, -2, "ready");
  lua_pushinteger(L, (lua_Integer)hub->nheap);
  lua_setfield(L, -2, "timers");
  lua_pushboolean(L, uv_loop_alive(&hub->loop));
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, g->lastid);
  lua_setfield(L, -2, "spawned");
  lua_pushinteger(L, (lua_Integer)g->whathits);
  lua_setfield(L, -2, "suspend_cache_hits");
  return 1;
}


/*
** cstack([limit]): native stacks' figures (runtime/cstack.c): supported,
** parked (threads parked inside C-call boundaries now), bytes (their C
** stacks), parks, continues, limit (the deepest C stack that may park,
** in bytes). With 'limit' (at least 4096), sets it first.
*/
static int l_cstack(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_cstack_t *cs = &hub->cs;
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 4096, 1, "at least 4096 bytes expected");
    cs->limit = (size_t)n;
  }
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, GL_CS_SUPPORTED);
  lua_setfield(L, -2, "supported");
  lua_pushinteger(L, (lua_Integer)cs->nparked);
  lua_setfield(L, -2, "parked");
  lua_pushinteger(L, (lua_Integer)cs->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)cs->parks);
  lua_setfield(L, -2, "parks");
  lua_pushinteger(L, (lua_Integer)cs->continues);
  lua_setfield(L, -2, "continues");
  lua_pushinteger(L, (lua_Integer)cs->limit);
  lua_setfield(L, -2, "limit");
  return 1;
}


static int l_isyieldable(lua_State *L) {
  /* Can the caller block? (a green thread outside C-call boundaries, or
     the main thread when the hub is not running; not in a finalizer) */
  lua_pushboolean(L, lgreen_canblock(L, lgreen_hub(L)));
  return 1;
}

/* }====================================================== */


/* The process's hub: one per process, for what is the process's own (the
   watchdog's signal and thread, signal dispositions, fork handlers). A
   second Lua state loading green.core is refused before it makes
   anything; the state that owns the hub gives it up when it closes. A
   green.tpool worker's state is refused by its mark, not by this: a task
   abandoned at the host's close runs on after the hub was given up (it
   took the process's hub while the process exited, and kept a new state
   of a C host from having one). */
static gl_hub_t *process_hub;
#define REFUSED                                                               \
  "green.core: green runs in another Lua state of this process (one hub "    \
  "per process: a green.tpool task cannot use green)"


/*
** The hub's record is malloc'd, its userdata (the registry's LGREEN_HUB)
** a box holding its address: a closed hub outlives its state's objects.
** A finalizer Lua runs after the hub's (lgreen_checkopen) still reads it,
** and a loop gl_hub_close left open for requests that may never end (a
** read of a FIFO nobody writes, in a worker of libuv's pool) is written
** into by that worker when it ends, whenever that is. Closed records wait
** on this list, which the process's hub owns, and are freed when the next
** hub is made, but for those whose loop is held: they stay for good (the
** process ends without waiting for those workers: fs.c, fs_exit).
*/
static lgreen_state_t *closed_hubs;


static void free_closed(void) {
  lgreen_state_t **p = &closed_hubs;
  while (*p != NULL) {
    lgreen_state_t *g = *p;
    if (g->held) {
      p = &g->closed;
    } else {
      *p = g->closed;
      free(g);
    }
  }
}


/* Also the __gc of a hub whose making failed (a memory error): its loop
   closed if it was opened, the process's hub given up if it was this. */
static int hub_gc(lua_State *L) {
  lgreen_state_t **box = (lgreen_state_t **)luaL_checkudata(L, 1,
                                                             LGREEN_HUB_MT);
  lgreen_state_t *g = *box;
  gl_hub_t *self;
  if (g == NULL || g->gone) /* once; the box keeps the record's address */
    return 0;                /* (a later require finds the closed hub) */
  g->gone = 1;
  self = &g->hub;
  if (self->loop.data != NULL) {
    int left;
    self->loop.data = NULL;
    left = gl_hub_close(self);
    lgreen_fs_closed(self);
    if (left) {
      g->held = 1;
      lgreen_fs_abandon(self);
    }
  }
  if (__atomic_load_n(&process_hub, __ATOMIC_ACQUIRE) == self) {
    g->closed = closed_hubs; /* before the hub is given up: the list is */
    closed_hubs = g;         /* the process's hub's */
    __atomic_compare_exchange_n(&process_hub, &self, NULL, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  } else {
    free(g); /* refused: nothing of it was used */
  }
  return 0;
}


static const luaL_Reg core_funcs[] = {
    {"sleep", l_sleep},
    {"now", l_now},
    {"getcurrent", l_getcurrent},
    {"suspend", l_suspend},
    {"wake", l_wake},
    {"run", l_run},
    {"stats", l_stats},
    {"cansuspend", l_isyieldable},
    {"cstack", l_cstack},
    {NULL, NULL}};


int luaopen_green_core(lua_State *L) {
  gl_hub_t *hub = lgreen_gethub(L);
  lgreen_state_t *g, **box;
  if (hub != NULL) { /* loaded twice into one state: share the hub */
    lua_getfield(L, LUA_REGISTRYINDEX, "green.core");
    return 1;
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, LGREEN_TPOOL_WORKER) != LUA_TNIL)
    return luaL_error(L, REFUSED);
  lua_pop(L, 1);
  box = (lgreen_state_t **)lua_newuserdatauv(L, sizeof(*box), 0);
  *box = NULL;
  /* Its __gc first: a memory error from here on leaves no process's hub
     taken (every later state was refused) and no loop open. */
  luaL_newmetatable(L, LGREEN_HUB_MT);
  lua_pushcfunction(L, hub_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  g = (lgreen_state_t *)calloc(1, sizeof(*g)); /* every field empty */
  if (g == NULL)
    return luaL_error(L, "not enough memory");
  *box = g;
  hub = &g->hub;
  {
    gl_hub_t *none = NULL;
    if (!__atomic_compare_exchange_n(&process_hub, &none, hub, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      return luaL_error(L, REFUSED);
  }
  free_closed(); /* the hubs of states closed before: nothing uses them */
  /* The hooks are installed by the files that define them
     (lgreen_open_thread, lgreen_open_interrupt). */
  if (gl_hub_init(hub, NULL) < 0) {
    __atomic_store_n(&process_hub, NULL, __ATOMIC_RELEASE);
    return luaL_error(L, "green.core: cannot initialize the event loop");
  }
  hub->loop.data = hub; /* marks it open, for __gc */
  g->boundary_depth = 0;
  g->boundary_L = NULL;
  g->lastid = 0;
  g->nalive = 0;
  memset(g->whats, 0, sizeof(g->whats));
  g->whathits = 0;
  g->interrupt_target = NULL;
  g->interrupted = 0;
  g->delivered = 0;
  g->dump = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  gl_mark_set(lua_tothread(L, -1), 0); /* copied into new coroutines */
  hub->probe.running = lua_tothread(L, -1); /* the host runs it (watchdog) */
  lua_pop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, LGREEN_HUB);
  /* Live threads by slot: anchoring with rawseti at a slot the hub already
     allocated is several times cheaper than luaL_ref. */
  lua_createtable(L, 256, 0);
  g->anchors = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 40);
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, core_funcs, 1);
  lgreen_open_thread(L, hub);
  lgreen_open_interrupt(L, hub);
  lgreen_open_timeout(L, hub);
  lgreen_open_coro(L, hub);
  lgreen_open_stdio(L, hub);
  lgreen_open_socket(L, hub);
  lgreen_open_stream(L, hub);
  lgreen_open_conn(L, hub);
  lgreen_open_tcp(L, hub);
  lgreen_open_pipe(L, hub);
  lgreen_open_udp(L, hub);
  lgreen_open_select(L, hub);
  lgreen_open_dns(L, hub);
  lgreen_open_debug(L, hub);
  lgreen_open_watchdog(L, hub);
  lgreen_open_event(L, hub);
  lgreen_open_semaphore(L, hub);
  lgreen_open_queue(L, hub);
  lgreen_open_signal(L, hub);
  lgreen_open_process(L, hub);
  lgreen_open_fork(L, hub);
  lgreen_open_tpool(L, hub);
  lgreen_open_fs(L, hub);
  lgreen_open_http(L, hub);
  lgreen_open_ws(L, hub);
  lgreen_open_tls(L, hub);
  lgreen_open_box(L, hub); /* last: its state is finalized first */
  lua_pushliteral(L, GL_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "green.core");
  return 1;
}
