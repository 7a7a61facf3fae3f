/*
** tpool.c: green.tpool, eventlet's tpool. execute(fn, ...) runs 'fn' on a
** worker OS thread in that worker's own Lua state; the calling green
** thread waits in its wait record like any blocking call, and the hub
** keeps running the others.
**
** The pool is this file's own pthreads, not libuv's uv_queue_work pool:
** that pool's 4 threads are shared by the whole loop (green.fs runs its
** file I/O there), and a task here may block for as long as the C library
** it calls. A queue of tasks (FIFO) feeds the workers; an idle worker
** sleeps on its own condition variable (the most recently idle is woken
** first: its caches are warm). A finished task goes on the 'done' list
** and the worker wakes the hub with one uv_async_t, whose callback ends
** the callers' waits. No Lua runs in that callback: the caller's
** continuation copies the results into its own state.
**
** Workers start on demand, up to the pool's size, and keep their Lua
** states from task to task (modules stay loaded, a function is loaded
** once per worker). A task whose caller was killed or timed out runs to
** its end and its result is dropped; it no longer holds a place in the
** pool, so a task that never ends does not make the pool smaller (another
** worker may start in its place, up to twice the size in all).
**
** Who owns what: a task is malloc'd by the caller and owned by the pool's
** lists (under 'mu') until the hub takes it off 'done'; then by the
** caller's continuation (by the wait's 'drop', task_dropped, if the state
** closes before that caller runs again), or freed at once if its caller
** has gone. The
** pool record lives until the hub has closed its async handle and every
** worker left running at close has ended ('refs').
**
** At close (the hub's state closing: the end of the program), queued
** tasks are dropped, idle workers end and are joined, and a worker still
** running a task is abandoned: it is detached, finishes on its own, drops
** its result, closes its state and frees itself. The process does not
** wait for it, as Python does not wait for eventlet's daemon threads.
** While a caller still waits for its task the hub is not idle (the async
** handle is referenced), so greenlua's main chunk ending waits for it as
** it waits for green threads.
*/
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "ltpool.h"

#define WHAT "green.tpool.execute"
#define POOL_KEY "green.tpool"     /* registry: the pool's box */
#define FNS_KEY "green.tpool.fns"  /* a worker's registry: dump -> function */
#define MAX_THREADS 256
#define MAX_FNS 128                /* functions a worker keeps loaded */
#define SCRATCH_KEEP (1u << 20)    /* the argument buffer is freed past it */
#define TP_LOST UV_ESRCH           /* the task's worker is gone (fork) */

typedef struct tpool tpool;
typedef struct worker worker;

/* The host's package.path and package.cpath, shared with the workers. */
typedef struct paths {
  unsigned refs; /* the pool's and the workers' (under 'mu') */
  size_t plen, clen;
  char *path, *cpath; /* into 'data' */
  char data[];
} paths;

enum { Q_QUEUED, Q_RUNNING, Q_DONE };

typedef struct task {
  gl_link_t link;    /* in p->queue, then p->done */
  tpool *p;
  gl_wait_t *waiter; /* the caller's wait; NULL once it has gone (hub) */
  tp_buf res;        /* the results, or the error value */
  size_t fnlen;      /* data: the function's dump, then the arguments */
  size_t arglen;
  int state;         /* Q_* (under 'mu') */
  int stray;         /* running, its caller gone (under 'mu') */
  int failed;        /* 'res' is the error value */
  char data[];
} task;

struct worker {
  gl_link_t link;    /* in p->workers, then p->exited */
  gl_link_t idle;    /* in p->idlers while it waits for a task */
  tpool *p;
  pthread_t th;
  pthread_cond_t cv; /* wakes it (under 'mu') */
  lua_State *L;      /* its state, set by the worker under 'mu' */
  paths *paths;      /* the paths its state has */
  task *cur;         /* the task it runs (under 'mu') */
  int nfns;          /* functions in its cache */
  int woken;
  int detached;      /* abandoned at close: frees itself */
};

