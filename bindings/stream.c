/*
** stream.c: stream sockets (TCP and Unix-domain, any uv_stream_t): read
** buffering, receive/recv, send/sendall, shutdown, the receive limit,
** close. The kinds (tcp.c, pipe.c) make the sockets and give each its ops
** table, whose stream part is here (LSOCK_STREAM_OPS); conn.c makes the
** connections; the core (socket.c) does the waiting. See lsocket.h, and
** DESIGN.md ("Sockets") for the contract.
**
** Reading. A connected socket reads ahead into its own buffer while the
** buffer holds less than READ_HIGH bytes or someone waits in receive;
** beyond that, with no reader, it stops reading (backpressure: the kernel
** window closes). libuv reads into one 64 KB scratch area per hub and the
** bytes are copied into the socket's buffer, which is freed as soon as it
** is empty, so an idle connection holds no read buffer at all (the cost is
** one memcpy per byte received). A receive takes bytes from the buffer
** only once its pattern is satisfied (or on failure or timeout), so a
** reader that is killed, or whose green.Timeout fires, takes nothing: the
** bytes stay for the next owner. A call with timeout 0, which never waits,
** reads the descriptor itself when the buffer is not enough ('pull').
**
** Writing. send() first tries uv_try_write (no copy); what the kernel
** does not take is copied into uv_write requests, at most WRITE_HIGH bytes
** queued per socket. A writer that would queue more waits until the queue
** drains below half of that, so a peer that never reads costs a bounded
** amount of memory. close() with queued bytes lets them flush first (it
** lingers: see socket.c).
**
** A blocking call keeps its own state on its Lua stack (its mode and
** count, its position), its deadline in its continuation's context, and
** waits in its thread's own wait record: it costs no allocation.
*/
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lsocket.h"

/* Read ahead up to this much with nobody receiving, then stop reading. */
#define READ_HIGH (64 * 1024)
/* Bytes queued in uv_write requests per socket before a writer waits. */
#define WRITE_HIGH (64 * 1024)
/*
** The receive limit: the most bytes one receive may gather ("*l" the line,
** "*a" everything, n the count). A peer that never ends its line must not
** grow the process without bound. Sockets start with this default;
** accepted ones inherit their listening socket's limit; setlimit changes
** it (green.socket's sockets default to none, as LuaSocket).
*/
#define LIMIT_DEFAULT (1 << 20)

/* Receive modes. */
#define MODE_LINE 1  /* receive("*l") */
#define MODE_COUNT 2 /* receive(n) */
#define MODE_ALL 3   /* receive("*a") */
#define MODE_SOME 4  /* recv(max) */




/* [-0, +1, m] A new stream socket of kind 'ops' (see 'lgreen_sock_new'). */
lsock *lgreen_stream_new(lua_State *L, lsock_state *st,
                         const lsock_ops *ops) {
  lsock *s = lgreen_sock_new(L, st, ops, LGREEN_SOCKET);
  LSTREAM(s)->limit = LIMIT_DEFAULT;
  return s;
}


/*
** {======================================================
** Buffer, reading and writing (no Lua code runs here)
** =======================================================
*/

static int append(lstream *x, const char *p, size_t n) {
  if (x->off + x->len + n > x->cap) {
    if (x->off > 0) {
      memmove(x->buf, x->buf + x->off, x->len);
      x->off = 0;
    }
    if (x->len + n > x->cap) {
      size_t cap = x->cap ? x->cap : 512;
      char *nb;
      while (cap < x->len + n)
        cap *= 2;
      nb = (char *)realloc(x->buf, cap);
      if (nb == NULL)
        return UV_ENOMEM;
      x->buf = nb;
      x->cap = cap;
    }
  }
  memcpy(x->buf + x->off + x->len, p, n);
  x->len += n;
  return 0;
}


/* Drop 'n' bytes from the front; an empty buffer is freed. Nothing to do
   on a socket closed meanwhile (its buffer is gone). */
static void consume(lstream *x, size_t n) {
  if (x->base.flags & LSOCK_CLOSED)
    return;
  x->off += n;
  x->len -= n;
  x->scanned = x->scanned > n ? x->scanned - n : 0;
  if (x->len == 0) {
    free(x->buf);
    x->buf = NULL;
    x->off = x->cap = 0;
  }
}


