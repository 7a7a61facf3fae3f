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
** Storage is the queue's first user value, a table used as a ring
** (FIFO, LIFO: slot 1 + (head + i) % cap holds the i-th item) or as a
** binary heap (PriorityQueue: entry i at slots 2i-1, the item, and 2i,
** its sequence number, so equal priorities come out in put order). It is
** allocated with its final size ('reserve', before anything changes), so
** storing an item never allocates. The heap's comparisons (a user 'lt' or
** '<') may raise: they all come before the moves, so a failed put or get
** leaves the heap as it was.
*/
#include "lwaitq.h"

/* Classes (as given to queue.new) and their storage. */
enum { Q_LIGHT = 1, Q_QUEUE, Q_LIFO, Q_PRIORITY };
enum { S_FIFO, S_LIFO, S_HEAP };

static const char *const classes[] = {NULL, "green.LightQueue",
                                      "green.Queue", "green.LifoQueue",
                                      "green.PriorityQueue"};

#define UV_ITEMS 1 /* user value: the storage table (nil while empty) */
#define UV_LT 2    /* user value: PriorityQueue's 'lt', or nil */

typedef struct queue {
  lgreen_wq getters;
  lgreen_wq putters;
  lgreen_wq joiners;
  lua_Integer maxsize;    /* -1: no limit */
  lua_Integer unfinished; /* items put and not marked with task_done */
  lua_Integer seq;        /* heap: sequence number of the next put */
  lua_Integer backseq;    /* heap: of the next item given back (< 0) */
  int storage;            /* S_* */
  int head;               /* ring: slot - 1 of the first item */
  int n;                  /* items stored */
  int cap;                /* items (heap entries) the table holds */
} queue;


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
** Storage. 'qi' is the queue's stack index; functions marked 'e' may run
** Lua code (a heap comparison) or raise.
** =======================================================
*/

/* Slots an entry takes in the table. */
#define WIDTH(q) ((q)->storage == S_HEAP ? 2 : 1)


/* Ring slot of the i-th item (0-based). */
static int slot(const queue *q, int i) {
  int s = q->head + i;
  return (s >= q->cap ? s - q->cap : s) + 1;
}


