/*
** udp.c: green UDP sockets ('green.udp' userdata over uv_udp_t), with
** LuaSocket's udp methods: setsockname (bind), setpeername (connect; "*"
** disconnects), send, receive, sendto, receivefrom. Waiting, close,
** options and addresses are shared with the stream sockets (socket.c,
** sockopt.c, tcp.c); names are resolved by dns.c.
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
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lsocket.h"

#define DQ_MAX 64                /* datagrams queued per socket */
#define DQ_BYTES (256 * 1024)    /* bytes queued per socket */
#define SEND_HIGH (256 * 1024)   /* bytes in uv_udp_send requests */
#define DGRAM_MAX 65536          /* receive's default size: any datagram */

#define state(L) ((lsock_state *)lua_touserdata(L, lua_upvalueindex(2)))

/* Operations that may need the resolver first. */
#define OP_BIND 0
#define OP_CONNECT 1
#define OP_SENDTO 2

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

static void dq_pop(lsock *s) {
  lsock_dgram *d = s->dq;
  s->dq = d->next;
  if (s->dq == NULL)
    s->dqtail = NULL;
  s->ndq--;
  s->len -= d->len;
  free(d);
}


void lgreen_udp_drop_queue(lsock *s) {
  while (s->dq != NULL)
    dq_pop(s);
  s->len = 0;
}


int lgreen_udp_readable(lsock *s) {
  return s->ndq > 0 || s->rerr != 0;
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  lsock *s = (lsock *)h->data;
  (void)hint;
  *b = uv_buf_init(s->st->scratch, sizeof(s->st->scratch));
}


/* Queue datagram 'b[0, n)' from 'addr', or record error 'n' (< 0). */
static void enqueue(lsock *s, ssize_t n, const char *b,
                    const struct sockaddr *addr) {
  lsock_dgram *d;
  if (n < 0) {
    s->rerr = (int)n;
  } else if ((d = (lsock_dgram *)malloc(sizeof(*d) + (size_t)n)) == NULL) {
    s->rerr = UV_ENOMEM;
  } else {
    memset(&d->from, 0, sizeof(d->from));
    memcpy(&d->from, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in));
    d->len = (size_t)n;
    memcpy(d->data, b, (size_t)n);
    d->next = NULL;
    if (s->dqtail != NULL)
      s->dqtail->next = d;
    else
      s->dq = d;
    s->dqtail = d;
    s->ndq++;
    s->len += d->len;
    s->nrecv += (uint64_t)n;
    while (s->ndq > DQ_MAX || (s->len > DQ_BYTES && s->ndq > 1))
      dq_pop(s); /* the oldest */
  }
}


static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
                    const struct sockaddr *addr, unsigned flags) {
  lsock *s = (lsock *)h->data;
  (void)flags;
  if (n == 0 && addr == NULL)
    return; /* nothing more to read now */
  enqueue(s, n, b->base, addr);
  lgreen_sock_kick_readers(s);
  lgreen_udp_maybe_read(s);
}


/*
** Timeout 0: the socket reads only while somebody waits, so take one
** datagram the kernel holds now straight from the descriptor, as
** LuaSocket's recvfrom(2) would. Returns 1 if one (or an error) came.
*/
static int pull(lsock *s) {
  struct sockaddr_storage from;
  socklen_t len = sizeof(from);
  uv_os_fd_t fd;
  ssize_t n;
  if (uv_fileno(&s->h.handle, &fd) < 0)
    return 0;
  do
    n = recvfrom(fd, s->st->scratch, sizeof(s->st->scratch), MSG_DONTWAIT,
                 (struct sockaddr *)&from, &len);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  enqueue(s, n < 0 ? uv_translate_sys_error(errno) : n, s->st->scratch,
          (struct sockaddr *)&from);
  lgreen_sock_kick_readers(s); /* a select waiting elsewhere */
  return 1;
}


/* Read only while somebody waits (see the header comment). */
void lgreen_udp_maybe_read(lsock *s) {
  int want = !(s->flags & LSOCK_CLOSED) &&
             (!gl_link_empty(&s->readers) || s->nselr > 0);
  if (want && !(s->flags & LSOCK_READING)) {
    int r = uv_udp_recv_start(&s->h.udp, on_alloc, on_recv);
    if (r < 0)
      s->rerr = r;
    else
      s->flags |= LSOCK_READING;
  } else if (!want && (s->flags & LSOCK_READING)) {
    uv_udp_recv_stop(&s->h.udp);
    s->flags &= ~LSOCK_READING;
  }
}


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
static int take(lua_State *L, lsock *s, size_t size, int from) {
  lsock_dgram *d = s->dq;
  struct sockaddr_storage sender;
  if (d == NULL) {
    int err = s->rerr;
    s->rerr = 0; /* UDP errors (ICMP refusals) are per datagram */
    return lgreen_sock_fail(L, err);
  }
  sender = d->from;
  /* Copy and pop before anything else allocates: an allocation can run a
     finalizer that closes the socket and frees its queue. */
  lua_pushlstring(L, d->data, d->len < size ? d->len : size);
  if (!(s->flags & LSOCK_CLOSED))
    dq_pop(s);
  if (from) {
    lgreen_sock_pushaddr(L, (struct sockaddr *)&sender, 1);
    lua_pop(L, 1); /* data, ip, port */
  }
  return from ? 3 : 1;
}


