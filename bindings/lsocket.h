/*
** Green sockets: what the socket files share. Private to them.
**
** The files are layers: each calls only into the ones listed above it, so
** no file calls into a sibling that calls back into it. The core reaches
** a socket's kind only through the socket's ops table, which the kind
** gives the socket when it makes it.
**
**   socket.c  the core: the socket record, its ops, waiting (the reader and
**             writer queues, the watchers of green.select), close (and
**             lingering), errors, fairness, addresses
**   sockopt.c the methods every socket has (timeouts, options, names,
**             stats, __tostring) and the metatables
**   dns.c     the resolver (c-ares), for green.getaddrinfo and the rest
**   select.c  green.select, over the core's watchers
**   stream.c  stream sockets (TCP, Unix): read buffer, receive/recv,
**             send/sendall, shutdown, close
**   conn.c    their connections: connect's wait, listen, accept
**   tcp.c     TCP: green.connect, green.listen, its ops
**   pipe.c    Unix-domain: green.connect_unix, green.listen_unix, its ops
**   udp.c     UDP: green.udp, its methods, its ops
**
** A socket is a 'green.socket' (TCP, Unix) or 'green.udp' userdata holding
** a pointer to a malloc'd record (luv style) that starts with an 'lsock'
** (a box, box.c: no pointer leads back from the record to its userdata,
** which Lua may free without running its __gc). Closed from Lua, the
** pointer is set to NULL; closed by C (a connect given up; in green.fork's
** child, a record replaced by a new one, 'fwd'), the record is marked
** LSOCK_CLOSED and lives on until the userdata is looked through again
** ('lgreen_sock_get') or collected. The memory is freed once the uv close
** callback has run and no userdata points to it. Every socket gets its own uv handle that is never
** reused after close, so a descriptor number the kernel hands out again
** can never deliver events or wake-ups meant for the old socket: libuv
** stops watching the old handle's descriptor when it closes it, and our
** waiters hang off the handle's record, not off the descriptor number.
*/
#ifndef LSOCKET_H
#define LSOCKET_H

#include "lgreen.h"

#define LGREEN_SOCKET "green.socket" /* metatable name and __name */
#define LGREEN_UDP "green.udp"       /* the same for UDP sockets */

/* Wait outcomes of socket calls ('gl_wait.status'). */
#define LSOCK_W_CLOSED UV_EOF /* its socket was closed */

/* Not a libuv code: a receive exceeded its limit (stream.c). */
#define LSOCK_ETOOLONG (-100001) /* "too long" */

/* Socket flags. */
#define LSOCK_READING 0x01   /* reading from the kernel is in effect */
#define LSOCK_LISTENING 0x02 /* a server socket */
#define LSOCK_CONNECTED 0x04 /* has a peer (a stream client or accepted, a
                                UDP socket after setpeername) */
#define LSOCK_SHUT_WR 0x08   /* shutdown("send") done or under way */
#define LSOCK_CLOSED 0x10    /* closed from Lua (handle closing/lingering) */
#define LSOCK_LINGER 0x20    /* the user set SO_LINGER (see socket.c) */
#define LSOCK_POLLING 0x40   /* listening: libuv watches for connections */
#define LSOCK_BOXED 0x80     /* a userdata points to the record */
#define LSOCK_HCLOSED 0x100  /* the handle's close callback has run (or
                                it never had a handle): freed once no
                                userdata points to it */

typedef struct lsock_state lsock_state;
typedef struct lsock lsock;
typedef struct lsock_ops lsock_ops;
typedef struct lsock_watch lsock_watch;
typedef struct lsock_linger lsock_linger;
typedef struct lsock_resolver lsock_resolver;
typedef struct lsock_lookup lsock_lookup;
typedef struct lsock_dns lsock_dns;


