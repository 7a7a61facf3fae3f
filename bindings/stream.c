/*
** stream.c: the stream side of green sockets (TCP and Unix-domain, any
** uv_stream_t): read buffering, receive/recv, send/sendall, shutdown. See
** lsocket.h for the records and the other socket files, DESIGN.md
** ("Sockets") for the contract.
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
** amount of memory. close() with queued bytes lets them flush first (see
** 'lgreen_sock_shut' in socket.c).
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lsocket.h"

/* Read ahead up to this much with nobody receiving, then stop reading. */
#define READ_HIGH (64 * 1024)
/* Bytes queued in uv_write requests per socket before a writer waits. */
#define WRITE_HIGH LSOCK_WRITE_HIGH

/*
** {======================================================
** Buffer, reading and writing (no Lua code runs here)
** =======================================================
*/

static int append(lsock *s, const char *p, size_t n) {
  if (s->off + s->len + n > s->cap) {
    if (s->off > 0) {
      memmove(s->buf, s->buf + s->off, s->len);
      s->off = 0;
    }
    if (s->len + n > s->cap) {
      size_t cap = s->cap ? s->cap : 512;
      char *nb;
      while (cap < s->len + n)
        cap *= 2;
      nb = (char *)realloc(s->buf, cap);
      if (nb == NULL)
        return UV_ENOMEM;
      s->buf = nb;
      s->cap = cap;
    }
  }
  memcpy(s->buf + s->off + s->len, p, n);
  s->len += n;
  return 0;
}


/* Drop 'n' bytes from the front; an empty buffer is freed. Nothing to do
   on a socket closed meanwhile (its buffer is gone). */
static void consume(lsock *s, size_t n) {
  if (s->flags & LSOCK_CLOSED)
    return;
  s->off += n;
  s->len -= n;
  if (s->len == 0) {
    free(s->buf);
    s->buf = NULL;
    s->off = s->cap = 0;
  }
}


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  lsock *s = (lsock *)h->data;
  (void)hint;
  *b = uv_buf_init(s->st->scratch, sizeof(s->st->scratch));
}


static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b);