void lgreen_stream_consume(lstream *x, size_t n) {
  consume(x, n);
}


static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b);


/* A connection waits in the listening socket (libuv stops watching the
   socket until it is accepted), or accept() failed (EMFILE, ...). */
static void on_connection(uv_stream_t *server, int status) {
  lstream *x = (lstream *)server->data;
  x->pending = (short)(status < 0 ? status : 1);
  lgreen_sock_kick_readers(&x->base);
}


/* Start or stop reading ahead (see the header comment). A listening
   socket: libuv watches it from the first call that wants a connection
   (see lgreen_stream_listen) and for good; if it cannot, the next accept
   fails with the error (as when libuv's accept fails), and the one after
   tries again. */
void lgreen_stream_watched(lsock *s) {
  lstream *x = LSTREAM(s);
  int want;
  if (s->flags & LSOCK_LISTENING) {
    if (!(s->flags & (LSOCK_POLLING | LSOCK_CLOSED)) && x->pending == 0) {
      int r = uv_listen(&x->h.stream, x->backlog, on_connection);
      if (r < 0)
        x->pending = r;
      else
        s->flags |= LSOCK_POLLING;
    }
    return;
  }
  want = (s->flags & LSOCK_CONNECTED) && !(s->flags & LSOCK_CLOSED) &&
             x->rerr == 0 &&
             (!gl_link_empty(&s->readers) || x->len < READ_HIGH);
  if (want && !(s->flags & LSOCK_READING)) {
    int r = uv_read_start(&x->h.stream, lgreen_sock_alloc, on_read);
    if (r < 0)
      x->rerr = r;
    else
      s->flags |= LSOCK_READING;
  } else if (!want && (s->flags & LSOCK_READING)) {
    uv_read_stop(&x->h.stream);
    s->flags &= ~LSOCK_READING;
  }
}


/* What a read can do now. */
typedef struct plan {
  int kind;    /* P_WAIT, P_DATA or P_FAIL */
  int err;     /* P_FAIL: the error */
  size_t n;    /* bytes of the result (or of the partial) */
  size_t skip; /* bytes consumed in all ('\n' included) */
} plan;

#define P_WAIT 0
#define P_DATA 1
#define P_FAIL 2


static int plan_fail(lstream *x, int mode, int err, plan *p) {
  p->kind = P_FAIL;
  p->err = err;
  p->n = p->skip = mode == MODE_SOME ? 0 : x->len;
  return P_FAIL;
}


/* The receive limit is exceeded: fail with the first 'limit' bytes. */
static int plan_toolong(lstream *x, plan *p) {
  p->kind = P_FAIL;
  p->err = LSOCK_ETOOLONG;
  p->n = p->skip = x->limit < x->len ? x->limit : x->len;
  return P_FAIL;
}


/* Can a read in 'mode' complete from the buffer? Never changes it. */
static int plan_read(lstream *x, int mode, size_t count, plan *p) {
  const char *b = x->buf + x->off;
  size_t len = x->len;
  p->err = 0;
  switch (mode) {
  case MODE_LINE: {
    const char *nl = NULL;
    if (len > x->scanned)
      nl = (const char *)memchr(b + x->scanned, '\n', len - x->scanned);
    if (nl != NULL && (size_t)(nl - b) <= x->limit) {
      p->n = (size_t)(nl - b);
      p->skip = p->n + 1;
      return p->kind = P_DATA;
    }
    if (len > x->limit) /* no end of line within the limit */
      return plan_toolong(x, p);
    x->scanned = len;
    break;
  }
  case MODE_COUNT:
    if (count > x->limit) { /* refused at once, taking nothing */
      plan_toolong(x, p);
      p->n = p->skip = 0;
      return P_FAIL;
    }
    if (len >= count) {
      p->n = p->skip = count;
      return p->kind = P_DATA;
    }
    break;
  case MODE_SOME:
    if (len > 0) {
      p->n = p->skip = len < count ? len : count;
      return p->kind = P_DATA;
    }
    break;
  default: /* MODE_ALL: only the end of the stream completes it */
    if (len > x->limit)
      return plan_toolong(x, p);
    break;
  }
  if (x->rerr != 0) {
    /* "*a" returns what it found before the end; nothing at all is
       "closed", as LuaSocket's recvall has it (so `repeat ... until not
       data` loops end). */
    if (mode == MODE_ALL && x->rerr == UV_EOF && len > 0) {
      p->n = p->skip = len;
      return p->kind = P_DATA;
    }
    return plan_fail(x, mode, x->rerr, p);
  }
  return p->kind = P_WAIT;
}