struct tpool {
  pthread_mutex_t mu;
  pthread_cond_t gone;  /* a worker has exited (close waits for them) */
  gl_link_t queue;      /* tasks for the workers, FIFO */
  gl_link_t done;       /* finished tasks, for the hub */
  gl_link_t workers;    /* live workers */
  gl_link_t idlers;     /* idle workers, the most recent last */
  gl_link_t exited;     /* workers whose thread has ended, to join */
  paths *paths;         /* the host's paths as last seen */
  unsigned size;        /* setup's threads, or the default */
  unsigned nthreads;    /* workers in 'workers' */
  unsigned nalive;      /* threads not yet in 'exited' (not detached) */
  unsigned nready;      /* started or woken workers yet to look at 'queue' */
  unsigned nstray;      /* tasks running with their caller gone */
  unsigned nqueued, nbusy, nidle;
  uint64_t completed, failed, abandoned, canceled;
  int stopping;         /* closing: workers leave, nothing is delivered */
  int forked;           /* in a child of green.fork, until forget */
  /* The hub's thread only. */
  uv_async_t *async;    /* referenced while a caller waits */
  unsigned nwaiting;    /* tasks with a caller waiting */
  tp_buf scratch;       /* arguments and dumps are written here */
  int refs;             /* the hub's, and abandoned workers' (atomic) */
};

/* Workers forgotten after fork(): their states are never closed here
   (ltpool.h), and stay reachable. */
static gl_link_t orphans = {&orphans, &orphans};


/*
** {======================================================
** The pool (no Lua here but the workers' own states)
** =======================================================
*/

static void paths_unref(paths *ps) {
  if (ps != NULL && --ps->refs == 0)
    free(ps);
}


static void task_free(task *tk) {
  tpc_buf_free(&tk->res);
  free(tk);
}


static void pool_unref(tpool *p) {
  if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->gone);
    free(p);
  }
}


static void wake_idle(tpool *p, worker *wk) {
  gl_link_remove(&wk->idle);
  p->nidle--;
  p->nready++;
  wk->woken = 1;
  pthread_cond_signal(&wk->cv);
}


static void *worker_main(void *arg);


/* [under mu] Start a worker thread; 0 or a UV_E* code. */
static int start_worker(tpool *p) {
  sigset_t all, old;
  int r;
  worker *wk = (worker *)calloc(1, sizeof(*wk));
  if (wk == NULL)
    return UV_ENOMEM;
  wk->p = p;
  gl_link_init(&wk->idle);
  pthread_cond_init(&wk->cv, NULL);
  /* Signals go to the hub's thread, never to a worker. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&wk->th, NULL, worker_main, wk);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    pthread_cond_destroy(&wk->cv);
    free(wk);
    return uv_translate_sys_error(r);
  }
  gl_link_push(&p->workers, &wk->link);
  p->nthreads++;
  p->nalive++;
  p->nready++;
  return 0;
}


/* [under mu] May another worker start? Tasks whose caller has gone do
   not count against the size, up to twice the size in all. */
static int can_start(const tpool *p) {
  return p->nthreads - p->nstray < p->size && p->nthreads < 2 * p->size;
}


/*
** [under mu] Make sure every queued task has a worker about to look at
** the queue: wake idle workers (the most recently idle first), then start
** new ones while the size allows. Returns 0 or the error of the last
** start that failed.
*/
static int ensure(tpool *p) {
  int err = 0;
  if (p->forked) /* the parent's workers are still counted: see forget */
    return 0;
  while (p->nready < p->nqueued) {
    if (p->nidle > 0)
      wake_idle(p, GL_CONTAINER(p->idlers.prev, worker, idle));
    else if (!can_start(p) || (err = start_worker(p)) < 0)
      break;
  }
  return err;
}


/* [under mu] Hand a finished task to the hub (or drop it at close). */
static void deliver(tpool *p, task *tk) {
  tk->state = Q_DONE;
  if (p->stopping) {
    task_free(tk);
    return;
  }
  gl_link_push(&p->done, &tk->link);
  uv_async_send(p->async);
}


/* [under mu] Fail every queued task with 'msg' (no worker can start). */
static void fail_queued(tpool *p, const char *msg) {
  while (!gl_link_empty(&p->queue)) {
    task *tk = GL_CONTAINER(p->queue.next, task, link);
    gl_link_remove(&tk->link);
    p->nqueued--;
    tk->failed = 1;
    tpc_write_string(&tk->res, msg, strlen(msg)); /* empty if no memory */
    deliver(p, tk);
  }
}

/* }====================================================== */


/*
** {======================================================
** A worker
** =======================================================
*/

/* The message handler of a task: the worker's traceback for strings
   (and what lua.c prints for other non-tables); tables are copied back
   unchanged, so an error object keeps its fields. */
#define BOTTOM "\n\t[C]: in ?"

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1), *tb;
  size_t len;
  if (msg == NULL) {
    if (lua_type(L, 1) == LUA_TTABLE)
      return 1;
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  luaL_traceback(L, L, NULL, 1);
  tb = lua_tolstring(L, -1, &len);
  if (len >= sizeof(BOTTOM) - 1 &&
      memcmp(tb + len - (sizeof(BOTTOM) - 1), BOTTOM, sizeof(BOTTOM) - 1) == 0)
    len -= sizeof(BOTTOM) - 1; /* the worker's own frame (run_task) */
  lua_pushfstring(L, "%s\nworker ", msg);
  lua_pushlstring(L, tb, len);
  lua_concat(L, 2);
  return 1;
}