/* Start or stop reading ahead (see the header comment). */
void lgreen_stream_maybe_read(lsock *s) {
  int want = (s->flags & LSOCK_STREAM) && !(s->flags & LSOCK_CLOSED) &&
             s->rerr == 0 &&
             (!gl_link_empty(&s->readers) || s->len < READ_HIGH);
  if (want && !(s->flags & LSOCK_READING)) {
    int r = uv_read_start(&s->h.stream, on_alloc, on_read);
    if (r < 0)
      s->rerr = r;
    else
      s->flags |= LSOCK_READING;
  } else if (!want && (s->flags & LSOCK_READING)) {
    uv_read_stop(&s->h.stream);
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


static int plan_fail(lsock *s, int mode, int err, plan *p) {
  p->kind = P_FAIL;
  p->err = err;
  p->n = p->skip = mode == LSOCK_SOME ? 0 : s->len;
  return P_FAIL;
}


/* The receive limit is exceeded: fail with the first 'limit' bytes. */
static int plan_toolong(lsock *s, plan *p) {
  p->kind = P_FAIL;
  p->err = LSOCK_ETOOLONG;
  p->n = p->skip = s->limit < s->len ? s->limit : s->len;
  return P_FAIL;
}


/* Can a read in 'mode' complete from the buffer? Never changes it. */
static int plan_read(lsock *s, int mode, size_t count, size_t *scanned,
                     plan *p) {
  const char *b = s->buf + s->off;
  size_t len = s->len;
  p->err = 0;
  switch (mode) {
  case LSOCK_LINE: {
    const char *nl = NULL;
    if (len > *scanned)
      nl = (const char *)memchr(b + *scanned, '\n', len - *scanned);
    if (nl != NULL && (size_t)(nl - b) <= s->limit) {
      p->n = (size_t)(nl - b);
      p->skip = p->n + 1;
      return p->kind = P_DATA;
    }
    if (len > s->limit) /* no end of line within the limit */
      return plan_toolong(s, p);
    *scanned = len;
    break;
  }
  case LSOCK_COUNT:
    if (count > s->limit) { /* refused at once, taking nothing */
      plan_toolong(s, p);
      p->n = p->skip = 0;
      return P_FAIL;
    }
    if (len >= count) {
      p->n = p->skip = count;
      return p->kind = P_DATA;
    }
    break;
  case LSOCK_SOME:
    if (len > 0) {
      p->n = p->skip = len < count ? len : count;
      return p->kind = P_DATA;
    }
    break;
  default: /* LSOCK_ALL: only the end of the stream completes it */
    if (len > s->limit)
      return plan_toolong(s, p);
    break;
  }
  if (s->rerr != 0) {
    /* "*a" returns what it found before the end; nothing at all is
       "closed", as LuaSocket's recvall has it (so `repeat ... until not
       data` loops end). */
    if (mode == LSOCK_ALL && s->rerr == UV_EOF && len > 0) {
      p->n = p->skip = len;
      return p->kind = P_DATA;
    }
    return plan_fail(s, mode, s->rerr, p);
  }
  return p->kind = P_WAIT;
}


/* Would waiter 'w' (receive, recv, accept) complete now? */
int lgreen_stream_readable(lsock *s, lsock_waiter *w) {
  plan p;
  if (w->mode == LSOCK_ACCEPT)
    return s->pending != 0;
  return plan_read(s, w->mode, w->count, &w->scanned, &p) != P_WAIT;
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

static int pull(lsock *s, int mode, size_t count, size_t *scanned, plan *p) {
  char *scratch = s->st->scratch;
  size_t got = 0;
  uv_os_fd_t fd;
  int kind = P_WAIT;
  if (s->rerr != 0 || !(s->flags & LSOCK_STREAM) ||
      uv_fileno(&s->h.handle, &fd) < 0)
    return kind;
  while (kind == P_WAIT && got < PULL_MAX) {
    ssize_t n;
    do /* libuv keeps every stream's descriptor non-blocking */
      n = read(fd, scratch, sizeof(s->st->scratch));
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n < 0)
      s->rerr = uv_translate_sys_error(errno);
    else if (n == 0)
      s->rerr = UV_EOF;
    else if (append(s, scratch, (size_t)n) < 0)
      s->rerr = UV_ENOMEM;
    else {
      s->nrecv += (uint64_t)n;
      got += (size_t)n;
    }
    kind = plan_read(s, mode, count, scanned, p);
  }
  if (s->rerr != 0)
    lgreen_sock_kick_readers(s); /* a select waiting elsewhere */
  return kind;
}


size_t lgreen_stream_queued(lsock *s) {
  return uv_stream_get_write_queue_size(&s->h.stream);
}



static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  lsock *s = (lsock *)h->data;
  if (n > 0) {
    s->nrecv += (uint64_t)n;
    if (append(s, b->base, (size_t)n) < 0)
      s->rerr = UV_ENOMEM;
  } else if (n < 0) {
    s->rerr = (int)n;
  }
  lgreen_sock_kick_readers(s);
  lgreen_stream_maybe_read(s);
}


static void on_write(uv_write_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED && s->werr == 0)
    s->werr = status;
  if (s->flags & LSOCK_CLOSED)
    return;
  if (s->werr != 0 ||
      uv_stream_get_write_queue_size(&s->h.stream) < WRITE_HIGH / 2)
    lgreen_sock_kick_writers(s); /* and writable for green.select */
}


/*
** Hand data[*pos, end) to the kernel or the write queue, as far as the
** WRITE_HIGH bound allows; advances '*pos'. Sets 's->werr' on failure.
*/
static void write_some(lsock *s, const char *data, size_t *pos, size_t end) {
  uv_stream_t *st = &s->h.stream;
  while (*pos < end && s->werr == 0) {
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
        s->nsent += (uint64_t)r;
        continue;
      }
      if (r != UV_EAGAIN && r != UV_ENOSYS) {
        s->werr = r;
        break;
      }
    }
    if (q >= WRITE_HIGH)
      break; /* the caller waits for on_write */
    if (n > WRITE_HIGH - q)
      n = WRITE_HIGH - q;
    req = (uv_write_t *)malloc(sizeof(*req) + n);
    if (req == NULL) {
      s->werr = UV_ENOMEM;
      break;
    }
    memcpy(req + 1, data + *pos, n);
    b = uv_buf_init((char *)(req + 1), (unsigned)n);
    r = uv_write(req, st, &b, 1, on_write);
    if (r < 0) {
      free(req);
      s->werr = r;
      break;
    }
    *pos += n;
    s->nsent += (uint64_t)n;
  }
}

/* }====================================================== */