/*
** Would the head reader (receive, recv, accept) complete now? A receive
** says what it wants ('mode', 'count') when it waits at the head; one that
** has not (it came to the head from further back) is woken to say it.
*/
int lgreen_stream_readable(lsock *s) {
  lstream *x = LSTREAM(s);
  plan p;
  if (s->flags & LSOCK_LISTENING)
    return x->pending != 0;
  if (x->mode == 0)
    return 1;
  return plan_read(x, x->mode, x->count, &p) != P_WAIT;
}


int lgreen_stream_can_read(lsock *s) {
  if (s->flags & LSOCK_LISTENING)
    return LSTREAM(s)->pending != 0;
  return LSTREAM(s)->len > 0 || LSTREAM(s)->rerr != 0;
}


int lgreen_stream_can_write(lsock *s) {
  if (s->flags & LSOCK_LISTENING)
    return 0;
  return LSTREAM(s)->werr != 0 || (s->flags & LSOCK_SHUT_WR) ||
         (gl_link_empty(&s->writers) &&
          lgreen_stream_queued(s) < WRITE_HIGH);
}


size_t lgreen_stream_queued(lsock *s) {
  return uv_stream_get_write_queue_size(&LSTREAM(s)->h.stream);
}


size_t lgreen_stream_buffered(lsock *s) {
  return LSTREAM(s)->len;
}


/*
** Timeout 0 (LuaSocket's polling idiom: settimeout(0), then retry on
** "timeout" or select first). Such a call never waits, so the hub never
** reads for it, and a caller that spins on it never lets the hub run:
** the buffer would stay as it is. So read what the kernel holds right
** now, straight from the descriptor, as LuaSocket's recv(2) would: until
** the plan in 'mode' can complete, the kernel has nothing more, the
** stream ends or fails, or PULL_MAX bytes came in this call (the call
** then returns its partial and the next one goes on). Only a socket's
** sole reader calls this, so nobody's bytes are taken; libuv finds the
** descriptor drained (EAGAIN) at its next poll and simply waits again.
** Called when the buffer alone cannot complete the plan; returns it.
*/
#define PULL_MAX (1024 * 1024)

static int pull(lstream *x, int mode, size_t count, plan *p) {
  char *scratch = x->base.st->scratch;
  size_t got = 0;
  uv_os_fd_t fd;
  int kind = P_WAIT;
  if (x->rerr != 0 || !(x->base.flags & LSOCK_CONNECTED) ||
      uv_fileno(&x->h.handle, &fd) < 0)
    return kind;
  while (kind == P_WAIT && got < PULL_MAX) {
    ssize_t n;
    do /* libuv keeps every stream's descriptor non-blocking */
      n = read(fd, scratch, sizeof(x->base.st->scratch));
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0)
      x->rerr = uv_translate_sys_error(errno);
    else if (n == 0)
      x->rerr = UV_EOF;
    else if (append(x, scratch, (size_t)n) < 0)
      x->rerr = UV_ENOMEM;
    else {
      x->base.nrecv += (uint64_t)n;
      got += (size_t)n;
    }
    kind = plan_read(x, mode, count, p);
  }
  if (x->rerr != 0)
    lgreen_sock_kick_readers(&x->base); /* a select waiting elsewhere */
  return kind;
}


static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  lstream *x = (lstream *)h->data;
  if (n > 0) {
    x->base.nrecv += (uint64_t)n;
    if (append(x, b->base, (size_t)n) < 0)
      x->rerr = UV_ENOMEM;
  } else if (n < 0) {
    x->rerr = (int)n;
  }
  lgreen_sock_kick_readers(&x->base);
  lgreen_stream_watched(&x->base);
}


