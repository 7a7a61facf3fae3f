/*
** The queues' storage (queue.c is the rest): the queue's first user
** value, a table used as a ring (FIFO; LIFO uses the same ring as a
** stack: slot 1 + (head + i) % cap holds the i-th item) or as a binary
** heap (PriorityQueue: entry i at slots 2i-1, the item, and 2i, its
** sequence number, so equal priorities come out in put order).
**
** The table is allocated with its final size ('lgreen_q_reserve', before
** anything changes), so storing an item never allocates and no finalizer
** can run in the middle of an operation. The heap's comparisons (a user
** 'lt' or '<') may raise: they all come before the moves, so a failed
** put or get leaves the heap as it was.
**
** A comparison is user code: it can call the queue's own methods, or
** block (a C-call boundary parks) and let other threads use the queue.
** The heap is whole at every comparison (nothing has moved yet), so such
** a call works on it, but what the comparisons so far decided is stale:
** the operation raises instead of writing from them (it would lose or
** duplicate items), and changes nothing. 'gen' tells.
*/
#include "lqueue.h"

/* 'qi' is the queue's stack index; functions marked 'e' may run Lua code
   (a heap comparison) or raise. */

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
void lgreen_q_reserve(lua_State *L, queue *q, int qi) {
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
  q->gen++;
}


/* [-0, +0, -] After the last item left: drop a big table. */
static void drained(lua_State *L, queue *q, int qi) {
  q->head = 0;
  q->gen++;
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


/*
** [-0, +0, e] Does item 'a' (sequence 'sa') come out before 'b'? Raises
** if the comparisons changed queue 'q' (its 'gen' is no longer 'gen').
*/
static int before(lua_State *L, const queue *q, unsigned gen, int lti, int a,
                  lua_Integer sa, int b, lua_Integer sb) {
  int r = less(L, lti, a, b) ? 1 : less(L, lti, b, a) ? 0 : sa < sb;
  if (q->gen != gen)
    luaL_error(L, "green.PriorityQueue: the queue changed during a "
                  "comparison of its items (by the comparison, or by "
                  "another thread while it blocked)");
  return r;
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
  unsigned gen = q->gen;
  lua_getiuservalue(L, qi, UV_ITEMS);
  ti = lua_gettop(L);
  lti = lua_getiuservalue(L, qi, UV_LT) == LUA_TNIL ? 0 : ti + 1;
  /* Where it settles: climb while it comes before the parent. */
  while (i > 1) {
    int up;
    entry(L, ti, i / 2);
    up = before(L, q, gen, lti, vi, seq, ti + 2, lua_tointeger(L, -1));
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
  unsigned gen = q->gen;
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
        left = before(L, q, gen, lti, b + 1, lua_tointeger(L, b + 2),
                      b + 3, lua_tointeger(L, b + 4));
        lua_pop(L, 4);
        if (left)
          c = l + 1;
      }
      entry(L, ti, c);
      if (!before(L, q, gen, lti, lua_gettop(L) - 1, lua_tointeger(L, -1),
                  li, lseq))
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
** given back, which comes out next). 'lgreen_q_reserve' has made room.
*/
void lgreen_q_store(lua_State *L, queue *q, int qi, int vi, int front) {
  if (q->storage == S_HEAP) {
    heap_push(L, q, qi, vi, front ? --q->backseq : q->seq++);
    q->gen++;
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
  q->gen++;
  lua_pop(L, 1);
}


/*
** [-0, +0, -] Store the item at 'vi' at the heap's root without comparing
** it: an item given back whose comparisons raised ('lt' cannot order it).
** The root moves to a new last leaf: it is no greater than any other
** item, so the pop that takes this item refills the root with it and the
** heap is whole again; until then only the order is off, nothing is lost.
** 'lgreen_q_reserve' has made room.
*/
void lgreen_q_store_root(lua_State *L, queue *q, int qi, int vi) {
  int ti;
  lua_getiuservalue(L, qi, UV_ITEMS);
  ti = lua_gettop(L);
  if (q->n > 0)
    moveentry(L, ti, 1, q->n + 1);
  lua_pushvalue(L, vi);
  lua_pushinteger(L, --q->backseq);
  setentry(L, ti, 1);
  q->n++;
  q->gen++;
  lua_settop(L, ti - 1);
}


/* [-0, +1, e] Remove the next item and push it. */
void lgreen_q_take(lua_State *L, queue *q, int qi) {
  int s;
  q->gen++;
  if (q->storage == S_HEAP) {
    heap_pop(L, q, qi); /* (compares against the 'gen' just set) */
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