/*
** [-0, +1, m] Push prefix (index 3, if a string) .. the first 'n' bytes of
** the socket's buffer, every CR dropped if 'line' (as LuaSocket's line
** mode does), then consume 'skip' bytes. The bytes are copied into a Lua
** string before anything else allocates: an allocation can run a
** finalizer that closes the socket and frees its buffer.
*/
static void push_take(lua_State *L, lsock *s, size_t n, size_t skip,
                      int line) {
  char *p = s->buf + s->off;
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
  consume(s, skip);
  if (lua_type(L, 3) == LUA_TSTRING) {
    lua_pushvalue(L, 3);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
}


/* Push the outcome of a plan (not P_WAIT) and consume its bytes. */
static int push_plan(lua_State *L, lsock *s, int mode, plan *p) {
  if (p->kind == P_DATA) {
    push_take(L, s, p->n, p->skip, mode == LSOCK_LINE);
    return 1;
  }
  if (mode == LSOCK_SOME) {
    luaL_pushfail(L);
    lua_pushstring(L, lgreen_sock_strerror(p->err));
    return 2;
  }
  push_take(L, s, p->n, p->skip, mode == LSOCK_LINE); /* the partial first */
  luaL_pushfail(L);
  lua_insert(L, -2);
  lua_pushstring(L, lgreen_sock_strerror(p->err));
  lua_insert(L, -2);
  return 3;
}


static int push_closed(lua_State *L, int mode) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  if (mode == LSOCK_SOME || mode == LSOCK_ACCEPT)
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

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_waiter *w = (lsock_waiter *)ctx;
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  plan p;
  int n;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(w); /* killed after being woken: take nothing */
  lgreen_resumed(L, t);
  if (s == NULL || w->base.status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return push_closed(L, w->mode);
  }
  if (w->base.status == LSOCK_W_TIMEOUT) { /* LuaSocket: return the partial */
    plan_fail(s, w->mode, UV_ETIMEDOUT, &p);
    n = push_plan(L, s, w->mode, &p);
    lgreen_stream_maybe_read(s);
    return n;
  }
  if (plan_read(s, w->mode, w->count, &w->scanned, &p) != P_WAIT) {
    /* Out of the queue before pushing (which may raise), then hand the
       socket to the next reader. */
    gl_link_remove(&w->base.link);
    w->s = NULL;
    n = push_plan(L, s, w->mode, &p);
    lgreen_sock_kick_readers(s);
    lgreen_stream_maybe_read(s);
    lgreen_sock_reref(s);
    return n;
  }
  /* Woken, but the data is not all there yet: wait again, first in line. */
  t = lgreen_begin(L, hub, "socket:receive");
  lgreen_stream_maybe_read(s);
  lgreen_sock_suspend(L, w, t, "socket:receive");
  lgreen_sock_reref(s);
  return lgreen_block(L, t, recv_k, ctx);
}


/* Stack: [sock, pattern-or-max, prefix-or-nil]. */
static int recv_start(lua_State *L, int mode, size_t count, int which) {
  gl_hub_t *hub = lgreen_hub(L);
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  lsock_waiter *w;
  gl_thread_t *t;
  plan p;
  if (s == NULL)
    return push_closed(L, mode);
  if (s->flags & LSOCK_LISTENING)
    return luaL_error(L, "cannot receive on a listening socket");
  if (mode == LSOCK_COUNT && count == 0) {
    if (lua_type(L, 3) != LUA_TSTRING)
      lua_pushliteral(L, "");
    return 1; /* the prefix, or "" */
  }
  if (gl_link_empty(&s->readers)) {
    size_t scanned = 0;
    if (s->streak >= LSOCK_FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub, which);
    }
    if (plan_read(s, mode, count, &scanned, &p) != P_WAIT) {
      int n = push_plan(L, s, mode, &p);
      s->streak++;
      lgreen_stream_maybe_read(s);
      return n;
    }
    if (s->timeout == 0) { /* never waits: the kernel, then the partial */
      int n;
      if (pull(s, mode, count, &scanned, &p) == P_WAIT)
        plan_fail(s, mode, UV_ETIMEDOUT, &p);
      s->streak++; /* a polling loop yields now and then (fairness) */
      n = push_plan(L, s, mode, &p);
      lgreen_stream_maybe_read(s);
      return n;
    }
  } else if (s->st->prevent) {
    return lgreen_sock_simultaneous(L, s, &s->readers, "read");
  } else if (s->timeout == 0) {
    plan_fail(s, mode, UV_ETIMEDOUT, &p);
    p.n = p.skip = 0; /* the bytes belong to the readers in line */
    return push_plan(L, s, mode, &p);
  }
  t = lgreen_begin(L, hub, "socket:receive");
  w = lgreen_sock_newwaiter(L, (lsock **)lua_touserdata(L, 1), mode);
  w->count = count;
  if (w->s == NULL) /* a finalizer closed it */
    return recv_k(L, LUA_YIELD, (lua_KContext)w);
  return lgreen_sock_block_reader(L, w->s, w, t, "socket:receive",
                                  lgreen_stream_maybe_read, recv_k);
}