/* Per-hub socket state: a userdata anchored in the registry. */
struct lsock_state {
  gl_hub_t *hub;
  const void *mt_stream; /* the metatables, to check 'self' by address */
  const void *mt_udp;
  const void *mt_parser; /* green.http's parsers' (http.c checks by it) */
  int prevent;          /* hub_prevent_multiple_readers (default on) */
  gl_link_t lingering;  /* closed sockets whose handle stays open while
                           they flush their writes */
  gl_timer_t ltimer;    /* the check of their progress */
  char scratch[64 * 1024]; /* every read lands here, then is copied */
};


/*
** What a kind of socket does its own way. The core and sockopt.c call
** these and nothing else of the kind's; none runs Lua code except the two
** that push results.
*/
struct lsock_ops {
  const char *tag; /* in __tostring: "unix, " or "" */
  size_t size;     /* the kind's record */
  size_t hoff;     /* the offset of its handle in the record */
  /* Would the reader at the head of 'readers' complete now? */
  int (*readable)(lsock *s);
  /* Would a receive return at once? Would a send not wait? (select) */
  int (*can_read)(lsock *s);
  int (*can_write)(lsock *s);
  /* Readers or read watchers came or went: read from the kernel or not. */
  void (*watched)(lsock *s);
  /* The kind's part of close, after every waiter saw "closed": it ends
     with 'lgreen_sock_close_handle', now or once its writes are out. */
  void (*close)(lsock *s);
  /* Make the handle of new socket 's' of this kind (accept). */
  int (*init)(uv_loop_t *loop, lsock *s);
  /* Open the handle 'init' made on descriptor 'fd' (green.fork's child). */
  int (*open)(lsock *s, uv_os_fd_t fd);
  /* Or NULL. In green.fork's child, before the old handle of 's' closes:
     let go of what stays the parent's (a Unix server's socket file). */
  void (*forked)(lsock *s);
  /* [-0, +n, m] getsockname()/getpeername() results, or nil, err. */
  int (*address)(lua_State *L, lsock *s, int peer);
  /* [-0, +1, m] The peer as accept's second result. */
  void (*pushpeer)(lua_State *L, lsock *s);
  /* Bytes waiting to be sent; received bytes (UDP: datagrams) not taken
     yet (getstats, dirty). */
  size_t (*queued)(lsock *s);
  size_t (*buffered)(lsock *s);
};


/*
** What every socket has; a kind's record starts with it. A blocking call
** waits in its thread's own wait record ('t->w'): its 'link' is its place
** in 'readers' (receive, recv, accept) or 'writers' (send, sendall,
** connect), its 'data' the socket until it left the queue. The head of a
** queue owns that direction and keeps its place until its call is
** complete, even while woken: only the head is ever woken to proceed.
*/
struct lsock {
  uv_handle_t *h;       /* the kind's handle, in the kind's record */
  const lsock_ops *ops;
  lsock_state *st;
  lgreen_owned own;     /* while LSOCK_BOXED (box.c) */
  lsock *fwd;           /* closed in green.fork's child: the record that
                           replaces it in its userdata */
  gl_link_t readers;
  gl_link_t writers;
  gl_link_t watchers;   /* green.select's (lsock_watch) */
  lsock_linger *linger; /* while its writes flush after close (socket.c) */
  double timeout;       /* seconds; negative blocks forever */
  uint64_t nrecv;       /* bytes received (read from the kernel) */
  uint64_t nsent;       /* bytes accepted by send (written or queued) */
  uint64_t born;        /* gl_now() at creation */
  int flags;            /* LSOCK_* */
  unsigned nwatchr;     /* watchers waiting for readability */
  unsigned streak;      /* operations in a row that did not block */
};


/* A green.select entry: the core ends wait 'w' when 's' may be ready in
   its direction (or closes), then the entry stays until unwatched. */
struct lsock_watch {
  gl_link_t link; /* in s->watchers */
  lsock *s;       /* NULL once unwatched */
  gl_wait_t *w;
  int write;      /* watches writability rather than readability */
};


