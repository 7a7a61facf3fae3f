/*
** fork.c: green.fork() and green.on_fork(fn), fork with defined semantics.
**
** In the child only the calling green thread goes on. Every other green
** thread of the parent is gone without running another instruction: its
** wait is undone (so no queue, socket or timer refers to it), it leaves
** the run queue, and it is buried as if killed -- its outcome is
** green.GreenletExit, but its <close> handlers, pcall cleanups and links
** belong to the parent and do not run in the child (a thread's cleanup
** closing a connection would close the parent's). The host's main thread
** is one of them when another thread forked: its wait is undone too, and
** the child has no main thread to go back to, so it ends as a process
** whose last thread ended does (lgreen_fork_exit): once nothing is left
** to run -- the forking thread and whatever it spawned are done -- the
** child exits, with status 1 if the forking thread died of an error, 0
** otherwise, without closing the Lua state (as os.exit does: the
** parent's finalizers do not run in the child either). Then libuv's loop
** is re-initialised
** (uv_loop_fork) and each part of green.core forgets what belongs to the
** parent (its reset, registered with 'lgreen_on_fork': the resolver's
** channels, the watchdog's thread, the sockets' watchers, the thread
** pool's workers), and the green.on_fork hooks run, in the caller's
** thread, before fork() returns 0.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lgreen.h"

#define HOOKS_KEY "green.on_fork" /* registry: the list of Lua hooks */


void lgreen_on_fork(gl_hub_t *hub, lgreen_forkfn fn, void *ud) {
  lgreen_state_t *g = lgreen_state(hub);
  if (g->nforks < LGREEN_MAXFORKS) {
    g->forks[g->nforks].fn = fn;
    g->forks[g->nforks++].ud = ud;
  }
}


/* The main thread of a child is gone and nothing is left to run: the
   child ends (see the header). Called where the main thread would have
   gone on. */
void lgreen_fork_exit(gl_hub_t *hub) {
  fflush(NULL);
  exit(lgreen_state(hub)->forkstatus);
}


/* Undo the wait of 't' (GL_SUSPENDED) or its start (GL_DELAYED): it will
   never run again. */
static void stop_thread(gl_hub_t *hub, gl_thread_t *t) {
  if (t->state == GL_SUSPENDED) {
    gl_wait_abandon(t->wait, GL_W_CANCELED);
    t->state = GL_NEW; /* neither suspended nor ready: it never runs */
  } else if (t->state == GL_DELAYED) {
    gl_timer_stop(hub, &t->w.timer);
  }
}


/* [-0, +0, m] Bury every thread but 'self' (see the header). */
static void discard_threads(lua_State *L, gl_hub_t *hub, gl_thread_t *self) {
  gl_thread_t *main = hub->main, *t;
  int orphan = main != NULL && self != main;
  unsigned i;
  /* Undo their waits first: a cancel may end another's wait (a socket
     hands its place on), which then sits on the run queue. */
  for (i = 0; i < hub->nbases; i++) {
    t = gl_base_at(hub, i);
    if (t != NULL && t != self)
      stop_thread(hub, t);
  }
  if (orphan) /* blocked in the hub (lgreen_block), below 'self' */
    stop_thread(hub, main);
  /* Empty the run queue (the main thread too, when it is not 'self'). */
  while (gl_next_ready(hub) != NULL)
    ;
  if (orphan) {
    lgreen_state_t *g = lgreen_state(hub);
    main->state = GL_NEW; /* never ready again: the hub runs until idle */
    g->orphaned = 1;
    g->forker = self;
    g->forkstatus = 0;
  }
  lgreen_pushexit(L);
  for (i = 0; i < hub->nbases; i++) {
    t = gl_base_at(hub, i);
    if (t == NULL || t == self)
      continue;
    t->flags |= GL_F_DONE | GL_F_EXIT;
    t->flags &= ~(GL_F_ERROR | GL_F_NOTIFY);
    t->nres = 0;
    lgreen_pushthread(L, t);
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, LGREEN_UV_VALUE);
    lua_pop(L, 1);
    lgreen_thread_bury(L, hub, t);
  }
  lua_pop(L, 1);
}


/* [-0, +0, m] Run the green.on_fork hooks; a failing one is reported. */
static void run_hooks(lua_State *L) {
  lua_Integer i, n;
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      fprintf(stderr, "green: an on_fork hook failed: %s\n",
              lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object)");
      fflush(stderr);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}


/***
** green.fork(): the child's pid in the parent, 0 in the child (see the
** header); nil, message, errno if the process cannot fork.
*/
static int l_fork(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *self = hub->current;
  lgreen_state_t *g = lgreen_state(hub);
  pid_t pid;
  int i, r;
  if (self == NULL || lgreen_in_finalizer(L))
    return luaL_error(L, "green.fork: call it from a green thread or the "
                         "main thread (not a finalizer or a hub callback)");
  fflush(NULL); /* or both processes would write what stdio buffered */
  pid = fork();
  if (pid < 0)
    return luaL_fileresult(L, 0, NULL);
  if (pid > 0) {
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
  }
  if ((r = uv_loop_fork(&hub->loop)) < 0) {
    fprintf(stderr, "green.fork: the child cannot use the event loop: %s\n",
            uv_strerror(r));
    _exit(127);
  }
  discard_threads(L, hub, self);
  for (i = 0; i < g->nforks; i++)
    g->forks[i].fn(L, hub, g->forks[i].ud);
  run_hooks(L);
  lua_pushinteger(L, 0);
  return 1;
}


/* green.on_fork(fn): run fn() in the child of every later green.fork. */
static int l_on_fork(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
  }
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}


void lgreen_open_fork(lua_State *L, gl_hub_t *hub) {
  static const luaL_Reg funcs[] = {
      {"fork", l_fork},
      {"on_fork", l_on_fork},
      {NULL, NULL},
  };
  (void)hub;
  lgreen_register(L, funcs, 0);
}