static int no_exit(lua_State *L) {
  return luaL_error(L, "os.exit: not available in a green.tpool worker (it "
                       "would end the whole process): return or raise "
                       "instead");
}


static int open_state(lua_State *L) {
  luaL_openlibs(L);
  lua_pushboolean(L, 1); /* green.core refuses this state */
  lua_setfield(L, LUA_REGISTRYINDEX, LGREEN_TPOOL_WORKER);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, FNS_KEY);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, no_exit);
  lua_setfield(L, -2, "exit");
  return 0;
}


static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  lua_pushcfunction(L, open_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}


/* [-1, +0, m] package.path and cpath := the host's (upvalue: paths). */
static int set_paths(lua_State *L) {
  paths *ps = (paths *)lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE) {
    lua_pushlstring(L, ps->path, ps->plen);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, ps->cpath, ps->clen);
    lua_setfield(L, -2, "cpath");
  }
  return 0;
}


/* [-0, +1, e] The task's function, loaded once per worker. */
static void push_fn(lua_State *L, worker *wk, task *tk) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, FNS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1); /* a task changed it (debug.getregistry): a new one */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, FNS_KEY);
    wk->nfns = 0;
  }
  lua_pushlstring(L, tk->data, tk->fnlen);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, tk->data, tk->fnlen, "=(green.tpool)", "b") !=
        LUA_OK)
      lua_error(L);
    if (wk->nfns >= MAX_FNS) { /* a program that makes functions: forget */
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, LUA_REGISTRYINDEX, FNS_KEY);
      lua_replace(L, -4);
      wk->nfns = 0;
    }
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, -5);
    wk->nfns++;
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
}


/* [-(n+1), +0, e] Copy the values above the task (index 1) into its
   result buffer: the results, or the error value. */
static int write_results(lua_State *L) {
  task *tk = (task *)lua_touserdata(L, 1);
  int n = lua_gettop(L) - 1;
  if (tk->failed)
    tpc_write(L, &tk->res, 2, 1, "the error value", 0);
  else
    tpc_write(L, &tk->res, 2, n, "result", 1);
  return 0;
}


/* [-1, +0, e] Run the task of worker 'wk' (index 1). */
static int run_task(lua_State *L) {
  worker *wk = (worker *)lua_touserdata(L, 1);
  task *tk = wk->cur;
  int n;
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);                               /* 1 */
  lua_pushcfunction(L, write_results);                      /* 2 */
  lua_pushlightuserdata(L, tk);                             /* 3 */
  push_fn(L, wk, tk);                                       /* 4 */
  n = tpc_read(L, tk->data + tk->fnlen, tk->arglen);
  tk->failed = lua_pcall(L, n, LUA_MULTRET, 1) != LUA_OK;
  if (lua_pcall(L, lua_gettop(L) - 2, 0, 0) != LUA_OK) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    tk->failed = 1;
    if (s == NULL || tpc_write_string(&tk->res, s, len) < 0)
      return luaL_error(L, "not enough memory");
  }
  return 0;
}


/* Run task 'tk' in the worker's state, with the paths 'np' if not NULL.
   Returns the paths reference to drop. */
static paths *run(worker *wk, task *tk, paths *np) {
  lua_State *L = wk->L;
  paths *drop = np;
  if (np != NULL) {
    lua_pushcfunction(L, set_paths);
    lua_pushlightuserdata(L, np);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
      drop = wk->paths;
      wk->paths = np;
    }
    lua_settop(L, 0);
  }
  lua_pushcfunction(L, run_task);
  lua_pushlightuserdata(L, wk);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* no memory, or no function */
    const char *s = lua_tostring(L, -1);
    if (s == NULL)
      s = "not enough memory";
    tk->failed = 1;
    tpc_write_string(&tk->res, s, strlen(s)); /* empty if no memory */
  }
  lua_settop(L, 0);
  return drop;
}


