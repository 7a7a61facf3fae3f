/*
** Green sockets: what bindings/socket.c (the stream: buffers, receive,
** send, close, options) and bindings/tcp.c (DNS, connect, listen, accept)
** share. Private to those two files.
**
** A socket is a 'green.socket' userdata holding a pointer to a malloc'd
** 'lsock' (luv style): the pointer is set to NULL on close and the memory
** is freed only in the uv close callback. Every socket gets its own
** uv_tcp_t that is never reused after close, so a descriptor number the
** kernel hands out again can never deliver events or wake-ups meant for
** the old socket: libuv stops watching the old handle's descriptor when
** it closes it, and our waiters hang off the handle's record, not off the
** descriptor number.
*/
#ifndef LSOCKET_H
#define LSOCKET_H

#include "lgreen.h"

#define LGREEN_SOCKET "green.socket" /* metatable name and __name */

/* Waiter modes. */
#define LSOCK_LINE 1    /* receive("*l") */
#define LSOCK_COUNT 2   /* receive(n) */
#define LSOCK_ALL 3     /* receive("*a") */
#define LSOCK_SOME 4    /* recv(max) */
#define LSOCK_ACCEPT 5  /* accept() */
#define LSOCK_WRITE 6   /* send(), sendall() */
#define LSOCK_CONNECT 7 /* connect: waiting for uv_tcp_connect */
#define LSOCK_RESOLVE 8 /* connect or listen: waiting for the resolver */

/* Waiter outcomes. */
#define LSOCK_W_NONE 0
#define LSOCK_W_READY 1   /* woken because it may proceed */
#define LSOCK_W_TIMEOUT 2 /* its socket timeout expired */
#define LSOCK_W_CLOSED 3  /* its socket was closed */

/* Socket flags. */
#define LSOCK_READING 0x01   /* uv_read_start is in effect */
#define LSOCK_LISTENING 0x02 /* a server socket */
#define LSOCK_STREAM 0x04    /* connected (client or accepted) */
#define LSOCK_SHUT_WR 0x08   /* shutdown("send") done or under way */
#define LSOCK_CLOSED 0x10    /* closed from Lua (handle closing/lingering) */

typedef struct lsock_state lsock_state;
typedef struct lsock lsock;
typedef struct lsock_waiter lsock_waiter;
typedef struct lsock_resolver lsock_resolver;


/* Per-hub socket state: a userdata anchored in the registry. */
struct lsock_state {
  gl_hub_t *hub;
  int prevent;         /* hub_prevent_multiple_readers (default on) */
  gl_link_t lingering; /* closed sockets still flushing their writes */
  char scratch[64 * 1024]; /* every read lands here, then is copied */
};


struct lsock {
  uv_tcp_t tcp;        /* first member: libuv callbacks cast back */
  lsock_state *st;
  lsock **ud;          /* the userdata's pointer slot, NULL once closed */
  gl_link_t readers;   /* waiters in receive/recv/accept; head owns */
  gl_link_t writers;   /* waiters in send/sendall; head owns */
  gl_link_t linger;    /* in st->lingering after a close with writes */
  lsock_waiter *conn;  /* the waiter of a pending connect */
  char *buf;           /* read buffer: bytes [off, off + len) are data */
  size_t off, len, cap;
  double timeout;      /* seconds; negative blocks forever */
  uint64_t nrecv;      /* bytes received (read from the kernel) */
  uint64_t nsent;      /* bytes accepted by send (written or queued) */
  uint64_t born;       /* gl_now() at creation */
  int rerr;            /* 0, UV_EOF or a read error; seen after 'buf' */
  int werr;            /* 0 or the first write error */
  int pending;         /* listening: 1 a connection waits, < 0 an error */
  int flags;           /* LSOCK_* */
  unsigned streak;     /* operations in a row that did not block */
};


/*
** The record of one blocking socket call: a userdata on the waiting
** thread's own stack, so it lives as long as the call. While suspended,
** 'tlink' and the thread's 'wlink' form a ring of two: that is how the
** cancel callback, which gets only the thread, finds the record.
*/
struct lsock_waiter {
  gl_link_t tlink;     /* ring with t->wlink while suspended */
  gl_link_t qlink;     /* in s->readers or s->writers */
  gl_thread_t *t;      /* the thread making the call */
  lsock *s;            /* its socket; NULL once it left it */
  lsock_resolver *res; /* LSOCK_RESOLVE: the pending request */
  uint64_t due;        /* deadline (gl_now() ns), 0 for none */
  size_t count;        /* LSOCK_COUNT: bytes; LSOCK_SOME: max */
  size_t scanned;      /* LSOCK_LINE: bytes known to hold no '\n' */
  size_t pos, end;     /* LSOCK_WRITE: next byte, end (0-based) */
  int mode;            /* LSOCK_* mode */
  int status;          /* LSOCK_W_* */
  int err;             /* LSOCK_CONNECT/RESOLVE: libuv's result */
  int susp;            /* 1 while suspended (the ring is linked) */
  int all;             /* LSOCK_WRITE: sendall (returns true) */
};


/* A uv_getaddrinfo request; freed in its callback, even if abandoned. */
struct lsock_resolver {
  uv_getaddrinfo_t req; /* first member */
  lsock_waiter *w;      /* NULL once the waiter gave up */
};


/* socket.c */
lsock **lgreen_sock_new(lua_State *L, lsock_state *st); /* [-0, +1, m] */
void lgreen_sock_started(lsock *s); /* connected: start reading */
void lgreen_sock_shut(lsock *s);    /* close (no Lua) */
void lgreen_sock_reref(lsock *s);   /* keep the loop alive iff waited on */
void lgreen_sock_kick_readers(lsock *s);
int lgreen_sock_fail(lua_State *L, int err); /* nil, message; returns 2 */
const char *lgreen_sock_strerror(int err);
uint64_t lgreen_sock_deadline(double timeout);
void lgreen_sock_arm(lua_State *L, lsock_waiter *w, gl_thread_t *t);
void lgreen_sock_suspend(lsock_waiter *w, gl_thread_t *t, const char *what);
void lgreen_sock_wake(lsock_waiter *w, int status);
void lgreen_sock_leave(lsock_waiter *w);
lsock_waiter *lgreen_sock_newwaiter(lua_State *L, lsock *s, int mode);
int lgreen_sock_can_yield(lua_State *L, gl_hub_t *hub);
int lgreen_sock_fair(lua_State *L, gl_hub_t *hub, int which);
int lgreen_sock_simultaneous(lua_State *L, lsock *s, gl_link_t *q,
                             const char *op);

/* tcp.c */
int lgreen_sock_accept(lua_State *L);
int lgreen_sock_getpeername(lua_State *L);
int lgreen_sock_getsockname(lua_State *L);
int lgreen_sock_pushaddr(lua_State *L, const struct sockaddr *sa, int how);
void lgreen_open_tcp(lua_State *L, gl_hub_t *hub, int state);

/* Indexes for 'lgreen_sock_fair' (a method to re-run after the yield). */
#define LSOCK_FAIR_RECEIVE 0
#define LSOCK_FAIR_RECV 1
#define LSOCK_FAIR_SEND 2
#define LSOCK_FAIR_SENDALL 3
#define LSOCK_FAIR_ACCEPT 4

#endif