/***
** sock:receive([pattern="*l"], [prefix]): "*l"/"l" a line (without the
** end of line; every CR dropped, as LuaSocket does), "*a"/"a" everything
** up to the end of the stream (nil, "closed" if that is nothing), n
** bytes up to a total of n, the prefix included. Returns prefix .. data,
** or nil, err, prefix .. partial (the partial is consumed). With timeout
** 0 it takes what the kernel holds now, as LuaSocket does.
*/
int lgreen_stream_receive(lua_State *L) {
  int mode;
  size_t count = 0;
  lgreen_sock_checkstream(L);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative byte count");
    mode = LSOCK_COUNT;
    count = (size_t)n;
  } else {
    const char *p = luaL_optstring(L, 2, "*l");
    if (*p == '*')
      p++;
    if (strcmp(p, "l") == 0)
      mode = LSOCK_LINE;
    else if (strcmp(p, "a") == 0)
      mode = LSOCK_ALL;
    else
      return luaL_argerror(L, 2, "invalid receive pattern");
  }
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TSTRING);
    /* LuaSocket 3 counts the prefix in n: receive(10, "123456") reads 4
       more bytes, and a prefix of n bytes or more is returned as is. */
    if (mode == LSOCK_COUNT) {
      size_t plen = lua_rawlen(L, 3);
      count = count > plen ? count - plen : 0;
    }
  }
  lua_settop(L, 3);
  return recv_start(L, mode, count, LSOCK_FAIR_RECEIVE);
}


/***
** sock:recv([max=65536]): whatever is available, at least one byte and at
** most max; waits if nothing is. nil, err at the end of the stream.
*/
int lgreen_stream_recv(lua_State *L) {
  lua_Integer max;
  lgreen_sock_checkstream(L);
  max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "positive size expected");
  lua_settop(L, 2);
  lua_pushnil(L); /* no prefix */
  return recv_start(L, LSOCK_SOME, (size_t)max, LSOCK_FAIR_RECV);
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
  luaL_pushfail(L);
  lua_pushstring(L, lgreen_sock_strerror(err));
  lua_pushinteger(L, (lua_Integer)pos);
  return 3;
}


static int send_k(lua_State *L, int status, lua_KContext ctx) {
  lsock_waiter *w = (lsock_waiter *)ctx;
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  const char *data;
  (void)status;
  if (t->flags & GL_F_PENDING)
    lgreen_sock_leave(w); /* what was queued stays queued */
  lgreen_resumed(L, t);
  if (s == NULL || w->base.status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return send_done(L, w->all, UV_EOF, w->pos);
  }
  if (w->base.status == LSOCK_W_TIMEOUT)
    return send_done(L, w->all, UV_ETIMEDOUT, w->pos);
  data = lua_tostring(L, 2);
  write_some(s, data, &w->pos, w->end);
  if (w->pos == w->end || s->werr != 0) {
    lgreen_sock_leave(w);
    return send_done(L, w->all, w->pos == w->end ? 0 : s->werr, w->pos);
  }
  t = lgreen_begin(L, hub, w->all ? "socket:sendall" : "socket:send");
  lgreen_sock_suspend(L, w, t, w->all ? "socket:sendall" : "socket:send");
  lgreen_sock_reref(s);
  return lgreen_block(L, t, send_k, ctx);
}