static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_waiter *w = (lsock_waiter *)ctx;
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  int n;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(w); /* killed after being woken: take nothing */
  lgreen_resumed(L, t);
  if (s == NULL || w->base.status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return lgreen_sock_fail(L, UV_EOF);
  }
  if (w->base.status == LSOCK_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  if (lgreen_udp_readable(s)) {
    gl_link_remove(&w->base.link);
    w->s = NULL;
    n = take(L, s, w->count, w->all);
    lgreen_sock_kick_readers(s);
    lgreen_udp_maybe_read(s);
    lgreen_sock_reref(s);
    return n;
  }
  t = lgreen_begin(L, hub, "udp:receive");
  lgreen_sock_suspend(L, w, t, "udp:receive");
  lgreen_sock_reref(s);
  return lgreen_block(L, t, recv_k, ctx);
}


/* Stack: [sock, size]. */
static int recv_start(lua_State *L, int from) {
  gl_hub_t *hub = lgreen_hub(L);
  lsock *s = *checkudp(L);
  lua_Integer size = luaL_optinteger(L, 2, DGRAM_MAX);
  lsock_waiter *w;
  gl_thread_t *t;
  luaL_argcheck(L, size > 0, 2, "positive size expected");
  lua_settop(L, 2);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (gl_link_empty(&s->readers)) {
    if (s->streak >= LSOCK_FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub, from ? LSOCK_FAIR_DGRAMFROM
                                           : LSOCK_FAIR_DGRAM);
    }
    if (lgreen_udp_readable(s) || (s->timeout == 0 && pull(s))) {
      s->streak++;
      return take(L, s, (size_t)size, from);
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
  t = lgreen_begin(L, hub, "udp:receive");
  w = lgreen_sock_newwaiter(L, (lsock **)lua_touserdata(L, 1), LSOCK_DGRAM);
  w->count = (size_t)size;
  w->all = from;
  if (w->s == NULL) /* a finalizer closed it */
    return recv_k(L, LUA_YIELD, (lua_KContext)w);
  return lgreen_sock_block_reader(L, w->s, w, t, "udp:receive",
                                  lgreen_udp_maybe_read, recv_k);
}


/***
** udp:receive([size]): the next datagram, at most size bytes of it (the
** rest is discarded); by default the whole datagram. nil, "timeout" or
** nil, "closed"; nil, err for an error the kernel reported (for example
** "connection refused" on a connected socket).
*/
int lgreen_udp_receive(lua_State *L) {
  return recv_start(L, 0);
}


/***
** udp:receivefrom([size]): like receive, then the sender's ip and port.
*/
int lgreen_udp_receivefrom(lua_State *L) {
  return recv_start(L, 1);
}

/* }====================================================== */


/*
** {======================================================
** send, sendto, setsockname, setpeername
** =======================================================
*/

/* [-0, +1 or +2, m] Send one datagram: its size, or nil, err. */
static int do_send(lua_State *L, lsock *s, const char *p, size_t len,
                   const struct sockaddr *addr) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  uv_udp_send_t *req;
  int r = uv_udp_try_send(&s->h.udp, &b, 1, addr);
  if (r == UV_EAGAIN) { /* the kernel buffer is full, or sends queued */
    if (uv_udp_get_send_queue_size(&s->h.udp) + len > SEND_HIGH)
      return lgreen_sock_fail(L, UV_ENOBUFS);
    req = (uv_udp_send_t *)malloc(sizeof(*req) + len);
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    memcpy(req + 1, p, len);
    b = uv_buf_init((char *)(req + 1), (unsigned)len);
    r = uv_udp_send(req, &s->h.udp, &b, 1, addr, on_send);
    if (r < 0)
      free(req);
  }
  if (r < 0)
    return lgreen_sock_fail(L, r);
  s->nsent += len;
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}


