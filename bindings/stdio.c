/*
** Green line reading from standard input, for the interactive prompt:
** the reading thread waits in the hub, so other green threads keep running
** while the prompt is up.
**
** uv_poll_init makes the descriptor non-blocking; the terminal's flags are
** shared with the shell that started us, so they are restored at once.
** Reads happen only when the poller reports the descriptor readable, so a
** blocking descriptor never blocks us.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lgreen.h"

/*
** The hub's stdin reader: a userdata (upvalue 2 of readline) holding a
** pointer to a malloc'd record, which libuv owns until the poll handle's
** close callback once it has been initialised.
*/
typedef struct reader {
  uv_poll_t poll;
  gl_wait_t *waiter; /* the reading thread's wait, or NULL */
  int usable; /* 1 pollable, 0 not yet tried, -1 not pollable (a file) */
  int eof;
  size_t len, cap;
  char *buf;  /* malloc'd; grows to hold the longest line read */
} reader;

#define BUF_INIT 4096


static void on_readable(uv_poll_t *h, int status, int events) {
  reader *r = (reader *)h->data;
  (void)events;
  uv_poll_stop(h);
  if (r->waiter != NULL) {
    gl_wait_t *w = r->waiter;
    r->waiter = NULL;
    gl_wait_end(w, status < 0 ? status : GL_W_OK);
  }
}


static void read_cancel(gl_wait_t *w) {
  reader *r = (reader *)w->data;
  uv_poll_stop(&r->poll);
  r->waiter = NULL;
}


static void reader_free(reader *r) {
  free(r->buf);
  free(r);
}


static void on_close(uv_handle_t *h) {
  reader_free((reader *)h->data);
}


/* Read once into the buffer, grown first if it is full: a line longer
   than the buffer was given as several lines (a long line pasted at the
   prompt ran as broken pieces). [-0, +0, m] */
static void fill(lua_State *L, reader *r) {
  ssize_t n;
  if (r->len == r->cap) {
    size_t cap = r->cap == 0 ? BUF_INIT : r->cap * 2;
    char *b = cap > r->cap ? (char *)realloc(r->buf, cap) : NULL;
    if (b == NULL)
      luaL_error(L, "not enough memory");
    r->buf = b;
    r->cap = cap;
  }
  do
    n = read(0, r->buf + r->len, r->cap - r->len);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    r->eof = 1;
  else
    r->len += (size_t)n;
}


/* [-0, +1, m] a complete line (without '\n'), the rest at EOF, or nil. */
static int take_line(lua_State *L, reader *r) {
  char *nl = r->len > 0 ? (char *)memchr(r->buf, '\n', r->len) : NULL;
  size_t n;
  if (nl == NULL && !r->eof)
    return 0;
  if (nl == NULL && r->len == 0) {
    lua_pushnil(L);
    return 1;
  }
  n = nl ? (size_t)(nl - r->buf) : r->len;
  lua_pushlstring(L, r->buf, n);
  if (nl)
    n++;
  memmove(r->buf, r->buf + n, r->len - n);
  r->len -= n;
  return 1;
}


#define getreader(L) (*(reader **)lua_touserdata(L, lua_upvalueindex(2)))


static int readline_k(lua_State *L, int status, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  reader *r = getreader(L);
  gl_thread_t *t;
  (void)status;
  if (ctx != 0) {
    lgreen_waited(L, (gl_wait_t *)ctx, NULL);
    fill(L, r);
  }
  for (;;) {
    if (take_line(L, r))
      return 1;
    if (r->usable < 0) {
      fill(L, r);
      continue;
    }
    if (r->waiter != NULL)
      return luaL_error(L, "green.readline: another green thread is "
                           "already reading stdin");
    t = lgreen_begin(L, hub, "green.readline");
    if (uv_poll_start(&r->poll, UV_READABLE, on_readable) < 0) {
      fill(L, r); /* cannot poll: read (a blocking read of a file is
                     brief) */
      continue;
    }
    r->waiter = &t->w;
    gl_wait_start(t, &t->w, "green.readline", read_cancel, r);
    return lgreen_block(L, t, readline_k, (lua_KContext)&t->w);
  }
}


/* readline([prompt]): the next line of stdin, or nil at end of file. */
static int l_readline(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  reader **rp = (reader **)lua_touserdata(L, lua_upvalueindex(2));
  size_t plen;
  const char *prompt = luaL_optlstring(L, 1, NULL, &plen);
  lgreen_checkopen(L, hub); /* its poll handle would be on a closed loop */
  if (*rp == NULL) {
    *rp = (reader *)calloc(1, sizeof(reader));
    if (*rp == NULL)
      return luaL_error(L, "not enough memory");
  }
  if ((*rp)->usable == 0) {
    int fl = fcntl(0, F_GETFL);
    if (uv_poll_init(&hub->loop, &(*rp)->poll, 0) == 0) {
      (*rp)->poll.data = *rp;
      (*rp)->usable = 1;
    } else {
      (*rp)->usable = -1;
    }
    if (fl >= 0)
      fcntl(0, F_SETFL, fl); /* the terminal is shared: keep it blocking */
  }
  if (prompt != NULL) {
    ssize_t w = write(1, prompt, plen);
    (void)w;
  }
  lua_settop(L, 0);
  return readline_k(L, LUA_OK, 0);
}


static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}


/* Before the hub closes (lua_close runs newer finalizers first). */
static int reader_gc(lua_State *L) {
  reader **rp = (reader **)lua_touserdata(L, 1);
  reader *r = *rp;
  *rp = NULL;
  if (r != NULL) {
    if (r->usable > 0)
      uv_close((uv_handle_t *)&r->poll, on_close);
    else
      reader_free(r);
  }
  return 0;
}


void lgreen_open_stdio(lua_State *L, gl_hub_t *hub) {
  reader **rp;
  lua_pushlightuserdata(L, hub);
  rp = (reader **)lua_newuserdatauv(L, sizeof(reader *), 0);
  *rp = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, reader_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, l_readline, 2);
  lua_setfield(L, -2, "readline");
  lua_pushcfunction(L, l_isatty);
  lua_setfield(L, -2, "isatty");
}