/* An address as the resolver hands it over (smaller than a
   sockaddr_storage, so a call can keep many on its stack). */
typedef union lsock_addr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
} lsock_addr;


/* A call waiting for the resolver (dns.c), in a userdata on its stack
   that starts with this record. */
typedef int (*lsock_then)(lua_State *L, lsock_lookup *lk);
struct lsock_lookup {
  gl_wait_t base;      /* first member; its cancel abandons the query */
  lsock_resolver *res; /* the pending query; NULL once answered or left */
  lsock_then then;     /* the call's next step, once answered */
  lsock *sock;         /* NULL, or the socket the call is on: the wait
                          joins its 'writers', so closing the socket ends
                          the lookup with "closed" */
  int err;             /* its failure, 0 if none */
};


/*
** Name resolution for one call (connect, listen, UDP bind/connect/
** sendto, getaddrinfo): a userdata on the caller's stack. The resolved
** addresses are copied into it as soon as the resolver answers, so no
** addrinfo list outlives a kill or a timeout.
*/
#define LSOCK_MAX_ADDRS 32
struct lsock_dns {
  lsock_lookup lk; /* first member */
  uint64_t due;    /* the call's deadline (gl_now() ns), 0 for none */
  int family;      /* AF_UNSPEC, AF_INET or AF_INET6 */
  int socktype;    /* SOCK_STREAM or SOCK_DGRAM */
  int passive;     /* for bind ("*" is every interface) */
  int port;
  int n, next;     /* addresses, and the next one to try */
  int err;         /* the last failure of the call */
  lsock_addr addrs[LSOCK_MAX_ADDRS];
};


/*
** {======================================================
** socket.c: the core
** =======================================================
*/

/* The socket state: upvalue 2 of every socket function and method. */
#define lgreen_sock_state(L) \
  ((lsock_state *)lua_touserdata((L), lua_upvalueindex(2)))
void lgreen_sock_pushstate(lua_State *L); /* [-0, +1, -] */
void lgreen_sock_register(lua_State *L, const luaL_Reg *funcs);

/* [-0, +1, m] A new socket userdata (metatable 'tname') with a zeroed
   record of kind 'ops'; the caller initialises the handle, or gives the
   record up with 'discard'. */
lsock *lgreen_sock_new(lua_State *L, lsock_state *st, const lsock_ops *ops,
                       const char *tname);
void lgreen_sock_discard(lsock *s); /* the userdata reads closed */
lsock **lgreen_sock_checkud(lua_State *L, int idx); /* any kind */
lsock *lgreen_sock_check(lua_State *L, int idx);    /* NULL if closed */
lsock *lgreen_sock_settle(lsock **pp);
/* The open record the socket userdata 'pp' points to, or NULL: a record
   closed by C is let go of here (or, replaced in a child of green.fork,
   replaced). Every look through a socket userdata goes through this (the
   checkers below do). */
static inline lsock *lgreen_sock_get(lsock **pp) {
  lsock *s = *pp;
  if (s != NULL && (s->flags & LSOCK_CLOSED))
    s = lgreen_sock_settle(pp);
  return s;
}
/* The userdata at 'idx' of metatable 'mt' (cached in lsock_state), else
   luaL_checkudata's error naming 'tname'. In every socket method. */
lsock **lgreen_sock_checkmt(lua_State *L, int idx, const void *mt,
                            const char *tname);
#define lgreen_sock_checkstream(L) \
  lgreen_sock_checkmt((L), 1, lgreen_sock_state(L)->mt_stream, LGREEN_SOCKET)

/* Waiting. */
int lgreen_sock_first(lua_State *L, lsock *s, gl_link_t *q, const char *op);
int lgreen_sock_unfair(lua_State *L, lsock *s);
int lgreen_sock_yield(lua_State *L, lua_CFunction again);
uint64_t lgreen_sock_deadline(double timeout);
int lgreen_sock_wait(lua_State *L, lsock *s, gl_link_t *q, const char *what,
                     gl_wait_cb cancel, uint64_t due, lua_KFunction k,
                     lua_KContext ctx);