static void on_write(uv_write_t *req, int status) {
  lstream *x = (lstream *)req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED && x->werr == 0)
    x->werr = status;
  if (x->base.flags & LSOCK_CLOSED)
    return;
  if (x->werr != 0 || lgreen_stream_queued(&x->base) < WRITE_HIGH / 2)
    lgreen_sock_kick_writers(&x->base); /* and writable for green.select */
}


/*
** Hand data[*pos, end) to the kernel or the write queue, as far as the
** WRITE_HIGH bound allows; advances '*pos'. Sets 'x->werr' on failure.
*/
static void write_some(lstream *x, const char *data, size_t *pos,
                       size_t end) {
  uv_stream_t *st = &x->h.stream;
  while (*pos < end && x->werr == 0) {
    size_t q = uv_stream_get_write_queue_size(st);
    size_t n = end - *pos;
    uv_write_t *req;
    uv_buf_t b;
    int r;
    if (q == 0) { /* nothing queued: try the kernel directly, no copy */
      b = uv_buf_init((char *)data + *pos,
                      (unsigned)(n > 0x40000000 ? 0x40000000 : n));
      r = uv_try_write(st, &b, 1);
      if (r > 0) {
        *pos += (size_t)r;
        x->base.nsent += (uint64_t)r;
        continue;
      }
      if (r != UV_EAGAIN && r != UV_ENOSYS) {
        x->werr = r;
        break;
      }
    }
    if (q >= WRITE_HIGH)
      break; /* the caller waits for on_write */
    if (n > WRITE_HIGH - q)
      n = WRITE_HIGH - q;
    req = (uv_write_t *)malloc(sizeof(*req) + n);
    if (req == NULL) {
      x->werr = UV_ENOMEM;
      break;
    }
    memcpy(req + 1, data + *pos, n);
    b = uv_buf_init((char *)(req + 1), (unsigned)n);
    r = uv_write(req, st, &b, 1, on_write);
    if (r < 0) {
      free(req);
      x->werr = r;
      break;
    }
    *pos += n;
    x->base.nsent += (uint64_t)n;
  }
}


/* write_some for green.tls (tls.c), which sends its ciphertext from its
   own buffer: what it could not hand over stays there; and for http.c's
   http_flush, which sends the parser's output buffer. */
void lgreen_stream_write(lstream *x, const char *data, size_t *pos,
                         size_t end) {
  write_some(x, data, pos, end);
}


/* Connected (client or accepted): read ahead from now on. */
void lgreen_stream_started(lstream *x) {
  x->base.flags |= LSOCK_CONNECTED;
  lgreen_stream_watched(&x->base);
  lgreen_sock_reref(&x->base);
}

/* }====================================================== */


/*
** Done flushing (or failed) after close: no more lingering. A pipe (a
** child's stdin, process.c) has no shutdown(2): ENOTSOCK once what was
** queued is written. Closing it is the only way its reader sees the end,
** and shutdown("send") promised that: it is closed now (it reads closed
** from then on).
*/
static void on_shutdown(uv_shutdown_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  free(req);
  if ((s->flags & LSOCK_CLOSED) && !uv_is_closing(s->h))
    lgreen_sock_close_handle(s);
  else if (status == UV_ENOTSOCK && !(s->flags & LSOCK_CLOSED))
    lgreen_sock_shut(s);
}


/*
** The stream's part of close: while bytes are queued, the socket lingers
** (see socket.c) and shuts its writing side down, and closes once that is
** done; unless the user's SO_LINGER is {on, 0}: a reset at once.
*/
void lgreen_stream_close(lsock *s) {
  lstream *x = LSTREAM(s);
  int secs = LSOCK_LINGER_DEFAULT;
  free(x->buf);
  x->buf = NULL;
  x->off = x->len = x->cap = x->scanned = 0;
  if (s->flags & LSOCK_READING) {
    uv_read_stop(&x->h.stream);
    s->flags &= ~LSOCK_READING;
  }
  if ((s->flags & LSOCK_CONNECTED) && x->werr == 0 &&
      lgreen_stream_queued(s) > 0 &&
      !(lgreen_sock_solinger(s, &secs) && secs == 0) &&
      lgreen_sock_lingering(s, secs) == 0) {
    uv_shutdown_t *req;
    if (s->flags & LSOCK_SHUT_WR)
      return; /* its shutdown is pending: on_shutdown closes */
    req = (uv_shutdown_t *)malloc(sizeof(*req));
    if (req != NULL && uv_shutdown(req, &x->h.stream, on_shutdown) == 0) {
      s->flags |= LSOCK_SHUT_WR;
      return;
    }
    free(req);
  }
  lgreen_sock_close_handle(s);
}

