/*
** dns.c: the one resolver. green.getaddrinfo, green.getnameinfo and
** green.gethostname for Lua (green.socket's dns.* is built on them), the
** resolve step of green.connect, green.listen and the UDP methods
** ('lgreen_dns_*', lsocket.h), and green.resolver.setup/stats.
**
** Why c-ares and not libuv's uv_getaddrinfo: libuv runs getaddrinfo on its
** 4 pool threads, and a lookup cannot be taken back once a thread runs
** it. Killed or timed-out lookups of a slow name kept all 4 busy: after 40
** of them the next lookup of "localhost" waited 5 s, and a process that
** abandoned 200 took 40 s to exit. c-ares sends the queries itself from
** the hub's thread, so a query costs a few hundred bytes and no thread,
** and a query nobody waits for any more can be cancelled.
**
** One c-ares channel per hub, made at the first lookup of a name (literal
** addresses never reach it). Its sockets are watched with uv_poll_t
** handles (the sock_state callback opens and closes them) and its
** retransmission deadlines with one hub timer. A query's record
** ('lsock_resolver') is malloc'd and belongs to the channel until c-ares
** calls it back; the waiting call ('lsock_lookup') points at it and may
** abandon it (kill, Timeout, socket timeout: the wait's cancel): the
** record forgets the caller, and as soon as
** no query of the channel has a caller left, all of them are cancelled.
** While some caller still waits, the abandoned queries stay in flight (c-ares
** cannot cancel one query), which costs nothing but their timeouts; so
** abandoned work never delays fresh lookups, and the channel's handles and
** timer exist only while somebody waits (the hub can go idle, the process
** exit). c-ares calls back from inside its own functions, where it must not
** be re-entered, so the cancelling ('settle') runs after each call into it.
**
** /etc/hosts is read by c-ares (and "localhost" never goes to a server).
** Every failure to find an address is LuaSocket's "host not found", a name
** server that does not answer included (after the timeout and tries
** green.resolver.setup sets); a socket the resolver could not open for
** want of descriptors is "too many open files" (the socket functions
** below see socket() fail).
*/
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lsocket.h"

#define MAX_SERVERS 8
/*
** c-ares doubles the timeout after each round over the servers, so its
** default of 4 tries waits 5 + 10 + 20 + 40 s on a server that does not
** answer. glibc makes 2 attempts; so do we, unless setup says otherwise.
*/
#define DEFAULT_TRIES 2
#define MAX_TRIES 8
#define MAX_TIMEOUT 3600 /* seconds */
#define RESOLV_CONF "/etc/resolv.conf"

typedef struct rchan rchan;

/* What green.resolver.setup configured; 0 fields take the system's. */
typedef struct config {
  int timeout_ms;
  int tries;
  int nservers;
  struct ares_addr_port_node servers[MAX_SERVERS]; /* linked in order */
} config;


/* Per hub: a userdata anchored in the registry, closed by its __gc. */
typedef struct resolver {
  gl_hub_t *hub;
  rchan *cur;        /* the channel for new lookups; NULL until needed */
  gl_link_t retired; /* channels replaced by setup, finishing their work */
  config cfg;
  int closed;        /* __gc ran: the hub is closing */
} resolver;


/* A c-ares channel and what watches it. */
struct rchan {
  ares_channel ch;
  resolver *r;
  gl_link_t link;     /* in r->retired once retired */
  gl_link_t queries;  /* records c-ares has not called back yet */
  gl_link_t polls;    /* its sockets' watchers */
  gl_timer_t timer;   /* its next deadline, armed while somebody waits */
  unsigned live;      /* queries with a caller waiting */
  unsigned pending;   /* queries not called back (live or abandoned) */
  unsigned sockfails; /* socket() calls that failed for want of resources */
  int sockerr;        /* the UV code of the last of them */
  int fail;           /* a watcher could not be set up: fail every query */
  int depth;          /* inside a c-ares call: do not re-enter it */
  int retired;
};


typedef struct rpoll {
  uv_poll_t h; /* first member: the close callback frees the record */
  rchan *c;
  gl_link_t link; /* in c->polls */
  ares_socket_t fd;
} rpoll;


/* A query (opaque in lsocket.h). */
struct lsock_resolver {
  gl_link_t link;     /* in c->queries */
  rchan *c;
  lsock_lookup *lk;   /* the waiting call; NULL once abandoned */
  unsigned sockfails; /* c->sockfails when it started */
};


