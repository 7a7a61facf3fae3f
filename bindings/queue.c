/*
** The four queues in C (lua/green/queue.lua is their module; pools.Pool
** keeps its free items in one): LightQueue and Queue (FIFO), LifoQueue
** and PriorityQueue, after eventlet's.
**
** A put hands its item straight to the longest waiting getter (pushed
** onto the getter's stack), and a get that frees room moves the longest
** waiting putter's item in (read from the putter's frame, slot 2), so
** wake-ups are FIFO and a call that does not block never switches. A
** getter interrupted after it was handed an item (woken, then killed
** before it ran) gives it to the next getter or back to the front.
**
** The storage (a ring or a heap in a table) is in qstore.c.
*/
#include "lqueue.h"

/* Classes, as given to queue.new. */
enum { Q_LIGHT = 1, Q_QUEUE, Q_LIFO, Q_PRIORITY };

static const char *const classes[] = {NULL, "green.LightQueue",
                                      "green.Queue", "green.LifoQueue",
                                      "green.PriorityQueue"};


static queue *toqueue(lua_State *L) {
  return (queue *)lgreen_wq_check(L, 1, "green.Queue");
}


/* pools.Pool's queue (a module function: no class upvalue). */
static queue *topoolqueue(lua_State *L) {
  void *q = luaL_testudata(L, 1, classes[Q_LIGHT]);
  if (q == NULL)
    q = luaL_testudata(L, 1, classes[Q_LIFO]);
  if (q == NULL)
    luaL_typeerror(L, 1, classes[Q_LIGHT]);
  return (queue *)q;
}





/*
** {======================================================
** Waiting
** =======================================================
*/

static void get_cancel(gl_wait_t *w) {
  ((queue *)lgreen_wq_object(w))->getters.n--;
}


static void put_cancel(gl_wait_t *w) {
  ((queue *)lgreen_wq_object(w))->putters.n--;
}


static void join_cancel(gl_wait_t *w) {
  ((queue *)lgreen_wq_object(w))->joiners.n--;
}


/* [-0, +0, -] Hand the item at 'vi' to the longest getter, if any. */
static int hand(lua_State *L, queue *q, int vi) {
  gl_wait_t *w = lgreen_wq_wake(&q->getters);
  if (w == NULL)
    return 0;
  lgreen_wq_give(L, w, vi);
  return 1;
}


/* lua_pcall'd by 'unget': store item 2 at the front of queue 1. */
static int store_front(lua_State *L) {
  lgreen_q_store(L, (queue *)lua_touserdata(L, 1), 1, 2, 1);
  return 0;
}


/*
** [-0, +0, m] Give back the item at 'vi', handed to a getter that cannot
** take it: to the next getter, else to the front of the queue. A heap's
** comparisons may raise (an 'lt' that cannot order the item, a kill of
** this getter at a comparison that blocks, the queue changed meanwhile):
** the item must not be lost, nor the error replace the one the getter
** is about to see (its kill), so then it goes in without comparisons.
*/
static void unget(lua_State *L, queue *q, int qi, int vi) {
  if (hand(L, q, vi))
    return;
  lgreen_q_reserve(L, q, qi);
  if (hand(L, q, vi)) /* (a finalizer in 'reserve' may have made one) */
    return;
  if (q->storage != S_HEAP) {
    lgreen_q_store(L, q, qi, vi, 1); /* raises not */
    return;
  }
  lua_pushcfunction(L, store_front);
  lua_pushvalue(L, qi);
  lua_pushvalue(L, vi);
  if (lua_pcall(L, 2, 0, 0) == LUA_OK)
    return;
  lua_pop(L, 1); /* the comparison's error */
  if (hand(L, q, vi)) /* (a comparison that blocked may have made one) */
    return;
  lgreen_q_reserve(L, q, qi); /* (or filled the room made above) */
  lgreen_q_store_root(L, q, qi, vi);
}