static void *worker_main(void *arg) {
  worker *wk = (worker *)arg;
  tpool *p = wk->p;
  lua_State *L = newstate();
  int detached;
  pthread_mutex_lock(&p->mu);
  wk->L = L;
  p->nready--;
  while (L != NULL) {
    task *tk;
    paths *np = NULL, *drop;
    if (p->stopping || wk->detached || p->nthreads - p->nstray > p->size)
      break;
    if (gl_link_empty(&p->queue)) {
      wk->woken = 0;
      gl_link_push(&p->idlers, &wk->idle);
      p->nidle++;
      while (!wk->woken)
        pthread_cond_wait(&wk->cv, &p->mu);
      p->nready--;
      continue;
    }
    tk = GL_CONTAINER(p->queue.next, task, link);
    gl_link_remove(&tk->link);
    p->nqueued--;
    p->nbusy++;
    tk->state = Q_RUNNING;
    wk->cur = tk;
    if (wk->paths != p->paths) {
      np = p->paths;
      np->refs++;
    }
    pthread_mutex_unlock(&p->mu);
    drop = run(wk, tk, np);
    pthread_mutex_lock(&p->mu);
    paths_unref(drop);
    wk->cur = NULL;
    p->nbusy--;
    p->completed++;
    if (tk->failed)
      p->failed++;
    if (tk->stray)
      p->nstray--;
    if (wk->detached)
      task_free(tk);
    else
      deliver(p, tk);
  }
  /* Leave: the pool is closing, or has more workers than its size. */
  p->nthreads--;
  gl_link_remove(&wk->link);
  if (L == NULL && p->nthreads == 0)
    fail_queued(p, WHAT ": not enough memory for a worker's Lua state");
  paths_unref(wk->paths);
  wk->paths = NULL;
  detached = wk->detached;
  pthread_mutex_unlock(&p->mu);
  if (L != NULL)
    lua_close(L);
  if (detached) {
    pthread_cond_destroy(&wk->cv);
    free(wk);
    pool_unref(p);
    return NULL;
  }
  pthread_mutex_lock(&p->mu);
  gl_link_push(&p->exited, &wk->link);
  p->nalive--;
  pthread_cond_signal(&p->gone);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* }====================================================== */


/*
** {======================================================
** The hub's side
** =======================================================
*/

static void waiting_inc(tpool *p) {
  if (p->nwaiting++ == 0)
    uv_ref((uv_handle_t *)p->async);
}


static void waiting_dec(tpool *p) {
  if (--p->nwaiting == 0)
    uv_unref((uv_handle_t *)p->async);
}


/* Join the workers that have ended (they have closed their states). */
static void join_exited(tpool *p) {
  gl_link_t list;
  gl_link_init(&list);
  pthread_mutex_lock(&p->mu);
  while (!gl_link_empty(&p->exited)) {
    gl_link_t *l = p->exited.next;
    gl_link_remove(l);
    gl_link_push(&list, l);
  }
  pthread_mutex_unlock(&p->mu);
  while (!gl_link_empty(&list)) {
    worker *wk = GL_CONTAINER(list.next, worker, link);
    gl_link_remove(&wk->link);
    pthread_join(wk->th, NULL);
    pthread_cond_destroy(&wk->cv);
    free(wk);
  }
}


/* End the wait of the caller of finished task 'tk', or free it. */
static void hand_over(tpool *p, task *tk, int status) {
  if (tk->waiter != NULL) {
    gl_wait_t *w = tk->waiter;
    tk->waiter = NULL;
    waiting_dec(p);
    gl_wait_end(w, status); /* its continuation takes 'tk' */
  } else {
    task_free(tk);
  }
}


static void on_async(uv_async_t *h) {
  tpool *p = (tpool *)h->data;
  gl_link_t list;
  int exited;
  gl_link_init(&list);
  pthread_mutex_lock(&p->mu);
  while (!gl_link_empty(&p->done)) {
    gl_link_t *l = p->done.next;
    gl_link_remove(l);
    gl_link_push(&list, l);
  }
  exited = !gl_link_empty(&p->exited);
  pthread_mutex_unlock(&p->mu);
  while (!gl_link_empty(&list)) {
    task *tk = GL_CONTAINER(list.next, task, link);
    gl_link_remove(&tk->link);
    hand_over(p, tk, GL_W_OK);
  }
  if (exited)
    join_exited(p);
}