/* }====================================================== */


/*
** [-0, +1, m] Push prefix (index 3, if a string) .. the first 'n' bytes of
** the socket's buffer, every CR dropped if 'line' (as LuaSocket's line
** mode does), then consume 'skip' bytes. The bytes are copied into a Lua
** string before anything else allocates: an allocation can run a
** finalizer that closes the socket and frees its buffer.
*/
static void push_take(lua_State *L, lstream *x, size_t n, size_t skip,
                      int line) {
  char *p = x->buf + x->off;
  if (n == 0) { /* the buffer may be NULL */
    lua_pushliteral(L, "");
  } else {
    if (line && memchr(p, '\r', n) != NULL) { /* strip CRs in place: */
      size_t i, m = 0;                        /* these bytes are taken */
      for (i = 0; i < n; i++)
        if (p[i] != '\r')
          p[m++] = p[i];
      n = m;
    }
    lua_pushlstring(L, p, n);
  }
  consume(x, skip);
  if (lua_type(L, 3) == LUA_TSTRING) {
    lua_pushvalue(L, 3);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
}


/* Push the outcome of a plan (not P_WAIT), consume its bytes, and read
   ahead again if that made room. */
static int push_plan(lua_State *L, lstream *x, int mode, plan *p) {
  int n = 1;
  if (p->kind == P_DATA) {
    push_take(L, x, p->n, p->skip, mode == MODE_LINE);
  } else if (mode == MODE_SOME) {
    n = lgreen_sock_fail(L, p->err);
  } else {
    push_take(L, x, p->n, p->skip, mode == MODE_LINE); /* the partial */
    luaL_pushfail(L);
    lua_insert(L, -2);
    lua_pushstring(L, lgreen_sock_strerror(p->err));
    lua_insert(L, -2);
    n = 3;
  }
  lgreen_stream_watched(&x->base);
  return n;
}


static int push_closed(lua_State *L, int mode) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  if (mode == MODE_SOME)
    return 2;
  if (lua_type(L, 3) == LUA_TSTRING)
    lua_pushvalue(L, 3);
  else
    lua_pushliteral(L, "");
  return 3;
}


/*
** {======================================================
** receive, recv
** =======================================================
*/

/* A reader leaves (done, or given up): if it headed the queue, the next
   one says what it wants. */
static void recv_leave(gl_wait_t *w) {
  lsock *s = (lsock *)w->data;
  if (s != NULL && s->readers.next == &w->link)
    LSTREAM(s)->mode = 0;
  lgreen_sock_leave(w);
}


/* Wait for the data; stack [sock, pattern, prefix, mode, count], the
   deadline in 'ctx'. */
static int recv_wait(lua_State *L, lstream *x, lua_KContext ctx);


static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, recv_leave, &s);
  int mode = (int)lua_tointeger(L, 4);
  size_t count = (size_t)lua_tointeger(L, 5);
  lstream *x = LSTREAM(s);
  plan p;
  (void)status;
  if (outcome == LSOCK_W_CLOSED)
    return push_closed(L, mode);
  if (outcome == GL_W_TIMEOUT) { /* LuaSocket: return the partial */
    plan_fail(x, mode, UV_ETIMEDOUT, &p);
    return push_plan(L, x, mode, &p);
  }
  if (plan_read(x, mode, count, &p) != P_WAIT) {
    recv_leave(lgreen_sock_self(L)); /* before pushing (which may raise) */
    return push_plan(L, x, mode, &p);
  }
  /* Woken (at the head), but the data is not all there yet: say what it
     takes to wake us, and wait again, first in line. */
  x->mode = (short)mode;
  x->count = count;
  return recv_wait(L, x, ctx);
}