/*
** [-0, +0, e] Move the longest putter's item into the storage and wake
** the putter (its put has happened). Returns 0 if no putter was woken.
*/
static int admit(lua_State *L, queue *q, int qi) {
  gl_wait_t *w;
  lgreen_q_reserve(L, q, qi); /* allocates: before looking at putters */
  w = gl_waitq_first(&q->putters.q);
  if (w == NULL)
    return 0;
  lgreen_wq_take(L, w, 2);
  lgreen_q_store(L, q, qi, lua_gettop(L), 0);
  lua_pop(L, 1);
  /* A heap's 'lt' is Lua code that may have changed the putters: wake
     the putter only if it is still the one whose item was stored. */
  if (gl_waitq_first(&q->putters.q) != w)
    return 0;
  lgreen_wq_wake(&q->putters);
  q->unfinished++;
  return 1;
}


/* [-0, +1, -] Take the longest putter's item directly (a channel). */
static int take_putter(lua_State *L, queue *q) {
  gl_wait_t *w = gl_waitq_first(&q->putters.q);
  if (w == NULL)
    return 0;
  lgreen_wq_take(L, w, 2);
  lgreen_wq_wake(&q->putters);
  q->unfinished++;
  return 1;
}


static int nonblocking(lua_State *L, int arg) {
  return lua_type(L, arg) == LUA_TBOOLEAN && !lua_toboolean(L, arg);
}


static int fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}


/* A getter handed an item, or timed out. */
static int get_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = (gl_wait_t *)ctx;
  (void)status;
  if (lgreen_wq_handed_back(w))
    unget(L, (queue *)lua_touserdata(L, 1), 1, lua_gettop(L));
  if (lgreen_waited(L, w, NULL) == GL_W_TIMEOUT) /* raises if killed */
    return fail(L, "timeout");
  return 1;
}


static int get(lua_State *L, queue *q, const char *what) {
  lua_Number s;
  int top = lua_gettop(L);
  int timed = top >= 3 && lgreen_wq_opttimeout(L, 3, &s);
  gl_thread_t *t;
  if (q->n > 0) {
    /* Room for the longest putter, if taking one item makes room (a
       queue shrunk by resize may hold more than maxsize: it lets no
       putter in until it is below). A heap lets it in first, so the
       lowest of all comes out and a comparison that raises loses
       nothing; the others take their item first (no allocation). */
    int room = q->maxsize < 0 || q->n <= q->maxsize;
    if (room && q->putters.n > 0 && q->storage == S_HEAP)
      admit(L, q, 1);
    lgreen_q_take(L, q, 1);
    if (room && q->putters.n > 0 && q->storage != S_HEAP)
      admit(L, q, 1);
    return 1;
  }
  if (q->putters.n > 0 && take_putter(L, q)) /* a channel */
    return 1;
  if (top >= 2 && nonblocking(L, 2))
    return fail(L, "empty");
  t = lgreen_begin(L, lgreen_hub(L), what);
  if (top != 1)
    lua_settop(L, 1); /* the item handed over goes at 2 */
  return lgreen_wq_wait(L, t, &q->getters, what, get_cancel,
                        timed ? &s : NULL, get_k, 0);
}


/* q:get([block], [timeout]): the next item; nil, "empty"/"timeout". */
static int q_get(lua_State *L) {
  return get(L, toqueue(L), "Queue:get");
}


/* queue.poolget(q): a blocking get, for pools.Pool's waits. */
static int q_poolget(lua_State *L) {
  queue *q = topoolqueue(L);
  lua_settop(L, 1);
  return get(L, q, "Pool:get");
}


static int q_get_nowait(lua_State *L) {
  queue *q = toqueue(L);
  lua_settop(L, 1);
  lua_pushboolean(L, 0);
  return get(L, q, "Queue:get");
}


/*
** A putter whose item was taken, or timed out. Once taken the put stands:
** a Timeout due before the putter ran again waits for its next blocking
** call (the wait is 'final'); a kill still raises here, the item
** delivered all the same.
*/
static int put_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = (gl_wait_t *)ctx;
  (void)status;
  w->final = 0;
  if (lgreen_waited(L, w, NULL) == GL_W_TIMEOUT)
    return fail(L, "timeout"); /* (once taken, the put stands) */
  lua_pushboolean(L, 1);
  return 1;
}


