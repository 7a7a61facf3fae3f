/*
** tpcopy.c: values copied between two Lua states as bytes (ltpool.h), for
** green.tpool: the caller's arguments to a worker's state, the worker's
** results (or error) back.
**
** The format: a count, then each value as a tag and its payload. A table
** is TABLE, its length (a border: holes below it count) and its number
** of pairs (so the reader makes it at its final size), its pairs, and
** END; a table met again (a shared reference or a cycle) is REF and the
** number of its first appearance. Integers and floats have their own
** tags, so math.type survives. Both sides run on their own thread in
** their own state; only bytes cross.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ltpool.h"

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_END, T_REF
};


/*
** {======================================================
** The buffer
** =======================================================
*/

void tpc_buf_free(tp_buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}


static int reserve(tp_buf *b, size_t len) {
  if (b->cap - b->n < len) {
    size_t cap = b->cap ? b->cap : 64;
    char *p;
    while (cap - b->n < len) {
      if (cap > SIZE_MAX / 2)
        return -1;
      cap *= 2;
    }
    if ((p = (char *)realloc(b->p, cap)) == NULL)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  return 0;
}


int tpc_buf_add(tp_buf *b, const void *s, size_t len) {
  if (reserve(b, len) < 0)
    return -1;
  memcpy(b->p + b->n, s, len);
  b->n += len;
  return 0;
}


/* An unsigned LEB128 number. */
static int add_varint(tp_buf *b, uint64_t v) {
  unsigned char tmp[10];
  size_t n = 0;
  do {
    unsigned char c = (unsigned char)(v & 0x7f);
    v >>= 7;
    tmp[n++] = (unsigned char)(c | (v ? 0x80 : 0));
  } while (v);
  return tpc_buf_add(b, tmp, n);
}


int tpc_write_string(tp_buf *b, const char *s, size_t len) {
  unsigned char tag = T_STR;
  b->n = 0;
  if (add_varint(b, 1) < 0 || tpc_buf_add(b, &tag, 1) < 0 ||
      add_varint(b, len) < 0 || tpc_buf_add(b, s, len) < 0)
    return -1;
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Writing (in the state that has the values)
** =======================================================
*/

typedef struct wctx {
  lua_State *L;
  tp_buf *b;
  int seen;             /* stack index of {table = number} (nil until
                           the first table) */
  lua_Integer ntables;  /* tables written so far */
  const char *what;     /* "argument", "result", "the error value" */
  int base, i;          /* value 'i' is "<what> #<base + i>" */
  int keys[TPC_MAXDEPTH + 1]; /* stack index of the key at each level */
} wctx;


static void nomem(wctx *c) {
  luaL_error(c->L, "not enough memory");
}


static void put(wctx *c, const void *s, size_t len) {
  if (tpc_buf_add(c->b, s, len) < 0)
    nomem(c);
}


static void put_tag(wctx *c, int tag) {
  unsigned char t = (unsigned char)tag;
  put(c, &t, 1);
}


static void put_varint(wctx *c, uint64_t v) {
  if (add_varint(c->b, v) < 0)
    nomem(c);
}


static int isident(const char *s, size_t len) {
  size_t i;
  if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!(ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9')))
      return 0;
  }
  return 1;
}


/* [-0, +1, m] The path of keys 0..n-1 as Lua would index it: x.y[3]. */
static void push_path(wctx *c, int n) {
  lua_State *L = c->L;
  luaL_Buffer B;
  int i;
  luaL_buffinit(L, &B);
  for (i = 0; i < n; i++) {
    int k = c->keys[i];
    switch (lua_type(L, k)) {
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, k, &len);
      if (isident(s, len)) {
        if (i > 0)
          luaL_addchar(&B, '.');
        luaL_addlstring(&B, s, len);
      } else {
        luaL_addstring(&B, "[\"");
        luaL_addlstring(&B, s, len);
        luaL_addstring(&B, "\"]");
      }
      break;
    }
    case LUA_TNUMBER:
      luaL_addchar(&B, '[');
      lua_pushvalue(L, k); /* lua_tolstring must not convert the key */
      luaL_addvalue(&B);
      luaL_addchar(&B, ']');
      break;
    case LUA_TBOOLEAN:
      luaL_addstring(&B, lua_toboolean(L, k) ? "[true]" : "[false]");
      break;
    default:
      luaL_addstring(&B, "[table]");
      break;
    }
  }
  luaL_pushresult(&B);
}