static int recv_wait(lua_State *L, lstream *x, lua_KContext ctx) {
  return lgreen_sock_wait(L, &x->base, &x->base.readers, "socket:receive",
                          recv_leave, (uint64_t)ctx, recv_k, ctx);
}


/* Stack: [sock, pattern-or-max, prefix-or-nil]. */
static int recv_start(lua_State *L, int mode, size_t count,
                      lua_CFunction again) {
  lstream *x = LSTREAM(lgreen_sock_get((lsock **)lua_touserdata(L, 1)));
  uint64_t due;
  plan p;
  if (x == NULL)
    return push_closed(L, mode);
  if (x->base.flags & LSOCK_LISTENING)
    return luaL_error(L, "cannot receive on a listening socket");
  if (mode == MODE_COUNT && count == 0) {
    if (lua_type(L, 3) != LUA_TSTRING)
      lua_pushliteral(L, "");
    return 1; /* the prefix, or "" */
  }
  if (lgreen_sock_first(L, &x->base, &x->base.readers, "read")) {
    if (lgreen_sock_unfair(L, &x->base))
      return lgreen_sock_yield(L, again);
    if (plan_read(x, mode, count, &p) == P_WAIT && x->base.timeout == 0 &&
        pull(x, mode, count, &p) == P_WAIT) /* never waits: the partial */
      plan_fail(x, mode, UV_ETIMEDOUT, &p);
    if (p.kind != P_WAIT) {
      x->base.streak++; /* a polling loop yields now and then too */
      return push_plan(L, x, mode, &p);
    }
  } else if (x->base.timeout == 0) {
    plan_fail(x, mode, UV_ETIMEDOUT, &p);
    p.n = p.skip = 0; /* the bytes belong to the readers in line */
    return push_plan(L, x, mode, &p);
  }
  lua_pushinteger(L, mode);
  lua_pushinteger(L, (lua_Integer)count);
  if (gl_link_empty(&x->base.readers)) { /* it will head the queue */
    x->mode = mode;
    x->count = count;
  }
  due = lgreen_sock_deadline(x->base.timeout);
  return recv_wait(L, x, (lua_KContext)due);
}


/***
** sock:receive([pattern="*l"], [prefix]): "*l"/"l" a line (without the
** end of line; every CR dropped, as LuaSocket does), "*a"/"a" everything
** up to the end of the stream (nil, "closed" if that is nothing), n
** bytes up to a total of n, the prefix included. Returns prefix .. data,
** or nil, err, prefix .. partial (the partial is consumed). With timeout
** 0 it takes what the kernel holds now, as LuaSocket does.
*/
static int sock_receive(lua_State *L) {
  int mode;
  size_t count = 0;
  lgreen_sock_checkstream(L);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative byte count");
    mode = MODE_COUNT;
    count = (size_t)n;
  } else {
    const char *p = luaL_optstring(L, 2, "*l");
    if (*p == '*')
      p++;
    if (strcmp(p, "l") == 0)
      mode = MODE_LINE;
    else if (strcmp(p, "a") == 0)
      mode = MODE_ALL;
    else
      return luaL_argerror(L, 2, "invalid receive pattern");
  }
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TSTRING);
    /* LuaSocket 3 counts the prefix in n: receive(10, "123456") reads 4
       more bytes, and a prefix of n bytes or more is returned as is. */
    if (mode == MODE_COUNT) {
      size_t plen = lua_rawlen(L, 3);
      count = count > plen ? count - plen : 0;
    }
  }
  lua_settop(L, 3);
  return recv_start(L, mode, count, sock_receive);
}


/***
** sock:recv([max=65536]): whatever is available, at least one byte and at
** most max; waits if nothing is. nil, err at the end of the stream.
*/
static int sock_recv(lua_State *L) {
  lua_Integer max;
  lgreen_sock_checkstream(L);
  max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "positive size expected");
  lua_settop(L, 2);
  lua_pushnil(L); /* no prefix */
  return recv_start(L, MODE_SOME, (size_t)max, sock_recv);
}

/* }====================================================== */


/*
** {======================================================
** send, sendall
** =======================================================
*/