/*
** [-0, +0, e] A PriorityQueue without 'lt' refuses a NaN priority (the
** item, or a table's first element, as 'less' reads it): NaN < x and
** x < NaN are both false, so its place, and the heap's order around it,
** would be undefined (Python's heapq takes it so; refusing is kinder).
*/
static void check_priority(lua_State *L, queue *q) {
  int nan;
  if (q->storage != S_HEAP)
    return;
  if (lua_getiuservalue(L, 1, UV_LT) != LUA_TNIL) {
    lua_pop(L, 1);
    return; /* the order is lt's */
  }
  lua_pop(L, 1);
  if (lua_type(L, 2) == LUA_TTABLE)
    lua_geti(L, 2, 1);
  else
    lua_pushvalue(L, 2);
  nan = lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
        lua_tonumber(L, -1) != lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (nan)
    luaL_argerror(L, 2, "the priority is NaN, which has no order (it "
                        "compares false with everything)");
}


static int put(lua_State *L, queue *q) {
  lua_Number s;
  int top = lua_gettop(L), timed;
  gl_thread_t *t;
  if (top < 2 || lua_isnil(L, 2))
    return luaL_argerror(L, 2, "a queue item cannot be nil");
  check_priority(L, q);
  timed = top >= 4 && lgreen_wq_opttimeout(L, 4, &s);
  if (q->getters.n > 0 && hand(L, q, 2)) { /* only when it is empty */
    q->unfinished++;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (q->maxsize < 0 || q->n < q->maxsize) {
    lgreen_q_reserve(L, q, 1);
    lgreen_q_store(L, q, 1, 2, 0);
    q->unfinished++;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (top >= 3 && nonblocking(L, 3))
    return fail(L, "full");
  t = lgreen_begin(L, lgreen_hub(L), "Queue:put");
  if (top != 2)
    lua_settop(L, 2); /* the item stays at slot 2 for the getter */
  return lgreen_wq_wait(L, t, &q->putters, "Queue:put", put_cancel,
                        timed ? &s : NULL, put_k, 1);
}


/* q:put(item, [block], [timeout]): true; nil, "full"/"timeout". */
static int q_put(lua_State *L) {
  return put(L, toqueue(L));
}


static int q_put_nowait(lua_State *L) {
  queue *q = toqueue(L);
  lua_settop(L, 2);
  lua_pushboolean(L, 0);
  return put(L, q);
}


/* q:_unpop(item): give an item back to the front (GreenPile's hook). */
static int q_unpop(lua_State *L) {
  queue *q = toqueue(L);
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "a queue item cannot be nil");
  lua_settop(L, 2);
  unget(L, q, 1, 2);
  return 0;
}


static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_pushboolean(L, lgreen_waited(L, (gl_wait_t *)ctx, NULL) == GL_W_OK);
  return 1;
}


