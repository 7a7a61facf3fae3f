/*
** tcp.c: green.connect, green.listen and server:accept. Names are resolved
** by dns.c (the resolver); the stream side of the sockets is in socket.c;
** the records are in lsocket.h.
**
** connect and listen keep their state in a 'connctx' userdata on the
** caller's stack, which starts with an 'lsock_dns' (lsocket.h): the
** resolved addresses are copied into it as soon as the resolver answers,
** so nothing of the resolver's outlives a kill or a timeout. connect tries
** each address in turn, as LuaSocket does. accept and the address methods
** serve every kind of socket.
*/
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lsocket.h"

#define DEFAULT_BACKLOG 511 /* nginx's; the kernel caps it at somaxconn */

#define state(L) ((lsock_state *)lua_touserdata(L, lua_upvalueindex(2)))


typedef struct connctx {
  lsock_dns d; /* first member: addresses and the wait record */
  int listen;  /* green.listen rather than green.connect */
  int backlog;
  int reuseport;
  int ipv6only;
} connctx;


/*
** {======================================================
** libuv side
** =======================================================
*/

/* The request is malloc'd (accepted sockets never need one) and freed
   here: libuv calls this, with UV_ECANCELED, even when the socket is
   closed first, and before the socket's close callback. */
static void on_connect(uv_connect_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  lsock_waiter *w = s->conn;
  free(req);
  if (w == NULL)
    return; /* abandoned: the socket is closing */
  s->conn = NULL;
  w->err = status;
  lgreen_sock_wake(w, LSOCK_W_READY);
  lgreen_sock_reref(s);
}


/* A connection waits in the listening socket (libuv stops watching the
   socket until it is accepted), or accept() failed (EMFILE, ...). */
void lgreen_sock_on_connection(uv_stream_t *server, int status) {
  lsock *s = (lsock *)server->data;
  s->pending = status < 0 ? status : 1;
  lgreen_sock_kick_readers(s);
}

/* }====================================================== */


/*
** {======================================================
** Addresses
** =======================================================
*/

/* [-0, +1 or +3, m] how 0: "host:port" ("[v6]:port"); how 1: host, port,
   family ("inet" or "inet6"), as LuaSocket's getpeername. */
int lgreen_sock_pushaddr(lua_State *L, const struct sockaddr *sa, int how) {
  char ip[64] = "?";
  int port, v6 = sa->sa_family == AF_INET6;
  if (v6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  }
  if (how == 0) {
    lua_pushfstring(L, v6 ? "[%s]:%d" : "%s:%d", ip, port);
    return 1;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  lua_pushstring(L, v6 ? "inet6" : "inet");
  return 3;
}


static int getname(lua_State *L, int peer) {
  lsock *s = lgreen_sock_check(L, 1);
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss), r;
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (s->kind == LSOCK_PIPE)
    return lgreen_pipe_getname(L, s, peer);
  if (s->kind == LSOCK_UDP) {
    if (peer && !(s->flags & LSOCK_PEER)) {
      luaL_pushfail(L);
      lua_pushliteral(L, "not connected");
      return 2;
    }
    r = peer ? uv_udp_getpeername(&s->h.udp, (struct sockaddr *)&ss, &len)
             : uv_udp_getsockname(&s->h.udp, (struct sockaddr *)&ss, &len);
  } else if (peer) {
    r = uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len);
  } else {
    r = uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len);
  }
  if (r < 0)
    return lgreen_sock_fail(L, r);
  return lgreen_sock_pushaddr(L, (struct sockaddr *)&ss, 1);
}


/* sock:getpeername(): host, port, family; or nil, err. */
int lgreen_sock_getpeername(lua_State *L) {
  return getname(L, 1);
}


/* sock:getsockname(): host, port, family; or nil, err. */
int lgreen_sock_getsockname(lua_State *L) {
  return getname(L, 0);
}


/* }====================================================== */