/* Stack: [sock, data, i, j] (send) or [sock, data] (sendall). */
static int send_start(lua_State *L, size_t pos, size_t end, int all) {
  gl_hub_t *hub = lgreen_hub(L);
  lsock *s = *(lsock **)lua_touserdata(L, 1);
  const char *data = lua_tostring(L, 2);
  const char *what = all ? "socket:sendall" : "socket:send";
  lsock_waiter *w;
  gl_thread_t *t;
  if (s == NULL || (s->flags & LSOCK_SHUT_WR))
    return send_done(L, all, UV_EOF, pos);
  if (s->flags & LSOCK_LISTENING)
    return luaL_error(L, "cannot send on a listening socket");
  if (gl_link_empty(&s->writers)) {
    if (s->streak >= LSOCK_FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub,
                              all ? LSOCK_FAIR_SENDALL : LSOCK_FAIR_SEND);
    }
    write_some(s, data, &pos, end);
    if (pos == end) {
      s->streak++;
      return send_done(L, all, 0, pos);
    }
    if (s->werr == 0 && s->timeout == 0 && lgreen_stream_queued(s) > 0) {
      /* Never waits, but what earlier calls queued goes first, and only
         the hub's poll writes it: poll once, without waiting, so a
         polling loop (settimeout(0), retry on "timeout") progresses as
         LuaSocket's does, then take what fits behind it. */
      lgreen_sock_poll(s);
      if (*(lsock **)lua_touserdata(L, 1) != s)
        return send_done(L, all, UV_EOF, pos);
      write_some(s, data, &pos, end);
      if (pos == end) {
        s->streak++;
        return send_done(L, all, 0, pos);
      }
    }
    if (s->werr != 0)
      return send_done(L, all, s->werr, pos);
    if (s->timeout == 0) {
      s->streak++; /* a polling loop yields now and then (fairness) */
      return send_done(L, all, UV_ETIMEDOUT, pos);
    }
  } else if (s->st->prevent) {
    return lgreen_sock_simultaneous(L, s, &s->writers, "write");
  } else if (s->timeout == 0) {
    return send_done(L, all, UV_ETIMEDOUT, pos);
  }
  t = lgreen_begin(L, hub, what);
  w = lgreen_sock_newwaiter(L, (lsock **)lua_touserdata(L, 1), LSOCK_WRITE);
  w->pos = pos;
  w->end = end;
  w->all = all;
  if ((s = w->s) == NULL) /* a finalizer closed it */
    return send_k(L, LUA_YIELD, (lua_KContext)w);
  w->due = lgreen_sock_deadline(s->timeout);
  gl_link_push(&s->writers, &w->base.link);
  s->streak = 0;
  lgreen_sock_suspend(L, w, t, what);
  lgreen_sock_reref(s);
  return lgreen_block(L, t, send_k, (lua_KContext)w);
}


/***
** sock:send(data, [i=1], [j=-1]): send data:sub(i, j). Returns the index
** of the last byte sent (j), or nil, err, last index sent. Waits while
** the socket's write queue is full (a slow peer).
*/
int lgreen_stream_send(lua_State *L) {
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
  return send_start(L, (size_t)(i - 1), (size_t)j, 0);
}


/***
** sock:sendall(data): send all of data. Returns true, or nil, err, the
** index of the last byte sent.
*/
int lgreen_stream_sendall(lua_State *L) {
  size_t len;
  lgreen_sock_checkstream(L);
  luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  return send_start(L, 0, len, 1);
}

/* }====================================================== */


/***
** sock:setlimit([bytes]): the most bytes one receive may gather (the
** line, everything, or the count); beyond it receive returns nil,
** "too long", partial. nil or math.huge: no limit. Accepted sockets take
** their listening socket's limit. Returns 1.
*/
int lgreen_stream_setlimit(lua_State *L) {
  lsock **pp = lgreen_sock_checkstream(L);
  size_t limit = SIZE_MAX;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number n = luaL_checknumber(L, 2);
    luaL_argcheck(L, n >= 0, 2, "non-negative number of bytes expected");
    if (n < (lua_Number)SIZE_MAX / 2)
      limit = (size_t)n;
  }
  if (*pp != NULL)
    (*pp)->limit = limit;
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:getlimit(): the receive limit in bytes, or nil for none. */
int lgreen_stream_getlimit(lua_State *L) {
  lsock *s = *lgreen_sock_checkstream(L);
  if (s == NULL || s->limit == SIZE_MAX)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)s->limit);
  return 1;
}


/* sock:shutdown([how="both"]): "send", "receive" or "both". */
int lgreen_stream_shutdown(lua_State *L) {
  static const char *const hows[] = {"both", "send", "receive", NULL};
  lsock *s = *lgreen_sock_checkstream(L);
  int how = luaL_checkoption(L, 2, "both", hows);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (how != 2 && !(s->flags & LSOCK_SHUT_WR)) {
    uv_shutdown_t *req = (uv_shutdown_t *)malloc(sizeof(*req));
    int r;
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    r = uv_shutdown(req, &s->h.stream, lgreen_stream_on_shutdown);
    if (r < 0) {
      free(req);
      return lgreen_sock_fail(L, r);
    }
    s->flags |= LSOCK_SHUT_WR;
  }
  if (how != 1 && s->rerr == 0) {
    uv_os_fd_t fd;
    if (uv_fileno(&s->h.handle, &fd) == 0)
      shutdown(fd, SHUT_RD);
    s->rerr = UV_EOF;
    lgreen_stream_maybe_read(s);
    lgreen_sock_kick_readers(s);
  }
  lua_pushinteger(L, 1);
  return 1;
}

