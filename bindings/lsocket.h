/*
** Green sockets: what the socket files share. Private to them:
**   socket.c  waiters, close, errors, fairness, the metatables
**   stream.c  read buffer, receive/recv, send/sendall, shutdown (TCP, Unix)
**   sockopt.c settimeout, options, getfd, getstats, dirty, __tostring
**   dns.c     the resolver (c-ares), for green.getaddrinfo and the rest
**   tcp.c     green.connect, green.listen, accept (TCP and Unix)
**   pipe.c    green.connect_unix, green.listen_unix, Unix addresses
**   udp.c     green.udp and the 'green.udp' methods
**   select.c  green.select
**
** A socket is a 'green.socket' (TCP, Unix) or 'green.udp' userdata holding
** a pointer to a malloc'd 'lsock' (luv style): the pointer is set to NULL
** on close and the memory is freed only in the uv close callback. Every
** socket gets its own uv handle that is never reused after close, so a
** descriptor number the kernel hands out again can never deliver events
** or wake-ups meant for the old socket: libuv stops watching the old
** handle's descriptor when it closes it, and our waiters hang off the
** handle's record, not off the descriptor number.
*/
#ifndef LSOCKET_H
#define LSOCKET_H

#include "lgreen.h"

#define LGREEN_SOCKET "green.socket" /* metatable name and __name */
#define LGREEN_UDP "green.udp"       /* the same for UDP sockets */

/* Socket kinds (the member of 'lsock.h' in use). */
#define LSOCK_TCP 0
#define LSOCK_PIPE 1 /* Unix-domain stream */
#define LSOCK_UDP 2

/* Waiter modes. */
#define LSOCK_LINE 1    /* receive("*l") */
#define LSOCK_COUNT 2   /* receive(n) */
#define LSOCK_ALL 3     /* receive("*a") */
#define LSOCK_SOME 4    /* recv(max) */
#define LSOCK_ACCEPT 5  /* accept() */
#define LSOCK_WRITE 6   /* send(), sendall() */
#define LSOCK_CONNECT 7 /* connect: waiting for uv_tcp_connect */
#define LSOCK_RESOLVE 8 /* connect or listen: waiting for the resolver */
#define LSOCK_DGRAM 9   /* UDP receive, receivefrom */

/* Waiter outcomes ('base.status'). */
#define LSOCK_W_READY GL_W_OK        /* woken because it may proceed */
#define LSOCK_W_TIMEOUT GL_W_TIMEOUT /* its socket timeout expired */
#define LSOCK_W_CLOSED UV_EOF        /* its socket was closed */

/*
** The receive limit: the most bytes one receive may gather ("*l" the line,
** "*a" everything, n the count). A peer that never ends its line must not
** grow the process without bound. Stream sockets start with this default;
** accepted ones inherit their listening socket's limit; setlimit changes
** it (green.socket's sockets default to none, as LuaSocket).
*/
#define LSOCK_LIMIT_DEFAULT (1 << 20)
#define LSOCK_ETOOLONG (-100001) /* not a libuv code: "too long" */

/* Socket flags. */
#define LSOCK_READING 0x01   /* uv_read_start is in effect */
#define LSOCK_LISTENING 0x02 /* a server socket */
#define LSOCK_STREAM 0x04    /* connected (client or accepted) */
#define LSOCK_SHUT_WR 0x08   /* shutdown("send") done or under way */
#define LSOCK_CLOSED 0x10    /* closed from Lua (handle closing/lingering) */
#define LSOCK_PEER 0x20      /* UDP: connected (setpeername) */
#define LSOCK_LINGER 0x40    /* the user set SO_LINGER (see socket.c) */

typedef struct lsock_state lsock_state;
typedef struct lsock lsock;
typedef struct lsock_waiter lsock_waiter;
typedef struct lsock_resolver lsock_resolver;
typedef struct lsock_dgram lsock_dgram;
typedef struct lsock_dns lsock_dns;