#define lgreen_sock_self(L) (&lgreen_hub(L)->current->w)
int lgreen_sock_resumed(lua_State *L, gl_wait_cb undo, lsock **ps);
void lgreen_sock_leave(gl_wait_t *w);
void lgreen_sock_kick_readers(lsock *s);
void lgreen_sock_kick_writers(lsock *s);
void lgreen_sock_reref(lsock *s); /* keep the loop alive iff waited on */
void lgreen_sock_poll(lsock *s);  /* timeout 0: run libuv once, no wait */
void lgreen_sock_watch(lsock *s, lsock_watch *e, gl_wait_t *w, int write);
void lgreen_sock_unwatch(lsock_watch *e);

/* Closing. */
void lgreen_sock_shut(lsock *s); /* close (no Lua) */
int lgreen_sock_lingering(lsock *s, int secs); /* 0 or UV_ENOMEM */
void lgreen_sock_close_handle(lsock *s);
int lgreen_sock_solinger(lsock *s, int *secs); /* the user's SO_LINGER */
#define LSOCK_LINGER_DEFAULT 2 /* seconds without progress: dropped */
int lgreen_sock_gc(lua_State *L);            /* __gc, __close */
int lgreen_sock_close(lua_State *L);         /* sock:close() */

/* Errors, addresses, states. */
const char *lgreen_sock_strerror(int err);
const char *lgreen_sock_statename(lsock *s); /* "connected", ... */
int lgreen_sock_fail(lua_State *L, int err); /* nil, message; returns 2 */
int lgreen_sock_pushaddr(lua_State *L, const struct sockaddr *sa, int how);
int lgreen_sock_optfamily(lua_State *L, int opts, int def,
                          const char *what);
/* [-0, +0, v] The value on the top, field 'field' of the options table
   that is argument 'arg': a number, an integer; else raise naming both. */
lua_Number lgreen_sock_optnumber(lua_State *L, int arg, const char *field);
lua_Integer lgreen_sock_optinteger(lua_State *L, int arg,
                                   const char *field);
/* [-0, +0, v] The 'timeout' field on the top, of the options table that
   is argument 'arg': the toolkit's rule (a negative number is 0; NaN or
   not a number raises). */
lua_Number lgreen_sock_opttimeout(lua_State *L, int arg);
void lgreen_sock_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

/*
** Fairness: after this many socket operations in a row on one socket that
** completed without blocking, the next one first yields to the hub (like
** sleep(0)), so a connection that always has data ready cannot starve the
** other threads and the poller. libuv reads 32 times per readiness event
** for the same reason. Per socket rather than per thread: a thread
** serving many sockets round-robin blocks on some of them anyway.
*/
#define LSOCK_FAIR_BUDGET 64

/* }====================================================== */


/* sockopt.c */
const void *lgreen_sock_newmeta(lua_State *L, const char *name,
                                const luaL_Reg *meth); /* [-0, +0, m] */
void lgreen_sock_addmeth(lua_State *L, const char *name,
                         const luaL_Reg *meth); /* [-0, +0, m] */

/* dns.c: the one resolver. A call that needs a name resolved keeps an
   'lsock_dns' on its stack, prepared with 'lgreen_dns_init' (zeroed
   first); 'lgreen_dns_resolve' fills it (a literal address at once, a
   name through the resolver, blocking) and goes on with the call's next
   step. */
void lgreen_dns_init(lsock_dns *d, int socktype, int port);
/* [-0, +0, v] The host name (or address) argument at 'idx' (raises if
   not a string), or NULL if it has a zero byte: lgreen_dns_resolve then
   says "host not found". */
const char *lgreen_dns_checkhost(lua_State *L, int idx);
int lgreen_dns_resolve(lua_State *L, lsock_dns *d, const char *host,
                       const char *what, lsock_then then);