/*
** Raise "<problem> (<where>)" for the value at depth 'depth' (the key
** of the table at depth 'depth - 1' if 'iskey').
*/
static void refuse(wctx *c, int depth, int iskey, const char *problem) {
  lua_State *L = c->L;
  int n = 1;
  luaL_checkstack(L, 8, NULL);
  lua_pushfstring(L, "green.tpool.execute: %s", problem);
  if (c->base > 0)
    lua_pushfstring(L, " (%s #%d", c->what, c->base + c->i);
  else
    lua_pushfstring(L, " (%s", c->what);
  n++;
  if (iskey) {
    if (depth - 1 == 0) {
      lua_pushliteral(L, ", a key");
      n++;
    } else {
      lua_pushliteral(L, ", a key in field '");
      push_path(c, depth - 1);
      lua_pushliteral(L, "'");
      n += 3;
    }
  } else if (depth > 0) {
    lua_pushliteral(L, ", field '");
    push_path(c, depth);
    lua_pushliteral(L, "'");
    n += 3;
  }
  lua_pushliteral(L, ")");
  lua_concat(L, n + 1);
  lua_error(L);
}


static void write_value(wctx *c, int idx, int depth, int iskey);


static void write_table(wctx *c, int idx, int depth) {
  lua_State *L = c->L;
  size_t at;
  uint32_t npairs = 0;
  if (lua_isnil(L, c->seen)) { /* the first table: make the map */
    lua_newtable(L);
    lua_replace(L, c->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, c->seen) == LUA_TNUMBER) {
    put_tag(c, T_REF);
    put_varint(c, (uint64_t)lua_tointeger(L, -1));
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (depth >= TPC_MAXDEPTH)
    refuse(c, depth, 0, "tables nested too deeply");
  lua_pushvalue(L, idx);
  lua_pushinteger(L, ++c->ntables);
  lua_rawset(L, c->seen);
  put_tag(c, T_TABLE);
  put_varint(c, (uint64_t)lua_rawlen(L, idx));
  at = c->b->n; /* the number of pairs, filled in below */
  put(c, &npairs, sizeof(npairs));
  luaL_checkstack(L, 4, "tables nested too deeply");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    c->keys[depth] = lua_gettop(L) - 1;
    write_value(c, -2, depth + 1, 1);
    write_value(c, -1, depth + 1, 0);
    lua_pop(L, 1);
    npairs++;
  }
  memcpy(c->b->p + at, &npairs, sizeof(npairs));
  put_tag(c, T_END);
}


static void write_value(wctx *c, int idx, int depth, int iskey) {
  lua_State *L = c->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    put_tag(c, T_NIL);
    break;
  case LUA_TBOOLEAN:
    put_tag(c, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer v = lua_tointeger(L, idx);
      put_tag(c, T_INT);
      put(c, &v, sizeof(v));
    } else {
      lua_Number v = lua_tonumber(L, idx);
      put_tag(c, T_FLT);
      put(c, &v, sizeof(v));
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    put_tag(c, T_STR);
    put_varint(c, len);
    put(c, s, len);
    break;
  }
  case LUA_TTABLE:
    write_table(c, idx, depth);
    break;
  default:
    lua_pushfstring(L, "cannot copy a %s", luaL_typename(L, idx));
    refuse(c, depth, iskey, lua_tostring(L, -1));
  }
}


void tpc_write(lua_State *L, tp_buf *b, int first, int n, const char *what,
               int base) {
  wctx c;
  int top = lua_gettop(L);
  first = lua_absindex(L, first);
  c.L = L;
  c.b = b;
  c.ntables = 0;
  c.what = what;
  c.base = base;
  b->n = 0;
  luaL_checkstack(L, 4, NULL);
  lua_pushnil(L); /* the tables seen, made at the first one */
  c.seen = lua_gettop(L);
  put_varint(&c, (uint64_t)n);
  for (c.i = 0; c.i < n; c.i++)
    write_value(&c, first + c.i, 0, 0);
  lua_settop(L, top);
}