/* Per-hub socket state: a userdata anchored in the registry. */
struct lsock_state {
  gl_hub_t *hub;
  const void *mt_stream; /* the metatables, to check 'self' by address */
  const void *mt_udp;
  int prevent;         /* hub_prevent_multiple_readers (default on) */
  gl_link_t lingering; /* closed sockets still flushing their writes */
  gl_timer_t ltimer;   /* armed at the earliest 'linger_due' of those */
  char scratch[64 * 1024]; /* every read lands here, then is copied */
};


struct lsock {
  union {              /* first member: libuv callbacks cast back */
    uv_handle_t handle;
    uv_stream_t stream; /* LSOCK_TCP, LSOCK_PIPE */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_udp_t udp;
  } h;
  lsock_state *st;
  lsock **ud;          /* the userdata's pointer slot, NULL once closed */
  gl_link_t readers;   /* waiters in receive/recv/accept; head owns */
  gl_link_t writers;   /* waiters in send/sendall; head owns */
  gl_link_t linger;    /* in st->lingering after a close with writes */
  uint64_t linger_ns;  /* lingering: how long it may go without progress */
  uint64_t linger_due; /* lingering: checked for progress at gl_now() */
  size_t linger_left;  /* lingering: bytes queued at the last check */
  gl_link_t selects;   /* green.select entries (lsock_selent) */
  lsock_dgram *dq;     /* UDP: queued datagrams, oldest first */
  lsock_dgram *dqtail;
  unsigned ndq;        /* UDP: datagrams queued ('len': their bytes) */
  unsigned nselr;      /* select entries waiting for readability */
  lsock_waiter *conn;  /* the waiter of a pending connect */
  char *buf;           /* read buffer: bytes [off, off + len) are data */
  size_t off, len, cap;
  double timeout;      /* seconds; negative blocks forever */
  size_t limit;        /* receive limit in bytes (SIZE_MAX: none) */
  uint64_t nrecv;      /* bytes received (read from the kernel) */
  uint64_t nsent;      /* bytes accepted by send (written or queued) */
  uint64_t born;       /* gl_now() at creation */
  int rerr;            /* 0, UV_EOF or a read error; seen after 'buf' */
  int werr;            /* 0 or the first write error */
  int pending;         /* listening: 1 a connection waits, < 0 an error */
  int flags;           /* LSOCK_* */
  int kind;            /* LSOCK_TCP, LSOCK_PIPE, LSOCK_UDP */
  int family;          /* UDP: AF_INET or AF_INET6 */
  unsigned streak;     /* operations in a row that did not block */
};


/*
** The record of one blocking socket call: a userdata on the waiting
** thread's own stack, so it lives as long as the call. It starts with its
** wait record, whose 'link' is its place in s->readers or s->writers (the
** first of a queue owns that direction and keeps its place until its call
** is complete, even while woken) and whose 'cancel' is the socket's undo.
*/
struct lsock_waiter {
  gl_wait_t base;      /* first member; status: LSOCK_W_* while woken */
  lsock *s;            /* its socket; NULL once it left it */
  lsock_resolver *res; /* LSOCK_RESOLVE: the pending query (dns.c) */
  uint64_t due;        /* deadline (gl_now() ns), 0 for none */
  size_t count;        /* LSOCK_COUNT: bytes; LSOCK_SOME, DGRAM: max */
  size_t scanned;      /* LSOCK_LINE: bytes known to hold no '\n' */
  size_t pos, end;     /* LSOCK_WRITE: next byte, end (0-based) */
  int mode;            /* LSOCK_* mode */
  int err;             /* LSOCK_CONNECT/RESOLVE: libuv's result */
  int all;             /* LSOCK_WRITE: sendall (returns true) */
};

/* The waiter whose place in a socket queue is 'l'. */
#define LSOCK_WAITER(l) GL_CONTAINER((l), lsock_waiter, base.link)
/* Is 'w' suspended (neither woken nor canceled yet)? */
#define LSOCK_PENDING(w) ((w)->base.status == GL_W_PENDING)


/* An address as the resolver hands it over (smaller than a
   sockaddr_storage, so a call can keep many on its stack). */
typedef union lsock_addr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
} lsock_addr;