/* stream.c and conn.c: the record of a stream socket (TCP, Unix). */
typedef struct lstream {
  lsock base; /* first member */
  char *buf;      /* read buffer: bytes [off, off + len) are data */
  size_t off, len, cap;
  size_t limit;   /* receive limit in bytes (SIZE_MAX: none) */
  size_t scanned; /* bytes at the front known to hold no '\n' */
  size_t count;   /* the head reader's count (receive(n), recv(max)) */
  int rerr;       /* 0, UV_EOF or a read error; seen after 'buf' */
  int werr;       /* 0, or the first write (or connect) error */
  int backlog;    /* listening: listen()'s */
  short mode;     /* the head reader's mode; 0 until it says */
  short pending;  /* listening: 1 a connection waits, < 0 an error (a
                     libuv error code: > -4096) */
  /* last: a kind's record ends with its own handle (LSTREAM_SIZE): a
     TCP socket's record is 488 bytes, 2 malloc size classes below the
     512 of the whole union (uv_pipe_t's size) (bench/idle.lua) */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
} lstream;

/* The record of a stream kind whose handle is member 'm' of 'h'. */
#define LSTREAM_SIZE(m) \
  (offsetof(lstream, h) + sizeof(((lstream *)0)->h.m))

#define LSTREAM(s) ((lstream *)(s))

/* A head reader's mode that wakes it once 'count' bytes are buffered (or
   on an error): stream.c's receive(n), used by http.c to wait for more
   bytes than it has parsed. */
#define LSTREAM_MODE_COUNT 2

/* stream.c: what the stream kinds (tcp.c, pipe.c) and conn.c build on. */
lsock *lgreen_stream_new(lua_State *L, lsock_state *st,
                         const lsock_ops *ops); /* [-0, +1, m] */
void lgreen_stream_started(lstream *x); /* connected: reads from now on */
int lgreen_stream_readable(lsock *s);
void lgreen_stream_consume(lstream *x, size_t n); /* drop n bytes read */
/* Hand data[*pos, end) to the kernel (uv_try_write) or the write queue,
   as far as its bound allows (not past it: then wait in 'writers' for
   the queue to drain); advances '*pos'; sets 'werr' on failure. */
void lgreen_stream_write(lstream *x, const char *data, size_t *pos,
                         size_t end);
int lgreen_stream_can_read(lsock *s);
int lgreen_stream_can_write(lsock *s);
void lgreen_stream_watched(lsock *s);
void lgreen_stream_close(lsock *s);
size_t lgreen_stream_queued(lsock *s);
size_t lgreen_stream_buffered(lsock *s);

/* pipe.c: a new Unix-kind socket, its uv_pipe_t initialised (the
   socket functions' upvalue 2 is the socket state). */
lsock *lgreen_pipe_new(lua_State *L); /* [-0, +1, m] */

/* conn.c: connect's wait, listen (and accept, a method). */
void lgreen_stream_on_connect(uv_connect_t *req, int status);
int lgreen_stream_connecting(lua_State *L, lsock *s, const char *what,
                             uint64_t due, lua_KFunction k,
                             lua_KContext ctx);
int lgreen_stream_connected(lua_State *L, int *err);
int lgreen_stream_listen(lsock *s, int backlog); /* 0 or a UV error */
/* [-0, +0, v] The 'backlog' option (on the top) of the options table
   that is argument 'arg', clamped to an int (the kernel caps it). */
int lgreen_stream_backlog(lua_State *L, int arg);

/* The members of a stream kind's ops table that stream.c provides. */
#define LSOCK_STREAM_OPS                                                  \
  .hoff = offsetof(lstream, h),                                           \
  .readable = lgreen_stream_readable, .can_read = lgreen_stream_can_read, \
  .can_write = lgreen_stream_can_write, .watched = lgreen_stream_watched, \
  .close = lgreen_stream_close, .queued = lgreen_stream_queued,           \
  .buffered = lgreen_stream_buffered

#endif