static void on_async_closed(uv_handle_t *h) {
  tpool *p = (tpool *)h->data;
  free(h);
  if (p != NULL)
    pool_unref(p);
}


static int async_open(tpool *p, uv_loop_t *loop) {
  uv_async_t *a = (uv_async_t *)malloc(sizeof(*a));
  int r;
  if (a == NULL)
    return UV_ENOMEM;
  if ((r = uv_async_init(loop, a, on_async)) < 0) {
    free(a);
    return r;
  }
  a->data = p;
  if (p->nwaiting == 0)
    uv_unref((uv_handle_t *)a);
  p->async = a;
  return 0;
}


/*
** The caller was killed or timed out (or gave up a wait) while the task
** was queued (it is dropped: it never runs), running (it runs to its end,
** its result is dropped) or done but not yet handed over (dropped).
*/
static void task_cancel(gl_wait_t *w) {
  task *tk = (task *)w->data;
  tpool *p = tk->p;
  w->data = NULL; /* the continuation has nothing to take */
  tk->waiter = NULL;
  waiting_dec(p);
  pthread_mutex_lock(&p->mu);
  if (tk->state == Q_QUEUED) {
    gl_link_remove(&tk->link);
    p->nqueued--;
    p->canceled++;
    pthread_mutex_unlock(&p->mu);
    task_free(tk);
    return;
  }
  p->abandoned++;
  if (tk->state == Q_RUNNING) {
    tk->stray = 1;
    p->nstray++;
    ensure(p); /* it no longer holds a place */
  } /* else Q_DONE: on 'done', freed when handed over */
  pthread_mutex_unlock(&p->mu);
}


/* A kill or Timeout came after the task had been handed over, before its
   caller ran: drop the result. */
static void task_undo(gl_wait_t *w) {
  task *tk = (task *)w->data;
  if (tk != NULL) {
    w->data = NULL;
    pthread_mutex_lock(&tk->p->mu);
    tk->p->abandoned++;
    pthread_mutex_unlock(&tk->p->mu);
    task_free(tk);
  }
}


#define topool(L) (*(tpool **)lua_touserdata(L, lua_upvalueindex(2)))


/* [-0, +0, v] The pool of a call, raising once the state is closing. */
static tpool *checkpool(lua_State *L) {
  tpool *p = topool(L);
  if (p == NULL)
    luaL_error(L, "green.tpool: the pool is closed");
  return p;
}


static int dump_writer(lua_State *L, const void *s, size_t len, void *ud) {
  (void)L;
  return tpc_buf_add((tp_buf *)ud, s, len) < 0;
}


/*
** [-0, +1, v] The dump of the function at index 1 (cached per function in
** upvalue 3, a weak table), after checking that it can run in another
** state: a Lua function whose only upvalue, if any, is _ENV (it becomes
** the worker's globals).
*/
static const char *dump_fn(lua_State *L, tpool *p, size_t *len) {
  const char *name;
  int i;
  lua_pushvalue(L, 1);
  if (lua_rawget(L, lua_upvalueindex(3)) == LUA_TSTRING)
    return lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  if (lua_iscfunction(L, 1))
    luaL_error(L, WHAT ": fn is a C function: only a Lua function can be "
                  "copied to a worker's Lua state");
  for (i = 1; (name = lua_getupvalue(L, 1, i)) != NULL; i++) {
    if (strcmp(name, "(no name)") == 0) {
      /* stripped (luac -s, string.dump(f, true)): _ENV is known by its
         value, the globals, and only as the one upvalue (the worker sets
         upvalue 1) */
      int env = i == 1;
      if (env && lua_getupvalue(L, 1, 2) != NULL) {
        lua_pop(L, 1);
        env = 0;
      }
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      if (!env || !lua_rawequal(L, -1, -2))
        luaL_error(L, WHAT ": fn has upvalue #%d, not known to be _ENV "
                      "(a stripped function: only a sole upvalue holding "
                      "the global table is taken for _ENV): a function run "
                      "in the pool may have no upvalues but _ENV (it runs "
                      "in another Lua state)",
                   i);
      lua_pop(L, 1);
    } else if (strcmp(name, "_ENV") != 0) {
      luaL_error(L, WHAT ": fn has upvalue '%s': a function run in the pool "
                    "may have no upvalues but _ENV (it runs in another Lua "
                    "state); pass '%s' as an argument",
                 name, name);
    }
    lua_pop(L, 1);
  }
  p->scratch.n = 0;
  lua_pushvalue(L, 1);
  if (lua_dump(L, dump_writer, &p->scratch, 0) != 0)
    luaL_error(L, "not enough memory");
  lua_pop(L, 1);
  lua_pushlstring(L, p->scratch.p, p->scratch.n);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, lua_upvalueindex(3));
  return lua_tolstring(L, -1, len);
}


