/*
** pipe.c: Unix-domain stream sockets over uv_pipe_t:
** green.connect_unix(path) and green.listen_unix(path). The sockets are
** ordinary 'green.socket's (kind LSOCK_PIPE): receive, send, accept,
** close and the rest are the stream code in stream.c and tcp.c; only
** creation and the addresses (paths) are here.
**
** Paths longer than sockaddr_un can hold fail with "name too long" rather
** than being cut short (libuv would truncate them silently and bind or
** connect to another path). Closing a listening socket removes the
** socket file it created (libuv unlinks it); a file already at the path
** makes listen_unix fail with "address already in use".
*/
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "lsocket.h"

#define DEFAULT_BACKLOG 511

#define state(L) ((lsock_state *)lua_touserdata(L, lua_upvalueindex(2)))


/*
** [-0, +1 or +2, m] Push the path of 's' (its peer's if 'peer'): "" for
** an unnamed socket (a client that did not bind). Returns 1, or pushes
** nil, err and returns 2.
*/
int lgreen_pipe_getname(lua_State *L, lsock *s, int peer) {
  char buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t len = sizeof(buf);
  int r = peer ? uv_pipe_getpeername(&s->h.pipe, buf, &len)
               : uv_pipe_getsockname(&s->h.pipe, buf, &len);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushlstring(L, buf, len);
  return 1;
}


/* The path argument: a string without NULs that fits in a sockaddr_un;
   returns NULL (having pushed nil, err) if it is too long. */
static const char *checkpath(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, strlen(path) == len, 1, "path contains a zero byte");
  luaL_argcheck(L, len > 0, 1, "empty path");
  if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    lgreen_sock_fail(L, UV_ENAMETOOLONG);
    return NULL;
  }
  return path;
}


/* The waiter of a pending connect is 's->conn'; freed here (see tcp.c's
   on_connect, which this mirrors). */
static void on_connect(uv_connect_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  lsock_waiter *w = s->conn;
  free(req);
  if (w == NULL)
    return;
  s->conn = NULL;
  w->err = status;
  lgreen_sock_wake(w, LSOCK_W_READY);
  lgreen_sock_reref(s);
}


/* Stack: [path, opts, sock, waiter]. */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_waiter *w = (lsock_waiter *)ctx;
  gl_thread_t *t = lgreen_hub(L)->current;
  lsock *s;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(w); /* closes the half-made socket */
  lgreen_resumed(L, t);
  if (w->base.status == LSOCK_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  s = w->s;
  w->s = NULL;
  if (s == NULL || w->base.status == LSOCK_W_CLOSED)
    return lgreen_sock_fail(L, UV_EOF);
  if (w->err != 0) {
    lgreen_sock_shut(s);
    return lgreen_sock_fail(L, w->err);
  }
  lgreen_sock_started(s);
  lua_settop(L, 3);
  return 1;
}


/***
** green.connect_unix(path, [opts]): a connected socket, or nil, err
** ("no such file or directory", "connection refused", "timeout", ...).
** opts: timeout (seconds).
*/
static int l_connect_unix(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *path = checkpath(L);
  double timeout = -1;
  gl_thread_t *t;
  lsock_waiter *w;
  uv_connect_t *req;
  lsock **pp;
  lsock *s;
  int r;
  if (path == NULL)
    return 2;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
      timeout = lgreen_notnan(L, luaL_checknumber(L, -1), "timeout");
  }
  lua_settop(L, 2);
  t = lgreen_begin(L, hub, "green.connect_unix");
  pp = lgreen_sock_newkind(L, state(L), LSOCK_PIPE);
  s = *pp;
  if ((r = uv_pipe_init(&hub->loop, &s->h.pipe, 0)) < 0) {
    *pp = NULL;
    free(s);
    return lgreen_sock_fail(L, r);
  }
  w = lgreen_sock_newwaiter(L, pp, LSOCK_CONNECT); /* s is ours alone */
  w->due = lgreen_sock_deadline(timeout);
  req = (uv_connect_t *)malloc(sizeof(*req));
  if (req == NULL) {
    lgreen_sock_leave(w);
    return luaL_error(L, "not enough memory");
  }
  uv_pipe_connect(req, &s->h.pipe, path, on_connect);
  s->conn = w;
  lgreen_sock_suspend(L, w, t, "green.connect_unix");
  lgreen_sock_reref(s);
  return lgreen_block(L, t, connect_k, (lua_KContext)w);
}


/***
** green.listen_unix(path, [opts]): a listening socket, or nil, err
** ("address already in use" if 'path' exists, even as a stale socket
** file: remove it first). close() removes the socket file. opts:
** backlog (511), mode (the file's permissions, e.g. 384 = 0600: set as
** the file is created; default from the process's umask).
*/
static int l_listen_unix(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *path = checkpath(L);
  int backlog = DEFAULT_BACKLOG, mode = -1, r;
  lsock **pp;
  lsock *s;
  if (path == NULL)
    return 2;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "backlog") != LUA_TNIL)
      backlog = (int)luaL_checkinteger(L, -1);
    if (lua_getfield(L, 2, "mode") != LUA_TNIL) {
      lua_Integer m = luaL_checkinteger(L, -1);
      luaL_argcheck(L, m >= 0 && m <= 0777, 2, "mode: 0 to 0777 expected");
      mode = (int)m;
    }
  }
  lua_settop(L, 2);
  pp = lgreen_sock_newkind(L, state(L), LSOCK_PIPE);
  s = *pp;
  if ((r = uv_pipe_init(&hub->loop, &s->h.pipe, 0)) < 0) {
    *pp = NULL;
    free(s);
    return lgreen_sock_fail(L, r);
  }
  lgreen_sock_reref(s);
  if (mode >= 0) {
    /* The file gets its permissions as bind(2) creates it: with the umask
       set around the call, no other user can ever reach a socket meant to
       be private. The hub is the process's only thread that makes files,
       so changing the process's umask for one call is safe. */
    mode_t old = umask((mode_t)(~mode & 0777));
    r = uv_pipe_bind(&s->h.pipe, path);
    umask(old);
  } else {
    r = uv_pipe_bind(&s->h.pipe, path);
  }
  if (r == 0)
    r = uv_listen(&s->h.stream, backlog, lgreen_sock_on_connection);
  if (r < 0) {
    lgreen_sock_shut(s);
    return lgreen_sock_fail(L, r);
  }
  s->flags |= LSOCK_LISTENING;
  lgreen_sock_reref(s);
  return 1;
}


static const luaL_Reg pipe_funcs[] = {
    {"connect_unix", l_connect_unix},
    {"listen_unix", l_listen_unix},
    {NULL, NULL},
};


/* Adds connect_unix and listen_unix to the module table (below 'state'). */
void lgreen_open_pipe(lua_State *L, gl_hub_t *hub, int state) {
  lua_pushvalue(L, state - 1);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, pipe_funcs, 2);
  lua_pop(L, 1);
}
