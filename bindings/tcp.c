/*
** tcp.c: TCP sockets: green.connect, green.listen, and the TCP part of
** their ops table (the handle, the addresses); everything else a TCP
** socket does is the stream code (stream.c). Names are resolved by dns.c;
** the records are in lsocket.h.
**
** connect and listen keep their state in a 'connctx' userdata on the
** caller's stack, which starts with an 'lsock_dns' (lsocket.h): the
** resolved addresses are copied into it as soon as the resolver answers,
** so nothing of the resolver's outlives a kill or a timeout. connect tries
** each address in turn, as LuaSocket does.
*/
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lsocket.h"

#define DEFAULT_BACKLOG 511 /* nginx's; the kernel caps it at somaxconn */


typedef struct connctx {
  lsock_dns d; /* first member: addresses and the resolve's wait */
  int listen;  /* green.listen rather than green.connect */
  int backlog;
  int reuseport;
  int ipv6only;
} connctx;


/*
** {======================================================
** The TCP ops
** =======================================================
*/

static int tcp_init(uv_loop_t *loop, lsock *s) {
  return uv_tcp_init(loop, (uv_tcp_t *)s->h);
}


/* The address of 's' (its peer's if 'peer') in 'ss': 0 or a UV error. */
static int getname(lsock *s, int peer, struct sockaddr_storage *ss) {
  int len = (int)sizeof(*ss);
  uv_tcp_t *h = (uv_tcp_t *)s->h;
  return peer ? uv_tcp_getpeername(h, (struct sockaddr *)ss, &len)
              : uv_tcp_getsockname(h, (struct sockaddr *)ss, &len);
}


/* getsockname/getpeername: host, port, family; or nil, err. */
static int tcp_address(lua_State *L, lsock *s, int peer) {
  struct sockaddr_storage ss;
  int r = getname(s, peer, &ss);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  return lgreen_sock_pushaddr(L, (struct sockaddr *)&ss, 1);
}


/* accept's second result: "host:port", or nil. */
static void tcp_pushpeer(lua_State *L, lsock *s) {
  struct sockaddr_storage ss;
  if (getname(s, 1, &ss) == 0)
    lgreen_sock_pushaddr(L, (struct sockaddr *)&ss, 0);
  else
    lua_pushnil(L);
}


static int tcp_open(lsock *s, uv_os_fd_t fd) {
  LSTREAM(s)->pending = 0; /* a connection libuv held is the parent's */
  return uv_tcp_open((uv_tcp_t *)s->h, fd);
}


static const lsock_ops tcp_ops = {LSOCK_STREAM_OPS, .tag = "",
                                  .size = LSTREAM_SIZE(tcp),
                                  .init = tcp_init, .open = tcp_open,
                                  .address = tcp_address,
                                  .pushpeer = tcp_pushpeer};

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
  int err, outcome = lgreen_stream_connected(L, &err);
  (void)status;
  if (outcome != GL_W_OK)
    return lgreen_sock_fail(L, outcome); /* "closed", "timeout" */
  if (err == 0) {
    lua_settop(L, 5);
    return 1;
  }
  c->d.err = err;
  return connect_step(L, c);
}


/* Try the remaining addresses; stack: [host, port, opts, ctx, sock?]. */
static int connect_step(lua_State *L, connctx *c) {
  gl_hub_t *hub = lgreen_hub(L);
  while (c->d.next < c->d.n) {
    const struct sockaddr *sa = &c->d.addrs[c->d.next++].sa;
    uv_connect_t *req;
    lsock *s;
    int r;
    lua_settop(L, 4);
    s = lgreen_stream_new(L, lgreen_sock_state(L), &tcp_ops);
    if ((r = tcp_init(&hub->loop, s)) < 0) {
      lgreen_sock_discard(s);
      c->d.err = r;
      continue;
    }
    req = (uv_connect_t *)malloc(sizeof(*req));
    r = req == NULL ? UV_ENOMEM
                    : uv_tcp_connect(req, (uv_tcp_t *)s->h, sa,
                                     lgreen_stream_on_connect);
    if (r < 0) {
      free(req);
      lgreen_sock_shut(s);
      c->d.err = r;
      continue;
    }
    return lgreen_stream_connecting(L, s, "green.connect", c->d.due,
                                    connect_k, (lua_KContext)c);
  }
  return lgreen_sock_fail(L, c->d.err ? c->d.err : UV_EAI_NONAME);
}


static int listen_step(lua_State *L, connctx *c) {
  gl_hub_t *hub = lgreen_hub(L);
  const struct sockaddr *sa = &c->d.addrs[0].sa;
  uv_tcp_t *h;
  lsock *s;
  int r;
  lua_settop(L, 4);
  s = lgreen_stream_new(L, lgreen_sock_state(L), &tcp_ops);
  h = (uv_tcp_t *)s->h;
  if ((r = uv_tcp_init_ex(&hub->loop, h, sa->sa_family)) < 0) {
    lgreen_sock_discard(s);
    return lgreen_sock_fail(L, r);
  }
  lgreen_sock_reref(s);
  if (c->reuseport) {
    /* Before bind, so several processes can share the port. */
    uv_os_fd_t fd;
    int on = 1;
    if ((r = uv_fileno(s->h, &fd)) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
      r = uv_translate_sys_error(errno);
    if (r < 0) {
      lgreen_sock_shut(s);
      return lgreen_sock_fail(L, r);
    }
  }
  r = uv_tcp_bind(h, sa, c->ipv6only ? UV_TCP_IPV6ONLY : 0);
  if (r == 0)
    r = lgreen_stream_listen(s, c->backlog);
  if (r < 0) {
    lgreen_sock_shut(s);
    return lgreen_sock_fail(L, r);
  }
  return 1;
}


/* The next step once the addresses are known. */
static int resolved(lua_State *L, lsock_lookup *lk) {
  connctx *c = (connctx *)lk;
  return c->listen ? listen_step(L, c) : connect_step(L, c);
}


/* Stack: [host, port, opts]. Resolve, then step. */
static int start(lua_State *L, int listen) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *host = lgreen_dns_checkhost(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  const char *what = listen ? "green.listen" : "green.connect";
  double timeout = -1;
  connctx *c;
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
      timeout = lgreen_sock_opttimeout(L, 3);
    c->d.family = lgreen_sock_optfamily(L, 3, AF_UNSPEC, what);
    if (lua_getfield(L, 3, "backlog") != LUA_TNIL)
      c->backlog = lgreen_stream_backlog(L, 3);
    lua_getfield(L, 3, "reuseport");
    c->reuseport = lua_toboolean(L, -1);
    lua_getfield(L, 3, "ipv6only");
    c->ipv6only = lua_toboolean(L, -1);
    lua_settop(L, 4);
  }
  c->d.due = lgreen_sock_deadline(timeout);
  return lgreen_dns_resolve(L, &c->d, host, what, resolved);
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


static const luaL_Reg tcp_funcs[] = {
    {"connect", l_connect},
    {"listen", l_listen},
    {NULL, NULL},
};


/* [-0, +0, m] green.connect and green.listen in the module table on the
   top. */
void lgreen_open_tcp(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  lgreen_sock_register(L, tcp_funcs);
}