/*
** {======================================================
** connect, listen
** =======================================================
*/

static int connect_step(lua_State *L, connctx *c);
static int listen_step(lua_State *L, connctx *c);


static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  connctx *c = (connctx *)ctx;
  gl_thread_t *t = lgreen_hub(L)->current;
  lsock *s;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(&c->d.w); /* closes the half-made socket */
  lgreen_resumed(L, t);
  if (c->d.w.base.status == LSOCK_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  s = c->d.w.s;
  c->d.w.s = NULL;
  if (s == NULL || c->d.w.base.status == LSOCK_W_CLOSED)
    return lgreen_sock_fail(L, UV_EOF);
  if (c->d.w.err == 0) {
    lgreen_sock_started(s);
    lua_settop(L, 5);
    return 1;
  }
  c->d.err = c->d.w.err;
  lgreen_sock_shut(s);
  return connect_step(L, c);
}


/* Try the remaining addresses; stack: [host, port, opts, ctx, sock?]. */
static int connect_step(lua_State *L, connctx *c) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  while (c->d.next < c->d.n) {
    const struct sockaddr *sa = &c->d.addrs[c->d.next++].sa;
    lsock **pp;
    lsock *s;
    uv_connect_t *req;
    int r;
    lua_settop(L, 4);
    pp = lgreen_sock_new(L, state(L));
    s = *pp;
    if ((r = uv_tcp_init(&hub->loop, &s->h.tcp)) < 0) {
      *pp = NULL;
      free(s);
      c->d.err = r;
      continue;
    }
    c->d.w.mode = LSOCK_CONNECT;
    c->d.w.s = s;
    req = (uv_connect_t *)malloc(sizeof(*req));
    r = req == NULL ? UV_ENOMEM
                    : uv_tcp_connect(req, &s->h.tcp, sa, on_connect);
    if (r < 0) {
      free(req);
      c->d.w.s = NULL;
      lgreen_sock_shut(s);
      c->d.err = r;
      continue;
    }
    s->conn = &c->d.w;
    lgreen_sock_suspend(L, &c->d.w, t, "green.connect");
    lgreen_sock_reref(s);
    return lgreen_block(L, t, connect_k, (lua_KContext)c);
  }
  return lgreen_sock_fail(L, c->d.err ? c->d.err : UV_EAI_NONAME);
}