/* q:join([timeout]): true once every item put was marked done. */
static int q_join(lua_State *L) {
  queue *q = toqueue(L);
  lua_Number s;
  int timed = lgreen_wq_opttimeout(L, 2, &s);
  gl_thread_t *t;
  if (q->unfinished == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t = lgreen_begin(L, lgreen_hub(L), "Queue:join");
  lua_settop(L, 1);
  return lgreen_wq_wait(L, t, &q->joiners, "Queue:join", join_cancel,
                        timed ? &s : NULL, join_k, 0);
}


static int q_task_done(lua_State *L) {
  queue *q = toqueue(L);
  if (q->unfinished <= 0)
    return luaL_error(L, "task_done() called too many times");
  if (--q->unfinished == 0)
    while (lgreen_wq_wake(&q->joiners) != NULL) {
    }
  return 0;
}

/* }====================================================== */


static lua_Integer optsize(lua_State *L, int arg) {
  lua_Integer n;
  if (lua_isnoneornil(L, arg))
    return -1;
  n = lua_tointeger(L, arg);
  if (!lua_isinteger(L, arg) || n < 0)
    luaL_argerror(L, arg, "non-negative integer or nil expected");
  return n;
}


/* q:resize([maxsize]): growing lets blocked putters in at once. */
static int q_resize(lua_State *L) {
  queue *q = toqueue(L);
  q->maxsize = optsize(L, 2);
  lua_settop(L, 1);
  while (q->putters.n > 0 && (q->maxsize < 0 || q->n < q->maxsize))
    if (!admit(L, q, 1))
      break;
  return 0;
}


static int q_qsize(lua_State *L) {
  lua_pushinteger(L, toqueue(L)->n);
  return 1;
}


static int q_empty(lua_State *L) {
  lua_pushboolean(L, toqueue(L)->n == 0);
  return 1;
}


/* True if a put would block (a channel always is). */
static int q_full(lua_State *L) {
  queue *q = toqueue(L);
  lua_pushboolean(L, q->maxsize >= 0 && q->n >= q->maxsize);
  return 1;
}


static int q_getting(lua_State *L) {
  lua_pushinteger(L, toqueue(L)->getters.n);
  return 1;
}


static int q_putting(lua_State *L) {
  lua_pushinteger(L, toqueue(L)->putters.n);
  return 1;
}


static int q_unfinished_tasks(lua_State *L) {
  lua_pushinteger(L, toqueue(L)->unfinished);
  return 1;
}


/*
** queue.new(class, [maxsize], [lt]): 'class' is 1 LightQueue, 2 Queue,
** 3 LifoQueue, 4 PriorityQueue. The Lua layer has checked the arguments.
*/
static int q_new(lua_State *L) {
  int cls = (int)luaL_checkinteger(L, 1);
  lua_Integer maxsize = optsize(L, 2);
  queue *q;
  luaL_argcheck(L, cls >= Q_LIGHT && cls <= Q_PRIORITY, 1, "no such class");
  if (cls == Q_PRIORITY && !lua_isnoneornil(L, 3))
    lgreen_checkcallable(L, 3);
  lua_settop(L, 3);
  q = (queue *)lua_newuserdatauv(L, sizeof(*q), 2);
  lgreen_wq_init(&q->getters);
  lgreen_wq_init(&q->putters);
  lgreen_wq_init(&q->joiners);
  q->maxsize = maxsize;
  q->unfinished = q->seq = q->backseq = 0;
  q->storage = cls == Q_PRIORITY ? S_HEAP : cls == Q_LIFO ? S_LIFO : S_FIFO;
  q->head = q->n = q->cap = 0;
  q->gen = 0;
  if (cls == Q_PRIORITY && !lua_isnil(L, 3)) {
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, UV_LT);
  }
  luaL_setmetatable(L, classes[cls]);
  return 1;
}


#define COMMON_METHODS                                                     \
  {"put", q_put}, {"put_nowait", q_put_nowait}, {"get", q_get},            \
      {"get_nowait", q_get_nowait}, {"qsize", q_qsize},                    \
      {"empty", q_empty}, {"full", q_full}, {"getting", q_getting},        \
      {"putting", q_putting}, {"resize", q_resize}, {"_unpop", q_unpop}

static const luaL_Reg light_methods[] = {COMMON_METHODS, {NULL, NULL}};

static const luaL_Reg queue_methods[] = {
    COMMON_METHODS,
    {"task_done", q_task_done},
    {"join", q_join},
    {"unfinished_tasks", q_unfinished_tasks},
    {NULL, NULL}};

static const luaL_Reg q_funcs[] = {
    {"new", q_new}, {"poolget", q_poolget}, {NULL, NULL}};


/*
** core.queue = {new = ..., poolget = ..., LightQueue_mt = ..., Queue_mt =
** ..., LifoQueue_mt = ..., PriorityQueue_mt = ...}. LightQueue has no
** task_done/join: a methods table of its own.
*/
void lgreen_open_queue(lua_State *L, gl_hub_t *hub) {
  int core = lua_gettop(L);
  int mod = lgreen_wq_module(L, hub);
  lgreen_wq_class(L, mod, classes[Q_LIGHT], light_methods, "LightQueue_mt");
  lgreen_wq_class(L, mod, classes[Q_QUEUE], queue_methods, "Queue_mt");
  lgreen_wq_class(L, mod, classes[Q_LIFO], queue_methods, "LifoQueue_mt");
  lgreen_wq_class(L, mod, classes[Q_PRIORITY], queue_methods,
                  "PriorityQueue_mt");
  lgreen_wq_setfuncs(L, mod, q_funcs);
  lgreen_wq_register(L, core, "queue", mod);
}
