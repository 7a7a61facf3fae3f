/*
** conn.c: the connections of stream sockets (TCP, Unix-domain), both
** ends: the wait of a connect (green.connect, green.connect_unix start
** it), and a listening socket's accept. See lsocket.h; the rest of a
** stream socket is stream.c.
*/
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "lsocket.h"

/*
** {======================================================
** connect
** =======================================================
*/

/* The request is malloc'd (accepted sockets never need one) and freed
   here: libuv calls this, with UV_ECANCELED, even when the socket is
   closed first, and before the socket's close callback. The waiting
   connect is the only writer of a connecting socket. */
void lgreen_stream_on_connect(uv_connect_t *req, int status) {
  lstream *x = (lstream *)req->handle->data;
  free(req);
  if (gl_link_empty(&x->base.writers))
    return; /* given up: the socket is closing */
  if (status < 0)
    x->werr = status;
  gl_wait_end(GL_CONTAINER(x->base.writers.next, gl_wait_t, link), GL_W_OK);
}


/* A connect given up (kill, Timeout, its deadline) closes its socket. */
static void connect_leave(gl_wait_t *w) {
  lsock *s = (lsock *)w->data;
  lgreen_sock_leave(w);
  if (s != NULL)
    lgreen_sock_shut(s);
}


/*
** Block until the connect of 's' under way (its request's callback
** 'lgreen_stream_on_connect') is over, or until 'due' (0: no deadline);
** 'k' continues with context 'ctx' and starts with
** 'lgreen_stream_connected'.
*/
int lgreen_stream_connecting(lua_State *L, lsock *s, const char *what,
                             uint64_t due, lua_KFunction k,
                             lua_KContext ctx) {
  return lgreen_sock_wait(L, s, &s->writers, what, connect_leave, due, k,
                          ctx);
}


/*
** The start of a connect's continuation (raises if the thread was killed;
** the socket is then closed): the wait's outcome, LSOCK_W_CLOSED or
** GL_W_TIMEOUT (the socket is closed), or GL_W_OK with '*err' 0 (the
** socket is connected and reads from now on) or the connect's failure
** (the socket is closed).
*/
int lgreen_stream_connected(lua_State *L, int *err) {
  gl_wait_t *w = lgreen_sock_self(L);
  int outcome = lgreen_waited(L, w, connect_leave);
  lstream *x = LSTREAM(w->data);
  if (outcome != GL_W_OK)
    return outcome;
  lgreen_sock_leave(w);
  if ((*err = x->werr) != 0)
    lgreen_sock_shut(&x->base);
  else
    lgreen_stream_started(x);
  return GL_W_OK;
}

/* }====================================================== */


/*
** {======================================================
** listen, accept
** =======================================================
*/

/*
** Listen on bound socket 's'; 0 or a UV error. The kernel queues
** connections from now on, but libuv watches for them only from the first
** accept or select (lgreen_stream_watched): once it watches, it takes a
** connection from the kernel's queue as soon as one comes and holds it
** until accepted, and a process that never accepts -- a prefork master, a
** child of green.fork that does not serve -- must not hold one back from
** the processes that do.
*/
int lgreen_stream_listen(lsock *s, int backlog) {
  lstream *x = LSTREAM(s);
  uv_os_fd_t fd;
  int r = uv_fileno(s->h, &fd);
  if (r == 0 && s->h->type == UV_TCP)
    r = x->h.stream.delayed_error; /* bind's EADDRINUSE, as uv_listen says */
  if (r == 0 && listen(fd, backlog) < 0)
    r = uv_translate_sys_error(errno);
  if (r == 0) {
    x->backlog = backlog;
    s->flags |= LSOCK_LISTENING;
    lgreen_sock_reref(s);
  }
  return r;
}


int lgreen_stream_backlog(lua_State *L, int arg) {
  lua_Integer n = lgreen_sock_optinteger(L, arg, "backlog");
  /* (int) would wrap: 2^32 listened with a backlog of 0 */
  return n > INT_MAX ? INT_MAX : n < INT_MIN ? INT_MIN : (int)n;
}