static int listen_step(lua_State *L, connctx *c) {
  gl_hub_t *hub = lgreen_hub(L);
  const struct sockaddr *sa = &c->d.addrs[0].sa;
  lsock **pp;
  lsock *s;
  int r;
  lua_settop(L, 4);
  pp = lgreen_sock_new(L, state(L));
  s = *pp;
  if ((r = uv_tcp_init_ex(&hub->loop, &s->h.tcp, sa->sa_family)) < 0) {
    *pp = NULL;
    free(s);
    return lgreen_sock_fail(L, r);
  }
  lgreen_sock_reref(s);
  if (c->reuseport) {
    /* Before bind, so several processes can share the port. */
    uv_os_fd_t fd;
    int on = 1;
    if ((r = uv_fileno(&s->h.handle, &fd)) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
      r = uv_translate_sys_error(errno);
    if (r < 0) {
      lgreen_sock_shut(s);
      return lgreen_sock_fail(L, r);
    }
  }
  r = uv_tcp_bind(&s->h.tcp, sa, c->ipv6only ? UV_TCP_IPV6ONLY : 0);
  if (r == 0)
    r = uv_listen(&s->h.stream, c->backlog, lgreen_sock_on_connection);
  if (r < 0) {
    lgreen_sock_shut(s);
    return lgreen_sock_fail(L, r);
  }
  s->flags |= LSOCK_LISTENING;
  lgreen_sock_reref(s);
  return 1;
}


static int resolved_k(lua_State *L, int status, lua_KContext ctx) {
  connctx *c = (connctx *)ctx;
  int n;
  (void)status;
  if ((n = lgreen_dns_resumed(L, &c->d)) != 0)
    return n;
  return c->listen ? listen_step(L, c) : connect_step(L, c);
}


/* Stack: [host, port, opts]. Resolve (unless numeric), then step. */
static int start(lua_State *L, int listen) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  const char *what = listen ? "green.listen" : "green.connect";
  double timeout = -1;
  connctx *c;
  int r;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (!listen) /* connect always waits: fail early where it cannot */
    lgreen_begin(L, hub, what);
  c = (connctx *)lua_newuserdatauv(L, sizeof(connctx), 0);
  memset(c, 0, sizeof(*c));
  lgreen_dns_init(&c->d, SOCK_STREAM, (int)port);
  c->d.passive = listen;
  c->listen = listen;
  c->backlog = DEFAULT_BACKLOG;
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "timeout") != LUA_TNIL)
      timeout = lgreen_notnan(L, luaL_checknumber(L, -1), "timeout");
    if (lua_getfield(L, 3, "family") != LUA_TNIL) {
      const char *f = luaL_checkstring(L, -1);
      if (strcmp(f, "inet") == 0)
        c->d.family = AF_INET;
      else if (strcmp(f, "inet6") == 0)
        c->d.family = AF_INET6;
      else
        return luaL_error(L, "%s: bad family '%s' (inet or inet6)", what, f);
    }
    if (lua_getfield(L, 3, "backlog") != LUA_TNIL)
      c->backlog = (int)luaL_checkinteger(L, -1);
    lua_getfield(L, 3, "reuseport");
    c->reuseport = lua_toboolean(L, -1);
    lua_getfield(L, 3, "ipv6only");
    c->ipv6only = lua_toboolean(L, -1);
    lua_settop(L, 4);
  }
  c->d.w.due = lgreen_sock_deadline(timeout);
  if ((r = lgreen_dns_numeric(&c->d, host)) < 0)
    return lgreen_sock_fail(L, r);
  if (r > 0)
    return listen ? listen_step(L, c) : connect_step(L, c);
  return lgreen_dns_start(L, &c->d, host, what, resolved_k);
}


/***
** green.connect(host, port, [opts]): a connected socket, or nil, err.
** opts: timeout (seconds, for resolving and connecting together), family
** ("inet" or "inet6"). Unknown host: nil, "host not found".
*/
static int l_connect(lua_State *L) {
  return start(L, 0);
}


/***
** green.listen(host, port, [opts]): a listening socket, or nil, err.
** host "*" is every interface; port 0 picks a free port (getsockname).
** opts: backlog (511), reuseport (SO_REUSEPORT), ipv6only, family.
*/
static int l_listen(lua_State *L) {
  return start(L, 1);
}

/* }====================================================== */


/*
** {======================================================
** accept
** =======================================================
*/

/* [-0, +2, m] Accept the waiting connection: client, "host:port". */
static int do_accept(lua_State *L, lsock *s) {
  gl_hub_t *hub = lgreen_hub(L);
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss), r;
  lsock **pp;
  lsock *c;
  if (s->pending < 0) {
    r = s->pending;
    s->pending = 0;
    return lgreen_sock_fail(L, r);
  }
  pp = lgreen_sock_newkind(L, s->st, s->kind);
  c = *pp;
  if (s->flags & LSOCK_CLOSED) { /* closed by a finalizer meanwhile */
    *pp = NULL;
    free(c);
    return lgreen_sock_fail(L, UV_EOF);
  }
  c->limit = s->limit;
  if (s->kind == LSOCK_PIPE)
    r = uv_pipe_init(&hub->loop, &c->h.pipe, 0);
  else
    r = uv_tcp_init(&hub->loop, &c->h.tcp);
  if (r < 0) {
    *pp = NULL;
    free(c);
    return lgreen_sock_fail(L, r);
  }
  r = uv_accept(&s->h.stream, &c->h.stream);
  s->pending = 0;
  if (r < 0) {
    lgreen_sock_shut(c);
    return lgreen_sock_fail(L, r);
  }
  lgreen_sock_started(c);
  if (c->kind == LSOCK_PIPE) {
    if (lgreen_pipe_getname(L, c, 1) != 1) { /* unnamed peer: "" */
      lua_pop(L, 2);
      lua_pushliteral(L, "");
    }
  } else if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss,
                                &len) == 0) {
    lgreen_sock_pushaddr(L, (struct sockaddr *)&ss, 0);
  } else {
    lua_pushnil(L);
  }
  return 2;
}