/* }====================================================== */


/*
** {======================================================
** Reading (in the state that gets the values)
** =======================================================
*/

typedef struct rctx {
  lua_State *L;
  const char *p, *end;
  int tables;          /* stack index of {number = table} (nil until the
                          first table) */
  lua_Integer ntables; /* tables read so far */
} rctx;


static void corrupt(rctx *c) {
  luaL_error(c->L, "green.tpool: corrupt copy");
}


static void get(rctx *c, void *dst, size_t len) {
  if ((size_t)(c->end - c->p) < len)
    corrupt(c);
  memcpy(dst, c->p, len);
  c->p += len;
}


static uint64_t get_varint(rctx *c) {
  uint64_t v = 0;
  int shift = 0;
  for (;;) {
    unsigned char ch;
    if (c->p >= c->end || shift > 63)
      corrupt(c);
    ch = (unsigned char)*c->p++;
    v |= (uint64_t)(ch & 0x7f) << shift;
    if (!(ch & 0x80))
      return v;
    shift += 7;
  }
}


static void read_value(rctx *c);


static void read_table(rctx *c) {
  lua_State *L = c->L;
  uint64_t narr = get_varint(c);
  uint32_t npairs;
  int t;
  get(c, &npairs, sizeof(npairs));
  if (narr > npairs) /* the length is a border: it counts the holes below */
    narr = npairs;   /* it (only a size hint here) */
  luaL_checkstack(L, 4, "tables nested too deeply");
  lua_createtable(L, (int)narr, (int)(npairs - narr));
  t = lua_gettop(L);
  if (lua_isnil(L, c->tables)) { /* the first table: make the map */
    lua_newtable(L);
    lua_replace(L, c->tables);
  }
  lua_pushvalue(L, t);
  lua_rawseti(L, c->tables, ++c->ntables);
  for (;;) {
    if (c->p >= c->end)
      corrupt(c);
    if ((unsigned char)*c->p == T_END) {
      c->p++;
      return;
    }
    read_value(c); /* the key */
    read_value(c);
    if (lua_isnil(L, -2))
      corrupt(c);
    lua_rawset(L, t);
  }
}


static void read_value(rctx *c) {
  lua_State *L = c->L;
  unsigned char tag;
  get(c, &tag, 1);
  switch (tag) {
  case T_NIL:
    lua_pushnil(L);
    break;
  case T_FALSE:
  case T_TRUE:
    lua_pushboolean(L, tag == T_TRUE);
    break;
  case T_INT: {
    lua_Integer v;
    get(c, &v, sizeof(v));
    lua_pushinteger(L, v);
    break;
  }
  case T_FLT: {
    lua_Number v;
    get(c, &v, sizeof(v));
    lua_pushnumber(L, v);
    break;
  }
  case T_STR: {
    uint64_t len = get_varint(c);
    if ((uint64_t)(c->end - c->p) < len)
      corrupt(c);
    lua_pushlstring(L, c->p, (size_t)len);
    c->p += len;
    break;
  }
  case T_TABLE:
    read_table(c);
    break;
  case T_REF: {
    uint64_t i = get_varint(c);
    if (i == 0 || i > (uint64_t)c->ntables)
      corrupt(c);
    lua_rawgeti(L, c->tables, (lua_Integer)i);
    break;
  }
  default:
    corrupt(c);
  }
}


int tpc_read(lua_State *L, const char *p, size_t len) {
  rctx c;
  uint64_t n, i;
  c.L = L;
  c.p = p;
  c.end = p + len;
  c.ntables = 0;
  n = get_varint(&c);
  if (n > (uint64_t)(len + 1))
    corrupt(&c);
  luaL_checkstack(L, (int)n + 8, "too many values to copy");
  lua_pushnil(L); /* the tables read, by number, made at the first one */
  c.tables = lua_gettop(L);
  for (i = 0; i < n; i++)
    read_value(&c);
  lua_remove(L, c.tables);
  return (int)n;
}

/* }====================================================== */
