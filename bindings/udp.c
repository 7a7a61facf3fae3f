/*
** udp.c: green UDP sockets ('green.udp' userdata over uv_udp_t), with
** LuaSocket's udp methods: setsockname (bind), setpeername (connect; "*"
** disconnects), send, receive, sendto, receivefrom; and their ops table.
** Waiting, close and the methods every socket has are the core's
** (socket.c, sockopt.c); names are resolved by dns.c.
**
** Receiving. The socket reads (uv_udp_recv_start) only while a thread
** waits in receive/receivefrom or in green.select; otherwise the kernel's
** socket buffer holds what arrives (a receive with timeout 0 takes one
** datagram from it directly: 'pull'). Datagrams that arrive while reading
** and that nobody takes at once wait in a per-socket queue of at most
** DQ_MAX datagrams and DQ_BYTES bytes; beyond either bound the oldest is
** dropped (UDP may lose datagrams anyway, and the newest are the ones a
** late reader wants). A receive takes one whole datagram and returns at
** most 'size' bytes of it; the rest of that datagram is discarded, as
** recvfrom does.
**
** Sending never waits: uv_udp_try_send, and when the kernel's buffer is
** full, a copy queued with uv_udp_send, at most SEND_HIGH bytes per
** socket; beyond that send returns nil, "no buffer space available".
*/
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lsocket.h"

#define DQ_MAX 64                /* datagrams queued per socket */
#define DQ_BYTES (256 * 1024)    /* bytes queued per socket */
#define SEND_HIGH (256 * 1024)   /* bytes in uv_udp_send requests */
#define DGRAM_MAX 65536          /* receive's default size: any datagram */

/* Operations that may need the resolver first. */
#define OP_BIND 0
#define OP_CONNECT 1
#define OP_SENDTO 2

/* A received datagram, in its socket's queue. */
typedef struct dgram {
  struct dgram *next;
  struct sockaddr_storage from; /* the sender */
  size_t len;
  char data[]; /* 'len' bytes */
} dgram;


typedef struct ludp {
  lsock base; /* first member */
  uv_udp_t h;
  dgram *dq;      /* queued datagrams, oldest first */
  dgram *dqtail;
  size_t dqbytes; /* their bytes */
  unsigned ndq;   /* their number */
  int rerr;       /* 0, or an error the kernel reported (taken once) */
  int family;     /* AF_INET or AF_INET6 */
} ludp;

#define LUDP(s) ((ludp *)(s))


typedef struct udpctx {
  lsock_dns d; /* first member */
  int op;      /* OP_* */
} udpctx;


static lsock **checkudp(lua_State *L) {
  return lgreen_sock_checkmt(L, 1, lgreen_sock_state(L)->mt_udp, LGREEN_UDP);
}


/*
** {======================================================
** libuv side
** =======================================================
*/

static void dq_pop(ludp *u) {
  dgram *d = u->dq;
  u->dq = d->next;
  if (u->dq == NULL)
    u->dqtail = NULL;
  u->ndq--;
  u->dqbytes -= d->len;
  free(d);
}


/* Queue datagram 'b[0, n)' from 'addr', or record error 'n' (< 0). */
static void enqueue(ludp *u, ssize_t n, const char *b,
                    const struct sockaddr *addr) {
  dgram *d;
  if (n < 0) {
    u->rerr = (int)n;
  } else if ((d = (dgram *)malloc(sizeof(*d) + (size_t)n)) == NULL) {
    u->rerr = UV_ENOMEM;
  } else {
    memset(&d->from, 0, sizeof(d->from));
    memcpy(&d->from, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in));
    d->len = (size_t)n;
    memcpy(d->data, b, (size_t)n);
    d->next = NULL;
    if (u->dqtail != NULL)
      u->dqtail->next = d;
    else
      u->dq = d;
    u->dqtail = d;
    u->ndq++;
    u->dqbytes += d->len;
    u->base.nrecv += (uint64_t)n;
    while (u->ndq > DQ_MAX || (u->dqbytes > DQ_BYTES && u->ndq > 1))
      dq_pop(u); /* the oldest */
  }
}