/* [-0, +0, v] Share the host's package.path and cpath if they changed. */
static void check_paths(lua_State *L, tpool *p) {
  size_t pl = 0, cl = 0;
  const char *ps = "", *cs = "";
  paths *np, *old;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE) {
    if (lua_getfield(L, -1, "path") == LUA_TSTRING)
      ps = lua_tolstring(L, -1, &pl);
    if (lua_getfield(L, -2, "cpath") == LUA_TSTRING)
      cs = lua_tolstring(L, -1, &cl);
  }
  old = p->paths;
  if (old == NULL || old->plen != pl || old->clen != cl ||
      memcmp(old->path, ps, pl) != 0 || memcmp(old->cpath, cs, cl) != 0) {
    if ((np = (paths *)malloc(sizeof(*np) + pl + cl + 2)) == NULL)
      luaL_error(L, "not enough memory");
    np->refs = 1;
    np->plen = pl;
    np->clen = cl;
    np->path = np->data;
    np->cpath = np->data + pl + 1;
    memcpy(np->path, ps, pl + 1);
    memcpy(np->cpath, cs, cl + 1);
    pthread_mutex_lock(&p->mu);
    p->paths = np;
    paths_unref(old);
    pthread_mutex_unlock(&p->mu);
  }
  lua_settop(L, top);
}


/* [-1, +n, m] Push the values of task 'tk' (index 1). */
static int tp_unpack(lua_State *L) {
  task *tk = (task *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  return tpc_read(L, tk->res.p, tk->res.n);
}


/* The state closed after the task was handed over and before its caller
   ran again (gl_hub_close): its result goes (a cancel left nothing). */
static void task_dropped(gl_wait_t *w) {
  task *tk = (task *)w->data;
  if (tk != NULL) {
    w->data = NULL;
    task_free(tk);
  }
}


static int execute_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = (gl_wait_t *)ctx;
  task *tk;
  int st, r, failed;
  (void)status;
  st = lgreen_waited(L, w, task_undo); /* raises a kill or Timeout */
  tk = (task *)w->data;
  w->data = NULL;
  lua_settop(L, 0);
  if (st == TP_LOST) {
    task_free(tk);
    return luaL_error(L, WHAT ": the task was running in the parent "
                          "process when it forked; its worker does not "
                          "exist in this one");
  }
  if (tk->res.n == 0) { /* the worker could not even record its error */
    task_free(tk);
    return luaL_error(L, WHAT ": not enough memory");
  }
  failed = tk->failed;
  lua_pushcfunction(L, tp_unpack);
  lua_pushlightuserdata(L, tk);
  r = lua_pcall(L, 1, LUA_MULTRET, 0);
  task_free(tk);
  if (r != LUA_OK || failed)
    return lua_error(L);
  return lua_gettop(L);
}


/*
** execute(fn, ...): run fn(...) on a worker; its results, or its error
** raised with the worker's traceback. Blocks the caller.
*/
static int tp_execute(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  tpool *p = checkpool(L);
  int n = lua_gettop(L), err, exited;
  size_t fnlen;
  const char *fn;
  gl_thread_t *t;
  task *tk;
  /* A callable table or userdata cannot go: nothing copies its metatable,
     and so its __call, into the worker's state (a real limit, unlike
     everywhere else a function is taken). */
  luaL_argcheck(L, lua_isfunction(L, 1) || !lgreen_iscallable(L, 1), 1,
                "Lua function expected, got a callable value: it cannot "
                "be copied to a worker's Lua state");
  luaL_checktype(L, 1, LUA_TFUNCTION);
  t = lgreen_begin(L, hub, WHAT);
  fn = dump_fn(L, p, &fnlen); /* at n + 1 */
  check_paths(L, p);
  tpc_write(L, &p->scratch, 2, n - 1, "argument", 2);
  tk = (task *)malloc(sizeof(*tk) + fnlen + p->scratch.n);
  if (tk == NULL)
    return luaL_error(L, "not enough memory");
  memset(tk, 0, sizeof(*tk));
  tk->p = p;
  tk->fnlen = fnlen;
  tk->arglen = p->scratch.n;
  memcpy(tk->data, fn, fnlen);
  memcpy(tk->data + fnlen, p->scratch.p, p->scratch.n);
  if (p->scratch.cap > SCRATCH_KEEP)
    tpc_buf_free(&p->scratch);
  pthread_mutex_lock(&p->mu);
  gl_link_push(&p->queue, &tk->link);
  p->nqueued++;
  err = ensure(p);
  if (p->nthreads == 0) { /* no worker at all */
    gl_link_remove(&tk->link);
    p->nqueued--;
    pthread_mutex_unlock(&p->mu);
    free(tk);
    return luaL_error(L, WHAT ": cannot start a worker thread (%s)",
                      uv_strerror(err));
  }
  exited = !gl_link_empty(&p->exited);
  pthread_mutex_unlock(&p->mu);
  if (exited)
    join_exited(p);
  /* Nothing below can raise or run the collector. */
  tk->waiter = &t->w;
  waiting_inc(p);
  gl_wait_start(t, &t->w, WHAT, task_cancel, tk);
  t->w.drop = task_dropped;
  return lgreen_block(L, t, execute_k, (lua_KContext)&t->w);
}


