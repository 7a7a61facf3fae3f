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

typedef struct reader {
  uv_poll_t poll;
  gl_thread_t *waiter;
  int usable; /* 1 pollable, 0 not yet tried, -1 not pollable (a file) */
  int eof;
  size_t len;
  char buf[4096];
} reader;

static reader *in; /* one per process: there is one stdin */


static void on_readable(uv_poll_t *h, int status, int events) {
  reader *r = (reader *)h->data;
  (void)events;
  uv_poll_stop(h);
  if (r->waiter != NULL) {
    gl_thread_t *t = r->waiter;
    r->waiter = NULL;
    t->nres = status;
    gl_wake(t, 0);
  }
}


static void read_cancel(gl_thread_t *t) {
  (void)t;
  uv_poll_stop(&in->poll);
  in->waiter = NULL;
}


static void on_close(uv_handle_t *h) {
  free(h->data);
}


/* Read once into the buffer (it has room). */
static void fill(void) {
  ssize_t n;
  do
    n = read(0, in->buf + in->len, sizeof(in->buf) - in->len);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    in->eof = 1;
  else
    in->len += (size_t)n;
}


/* [-0, +1, m] a complete line (without '\n'), the rest at EOF, or nil. */
static int take_line(lua_State *L) {
  char *nl = memchr(in->buf, '\n', in->len);
  size_t n;
  if (nl == NULL && !in->eof && in->len < sizeof(in->buf))
    return 0;
  if (nl == NULL && in->len == 0) {
    lua_pushnil(L);
    return 1;
  }
  n = nl ? (size_t)(nl - in->buf) : in->len;
  lua_pushlstring(L, in->buf, n);
  if (nl)
    n++;
  memmove(in->buf, in->buf + n, in->len - n);
  in->len -= n;
  return 1;
}


static int readline_k(lua_State *L, int status, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t;
  (void)status;
  if (ctx)
    lgreen_resumed(L, (gl_thread_t *)ctx);
  if (ctx)
    fill();
  for (;;) {
    if (take_line(L))
      return 1;
    if (in->usable < 0) {
      fill();
      continue;
    }
    if (in->waiter != NULL)
      return luaL_error(L, "green.readline: another green thread is "
                           "already reading stdin");
    t = lgreen_begin(L, hub, "green.readline");
    if (uv_poll_start(&in->poll, UV_READABLE, on_readable) < 0) {
      fill(); /* cannot poll: read (a blocking read of a file is brief) */
      continue;
    }
    in->waiter = t;
    gl_suspend(t, "green.readline", read_cancel);
    return lgreen_block(L, t, readline_k, (lua_KContext)t);
  }
}


/* readline([prompt]): the next line of stdin, or nil at end of file. */
static int l_readline(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  size_t plen;
  const char *prompt = luaL_optlstring(L, 1, NULL, &plen);
  if (in == NULL) {
    in = (reader *)calloc(1, sizeof(*in));
    if (in == NULL)
      return luaL_error(L, "not enough memory");
  }
  if (in->usable == 0) {
    int fl = fcntl(0, F_GETFL);
    if (uv_poll_init(&hub->loop, &in->poll, 0) == 0) {
      in->poll.data = in;
      in->usable = 1;
    } else {
      in->usable = -1;
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


static int stdin_gc(lua_State *L) {
  (void)L;
  if (in != NULL) {
    if (in->usable > 0)
      uv_close((uv_handle_t *)&in->poll, on_close);
    else
      free(in);
    in = NULL;
  }
  return 0;
}


void lgreen_open_stdio(lua_State *L, gl_hub_t *hub) {
  lua_pushlightuserdata(L, hub);
  lua_pushcclosure(L, l_readline, 1);
  lua_setfield(L, -2, "readline");
  lua_pushcfunction(L, l_isatty);
  lua_setfield(L, -2, "isatty");
  /* A sentinel whose __gc closes the poll handle before the hub closes. */
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, stdin_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "_stdin");
}