/* A received datagram (UDP), in its socket's queue. */
struct lsock_dgram {
  lsock_dgram *next;
  struct sockaddr_storage from; /* the sender */
  size_t len;
  char data[]; /* 'len' bytes */
};


/*
** Name resolution for one call (connect, listen, UDP bind/connect/
** sendto): a userdata on the caller's stack. The resolved addresses are
** copied into it as soon as the resolver answers, so no addrinfo list
** outlives a kill or a timeout.
*/
#define LSOCK_MAX_ADDRS 32
struct lsock_dns {
  lsock_waiter w; /* first member: the one wait record of the call */
  int family;     /* AF_UNSPEC, AF_INET or AF_INET6 */
  int socktype;   /* SOCK_STREAM or SOCK_DGRAM */
  int passive;    /* for bind ("*" is every interface) */
  int port;
  int n, next;    /* addresses, and the next one to try */
  int err;        /* the last failure */
  lsock_addr addrs[LSOCK_MAX_ADDRS];
};


/* socket.c */
lsock **lgreen_sock_new(lua_State *L, lsock_state *st); /* [-0, +1, m] */
lsock **lgreen_sock_newkind(lua_State *L, lsock_state *st, int kind);
lsock *lgreen_sock_check(lua_State *L, int idx); /* any kind; NULL closed */
int lgreen_sock_block_reader(lua_State *L, lsock *s, lsock_waiter *w,
                             gl_thread_t *t, const char *what,
                             void (*start)(lsock *), lua_KFunction k);
/* The socket state: upvalue 2 of every socket function and method. */
#define lgreen_sock_state(L) \
  ((lsock_state *)lua_touserdata((L), lua_upvalueindex(2)))
lsock **lgreen_sock_checkud(lua_State *L, int idx); /* any kind */
/* The userdata at 'idx' of metatable 'mt' (cached in lsock_state), else
   luaL_checkudata's error naming 'tname'. In every socket method. */
lsock **lgreen_sock_checkmt(lua_State *L, int idx, const void *mt,
                            const char *tname);
#define lgreen_sock_checkstream(L) \
  lgreen_sock_checkmt((L), 1, lgreen_sock_state(L)->mt_stream, LGREEN_SOCKET)
void lgreen_sock_newmeta(lua_State *L, const char *name,
                         const luaL_Reg *meth, gl_hub_t *hub, int state);
int lgreen_sock_gc(lua_State *L);    /* __gc, __close */
int lgreen_sock_close(lua_State *L); /* sock:close() */
int lgreen_sock_readable(lsock *s, lsock_waiter *w); /* w would complete */
void lgreen_sock_started(lsock *s); /* connected: start reading */
void lgreen_sock_shut(lsock *s);    /* close (no Lua) */
void lgreen_sock_reref(lsock *s);   /* keep the loop alive iff waited on */
void lgreen_sock_kick_readers(lsock *s);
void lgreen_sock_kick_writers(lsock *s);
int lgreen_sock_fail(lua_State *L, int err); /* nil, message; returns 2 */
const char *lgreen_sock_strerror(int err);
uint64_t lgreen_sock_deadline(double timeout);
void lgreen_sock_suspend(lua_State *L, lsock_waiter *w, gl_thread_t *t,
                         const char *what); /* and arm w->due */
void lgreen_sock_wake(lsock_waiter *w, int status);
void lgreen_sock_leave(lsock_waiter *w);
lsock_waiter *lgreen_sock_newwaiter(lua_State *L, lsock **pp, int mode);
int lgreen_sock_can_yield(lua_State *L, gl_hub_t *hub);
int lgreen_sock_fair(lua_State *L, gl_hub_t *hub, int which);
int lgreen_sock_simultaneous(lua_State *L, lsock *s, gl_link_t *q,
                             const char *op);