static void udp_watched(lsock *s);

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
                    const struct sockaddr *addr, unsigned flags) {
  ludp *u = (ludp *)h->data;
  (void)flags;
  if (n == 0 && addr == NULL)
    return; /* nothing more to read now */
  enqueue(u, n, b->base, addr);
  lgreen_sock_kick_readers(&u->base);
  udp_watched(&u->base);
}


/*
** Timeout 0: the socket reads only while somebody waits, so take one
** datagram the kernel holds now straight from the descriptor, as
** LuaSocket's recvfrom(2) would. Returns 1 if one (or an error) came.
*/
static int pull(ludp *u) {
  char *scratch = u->base.st->scratch;
  struct sockaddr_storage from;
  socklen_t len = sizeof(from);
  uv_os_fd_t fd;
  ssize_t n;
  if (uv_fileno(u->base.h, &fd) < 0)
    return 0;
  do
    n = recvfrom(fd, scratch, sizeof(u->base.st->scratch), MSG_DONTWAIT,
                 (struct sockaddr *)&from, &len);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  enqueue(u, n < 0 ? uv_translate_sys_error(errno) : n, scratch,
          (struct sockaddr *)&from);
  lgreen_sock_kick_readers(&u->base); /* a select waiting elsewhere */
  return 1;
}


/*
** {======================================================
** The UDP ops
** =======================================================
*/

static int udp_readable(lsock *s) {
  return LUDP(s)->ndq > 0 || LUDP(s)->rerr != 0;
}


static int udp_can_write(lsock *s) {
  (void)s;
  return 1;
}


/* Read only while somebody waits (see the header comment). */
static void udp_watched(lsock *s) {
  ludp *u = LUDP(s);
  int want = !(s->flags & LSOCK_CLOSED) &&
             (!gl_link_empty(&s->readers) || s->nwatchr > 0);
  if (want && !(s->flags & LSOCK_READING)) {
    int r = uv_udp_recv_start(&u->h, lgreen_sock_alloc, on_recv);
    if (r < 0)
      u->rerr = r;
    else
      s->flags |= LSOCK_READING;
  } else if (!want && (s->flags & LSOCK_READING)) {
    uv_udp_recv_stop(&u->h);
    s->flags &= ~LSOCK_READING;
  }
}


static void udp_close(lsock *s) {
  ludp *u = LUDP(s);
  while (u->dq != NULL)
    dq_pop(u);
  if (s->flags & LSOCK_READING)
    uv_udp_recv_stop(&u->h);
  s->flags &= ~LSOCK_READING;
  lgreen_sock_close_handle(s);
}


/* getsockname/getpeername: host, port, family; or nil, err. */
static int udp_address(lua_State *L, lsock *s, int peer) {
  struct sockaddr_storage ss;
  int len = (int)sizeof(ss), r;
  if (peer && !(s->flags & LSOCK_CONNECTED)) {
    luaL_pushfail(L);
    lua_pushliteral(L, "not connected");
    return 2;
  }
  r = peer ? uv_udp_getpeername(&LUDP(s)->h, (struct sockaddr *)&ss, &len)
           : uv_udp_getsockname(&LUDP(s)->h, (struct sockaddr *)&ss, &len);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  return lgreen_sock_pushaddr(L, (struct sockaddr *)&ss, 1);
}


static size_t udp_queued(lsock *s) {
  return uv_udp_get_send_queue_size(&LUDP(s)->h);
}


static size_t udp_buffered(lsock *s) {
  return LUDP(s)->ndq;
}


static int udp_init(uv_loop_t *loop, lsock *s) {
  return uv_udp_init(loop, &LUDP(s)->h);
}