/* send: the last index sent; sendall: true. Failures: nil, err, last. */
static int send_done(lua_State *L, int all, int err, size_t pos) {
  if (err == 0) {
    if (all)
      lua_pushboolean(L, 1);
    else
      lua_pushinteger(L, (lua_Integer)pos);
    return 1;
  }
  lgreen_sock_fail(L, err);
  lua_pushinteger(L, (lua_Integer)pos);
  return 3;
}


/* Wait for room; stack [sock, data, pos, end, all], the deadline in
   'ctx'. */
static int send_wait(lua_State *L, lstream *x, int all, lua_KContext ctx);


static int send_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s; /* an interrupted send leaves what it queued queued */
  int outcome = lgreen_sock_resumed(L, lgreen_sock_leave, &s);
  size_t pos = (size_t)lua_tointeger(L, 3), end = (size_t)lua_tointeger(L, 4);
  int all = lua_toboolean(L, 5);
  lstream *x = LSTREAM(s);
  (void)status;
  if (outcome != GL_W_OK) /* "closed", "timeout" */
    return send_done(L, all, outcome, pos);
  write_some(x, lua_tostring(L, 2), &pos, end);
  if (pos == end || x->werr != 0) {
    lgreen_sock_leave(lgreen_sock_self(L));
    return send_done(L, all, pos == end ? 0 : x->werr, pos);
  }
  lua_pushinteger(L, (lua_Integer)pos);
  lua_replace(L, 3);
  return send_wait(L, x, all, ctx);
}


static int send_wait(lua_State *L, lstream *x, int all, lua_KContext ctx) {
  return lgreen_sock_wait(L, &x->base, &x->base.writers,
                          all ? "socket:sendall" : "socket:send",
                          lgreen_sock_leave, (uint64_t)ctx, send_k, ctx);
}


/* Stack: [sock, data, i, j] (send) or [sock, data] (sendall). Sends bytes
   [pos, end) of data. */
static int send_start(lua_State *L, size_t pos, size_t end, int all,
                      lua_CFunction again) {
  lstream *x = LSTREAM(lgreen_sock_get((lsock **)lua_touserdata(L, 1)));
  const char *data = lua_tostring(L, 2);
  uint64_t due;
  if (x == NULL || (x->base.flags & LSOCK_SHUT_WR))
    return send_done(L, all, UV_EOF, pos);
  if (x->base.flags & LSOCK_LISTENING)
    return luaL_error(L, "cannot send on a listening socket");
  if (lgreen_sock_first(L, &x->base, &x->base.writers, "write")) {
    if (lgreen_sock_unfair(L, &x->base))
      return lgreen_sock_yield(L, again);
    write_some(x, data, &pos, end);
    if (pos < end && x->werr == 0 && x->base.timeout == 0 &&
        lgreen_stream_queued(&x->base) > 0) {
      /* Never waits, but what earlier calls queued goes first, and only
         the hub's poll writes it: poll once, without waiting, so a
         polling loop (settimeout(0), retry on "timeout") progresses as
         LuaSocket's does, then take what fits behind it. */
      lgreen_sock_poll(&x->base);
      if (lgreen_sock_get((lsock **)lua_touserdata(L, 1)) != &x->base)
        return send_done(L, all, UV_EOF, pos);
      write_some(x, data, &pos, end);
    }
    if (pos == end || x->werr != 0 || x->base.timeout == 0) {
      x->base.streak++; /* a polling loop yields now and then too */
      return send_done(L, all,
                       pos == end ? 0 : x->werr ? x->werr : UV_ETIMEDOUT,
                       pos);
    }
  } else if (x->base.timeout == 0) {
    return send_done(L, all, UV_ETIMEDOUT, pos);
  }
  lua_settop(L, 2);
  lua_pushinteger(L, (lua_Integer)pos);
  lua_pushinteger(L, (lua_Integer)end);
  lua_pushboolean(L, all);
  due = lgreen_sock_deadline(x->base.timeout);
  return send_wait(L, x, all, (lua_KContext)due);
}