/* [-0, +2, m] Accept the waiting connection: client, peer. */
static int do_accept(lua_State *L, lstream *x) {
  lsock *c;
  int r;
  if (x->pending < 0) {
    r = x->pending;
    x->pending = 0;
    return lgreen_sock_fail(L, r);
  }
  c = lgreen_stream_new(L, x->base.st, x->base.ops);
  if (x->base.flags & LSOCK_CLOSED) { /* closed by a finalizer meanwhile */
    lgreen_sock_discard(c);
    return lgreen_sock_fail(L, UV_EOF);
  }
  LSTREAM(c)->limit = x->limit;
  if ((r = c->ops->init(x->h.handle.loop, c)) < 0) {
    lgreen_sock_discard(c);
    return lgreen_sock_fail(L, r);
  }
  r = uv_accept(&x->h.stream, &LSTREAM(c)->h.stream);
  x->pending = 0;
  if (r < 0) {
    lgreen_sock_shut(c);
    return lgreen_sock_fail(L, r);
  }
  lgreen_stream_started(LSTREAM(c));
  c->ops->pushpeer(L, c);
  return 2;
}


/* Wait for a connection; the deadline in 'ctx'. */
static int accept_wait(lua_State *L, lstream *x, lua_KContext ctx);


static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_sock_leave, &s);
  (void)status;
  if (outcome != GL_W_OK) /* "closed", "timeout" */
    return lgreen_sock_fail(L, outcome);
  if (LSTREAM(s)->pending == 0)
    return accept_wait(L, LSTREAM(s), ctx);
  lgreen_sock_leave(lgreen_sock_self(L));
  return do_accept(L, LSTREAM(s));
}


static int accept_wait(lua_State *L, lstream *x, lua_KContext ctx) {
  return lgreen_sock_wait(L, &x->base, &x->base.readers, "socket:accept",
                          lgreen_sock_leave, (uint64_t)ctx, accept_k, ctx);
}


/***
** server:accept(): client, peer address ("host:port"; a Unix socket: the
** peer's path), waiting for a connection; nil, err on failure
** ("timeout", "closed", "too many open files", ...).
*/
static int sock_accept(lua_State *L) {
  lstream *x = LSTREAM(*lgreen_sock_checkstream(L));
  lua_settop(L, 1);
  if (x == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (!(x->base.flags & LSOCK_LISTENING))
    return luaL_error(L, "accept: the socket is not listening");
  lgreen_stream_watched(&x->base); /* libuv watches from now on */
  if (lgreen_sock_first(L, &x->base, &x->base.readers, "read")) {
    if (lgreen_sock_unfair(L, &x->base))
      return lgreen_sock_yield(L, sock_accept);
    if (x->pending == 0 && x->base.timeout == 0) {
      lgreen_sock_poll(&x->base); /* never waits: can libuv accept one? */
      if (lgreen_sock_get((lsock **)lua_touserdata(L, 1)) != &x->base)
        return lgreen_sock_fail(L, UV_EOF);
    }
    if (x->pending != 0 || x->base.timeout == 0) {
      x->base.streak++; /* a polling loop yields now and then too */
      return x->pending != 0 ? do_accept(L, x)
                             : lgreen_sock_fail(L, UV_ETIMEDOUT);
    }
  } else if (x->base.timeout == 0) {
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  }
  return accept_wait(L, x,
                     (lua_KContext)lgreen_sock_deadline(x->base.timeout));
}

/* }====================================================== */


static const luaL_Reg conn_meth[] = {
    {"accept", sock_accept},
    {NULL, NULL},
};


/* [-0, +0, m] accept among the 'green.socket' methods (after
   lgreen_open_stream). */
void lgreen_open_conn(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  lgreen_sock_addmeth(L, LGREEN_SOCKET, conn_meth);
}