static int udp_open(lsock *s, uv_os_fd_t fd) {
  return uv_udp_open(&LUDP(s)->h, fd);
}


static const lsock_ops udp_ops = {
    .tag = "",
    .size = sizeof(ludp),
    .hoff = offsetof(ludp, h),
    .init = udp_init,
    .open = udp_open,
    .readable = udp_readable,
    .can_read = udp_readable,
    .can_write = udp_can_write,
    .watched = udp_watched,
    .close = udp_close,
    .address = udp_address,
    .queued = udp_queued,
    .buffered = udp_buffered,
};

/* }====================================================== */


static void on_send(uv_udp_send_t *req, int status) {
  (void)status; /* a datagram lost later is lost silently, as in C */
  free(req);
}

/* }====================================================== */


/*
** {======================================================
** receive, receivefrom
** =======================================================
*/

/* [-0, +1..3, m] Take the head datagram (or the pending error). */
static int take(lua_State *L, ludp *u, size_t size, int from) {
  dgram *d = u->dq;
  struct sockaddr_storage sender;
  if (d == NULL) {
    int err = u->rerr;
    u->rerr = 0; /* UDP errors (ICMP refusals) are per datagram */
    return lgreen_sock_fail(L, err);
  }
  sender = d->from;
  /* Copy and pop before anything else allocates: an allocation can run a
     finalizer that closes the socket and frees its queue. */
  lua_pushlstring(L, d->data, d->len < size ? d->len : size);
  if (!(u->base.flags & LSOCK_CLOSED))
    dq_pop(u);
  if (from) {
    lgreen_sock_pushaddr(L, (struct sockaddr *)&sender, 1);
    lua_pop(L, 1); /* data, ip, port */
  }
  return from ? 3 : 1;
}


/* Wait for a datagram; stack [sock, size, from], the deadline in 'ctx'. */
static int recv_wait(lua_State *L, ludp *u, lua_KContext ctx);


static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_sock_leave, &s);
  (void)status;
  if (outcome != GL_W_OK) /* "closed", "timeout" */
    return lgreen_sock_fail(L, outcome);
  if (!udp_readable(s))
    return recv_wait(L, LUDP(s), ctx);
  lgreen_sock_leave(lgreen_sock_self(L));
  return take(L, LUDP(s), (size_t)lua_tointeger(L, 2), lua_toboolean(L, 3));
}


static int recv_wait(lua_State *L, ludp *u, lua_KContext ctx) {
  return lgreen_sock_wait(L, &u->base, &u->base.readers, "udp:receive",
                          lgreen_sock_leave, (uint64_t)ctx, recv_k, ctx);
}