/* setup{threads = n}: the pool's size from now on. */
static int tp_setup(lua_State *L) {
  tpool *p = checkpool(L);
  lua_Integer n = 0;
  static const char *const known[] = {"threads", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lgreen_checkopts(L, 1, known, 0);
  if (lua_getfield(L, 1, "threads") != LUA_TNIL) {
    int ok = 0;
    if (lua_type(L, -1) == LUA_TNUMBER)
      n = lua_tointegerx(L, -1, &ok);
    if (!ok || n < 1 || n > MAX_THREADS)
      return luaL_error(L, "green.tpool.setup: threads must be an integer "
                           "from 1 to %d",
                        MAX_THREADS);
    pthread_mutex_lock(&p->mu);
    p->size = (unsigned)n;
    while (p->nidle > 0) /* the ones over the size leave */
      wake_idle(p, GL_CONTAINER(p->idlers.prev, worker, idle));
    ensure(p);
    pthread_mutex_unlock(&p->mu);
  }
  join_exited(p);
  return 0;
}


static int tp_stats(lua_State *L) {
  static const char *const names[] = {"threads", "workers", "idle", "busy",
                                      "queued", "completed", "failed",
                                      "abandoned", "canceled"};
  tpool *p = checkpool(L);
  uint64_t v[9];
  int i;
  pthread_mutex_lock(&p->mu); /* read only: nothing here may raise */
  v[0] = p->size;
  v[1] = p->nthreads;
  v[2] = p->nidle;
  v[3] = p->nbusy;
  v[4] = p->nqueued;
  v[5] = p->completed;
  v[6] = p->failed;
  v[7] = p->abandoned;
  v[8] = p->canceled;
  pthread_mutex_unlock(&p->mu);
  lua_createtable(L, 0, 9);
  for (i = 0; i < 9; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}


/*
** Keep the code of this module mapped: a worker abandoned at close runs
** it after the host's state has closed, which dlcloses green/core.so when
** stock lua5.4 loaded it (and green.fs's exit handler runs at exit).
*/
void lgreen_pin_code(void) {
  Dl_info info;
  if (dladdr((void *)worker_main, &info) && info.dli_fname != NULL)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}


/* The state is closing (the hub closes after this: the hub userdata is
   older). See the header for what happens to tasks. */
static void pool_close(tpool *p) {
  gl_link_t *l;
  int pinned = 0;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  while (!gl_link_empty(&p->queue)) { /* their callers never resume */
    task *tk = GL_CONTAINER(p->queue.next, task, link);
    gl_link_remove(&tk->link);
    task_free(tk);
  }
  p->nqueued = 0;
  while (!gl_link_empty(&p->done)) {
    task *tk = GL_CONTAINER(p->done.next, task, link);
    gl_link_remove(&tk->link);
    task_free(tk);
  }
  for (l = p->workers.next; l != &p->workers; l = l->next) {
    worker *wk = GL_CONTAINER(l, worker, link);
    if (wk->cur != NULL) { /* abandoned: it ends on its own */
      if (!pinned++)
        lgreen_pin_code();
      wk->detached = 1;
      p->nalive--;
      __atomic_add_fetch(&p->refs, 1, __ATOMIC_ACQ_REL);
      pthread_detach(wk->th);
    }
  }
  while (p->nidle > 0)
    wake_idle(p, GL_CONTAINER(p->idlers.prev, worker, idle));
  while (p->nalive > 0) /* idle and starting workers leave at once */
    pthread_cond_wait(&p->gone, &p->mu);
  paths_unref(p->paths);
  p->paths = NULL;
  pthread_mutex_unlock(&p->mu);
  join_exited(p);
  tpc_buf_free(&p->scratch);
  uv_close((uv_handle_t *)p->async, on_async_closed); /* unrefs the pool */
  p->async = NULL;
}


static int pool_gc(lua_State *L) {
  tpool **pp = (tpool **)lua_touserdata(L, 1);
  if (*pp != NULL) {
    tpool *p = *pp;
    *pp = NULL;
    pool_close(p);
  }
  return 0;
}


void lgreen_tpool_forget(lua_State *L) {
  tpool *p;
  gl_link_t *l;
  lua_getfield(L, LUA_REGISTRYINDEX, POOL_KEY);
  p = lua_touserdata(L, -1) ? *(tpool **)lua_touserdata(L, -1) : NULL;
  lua_pop(L, 1);
  if (p == NULL)
    return;
  /* A worker may have held the lock when the parent forked. */
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->gone, NULL);
  while (!gl_link_empty(&p->workers)) {
    worker *wk = GL_CONTAINER(p->workers.next, worker, link);
    task *tk = wk->cur;
    gl_link_remove(&wk->link);
    gl_link_push(&orphans, &wk->link);
    wk->cur = NULL;
    if (tk != NULL) {
      tk->state = Q_DONE;
      hand_over(p, tk, TP_LOST);
    }
  }
  while (!gl_link_empty(&p->exited)) { /* ended in the parent */
    l = p->exited.next;
    gl_link_remove(l);
    free(GL_CONTAINER(l, worker, link));
  }
  gl_link_init(&p->idlers);
  p->forked = 0;
  p->nthreads = p->nalive = p->nready = p->nstray = 0;
  p->nbusy = p->nidle = 0;
  while (!gl_link_empty(&p->done)) {
    task *tk = GL_CONTAINER(p->done.next, task, link);
    gl_link_remove(&tk->link);
    hand_over(p, tk, GL_W_OK);
  }
  /* The parent's async handle may have a wake-up pending that went to the
     parent's loop: a new handle. */
  p->async->data = NULL;
  uv_close((uv_handle_t *)p->async, on_async_closed);
  if (async_open(p, &lgreen_gethub(L)->loop) < 0)
    abort(); /* no memory in a child that just forked */
  ensure(p); /* the queued tasks get new workers */
}


/* In a child of green.fork, before the parent's threads are buried:
   their kills (task_cancel) take the lock, which a worker that does not
   exist here may have held, and must not start workers yet. */
static void tp_forked_early(lua_State *L, gl_hub_t *hub, void *ud) {
  tpool *p = *(tpool **)ud;
  (void)L;
  (void)hub;
  if (p == NULL)
    return;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->gone, NULL);
  p->forked = 1;
}