/* The record of a getnameinfo call, on the caller's stack. */
typedef struct nictx {
  lsock_lookup lk; /* first member */
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
} nictx;


static const char RESOLVER_KEY = 0; /* registry[&RESOLVER_KEY]: resolver */


/*
** {======================================================
** The channel (no Lua code runs here)
** =======================================================
*/

static void settle(rchan *c);


/* c-ares' sockets: close-on-exec and non-blocking (c-ares configures none
   of the sockets it gets from these functions), and socket() failures
   counted so that a query they made fail can say why. */
static ares_socket_t s_socket(int domain, int type, int protocol,
                              void *data) {
  rchan *c = (rchan *)data;
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM) {
      c->sockfails++;
      c->sockerr = uv_translate_sys_error(errno);
    }
    return ARES_SOCKET_BAD;
  }
  if (type == SOCK_STREAM) {
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  }
  return fd;
}


static int s_close(ares_socket_t fd, void *data) {
  (void)data;
  return close(fd);
}


static int s_connect(ares_socket_t fd, const struct sockaddr *sa,
                     ares_socklen_t len, void *data) {
  (void)data;
  return connect(fd, sa, len);
}


static ares_ssize_t s_recvfrom(ares_socket_t fd, void *buf, size_t len,
                               int flags, struct sockaddr *from,
                               ares_socklen_t *fromlen, void *data) {
  (void)data;
  return recvfrom(fd, buf, len, flags, from, fromlen);
}


static ares_ssize_t s_sendv(ares_socket_t fd, const struct iovec *iov,
                            int n, void *data) {
  (void)data;
  return writev(fd, iov, n);
}


static const struct ares_socket_functions sockfuncs = {
    s_socket, s_close, s_connect, s_recvfrom, s_sendv};


static void on_poll_close(uv_handle_t *h) {
  free(h);
}


static void poll_close(rpoll *p) {
  gl_link_remove(&p->link);
  uv_close((uv_handle_t *)&p->h, on_poll_close);
}