/* stream.c */
void lgreen_stream_maybe_read(lsock *s); /* start/stop reading ahead */
int lgreen_stream_readable(lsock *s, lsock_waiter *w);
int lgreen_stream_receive(lua_State *L);
int lgreen_stream_recv(lua_State *L);
int lgreen_stream_send(lua_State *L);
int lgreen_stream_sendall(lua_State *L);
int lgreen_stream_shutdown(lua_State *L);
int lgreen_stream_setlimit(lua_State *L);
int lgreen_stream_getlimit(lua_State *L);
size_t lgreen_stream_queued(lsock *s); /* bytes in the write queue */
#define LSOCK_WRITE_HIGH (64 * 1024) /* queued bytes before send waits */
void lgreen_stream_on_shutdown(uv_shutdown_t *req, int status);

/* sockopt.c */
extern const luaL_Reg lgreen_sockopt_meth[]; /* shared by both kinds */
int lgreen_sockopt_setoption(lua_State *L);
int lgreen_sockopt_getoption(lua_State *L);
int lgreen_sock_tostring(lua_State *L);
int lgreen_sockopt_state(lua_State *L); /* core.sockstate */

/* dns.c: the one resolver. A call that needs a name resolved keeps an
   'lsock_dns' on its stack: 'lgreen_dns_numeric' fills it from a literal
   address without the resolver (1; 0 for a name; a negative UV code for
   a literal of the other family), else 'lgreen_dns_start' blocks until the
   resolver answers and its continuation starts with 'lgreen_dns_resumed'.
   'lgreen_sock_leave' gives up a pending query with 'lgreen_dns_abandon'. */
void lgreen_dns_init(lsock_dns *d, int socktype, int port);
int lgreen_dns_numeric(lsock_dns *d, const char *host);
int lgreen_dns_start(lua_State *L, lsock_dns *d, const char *host,
                     const char *what, lua_KFunction k); /* blocks */
int lgreen_dns_resumed(lua_State *L, lsock_dns *d); /* 0 or pushes fail */
void lgreen_dns_abandon(lsock_resolver *q); /* never runs Lua */

/* tcp.c */
int lgreen_sock_accept(lua_State *L);
int lgreen_sock_getpeername(lua_State *L);
int lgreen_sock_getsockname(lua_State *L);
int lgreen_sock_pushaddr(lua_State *L, const struct sockaddr *sa, int how);
void lgreen_open_tcp(lua_State *L, gl_hub_t *hub, int state);
void lgreen_sock_on_connection(uv_stream_t *server, int status);

/* pipe.c */
int lgreen_pipe_getname(lua_State *L, lsock *s, int peer);
void lgreen_open_pipe(lua_State *L, gl_hub_t *hub, int state);

/* udp.c */
void lgreen_udp_maybe_read(lsock *s);
int lgreen_udp_readable(lsock *s);
void lgreen_udp_drop_queue(lsock *s);
int lgreen_udp_receive(lua_State *L);
int lgreen_udp_receivefrom(lua_State *L);
void lgreen_open_udp(lua_State *L, gl_hub_t *hub, int state);

/* select.c: green.select waits on several sockets at once. */
int lgreen_sock_can_read(lsock *s);  /* a receive would not block */
int lgreen_sock_can_write(lsock *s); /* a send would not block */
void lgreen_select_notify(lsock *s, int write); /* wake a ready select */
void lgreen_select_drop(lsock *s); /* closing: wake and unlink all */
void lgreen_sock_poll(lsock *s); /* timeout 0: run libuv once, no wait */
void lgreen_open_select(lua_State *L, gl_hub_t *hub, int state);

/*
** Fairness: after this many socket operations in a row on one socket that
** completed without blocking, the next one first yields to the hub (like
** sleep(0)), so a connection that always has data ready cannot starve the
** other threads and the poller. libuv reads 32 times per readiness event
** for the same reason. Per socket rather than per thread: a thread
** serving many sockets round-robin blocks on some of them anyway.
*/
#define LSOCK_FAIR_BUDGET 64

/* Indexes for 'lgreen_sock_fair' (a method to re-run after the yield). */
#define LSOCK_FAIR_RECEIVE 0
#define LSOCK_FAIR_RECV 1
#define LSOCK_FAIR_SEND 2
#define LSOCK_FAIR_SENDALL 3
#define LSOCK_FAIR_ACCEPT 4
#define LSOCK_FAIR_DGRAM 5
#define LSOCK_FAIR_DGRAMFROM 6

#endif