static void tp_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  (void)hub;
  (void)ud;
  lgreen_tpool_forget(L);
}


void lgreen_open_tpool(lua_State *L, gl_hub_t *hub) {
  static const luaL_Reg funcs[] = {
      {"tpool_execute", tp_execute},
      {"tpool_setup", tp_setup},
      {"tpool_stats", tp_stats},
      {NULL, NULL},
  };
  unsigned ncpu = uv_available_parallelism();
  tpool **pp = (tpool **)lua_newuserdatauv(L, sizeof(*pp), 0);
  tpool *p;
  *pp = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, pool_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, POOL_KEY);
  lua_newtable(L); /* function -> its dump, weak */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  if ((p = (tpool *)calloc(1, sizeof(*p))) == NULL)
    luaL_error(L, "not enough memory");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->gone, NULL);
  gl_link_init(&p->queue);
  gl_link_init(&p->done);
  gl_link_init(&p->workers);
  gl_link_init(&p->idlers);
  gl_link_init(&p->exited);
  p->size = ncpu < 2 ? 2 : ncpu > MAX_THREADS ? MAX_THREADS : ncpu;
  p->refs = 1;
  if (async_open(p, &hub->loop) < 0) {
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->gone);
    free(p);
    luaL_error(L, "green.tpool: cannot initialize");
  }
  *pp = p;
  lgreen_on_fork_early(hub, tp_forked_early, pp);
  lgreen_on_fork(hub, tp_forked, NULL);
  lgreen_register(L, funcs, 2);
}

/* }====================================================== */