static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_waiter *w = (lsock_waiter *)ctx;
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  int n;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(w);
  lgreen_resumed(L, t);
  if (s == NULL || w->base.status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return lgreen_sock_fail(L, UV_EOF);
  }
  if (w->base.status == LSOCK_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  if (s->pending != 0) {
    gl_link_remove(&w->base.link);
    w->s = NULL;
    n = do_accept(L, s);
    lgreen_sock_kick_readers(s);
    lgreen_sock_reref(s);
    return n;
  }
  t = lgreen_begin(L, hub, "socket:accept");
  lgreen_sock_suspend(L, w, t, "socket:accept");
  lgreen_sock_reref(s);
  return lgreen_block(L, t, accept_k, ctx);
}


/***
** server:accept(): client, peer address ("host:port"), waiting for a
** connection; nil, err on failure ("timeout", "closed", "too many open
** files", ...).
*/
int lgreen_sock_accept(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  lsock *s = *(lsock **)luaL_checkudata(L, 1, LGREEN_SOCKET);
  lsock_waiter *w;
  gl_thread_t *t;
  lua_settop(L, 1);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (!(s->flags & LSOCK_LISTENING))
    return luaL_error(L, "accept: the socket is not listening");
  if (gl_link_empty(&s->readers)) {
    if (s->streak >= LSOCK_FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub, LSOCK_FAIR_ACCEPT);
    }
    if (s->pending == 0 && s->timeout == 0) {
      lgreen_sock_poll(s); /* never waits: see if libuv can accept one */
      if (*(lsock **)lua_touserdata(L, 1) != s)
        return lgreen_sock_fail(L, UV_EOF);
    }
    if (s->pending != 0) {
      s->streak++;
      return do_accept(L, s);
    }
    if (s->timeout == 0) {
      s->streak++; /* a polling loop yields now and then (fairness) */
      return lgreen_sock_fail(L, UV_ETIMEDOUT);
    }
  } else if (s->st->prevent) {
    return lgreen_sock_simultaneous(L, s, &s->readers, "read");
  } else if (s->timeout == 0) {
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  }
  t = lgreen_begin(L, hub, "socket:accept");
  w = lgreen_sock_newwaiter(L, (lsock **)lua_touserdata(L, 1), LSOCK_ACCEPT);
  if ((s = w->s) == NULL) /* a finalizer closed it */
    return accept_k(L, LUA_YIELD, (lua_KContext)w);
  w->due = lgreen_sock_deadline(s->timeout);
  gl_link_push(&s->readers, &w->base.link);
  s->streak = 0;
  lgreen_sock_suspend(L, w, t, "socket:accept");
  lgreen_sock_reref(s);
  lgreen_sock_kick_readers(s);
  return lgreen_block(L, t, accept_k, (lua_KContext)w);
}

/* }====================================================== */


static const luaL_Reg tcp_funcs[] = {
    {"connect", l_connect},
    {"listen", l_listen},
    {NULL, NULL},
};


/* Adds connect and listen to the module table (just below 'state'). */
void lgreen_open_tcp(lua_State *L, gl_hub_t *hub, int state) {
  lua_pushvalue(L, state - 1);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, tcp_funcs, 2);
  lua_pop(L, 1);
}