/* Do 'c->op' with the resolved address; stack [sock, ...]. */
static int act(lua_State *L, udpctx *c) {
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  const struct sockaddr *sa = &c->d.addrs[0].sa;
  int r;
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  switch (c->op) {
  case OP_SENDTO: {
    size_t len;
    const char *p = lua_tolstring(L, 2, &len);
    return do_send(L, s, p, len, sa);
  }
  case OP_BIND:
    r = uv_udp_bind(&s->h.udp, sa, 0);
    break;
  default:
    r = uv_udp_connect(&s->h.udp, sa);
    if (r == UV_EISCONN) { /* reconnecting: disconnect first */
      uv_udp_connect(&s->h.udp, NULL);
      r = uv_udp_connect(&s->h.udp, sa);
    }
    if (r == 0)
      s->flags |= LSOCK_PEER;
    break;
  }
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushinteger(L, 1);
  return 1;
}


static int resolved_k(lua_State *L, int status, lua_KContext ctx) {
  udpctx *c = (udpctx *)ctx;
  int n;
  (void)status;
  if ((n = lgreen_dns_resumed(L, &c->d)) != 0)
    return n;
  return act(L, c);
}


/* Stack: [sock, ..., host, port] with host at 'hi'. */
static int with_address(lua_State *L, int op, int hi, const char *what) {
  lsock *s = *checkudp(L);
  const char *host = luaL_checkstring(L, hi);
  lua_Integer port = luaL_checkinteger(L, hi + 1);
  udpctx *c;
  int r;
  luaL_argcheck(L, port >= 0 && port <= 65535, hi + 1, "port out of range");
  lua_settop(L, hi + 1);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  c = (udpctx *)lua_newuserdatauv(L, sizeof(*c), 0);
  memset(c, 0, sizeof(*c));
  lgreen_dns_init(&c->d, SOCK_DGRAM, (int)port);
  c->d.family = s->family;
  c->d.passive = op == OP_BIND;
  c->d.w.due = lgreen_sock_deadline(s->timeout);
  c->op = op;
  if ((r = lgreen_dns_numeric(&c->d, host)) < 0)
    return lgreen_sock_fail(L, r);
  if (r > 0)
    return act(L, c);
  return lgreen_dns_start(L, &c->d, host, what, resolved_k);
}


/***
** udp:send(data): send data to the peer set with setpeername. Returns
** the number of bytes sent, or nil, err. Never waits.
*/
static int udp_send(lua_State *L) {
  lsock *s = *checkudp(L);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  return do_send(L, s, p, len, NULL);
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
** host:port only; udp:setpeername("*") disconnects. Returns 1, or nil,
** err.
*/
static int udp_setpeername(lua_State *L) {
  lsock *s = *checkudp(L);
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "*") == 0 &&
      lua_isnoneornil(L, 3)) {
    if (s == NULL)
      return lgreen_sock_fail(L, UV_EOF);
    if (s->flags & LSOCK_PEER)
      uv_udp_connect(&s->h.udp, NULL);
    s->flags &= ~LSOCK_PEER;
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
  gl_hub_t *hub = lgreen_hub(L);
  int family = AF_INET, r;
  lsock **pp;
  lsock *s;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "family") != LUA_TNIL) {
      const char *f = luaL_checkstring(L, -1);
      if (strcmp(f, "inet6") == 0)
        family = AF_INET6;
      else if (strcmp(f, "inet") != 0)
        return luaL_error(L, "green.udp: bad family '%s' (inet or inet6)",
                          f);
    }
  }
  lua_settop(L, 1);
  pp = lgreen_sock_newkind(L, state(L), LSOCK_UDP);
  s = *pp;
  if ((r = uv_udp_init_ex(&hub->loop, &s->h.udp, (unsigned)family)) < 0) {
    *pp = NULL;
    free(s);
    return lgreen_sock_fail(L, r);
  }
  s->family = family;
  lgreen_sock_reref(s);
  return 1;
}


static const luaL_Reg udp_meth[] = {
    {"receive", lgreen_udp_receive},
    {"receivefrom", lgreen_udp_receivefrom},
    {"send", udp_send},
    {"sendto", udp_sendto},
    {"setsockname", udp_setsockname},
    {"setpeername", udp_setpeername},
    {NULL, NULL},
};


/* The 'green.udp' metatable, and green.udp in the module table (just
   below 'state'). */
void lgreen_open_udp(lua_State *L, gl_hub_t *hub, int state) {
  lgreen_sock_newmeta(L, LGREEN_UDP, udp_meth, hub, state);
  lua_pushvalue(L, state - 1);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  lua_pushcclosure(L, l_udp, 2);
  lua_setfield(L, -2, "udp");
  lua_pop(L, 1);
}