/*
** [-0, +0, m] Make room for one more item: a table twice the size, items
** in order from slot 1. Before anything else changes: it allocates, so a
** finalizer may run here.
*/
static void reserve(lua_State *L, queue *q, int qi) {
  int w = WIDTH(q), cap, i;
  if (q->n < q->cap)
    return;
  if (q->cap > (1 << 28))
    luaL_error(L, "queue too large");
  cap = q->cap < 4 ? 4 : q->cap * 2;
  lua_createtable(L, cap * w, 0);
  if (q->n > 0) {
    lua_getiuservalue(L, qi, UV_ITEMS);
    if (w == 2) {
      for (i = 1; i <= 2 * q->n; i++) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -3, i);
      }
    } else {
      for (i = 0; i < q->n; i++) {
        lua_rawgeti(L, -1, slot(q, i));
        lua_rawseti(L, -3, i + 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_setiuservalue(L, qi, UV_ITEMS);
  q->head = 0;
  q->cap = cap;
}


/* [-0, +0, -] After the last item left: drop a big table. */
static void drained(lua_State *L, queue *q, int qi) {
  q->head = 0;
  if (q->cap > 1024) {
    lua_pushnil(L);
    lua_setiuservalue(L, qi, UV_ITEMS);
    q->cap = 0;
  }
}


/* 'a' < 'b' by the queue's 'lt' (at 'lti', or 0 for the default). */
static int less(lua_State *L, int lti, int a, int b) {
  int r;
  if (lti != 0) {
    lua_pushvalue(L, lti);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
  }
  if (lua_type(L, a) == LUA_TTABLE && lua_type(L, b) == LUA_TTABLE) {
    lua_geti(L, a, 1); /* eventlet's (priority, data) tuples */
    lua_geti(L, b, 1);
    r = lua_compare(L, -2, -1, LUA_OPLT);
    lua_pop(L, 2);
    return r;
  }
  return lua_compare(L, a, b, LUA_OPLT);
}


/* [-0, +0, e] Does item 'a' (sequence 'sa') come out before 'b'? */
static int before(lua_State *L, int lti, int a, lua_Integer sa, int b,
                  lua_Integer sb) {
  if (less(L, lti, a, b))
    return 1;
  if (less(L, lti, b, a))
    return 0;
  return sa < sb;
}


/* [-0, +2, -] Push heap entry i: its item, then its sequence number. */
static void entry(lua_State *L, int ti, int i) {
  lua_rawgeti(L, ti, 2 * i - 1);
  lua_rawgeti(L, ti, 2 * i);
}


/* [-2, +0, -] Store the entry on top (item, sequence) at i. */
static void setentry(lua_State *L, int ti, int i) {
  lua_rawseti(L, ti, 2 * i);
  lua_rawseti(L, ti, 2 * i - 1);
}


/* [-0, +0, -] Copy entry 'from' to 'to'. */
static void moveentry(lua_State *L, int ti, int from, int to) {
  entry(L, ti, from);
  setentry(L, ti, to);
}


/* [-0, +0, e] Push the item at 'vi' (sequence 'seq') on the heap. */
static void heap_push(lua_State *L, queue *q, int qi, int vi,
                      lua_Integer seq) {
  int ti, lti, n = q->n, i = n + 1, k;
  lua_getiuservalue(L, qi, UV_ITEMS);
  ti = lua_gettop(L);
  lti = lua_getiuservalue(L, qi, UV_LT) == LUA_TNIL ? 0 : ti + 1;
  /* Where it settles: climb while it comes before the parent. */
  while (i > 1) {
    int up;
    entry(L, ti, i / 2);
    up = before(L, lti, vi, seq, ti + 2, lua_tointeger(L, -1));
    lua_pop(L, 2);
    if (!up)
      break;
    i /= 2;
  }
  for (k = n + 1; k > i; k /= 2) /* the parents on the way move down */
    moveentry(L, ti, k / 2, k);
  lua_pushvalue(L, vi);
  lua_pushinteger(L, seq);
  setentry(L, ti, i);
  q->n = n + 1;
  lua_settop(L, ti - 1);
}


/* [-0, +1, e] Pop the heap's first item. */
static void heap_pop(lua_State *L, queue *q, int qi) {
  int ti, lti, li, n = q->n, m = n - 1, i = 1, j, d, depth;
  lua_Integer lseq;
  lua_getiuservalue(L, qi, UV_ITEMS);
  ti = lua_gettop(L);
  lti = lua_getiuservalue(L, qi, UV_LT) == LUA_TNIL ? 0 : ti + 1;
  lua_rawgeti(L, ti, 1); /* the result */
  entry(L, ti, n);       /* 'last' fills the root's hole */
  li = lua_gettop(L) - 1;
  lseq = lua_tointeger(L, -1);
  for (;;) { /* where it settles */
    int c = i, l = 2 * i;
    if (l <= m) {
      c = l;
      if (l + 1 <= m) {
        int left, b = lua_gettop(L);
        entry(L, ti, l + 1);
        entry(L, ti, l);
        left = before(L, lti, b + 1, lua_tointeger(L, b + 2), b + 3,
                      lua_tointeger(L, b + 4));
        lua_pop(L, 4);
        if (left)
          c = l + 1;
      }
      entry(L, ti, c);
      if (!before(L, lti, lua_gettop(L) - 1, lua_tointeger(L, -1), li, lseq))
        c = i;
      lua_pop(L, 2);
    }
    if (c == i)
      break;
    i = c;
  }
  /* The entries on the path from the root to i move up one level. */
  for (depth = 0, d = i; d > 1; d /= 2)
    depth++;
  for (j = 1, d = depth - 1; d >= 0; d--) {
    int c = i >> d;
    moveentry(L, ti, c, j);
    j = c;
  }
  if (m > 0) {
    lua_pushvalue(L, li);
    lua_pushinteger(L, lseq);
    setentry(L, ti, i);
  }
  lua_pushnil(L);
  lua_pushnil(L);
  setentry(L, ti, n);
  q->n = m;
  lua_copy(L, ti + 2, ti); /* the result */
  lua_settop(L, ti);
  if (m == 0)
    drained(L, q, qi);
}


/*
** [-0, +0, e] Store the item at 'vi', as a put does ('front': as an item
** given back, which comes out next). 'reserve' has made room.
*/
static void store(lua_State *L, queue *q, int qi, int vi, int front) {
  if (q->storage == S_HEAP) {
    heap_push(L, q, qi, vi, front ? --q->backseq : q->seq++);
    return;
  }
  lua_getiuservalue(L, qi, UV_ITEMS);
  lua_pushvalue(L, vi);
  if (front && q->storage == S_FIFO) {
    q->head = q->head == 0 ? q->cap - 1 : q->head - 1;
    lua_rawseti(L, -2, q->head + 1);
  } else {
    lua_rawseti(L, -2, slot(q, q->n));
  }
  q->n++;
  lua_pop(L, 1);
}


/* [-0, +1, e] Remove the next item and push it. */
static void take(lua_State *L, queue *q, int qi) {
  int s;
  if (q->storage == S_HEAP) {
    heap_pop(L, q, qi);
    return;
  }
  lua_getiuservalue(L, qi, UV_ITEMS);
  if (q->storage == S_FIFO) {
    s = q->head + 1;
    q->head = s == q->cap ? 0 : s;
  } else {
    s = slot(q, q->n - 1);
  }
  lua_rawgeti(L, -1, s);
  lua_pushnil(L);
  lua_rawseti(L, -3, s);
  lua_replace(L, -2); /* the item, in the table's place */
  if (--q->n == 0)
    drained(L, q, qi);
}

/* }====================================================== */


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


/*
** [-0, +0, e] Give back the item at 'vi', handed to a getter that cannot
** take it: to the next getter, else to the front of the queue.
*/
static void unget(lua_State *L, queue *q, int qi, int vi) {
  if (hand(L, q, vi))
    return;
  reserve(L, q, qi);
  if (!hand(L, q, vi)) /* (a finalizer in 'reserve' may have made one) */
    store(L, q, qi, vi, 1);
}


/*
** [-0, +0, e] Move the longest putter's item into the storage and wake
** the putter (its put has happened). Returns 0 if no putter was woken.
*/
static int admit(lua_State *L, queue *q, int qi) {
  gl_wait_t *w;
  reserve(L, q, qi); /* may allocate: before looking at the putters */
  w = gl_waitq_first(&q->putters.q);
  if (w == NULL)
    return 0;
  lgreen_wq_take(L, w, 2);
  store(L, q, qi, lua_gettop(L), 0);
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
    /* Room for the longest putter. A heap lets it in first, so the
       lowest of all comes out and a comparison that raises loses
       nothing; the others take their item first (no allocation). */
    if (q->putters.n > 0 && q->storage == S_HEAP)
      admit(L, q, 1);
    take(L, q, 1);
    if (q->putters.n > 0 && q->storage != S_HEAP)
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
                        timed ? &s : NULL, get_k);
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


/* A putter whose item was taken, or timed out. */
static int put_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (lgreen_waited(L, (gl_wait_t *)ctx, NULL) == GL_W_TIMEOUT)
    return fail(L, "timeout"); /* (once taken, the put stands) */
  lua_pushboolean(L, 1);
  return 1;
}


static int put(lua_State *L, queue *q) {
  lua_Number s;
  int top = lua_gettop(L), timed;
  gl_thread_t *t;
  if (top < 2 || lua_isnil(L, 2))
    return luaL_argerror(L, 2, "a queue item cannot be nil");
  timed = top >= 4 && lgreen_wq_opttimeout(L, 4, &s);
  if (q->getters.n > 0 && hand(L, q, 2)) { /* only when it is empty */
    q->unfinished++;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (q->maxsize < 0 || q->n < q->maxsize) {
    reserve(L, q, 1);
    store(L, q, 1, 2, 0);
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
                        timed ? &s : NULL, put_k);
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
                        timed ? &s : NULL, join_k);
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
    luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  q = (queue *)lua_newuserdatauv(L, sizeof(*q), 2);
  lgreen_wq_init(&q->getters);
  lgreen_wq_init(&q->putters);
  lgreen_wq_init(&q->joiners);
  q->maxsize = maxsize;
  q->unfinished = q->seq = q->backseq = 0;
  q->storage = cls == Q_PRIORITY ? S_HEAP : cls == Q_LIFO ? S_LIFO : S_FIFO;
  q->head = q->n = q->cap = 0;
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