static void on_poll(uv_poll_t *h, int status, int events) {
  rpoll *p = (rpoll *)h;
  rchan *c = p->c;
  ares_socket_t fd = p->fd;
  if (status < 0) /* let c-ares meet the error on the socket */
    events = UV_READABLE | UV_WRITABLE;
  c->depth++;
  ares_process_fd(c->ch, (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                  (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
  c->depth--;
  settle(c); /* 'p' may be closing, 'c' freed: use neither after */
}


/* c-ares opens, watches differently, or closes (0, 0) socket 'fd'. It
   calls this before it closes the descriptor. */
static void on_sock_state(void *data, ares_socket_t fd, int readable,
                          int writable) {
  rchan *c = (rchan *)data;
  rpoll *p = NULL;
  gl_link_t *l;
  int r;
  for (l = c->polls.next; l != &c->polls; l = l->next) {
    if (GL_CONTAINER(l, rpoll, link)->fd == fd) {
      p = GL_CONTAINER(l, rpoll, link);
      break;
    }
  }
  if (!readable && !writable) {
    if (p != NULL)
      poll_close(p);
    return;
  }
  if (p == NULL) {
    if ((p = (rpoll *)malloc(sizeof(*p))) == NULL) {
      c->fail = UV_ENOMEM;
      return;
    }
    if ((r = uv_poll_init_socket(&c->r->hub->loop, &p->h, fd)) < 0) {
      free(p);
      c->fail = r;
      return;
    }
    p->c = c;
    p->fd = fd;
    gl_link_push(&c->polls, &p->link);
  }
  r = uv_poll_start(&p->h, (readable ? UV_READABLE : 0) |
                               (writable ? UV_WRITABLE : 0), on_poll);
  if (r < 0)
    c->fail = r;
}


static void on_timer(gl_timer_t *tm) {
  rchan *c = GL_CONTAINER(tm, rchan, timer);
  c->depth++;
  ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  c->depth--;
  settle(c);
}


/* Destroy 'c' (nobody waits on it, or the hub is closing): c-ares calls
   every query back with ARES_EDESTRUCTION and closes its sockets. */
static void chan_free(rchan *c) {
  gl_link_t *l;
  for (l = c->queries.next; l != &c->queries; l = l->next) {
    lsock_resolver *q = GL_CONTAINER(l, lsock_resolver, link);
    if (q->lk != NULL) { /* only at hub close: the thread never resumes */
      q->lk->res = NULL;
      q->lk = NULL;
      c->live--;
    }
  }
  c->depth++;
  ares_destroy(c->ch);
  while (!gl_link_empty(&c->polls))
    poll_close(GL_CONTAINER(c->polls.next, rpoll, link));
  gl_timer_stop(c->r->hub, &c->timer);
  gl_link_remove(&c->link);
  free(c);
}


/*
** After every call into c-ares: cancel the queries nobody waits for (or
** all of them if a watcher failed), arm the timer at c-ares' next deadline
** while somebody waits, and free a retired channel that has finished.
*/
static void settle(rchan *c) {
  gl_hub_t *hub = c->r->hub;
  if (c->depth > 0)
    return;
  if (c->pending > 0 && (c->live == 0 || c->fail != 0)) {
    c->depth++;
    ares_cancel(c->ch); /* calls them back with ARES_ECANCELLED */
    c->depth--;
    c->fail = 0;
  }
  if (c->live > 0) {
    struct timeval tv;
    if (ares_timeout(c->ch, NULL, &tv) == NULL) {
      gl_timer_stop(hub, &c->timer);
    } else {
      /* 1 ms late, so c-ares sees the deadline passed when the timer
         fires (it would otherwise fire again and again until it has). */
      uint64_t due = gl_now() + (uint64_t)tv.tv_sec * 1000000000u +
                     (uint64_t)tv.tv_usec * 1000u + 1000000u;
      if (gl_timer_start(hub, &c->timer, due, on_timer) < 0) {
        c->fail = UV_ENOMEM; /* no deadline: fail them rather than hang */
        settle(c);
        return;
      }
    }
  } else {
    gl_timer_stop(hub, &c->timer);
  }
  if (c->retired && c->pending == 0)
    chan_free(c);
}


/* The current channel of 'r', made on first use; 0 or a UV error. */
static int chan_get(resolver *r, rchan **pc) {
  struct ares_options o;
  rchan *c;
  int mask, rc, fd;
  if (r->cur != NULL) {
    *pc = r->cur;
    return 0;
  }
  if (r->closed)
    return UV_ECANCELED;
  /* c-ares silently falls back to its defaults (a server on 127.0.0.1)
     when it cannot open resolv.conf; out of descriptors, the channel would
     stay crippled after they came back. Say so and make it later. */
  fd = open(RESOLV_CONF, O_RDONLY | O_CLOEXEC);
  if (fd >= 0)
    close(fd);
  else if (errno == EMFILE || errno == ENFILE)
    return uv_translate_sys_error(errno);
  if ((c = (rchan *)calloc(1, sizeof(*c))) == NULL)
    return UV_ENOMEM;
  c->r = r;
  gl_link_init(&c->link);
  gl_link_init(&c->queries);
  gl_link_init(&c->polls);
  memset(&o, 0, sizeof(o));
  o.sock_state_cb = on_sock_state;
  o.sock_state_cb_data = c;
  o.tries = r->cfg.tries > 0 ? r->cfg.tries : DEFAULT_TRIES;
  mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TRIES;
  if (r->cfg.timeout_ms > 0) {
    o.timeout = r->cfg.timeout_ms;
    mask |= ARES_OPT_TIMEOUTMS;
  }
  /* No ares_library_init: on POSIX systems it does nothing that
     channels need, and it is not thread-safe. */
  if ((rc = ares_init_options(&c->ch, &o, mask)) != ARES_SUCCESS) {
    free(c);
    return rc == ARES_ENOMEM ? UV_ENOMEM : UV_EAI_FAIL;
  }
  ares_set_socket_functions(c->ch, &sockfuncs, c);
  if (r->cfg.nservers > 0 &&
      ares_set_servers_ports(c->ch, r->cfg.servers) != ARES_SUCCESS) {
    ares_destroy(c->ch);
    free(c);
    return UV_ENOMEM;
  }
  r->cur = c;
  *pc = c;
  return 0;
}


/* Stop using the current channel: it finishes the lookups under way. */
static void chan_retire(resolver *r) {
  rchan *c = r->cur;
  if (c == NULL)
    return;
  r->cur = NULL;
  c->retired = 1;
  gl_link_push(&r->retired, &c->link);
  settle(c); /* frees it if idle */
}


/* The UV code of c-ares status 'status' for query 'q'. */
static int uverr(const lsock_resolver *q, int status) {
  const rchan *c = q->c;
  switch (status) {
  case ARES_SUCCESS:
    return 0;
  case ARES_ENOMEM:
    return UV_ENOMEM;
  case ARES_ECANCELLED:
  case ARES_EDESTRUCTION:
    return c->fail != 0 ? c->fail : UV_ECANCELED;
  default:
    /* No answer (timeouts, refusals, server failures) or no such name:
       LuaSocket says "host not found" for each; unless the resolver could
       not even open a socket. */
    if (c->sockfails != q->sockfails)
      return c->sockerr;
    return UV_EAI_NONAME;
  }
}


/* End of query 'q' (freed), answered with c-ares status 'status': its
   caller, if one is left, with the outcome in 'err'. */
static lsock_lookup *query_end(lsock_resolver *q, int status) {
  rchan *c = q->c;
  lsock_lookup *lk = q->lk;
  int err = uverr(q, status);
  gl_link_remove(&q->link);
  c->pending--;
  if (lk != NULL) {
    c->live--;
    lk->res = NULL;
    lk->err = err;
  }
  free(q);
  return lk;
}


static int same_addr(const lsock_addr *a, const lsock_addr *b) {
  if (a->sa.sa_family != b->sa.sa_family)
    return 0;
  if (a->sa.sa_family == AF_INET)
    return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
  return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0 &&
         a->in6.sin6_scope_id == b->in6.sin6_scope_id;
}


/* Copy the addresses of 'res' into 'd' (the resolver's order, no
   duplicates), with d's port. */
static void take_addrs(lsock_dns *d, const struct ares_addrinfo *res) {
  const struct ares_addrinfo_node *ai;
  d->n = d->next = 0;
  for (ai = res != NULL ? res->nodes : NULL;
       ai != NULL && d->n < LSOCK_MAX_ADDRS; ai = ai->ai_next) {
    lsock_addr a;
    int i;
    memset(&a, 0, sizeof(a));
    if (ai->ai_family == AF_INET && d->family != AF_INET6 &&
        ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
      memcpy(&a.in, ai->ai_addr, sizeof(a.in));
      a.in.sin_port = htons((uint16_t)d->port);
    } else if (ai->ai_family == AF_INET6 && d->family != AF_INET &&
               ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
      memcpy(&a.in6, ai->ai_addr, sizeof(a.in6));
      a.in6.sin6_port = htons((uint16_t)d->port);
    } else {
      continue;
    }
    for (i = 0; i < d->n && !same_addr(&d->addrs[i], &a); i++)
      ;
    if (i == d->n)
      d->addrs[d->n++] = a;
  }
}


static void on_addrinfo(void *arg, int status, int timeouts,
                        struct ares_addrinfo *res) {
  lsock_lookup *lk = query_end((lsock_resolver *)arg, status);
  (void)timeouts;
  if (lk != NULL) {
    lsock_dns *d = (lsock_dns *)lk;
    take_addrs(d, lk->err == 0 ? res : NULL);
    if (lk->err == 0 && d->n == 0)
      lk->err = UV_EAI_NONAME;
    gl_wait_end(&lk->base, GL_W_OK);
  }
  if (res != NULL)
    ares_freeaddrinfo(res);
}


static void on_nameinfo(void *arg, int status, int timeouts, char *node,
                        char *service) {
  lsock_lookup *lk = query_end((lsock_resolver *)arg, status);
  (void)timeouts;
  if (lk != NULL) {
    nictx *x = (nictx *)lk;
    if (lk->err == 0) {
      snprintf(x->host, sizeof(x->host), "%s", node != NULL ? node : "");
      if (service != NULL)
        snprintf(x->service, sizeof(x->service), "%s", service);
    }
    gl_wait_end(&lk->base, GL_W_OK);
  }
}


/* The caller gave its query up (the wait's cancel; its socket closed):
   idempotent. */
static void lookup_cancel(gl_wait_t *w) {
  lsock_lookup *lk = (lsock_lookup *)w;
  lsock_resolver *q = lk->res;
  if (w->link.next != &w->link) { /* in its socket's queue: the socket is
                                     open (close takes it out) */
    gl_link_remove(&w->link);
    lgreen_sock_reref(lk->sock);
  }
  if (q == NULL)
    return;
  lk->res = NULL;
  q->lk = NULL;
  q->c->live--;
  settle(q->c);
}

/* }====================================================== */


/*
** {======================================================
** Waiting for a query
** =======================================================
*/

/* [-0, +0, -] The resolver of this Lua state. */
static resolver *getresolver(lua_State *L) {
  resolver *r;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &RESOLVER_KEY);
  r = (resolver *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return r;
}


/* A query record for call 'lk' on the current channel (in *pq); 0 or a
   UV error. No Lua allocation. */
static int query_new(lua_State *L, lsock_lookup *lk, lsock_resolver **pq) {
  rchan *c = NULL;
  lsock_resolver *q;
  int r = chan_get(getresolver(L), &c);
  if (r < 0)
    return r;
  if ((q = (lsock_resolver *)malloc(sizeof(*q))) == NULL)
    return UV_ENOMEM;
  q->c = c;
  q->lk = lk;
  q->sockfails = c->sockfails;
  gl_link_push(&c->queries, &q->link);
  c->pending++;
  c->live++;
  lk->res = q;
  *pq = q;
  return 0;
}


/* After the resolver answered: nil, err, or the call's next step. */
static int lookup_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_lookup *lk = (lsock_lookup *)ctx;
  int outcome = lgreen_waited(L, &lk->base, lookup_cancel);
  (void)status;
  lookup_cancel(&lk->base); /* out of the queue; the query of a call whose
                               socket closed given up */
  if (outcome == GL_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  if (outcome != GL_W_OK) /* LSOCK_W_CLOSED */
    return lgreen_sock_fail(L, outcome);
  if (lk->err != 0)
    return lgreen_sock_fail(L, lk->err);
  return lk->then(L, lk);
}


/*
** Block 't' in 'lk', whose query was just handed to c-ares on 'c', until
** 'due' (0: none); then 'lk->then' goes on. A query c-ares answered at
** once (from /etc/hosts, or failing to send) wakes it at once: a lookup is
** always a switch point, so kill and Timeout act on every lookup alike.
*/
static int wait_query(lua_State *L, gl_thread_t *t, lsock_lookup *lk,
                      rchan *c, uint64_t due, const char *what) {
  gl_wait_start(t, &lk->base, what, lookup_cancel, NULL);
  if (due != 0)
    lgreen_deadline(L, &lk->base, due); /* raises (having left) if no memory */
  if (lk->res == NULL)
    gl_wait_end(&lk->base, GL_W_OK);
  else if (lk->sock != NULL && (lk->sock->flags & LSOCK_CLOSED))
    /* closed since the caller looked (a finalizer run by an allocation
       on the way): its waiters were ended already, and a wait put there
       now would outlive the socket's record */
    gl_wait_cancel(&lk->base, LSOCK_W_CLOSED);
  else if (lk->sock != NULL) {
    gl_link_push(&lk->sock->writers, &lk->base.link);
    lgreen_sock_reref(lk->sock);
  }
  settle(c);
  return lgreen_block(L, t, lookup_k, (lua_KContext)lk);
}


/* Prepare 'd' (zeroed by the caller) for a resolve. */
void lgreen_dns_init(lsock_dns *d, int socktype, int port) {
  gl_wait_init(&d->lk.base);
  d->family = AF_UNSPEC;
  d->socktype = socktype;
  d->port = port;
}


/*
** A host argument: the resolver and the address parsers read a C string,
** which ends at the first zero byte, so "a.example\0.b.example" resolved
** "a.example" (a caller checking the name's suffix in Lua connected
** elsewhere than it checked). Such a string names no host: NULL, which
** lgreen_dns_resolve answers with "host not found".
*/
const char *lgreen_dns_checkhost(lua_State *L, int idx) {
  size_t len;
  const char *host = luaL_checklstring(L, idx, &len);
  return strlen(host) == len ? host : NULL;
}


/* A literal address needs no resolver: 1 (in d->addrs[0]), 0 for a
   name, or UV_EAI_ADDRFAMILY for a literal of the family not asked for.
   "*" is every interface. */
static int numeric(lsock_dns *d, const char *host) {
  lsock_addr *a = &d->addrs[0];
  if (strcmp(host, "*") == 0)
    host = d->family == AF_INET6 ? "::" : "0.0.0.0";
  if (uv_ip4_addr(host, d->port, &a->in) == 0) {
    if (d->family == AF_INET6)
      return UV_EAI_ADDRFAMILY;
    return d->n = 1;
  }
  if (uv_ip6_addr(host, d->port, &a->in6) == 0) {
    if (d->family == AF_INET)
      return UV_EAI_ADDRFAMILY;
    return d->n = 1;
  }
  return 0;
}


/*
** Resolve 'host' into 'd' (its deadline 'd->due' covers the resolve),
** then return 'then(L, d)': at once for a literal address, after blocking
** until the resolver answers for a name. A failure returns nil, err.
*/
int lgreen_dns_resolve(lua_State *L, lsock_dns *d, const char *host,
                       const char *what, lsock_then then) {
  gl_thread_t *t;
  struct ares_addrinfo_hints hints;
  lsock_resolver *q;
  rchan *c;
  int r;
  if (host == NULL) /* lgreen_dns_checkhost's */
    return lgreen_sock_fail(L, UV_EAI_NONAME);
  if ((r = numeric(d, host)) != 0)
    return r < 0 ? lgreen_sock_fail(L, r) : then(L, &d->lk);
  t = lgreen_begin(L, lgreen_hub(L), what);
  if (host[0] == '\0')
    return lgreen_sock_fail(L, UV_EAI_NONAME);
  if ((r = query_new(L, &d->lk, &q)) < 0)
    return lgreen_sock_fail(L, r);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = d->family;
  hints.ai_socktype = d->socktype;
  hints.ai_flags = d->passive ? ARES_AI_PASSIVE : 0;
  d->lk.then = then;
  c = q->c;
  c->depth++;
  ares_getaddrinfo(c->ch, host, NULL, &hints, on_addrinfo, q); /* may call
                                                                  back */
  c->depth--;
  return wait_query(L, t, &d->lk, c, d->due, what);
}

/* }====================================================== */


/*
** {======================================================
** Lua functions
** =======================================================
*/

/* [-0, +1, m] { {family = "inet"|"inet6", addr = ip}, ... } */
static int pushaddrs(lua_State *L, lsock_lookup *lk) {
  lsock_dns *d = (lsock_dns *)lk;
  int i;
  lua_createtable(L, d->n, 0);
  for (i = 0; i < d->n; i++) {
    const lsock_addr *a = &d->addrs[i];
    char ip[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET6)
      uv_ip6_name(&a->in6, ip, sizeof(ip));
    else
      uv_ip4_name(&a->in, ip, sizeof(ip));
    lua_createtable(L, 0, 2);
    lua_pushstring(L, a->sa.sa_family == AF_INET6 ? "inet6" : "inet");
    lua_setfield(L, -2, "family");
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "addr");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}


/***
** getaddrinfo(host, [opts]): { {family = "inet"|"inet6", addr = ip}, ... }
** (duplicates removed, the resolver's order kept), or nil, "host not found"
** (LuaSocket's wording for every failed lookup of a name). opts.family:
** "inet" or "inet6" to ask for one family only. A literal address is
** returned as it is, without the resolver.
*/
static int l_getaddrinfo(lua_State *L) {
  static const char *const known[] = {"family", NULL};
  const char *host = lgreen_dns_checkhost(L, 1);
  lsock_dns *d;
  int family;
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lgreen_checkopts(L, 2, known, 0);
  family = lgreen_sock_optfamily(L, 2, AF_UNSPEC, "getaddrinfo");
  lua_settop(L, 2);
  d = (lsock_dns *)lua_newuserdatauv(L, sizeof(*d), 0);
  memset(d, 0, sizeof(*d));
  lgreen_dns_init(d, SOCK_STREAM, 0);
  d->family = family;
  if (host != NULL && strcmp(host, "*") == 0) /* a wildcard for bind */
    return lgreen_sock_fail(L, UV_EAI_NONAME);
  return lgreen_dns_resolve(L, d, host, "green.getaddrinfo", pushaddrs);
}


/* [-0, +2, m] host, service */
static int pushnames(lua_State *L, lsock_lookup *lk) {
  nictx *x = (nictx *)lk;
  lua_pushstring(L, x->host);
  lua_pushstring(L, x->service);
  return 2;
}


/***
** getnameinfo(ip, [port]): host name, service name; or nil, err. 'ip' must
** be a literal IPv4 or IPv6 address. An address with no name gives the
** address back; a port with no service name gives the number.
*/
static int l_getnameinfo(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *ip = lgreen_dns_checkhost(L, 1);
  luaL_argcheck(L, ip != NULL, 1, "not an IP address");
  lua_Integer port = luaL_optinteger(L, 2, 0);
  lsock_addr a;
  lsock_resolver *q;
  gl_thread_t *t;
  nictx *x;
  rchan *c;
  int r;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  memset(&a, 0, sizeof(a));
  if (uv_ip4_addr(ip, (int)port, &a.in) != 0 &&
      uv_ip6_addr(ip, (int)port, &a.in6) != 0)
    return luaL_argerror(L, 1, "not an IP address");
  lua_settop(L, 2);
  x = (nictx *)lua_newuserdatauv(L, sizeof(*x), 0);
  memset(x, 0, sizeof(*x));
  gl_wait_init(&x->lk.base);
  x->lk.then = pushnames;
  snprintf(x->service, sizeof(x->service), "%d", (int)port);
  t = lgreen_begin(L, hub, "green.getnameinfo");
  if ((r = query_new(L, &x->lk, &q)) < 0)
    return lgreen_sock_fail(L, r);
  c = q->c;
  c->depth++;
  ares_getnameinfo(c->ch, &a.sa,
                   a.sa.sa_family == AF_INET6 ? sizeof(a.in6)
                                              : sizeof(a.in),
                   ARES_NI_LOOKUPHOST | ARES_NI_LOOKUPSERVICE, on_nameinfo,
                   q);
  c->depth--;
  return wait_query(L, t, &x->lk, c, 0, "green.getnameinfo");
}


/*** gethostname(): this machine's name (never blocks). */
static int l_gethostname(lua_State *L) {
  char name[256];
  size_t n = sizeof(name);
  int r = uv_os_gethostname(name, &n);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushlstring(L, name, n);
  return 1;
}


/* "ip", "ip:port", "[ipv6]" or "[ipv6]:port" into 'n'; 0 if malformed. */
static int parse_server(const char *s, struct ares_addr_port_node *n) {
  char buf[INET6_ADDRSTRLEN + 16];
  char *host = buf, *port = NULL;
  size_t len = strlen(s);
  if (len == 0 || len >= sizeof(buf))
    return 0;
  memcpy(buf, s, len + 1);
  if (buf[0] == '[') {
    char *e = strchr(buf, ']');
    if (e == NULL || (e[1] != '\0' && e[1] != ':'))
      return 0;
    *e = '\0';
    host = buf + 1;
    if (e[1] == ':')
      port = e + 2;
  } else {
    char *colon = strchr(buf, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL) { /* not IPv6 */
      *colon = '\0';
      port = colon + 1;
    }
  }
  memset(n, 0, sizeof(*n));
  if (inet_pton(AF_INET, host, &n->addr.addr4) == 1 && buf[0] != '[')
    n->family = AF_INET;
  else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1)
    n->family = AF_INET6;
  else
    return 0;
  if (port != NULL) {
    char *end;
    long p = strtol(port, &end, 10);
    if (*port < '0' || *port > '9' || *end != '\0' || p < 1 || p > 65535)
      return 0;
    n->udp_port = n->tcp_port = (int)p; /* 0: the channel's (53) */
  }
  return 1;
}


/***
** resolver_setup([opts]): configure the resolver (green.resolver.setup).
** opts.servers: a list of name servers, "ip" or "ip:port" ("[ipv6]:port");
** opts.timeout: seconds before the first retry (c-ares doubles it on each
** round over the servers); opts.tries: rounds. Fields left out take the
** system's values (/etc/resolv.conf; tries 2); no opts restores them all.
** Lookups under way finish with the configuration they started with.
*/
static int l_setup(lua_State *L) {
  resolver *r = (resolver *)lua_touserdata(L, lua_upvalueindex(2));
  config cfg;
  int i;
  memset(&cfg, 0, sizeof(cfg));
  if (!lua_isnoneornil(L, 1)) {
    static const char *const known[] = {"servers", "timeout", "tries",
                                        NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    lgreen_checkopts(L, 1, known, 0); /* refuse typos */
    if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
      lua_Number t = lgreen_sock_optnumber(L, 1, "timeout");
      luaL_argcheck(L, t > 0 && t <= MAX_TIMEOUT, 1,
                    "timeout must be > 0 and at most 3600 seconds");
      cfg.timeout_ms = (int)(t * 1000);
      if (cfg.timeout_ms < 1)
        cfg.timeout_ms = 1;
    }
    if (lua_getfield(L, 1, "tries") != LUA_TNIL) {
      lua_Integer n = lgreen_sock_optinteger(L, 1, "tries");
      luaL_argcheck(L, n >= 1 && n <= MAX_TRIES, 1,
                    "tries must be from 1 to 8");
      cfg.tries = (int)n;
    }
    if (lua_getfield(L, 1, "servers") != LUA_TNIL) {
      lua_Integer n;
      if (!lua_istable(L, -1))
        luaL_argerror(L, 1,
                      lua_pushfstring(L, "servers: table expected, got %s",
                                      luaL_typename(L, -1)));
      n = luaL_len(L, -1); /* checked whole: an __len of 2^32 + 1 is no 1 */
      luaL_argcheck(L, n >= 1 && n <= MAX_SERVERS, 1,
                    "servers must list 1 to 8 addresses");
      for (i = 0; i < n; i++) {
        lua_geti(L, -1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING ||
            !parse_server(lua_tostring(L, -1), &cfg.servers[i]))
          return luaL_error(L,
                            "resolver.setup: bad server '%s' (an IP "
                            "address, with an optional :port)",
                            luaL_tolstring(L, -1, NULL));
        lua_pop(L, 1);
      }
      cfg.nservers = (int)n;
    }
  }
  chan_retire(r);
  r->cfg = cfg;
  for (i = 0; i + 1 < cfg.nservers; i++) /* the list c-ares takes */
    r->cfg.servers[i].next = &r->cfg.servers[i + 1];
  lua_pushboolean(L, 1); /* docs/api.md: → true */
  return 1;
}


static void count(const rchan *c, lua_Integer *n) {
  const gl_link_t *l;
  n[0] += c->live;
  n[1] += c->pending - c->live;
  for (l = c->polls.next; l != &c->polls; l = l->next)
    n[2]++;
}


/***
** resolver_stats(): { waiting = lookups a thread waits for, abandoned =
** queries still in flight that nobody waits for, sockets = the resolver's
** open sockets } (green.resolver.stats).
*/
static int l_stats(lua_State *L) {
  resolver *r = (resolver *)lua_touserdata(L, lua_upvalueindex(2));
  lua_Integer n[3] = {0, 0, 0};
  const gl_link_t *l;
  if (r->cur != NULL)
    count(r->cur, n);
  for (l = r->retired.next; l != &r->retired; l = l->next)
    count(GL_CONTAINER(l, rchan, link), n);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, n[0]);
  lua_setfield(L, -2, "waiting");
  lua_pushinteger(L, n[1]);
  lua_setfield(L, -2, "abandoned");
  lua_pushinteger(L, n[2]);
  lua_setfield(L, -2, "sockets");
  return 1;
}


/* Destroy every channel; the next lookup makes a new one. */
static void drop_channels(resolver *r) {
  if (r->cur != NULL) {
    rchan *c = r->cur;
    r->cur = NULL;
    chan_free(c);
  }
  while (!gl_link_empty(&r->retired))
    chan_free(GL_CONTAINER(r->retired.next, rchan, link));
}


/* At lua_close, before the hub's finalizer closes the loop. */
static int resolver_gc(lua_State *L) {
  resolver *r = (resolver *)lua_touserdata(L, 1);
  if (r->closed)
    return 0;
  r->closed = 1;
  drop_channels(r);
  return 0;
}


/* In the child of green.fork: the parent's channels (their sockets, their
   queries, abandoned by now) are the parent's; c-ares closes the child's
   copies of the sockets. */
static void resolver_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  (void)L;
  (void)hub;
  drop_channels((resolver *)ud);
}

/* }====================================================== */


static const luaL_Reg dns_funcs[] = {{"getaddrinfo", l_getaddrinfo},
                                     {"getnameinfo", l_getnameinfo},
                                     {"gethostname", l_gethostname},
                                     {"resolver_setup", l_setup},
                                     {"resolver_stats", l_stats},
                                     {NULL, NULL}};


/* [-0, +0, m] Adds the resolver to the module table on the top. */
void lgreen_open_dns(lua_State *L, gl_hub_t *hub) {
  resolver *r = (resolver *)lua_newuserdatauv(L, sizeof(*r), 0);
  memset(r, 0, sizeof(*r));
  r->hub = hub;
  gl_link_init(&r->retired);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, resolver_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &RESOLVER_KEY);
  lgreen_register(L, dns_funcs, 1);
  lgreen_on_fork(hub, resolver_forked, r);
}