/* Stack: [sock, size]. */
static int recv_start(lua_State *L, int from, lua_CFunction again) {
  ludp *u = LUDP(*checkudp(L));
  lua_Integer size = luaL_optinteger(L, 2, DGRAM_MAX);
  luaL_argcheck(L, size > 0, 2, "positive size expected");
  lua_settop(L, 2);
  if (u == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (lgreen_sock_first(L, &u->base, &u->base.readers, "read")) {
    if (lgreen_sock_unfair(L, &u->base))
      return lgreen_sock_yield(L, again);
    if (udp_readable(&u->base) || u->base.timeout == 0) {
      u->base.streak++; /* a polling loop yields now and then too */
      if (udp_readable(&u->base) || pull(u))
        return take(L, u, (size_t)size, from);
      return lgreen_sock_fail(L, UV_ETIMEDOUT);
    }
  } else if (u->base.timeout == 0) {
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  }
  lua_pushinteger(L, size);
  lua_replace(L, 2);
  lua_pushboolean(L, from);
  return recv_wait(L, u,
                   (lua_KContext)lgreen_sock_deadline(u->base.timeout));
}


/***
** udp:receive([size]): the next datagram, at most size bytes of it (the
** rest is discarded); by default the whole datagram. nil, "timeout" or
** nil, "closed"; nil, err for an error the kernel reported (for example
** "connection refused" on a connected socket).
*/
static int udp_receive(lua_State *L) {
  return recv_start(L, 0, udp_receive);
}


/***
** udp:receivefrom([size]): like receive, then the sender's ip and port.
*/
static int udp_receivefrom(lua_State *L) {
  return recv_start(L, 1, udp_receivefrom);
}

/* }====================================================== */


/*
** {======================================================
** send, sendto, setsockname, setpeername
** =======================================================
*/

/* [-0, +1 or +2, m] Send one datagram: its size, or nil, err. */
static int do_send(lua_State *L, ludp *u, const char *p, size_t len,
                   const struct sockaddr *addr) {
  uv_buf_t b;
  uv_udp_send_t *req;
  int r;
  /* uv_buf_t's length is an unsigned int: 2^32 + 3 bytes would go as a
     datagram of 3 (reported sent whole). The kernel refuses anything
     near that size anyway, with this error. */
  if (len > UINT_MAX)
    return lgreen_sock_fail(L, UV_EMSGSIZE);
  b = uv_buf_init((char *)p, (unsigned)len);
  r = uv_udp_try_send(&u->h, &b, 1, addr);
  if (r == UV_EAGAIN) { /* the kernel buffer is full, or sends queued */
    if (uv_udp_get_send_queue_size(&u->h) + len > SEND_HIGH)
      return lgreen_sock_fail(L, UV_ENOBUFS);
    req = (uv_udp_send_t *)malloc(sizeof(*req) + len);
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    memcpy(req + 1, p, len);
    b = uv_buf_init((char *)(req + 1), (unsigned)len);
    r = uv_udp_send(req, &u->h, &b, 1, addr, on_send);
    if (r < 0)
      free(req);
  }
  if (r < 0)
    return lgreen_sock_fail(L, r);
  u->base.nsent += len;
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}


/* Do 'c->op' with the resolved address; stack [sock, ...]. */
static int act(lua_State *L, lsock_lookup *lk) {
  udpctx *c = (udpctx *)lk;
  ludp *u = LUDP(lgreen_sock_get((lsock **)lua_touserdata(L, 1)));
  const struct sockaddr *sa = &c->d.addrs[0].sa;
  int r;
  if (u == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  switch (c->op) {
  case OP_SENDTO: {
    size_t len;
    const char *p = lua_tolstring(L, 2, &len);
    return do_send(L, u, p, len, sa);
  }
  case OP_BIND:
    r = uv_udp_bind(&u->h, sa, 0);
    break;
  default:
    r = uv_udp_connect(&u->h, sa);
    if (r == UV_EISCONN) { /* reconnecting: disconnect first */
      uv_udp_connect(&u->h, NULL);
      r = uv_udp_connect(&u->h, sa);
    }
    if (r == 0)
      u->base.flags |= LSOCK_CONNECTED;
    break;
  }
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushinteger(L, 1);
  return 1;
}


/* Stack: [sock, ..., host, port] with host at 'hi'. */
static int with_address(lua_State *L, int op, int hi, const char *what) {
  ludp *u = LUDP(*checkudp(L));
  const char *host = lgreen_dns_checkhost(L, hi);
  lua_Integer port = luaL_checkinteger(L, hi + 1);
  udpctx *c;
  luaL_argcheck(L, port >= 0 && port <= 65535, hi + 1, "port out of range");
  lua_settop(L, hi + 1);
  if (u == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  c = (udpctx *)lua_newuserdatauv(L, sizeof(*c), 0);
  memset(c, 0, sizeof(*c));
  lgreen_dns_init(&c->d, SOCK_DGRAM, (int)port);
  c->d.family = u->family;
  c->d.passive = op == OP_BIND;
  c->d.due = lgreen_sock_deadline(u->base.timeout);
  c->d.lk.sock = &u->base; /* close() ends a lookup with "closed" */
  c->op = op;
  return lgreen_dns_resolve(L, &c->d, host, what, act);
}


/***
** udp:send(data): send data to the peer set with setpeername. Returns
** the number of bytes sent, or nil, err. Never waits.
*/
static int udp_send(lua_State *L) {
  ludp *u = LUDP(*checkudp(L));
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  if (u == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  return do_send(L, u, p, len, NULL);
}


/***
** udp:sendto(data, host, port): send one datagram to host:port (resolved
** first if it is a name). Returns the number of bytes sent, or nil, err.
*/
static int udp_sendto(lua_State *L) {
  luaL_checkstring(L, 2);
  return with_address(L, OP_SENDTO, 3, "udp:sendto");
}


/***
** udp:setsockname(host, port): bind ("*" is every interface, port 0 a
** free port). Returns 1, or nil, err.
*/
static int udp_setsockname(lua_State *L) {
  return with_address(L, OP_BIND, 2, "udp:setsockname");
}


/***
** udp:setpeername(host, port): connect, so that send and receive talk to
** host:port only; udp:setpeername("*") disconnects (any port given is
** ignored). Returns 1, or nil, err.
*/
static int udp_setpeername(lua_State *L) {
  ludp *u = LUDP(*checkudp(L));
  /* "*" disconnects whatever the port, as in LuaSocket (whose setpeername
     the green.socket layer maps here, then marks the object unconnected):
     setpeername("*", 5) connected to 0.0.0.0:5. */
  if (lua_type(L, 2) == LUA_TSTRING && lua_rawlen(L, 2) == 1 &&
      *lua_tostring(L, 2) == '*') {
    if (u == NULL)
      return lgreen_sock_fail(L, UV_EOF);
    if (u->base.flags & LSOCK_CONNECTED)
      uv_udp_connect(&u->h, NULL);
    u->base.flags &= ~LSOCK_CONNECTED;
    lua_pushinteger(L, 1);
    return 1;
  }
  return with_address(L, OP_CONNECT, 2, "udp:setpeername");
}

/* }====================================================== */


/***
** green.udp([opts]): an unconnected UDP socket, or nil, err. opts.family
** is "inet" (the default) or "inet6".
*/
static int l_udp(lua_State *L) {
  static const char *const known[] = {"family", NULL};
  int family, r;
  lsock *s;
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TTABLE);
  lgreen_checkopts(L, 1, known, 0);
  family = lgreen_sock_optfamily(L, 1, AF_INET, "green.udp");
  lua_settop(L, 1);
  s = lgreen_sock_new(L, lgreen_sock_state(L), &udp_ops, LGREEN_UDP);
  r = uv_udp_init_ex(&lgreen_hub(L)->loop, &LUDP(s)->h, (unsigned)family);
  if (r < 0) {
    lgreen_sock_discard(s);
    return lgreen_sock_fail(L, r);
  }
  LUDP(s)->family = family;
  lgreen_sock_reref(s);
  return 1;
}


static const luaL_Reg udp_meth[] = {
    {"receive", udp_receive},
    {"receivefrom", udp_receivefrom},
    {"send", udp_send},
    {"sendto", udp_sendto},
    {"setsockname", udp_setsockname},
    {"setpeername", udp_setpeername},
    {NULL, NULL},
};


static const luaL_Reg udp_funcs[] = {
    {"udp", l_udp},
    {NULL, NULL},
};


/* [-0, +0, m] The 'green.udp' metatable, and green.udp in the module
   table on the top. */
void lgreen_open_udp(lua_State *L, gl_hub_t *hub) {
  lsock_state *st;
  (void)hub;
  lgreen_sock_pushstate(L);
  st = (lsock_state *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  st->mt_udp = lgreen_sock_newmeta(L, LGREEN_UDP, udp_meth);
  lgreen_sock_register(L, udp_funcs);
}