/***
** sock:send(data, [i=1], [j=-1]): send data:sub(i, j). Returns the index
** of the last byte sent (j), or nil, err, last index sent. Waits while
** the socket's write queue is full (a slow peer).
*/
static int sock_send(lua_State *L) {
  size_t len;
  lua_Integer i, j;
  lgreen_sock_checkstream(L);
  luaL_checklstring(L, 2, &len);
  i = luaL_optinteger(L, 3, 1);
  j = luaL_optinteger(L, 4, -1);
  if (i < 0)
    i = (lua_Integer)len + i + 1;
  if (i < 1)
    i = 1;
  if (j < 0)
    j = (lua_Integer)len + j + 1;
  if (j > (lua_Integer)len)
    j = (lua_Integer)len;
  if (j < i - 1)
    j = i - 1;
  lua_settop(L, 4);
  return send_start(L, (size_t)(i - 1), (size_t)j, 0, sock_send);
}


/***
** sock:sendall(data): send all of data. Returns true, or nil, err, the
** index of the last byte sent.
*/
static int sock_sendall(lua_State *L) {
  size_t len;
  lgreen_sock_checkstream(L);
  luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  return send_start(L, 0, len, 1, sock_sendall);
}

/* }====================================================== */


/***
** sock:setlimit([bytes]): the most bytes one receive may gather (the
** line, everything, or the count); beyond it receive returns nil,
** "too long", partial. nil or math.huge: no limit. Accepted sockets take
** their listening socket's limit. Returns 1.
*/
static int sock_setlimit(lua_State *L) {
  lsock **pp = lgreen_sock_checkstream(L);
  size_t limit = SIZE_MAX;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number n = luaL_checknumber(L, 2);
    luaL_argcheck(L, n >= 0, 2, "non-negative number of bytes expected");
    if (n < (lua_Number)SIZE_MAX / 2)
      limit = (size_t)n;
  }
  if (*pp != NULL)
    LSTREAM(*pp)->limit = limit;
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:getlimit(): the receive limit in bytes, or nil for none. */
static int sock_getlimit(lua_State *L) {
  lstream *x = LSTREAM(*lgreen_sock_checkstream(L));
  if (x == NULL || x->limit == SIZE_MAX)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)x->limit);
  return 1;
}


/* sock:shutdown([how="both"]): "send", "receive" or "both". */
static int sock_shutdown(lua_State *L) {
  static const char *const hows[] = {"both", "send", "receive", NULL};
  lstream *x = LSTREAM(*lgreen_sock_checkstream(L));
  int how = luaL_checkoption(L, 2, "both", hows);
  if (x == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  /* Not on a server: Linux takes shutdown(SHUT_RD) on a listening socket
     as a disconnect, and it stopped listening (connections refused) while
     still reading "listening". */
  if (x->base.flags & LSOCK_LISTENING)
    return lgreen_sock_fail(L, UV_ENOTCONN);
  if (how != 2 && !(x->base.flags & LSOCK_SHUT_WR)) {
    uv_shutdown_t *req = (uv_shutdown_t *)malloc(sizeof(*req));
    int r;
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    r = uv_shutdown(req, &x->h.stream, on_shutdown);
    if (r < 0) {
      free(req);
      return lgreen_sock_fail(L, r);
    }
    x->base.flags |= LSOCK_SHUT_WR;
  }
  if (how != 1 && x->rerr == 0) {
    uv_os_fd_t fd;
    if (uv_fileno(&x->h.handle, &fd) == 0)
      shutdown(fd, SHUT_RD);
    x->rerr = UV_EOF;
    lgreen_stream_watched(&x->base);
    lgreen_sock_kick_readers(&x->base);
  }
  lua_pushinteger(L, 1);
  return 1;
}


/* The methods only stream sockets (TCP, Unix) have (conn.c adds accept). */
static const luaL_Reg stream_meth[] = {
    {"receive", sock_receive},
    {"recv", sock_recv},
    {"send", sock_send},
    {"sendall", sock_sendall},
    {"shutdown", sock_shutdown},
    {"setlimit", sock_setlimit},
    {"getlimit", sock_getlimit},
    {NULL, NULL},
};


/* [-0, +0, m] The 'green.socket' metatable. */
void lgreen_open_stream(lua_State *L, gl_hub_t *hub) {
  lsock_state *st;
  (void)hub;
  lgreen_sock_pushstate(L);
  st = (lsock_state *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  st->mt_stream = lgreen_sock_newmeta(L, LGREEN_SOCKET, stream_meth);
}
