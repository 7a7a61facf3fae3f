/*
** socket.c: green sockets ('green.socket' userdata over uv_tcp_t), the
** stream part: read buffering, receive/recv, send/sendall, close, options.
** DNS, connect, listen and accept are in tcp.c. See lsocket.h for the
** records and DESIGN.md ("Sockets") for the contract.
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
** bytes stay for the next owner.
**
** Writing. send() first tries uv_try_write (no copy); what the kernel
** does not take is copied into uv_write requests, at most WRITE_HIGH bytes
** queued per socket. A writer that would queue more waits until the queue
** drains below half of that, so a peer that never reads costs a bounded
** amount of memory. close() with queued bytes lets them flush first (the
** handle "lingers", not keeping the hub alive) and closes after.
**
** Waiting. Each socket has two FIFO queues of waiter records, readers
** (receive, recv, accept) and writers. The head of a queue owns that
** direction; only the head is ever woken with READY. A second thread that
** calls receive while a read is under way gets eventlet's "Second
** simultaneous read" error unless green.debug.hub_prevent_multiple_readers
** is off, in which case it queues behind. A socket's handle keeps the hub
** alive (uv_ref) only while some thread waits on it.
*/
#include <signal.h>
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
** Fairness: after this many socket operations in a row on one socket that
** completed without blocking, the next one first yields to the hub (like
** sleep(0)), so a connection that always has data ready cannot starve the
** other threads and the poller. libuv reads 32 times per readiness event
** for the same reason. Per socket rather than per thread: a thread
** serving many sockets round-robin blocks on some of them anyway.
*/
#define FAIR_BUDGET 64

#define STATE_KEY "green.socket.state"


static lsock **checkud(lua_State *L) {
  return (lsock **)luaL_checkudata(L, 1, LGREEN_SOCKET);
}


/*
** {======================================================
** Buffer and waiters (no Lua code runs here)
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


/* Drop 'n' bytes from the front; an empty buffer is freed. */
static void consume(lsock *s, size_t n) {
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
static void maybe_read(lsock *s) {
  int want = (s->flags & LSOCK_STREAM) && !(s->flags & LSOCK_CLOSED) &&
             s->rerr == 0 &&
             (!gl_link_empty(&s->readers) || s->len < READ_HIGH);
  if (want && !(s->flags & LSOCK_READING)) {
    int r = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (r < 0)
      s->rerr = r;
    else
      s->flags |= LSOCK_READING;
  } else if (!want && (s->flags & LSOCK_READING)) {
    uv_read_stop((uv_stream_t *)&s->tcp);
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
    if (nl != NULL) {
      p->n = (size_t)(nl - b);
      p->skip = p->n + 1;
      return p->kind = P_DATA;
    }
    *scanned = len;
    break;
  }
  case LSOCK_COUNT:
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
    break;
  }
  if (s->rerr != 0) {
    if (mode == LSOCK_ALL && s->rerr == UV_EOF) {
      p->n = p->skip = len;
      return p->kind = P_DATA;
    }
    return plan_fail(s, mode, s->rerr, p);
  }
  return p->kind = P_WAIT;
}


static int ready(lsock *s, lsock_waiter *w) {
  plan p;
  if (w->mode == LSOCK_ACCEPT)
    return s->pending != 0;
  return plan_read(s, w->mode, w->count, &w->scanned, &p) != P_WAIT;
}


/* End the suspension (the ring and the deadline), not the queue place. */
static void unsuspend(lsock_waiter *w) {
  if (w->susp) {
    w->susp = 0;
    gl_link_remove(&w->t->wlink);
    gl_timer_stop(w->t->hub, &w->t->timer);
  }
}


void lgreen_sock_wake(lsock_waiter *w, int status) {
  if (!w->susp)
    return;
  unsuspend(w);
  w->status = status;
  gl_wake(w->t, 0);
}


void lgreen_sock_kick_readers(lsock *s) {
  lsock_waiter *w;
  if (gl_link_empty(&s->readers))
    return;
  w = GL_CONTAINER(s->readers.next, lsock_waiter, qlink);
  if (w->susp && ready(s, w))
    lgreen_sock_wake(w, LSOCK_W_READY);
}


static void kick_writers(lsock *s) {
  if (!gl_link_empty(&s->writers))
    lgreen_sock_wake(GL_CONTAINER(s->writers.next, lsock_waiter, qlink),
                     LSOCK_W_READY);
}


void lgreen_sock_reref(lsock *s) {
  uv_handle_t *h = (uv_handle_t *)&s->tcp;
  if (uv_is_closing(h) || (s->flags & LSOCK_CLOSED))
    return;
  if (!gl_link_empty(&s->readers) || !gl_link_empty(&s->writers) ||
      s->conn != NULL)
    uv_ref(h);
  else
    uv_unref(h);
}


/*
** The waiter gives up its call (kill, Timeout, socket timeout, or an
** error on its own path): leave the queue, pass ownership on, cancel a
** pending resolve or connect. Idempotent.
*/
void lgreen_sock_leave(lsock_waiter *w) {
  lsock *s = w->s;
  int head;
  unsuspend(w);
  if (w->res != NULL) { /* the callback frees it */
    w->res->w = NULL;
    uv_cancel((uv_req_t *)&w->res->req);
    w->res = NULL;
  }
  if (s == NULL)
    return;
  w->s = NULL;
  switch (w->mode) {
  case LSOCK_CONNECT: /* an abandoned connect closes its socket */
    if (s->conn == w)
      s->conn = NULL;
    lgreen_sock_shut(s);
    return;
  case LSOCK_WRITE:
    head = s->writers.next == &w->qlink;
    gl_link_remove(&w->qlink);
    if (head)
      kick_writers(s);
    break;
  default:
    head = s->readers.next == &w->qlink;
    gl_link_remove(&w->qlink);
    if (head)
      lgreen_sock_kick_readers(s);
    maybe_read(s);
    break;
  }
  lgreen_sock_reref(s);
}


/* The hub cancels a suspended call (kill, green.Timeout). */
static void wait_cancel(gl_thread_t *t) {
  lgreen_sock_leave(GL_CONTAINER(t->wlink.next, lsock_waiter, tlink));
}


/* The socket timeout of a suspended call expired. */
static void on_deadline(gl_timer_t *tm) {
  gl_thread_t *t = GL_CONTAINER(tm, gl_thread_t, timer);
  lsock_waiter *w = GL_CONTAINER(t->wlink.next, lsock_waiter, tlink);
  lgreen_sock_leave(w);
  w->status = LSOCK_W_TIMEOUT;
  gl_wake(t, 0);
}


uint64_t lgreen_sock_deadline(double timeout) {
  if (timeout < 0)
    return 0;
  if (timeout >= 1e9)
    return gl_now() + (uint64_t)1e18;
  return gl_now() + (uint64_t)(timeout * 1e9) + 1;
}


/* Arm the deadline of 'w' (if any); raises, after leaving, on ENOMEM. */
void lgreen_sock_arm(lua_State *L, lsock_waiter *w, gl_thread_t *t) {
  if (w->due != 0 &&
      gl_timer_start(t->hub, &t->timer, w->due, on_deadline) < 0) {
    lgreen_sock_leave(w);
    luaL_error(L, "not enough memory");
  }
}


/* Record the wait of 't' (after 'arm'); the caller then blocks. */
void lgreen_sock_suspend(lsock_waiter *w, gl_thread_t *t, const char *what) {
  w->t = t;
  w->susp = 1;
  w->status = LSOCK_W_NONE;
  gl_link_push(&w->tlink, &t->wlink);
  gl_suspend(t, what, wait_cancel);
}


/* [-0, +1, m] A new waiter record (not queued, not suspended). */
lsock_waiter *lgreen_sock_newwaiter(lua_State *L, lsock *s, int mode) {
  lsock_waiter *w =
      (lsock_waiter *)lua_newuserdatauv(L, sizeof(lsock_waiter), 0);
  memset(w, 0, sizeof(*w));
  gl_link_init(&w->tlink);
  gl_link_init(&w->qlink);
  w->s = s;
  w->mode = mode;
  return w;
}


static void wake_all(gl_link_t *q) {
  while (!gl_link_empty(q)) {
    lsock_waiter *w = GL_CONTAINER(q->next, lsock_waiter, qlink);
    gl_link_remove(&w->qlink);
    w->s = NULL;
    w->status = LSOCK_W_CLOSED;
    lgreen_sock_wake(w, LSOCK_W_CLOSED);
  }
}


static void on_close(uv_handle_t *h) {
  lsock *s = (lsock *)h->data;
  gl_link_remove(&s->linger);
  free(s->buf);
  free(s);
}


static void on_shutdown(uv_shutdown_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  uv_handle_t *h = (uv_handle_t *)&s->tcp;
  (void)status;
  free(req);
  if ((s->flags & LSOCK_CLOSED) && !uv_is_closing(h)) {
    gl_link_remove(&s->linger);
    uv_close(h, on_close);
  }
}


/*
** Close 's' without running Lua: mark the userdata closed, wake every
** waiter with "closed", and close the handle (memory freed in on_close).
** Bytes that send() accepted but the kernel has not taken yet are flushed
** first (on_shutdown closes); the lingering handle does not keep the hub
** alive, and the hub's finalizer closes what is still lingering.
*/
void lgreen_sock_shut(lsock *s) {
  uv_handle_t *h = (uv_handle_t *)&s->tcp;
  uv_stream_t *st = (uv_stream_t *)&s->tcp;
  if (s->flags & LSOCK_CLOSED)
    return;
  s->flags |= LSOCK_CLOSED;
  if (s->ud != NULL) {
    *s->ud = NULL;
    s->ud = NULL;
  }
  wake_all(&s->readers);
  wake_all(&s->writers);
  if (s->conn != NULL) {
    lsock_waiter *w = s->conn;
    s->conn = NULL;
    w->s = NULL;
    lgreen_sock_wake(w, LSOCK_W_CLOSED);
  }
  free(s->buf);
  s->buf = NULL;
  s->off = s->len = s->cap = 0;
  if (s->flags & LSOCK_READING) {
    uv_read_stop(st);
    s->flags &= ~LSOCK_READING;
  }
  if ((s->flags & LSOCK_STREAM) && s->werr == 0 &&
      uv_stream_get_write_queue_size(st) > 0) {
    gl_link_push(&s->st->lingering, &s->linger);
    uv_unref(h);
    if (s->flags & LSOCK_SHUT_WR)
      return; /* its shutdown is pending: on_shutdown closes */
    {
      uv_shutdown_t *req = (uv_shutdown_t *)malloc(sizeof(*req));
      if (req != NULL && uv_shutdown(req, st, on_shutdown) == 0) {
        s->flags |= LSOCK_SHUT_WR;
        return;
      }
      free(req);
    }
    gl_link_remove(&s->linger);
  }
  uv_close(h, on_close);
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
  maybe_read(s);
}


static void on_write(uv_write_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED && s->werr == 0)
    s->werr = status;
  if ((s->flags & LSOCK_CLOSED) || gl_link_empty(&s->writers))
    return;
  if (s->werr != 0 || uv_stream_get_write_queue_size(
                          (uv_stream_t *)&s->tcp) < WRITE_HIGH / 2)
    kick_writers(s);
}


/*
** Hand data[*pos, end) to the kernel or the write queue, as far as the
** WRITE_HIGH bound allows; advances '*pos'. Sets 's->werr' on failure.
*/
static void write_some(lsock *s, const char *data, size_t *pos, size_t end) {
  uv_stream_t *st = (uv_stream_t *)&s->tcp;
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
** {======================================================
** Results and errors
** =======================================================
*/

/* LuaSocket's messages for the errors a caller branches on. */
const char *lgreen_sock_strerror(int err) {
  switch (err) {
  case UV_EOF:
  case UV_ECANCELED:
  case UV_EPIPE:
  case UV_ENOTCONN:
  case UV_ECONNABORTED:
  case UV_EBADF:
    return "closed";
  case UV_ETIMEDOUT:
    return "timeout";
  case UV_ECONNREFUSED:
    return "connection refused";
  case UV_ECONNRESET:
    return "connection reset by peer";
  case UV_EADDRINUSE:
    return "address already in use";
  case UV_EACCES:
    return "permission denied";
  case UV_EAI_NONAME:
  case UV_EAI_NODATA:
  case UV_EAI_ADDRFAMILY:
  case UV_EAI_FAIL:
    return "host not found";
  default:
    return uv_strerror(err);
  }
}


int lgreen_sock_fail(lua_State *L, int err) {
  luaL_pushfail(L);
  lua_pushstring(L, lgreen_sock_strerror(err));
  return 2;
}


/* [-0, +1, m] prefix (index 3, if a string) .. data, CRs dropped if 'line'
   (LuaSocket's line mode drops every '\r'). */
static void push_data(lua_State *L, const char *p, size_t n, int line) {
  luaL_Buffer b;
  if (!line && lua_type(L, 3) != LUA_TSTRING) {
    lua_pushlstring(L, p, n);
    return;
  }
  luaL_buffinit(L, &b);
  if (lua_type(L, 3) == LUA_TSTRING) {
    lua_pushvalue(L, 3);
    luaL_addvalue(&b);
  }
  if (!line) {
    luaL_addlstring(&b, p, n);
  } else {
    const char *e = p + n;
    while (p < e) {
      const char *cr = (const char *)memchr(p, '\r', (size_t)(e - p));
      const char *stop = cr ? cr : e;
      luaL_addlstring(&b, p, (size_t)(stop - p));
      p = cr ? cr + 1 : e;
    }
  }
  luaL_pushresult(&b);
}


/* Push the outcome of a plan (not P_WAIT) and consume its bytes. */
static int push_plan(lua_State *L, lsock *s, int mode, plan *p) {
  int line = mode == LSOCK_LINE;
  if (p->kind == P_DATA) {
    push_data(L, s->buf + s->off, p->n, line);
    consume(s, p->skip);
    return 1;
  }
  luaL_pushfail(L);
  lua_pushstring(L, lgreen_sock_strerror(p->err));
  if (mode == LSOCK_SOME)
    return 2;
  push_data(L, s->buf + s->off, p->n, line);
  consume(s, p->skip);
  return 3;
}


static int push_closed(lua_State *L, int mode) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  if (mode == LSOCK_SOME || mode == LSOCK_ACCEPT)
    return 2;
  push_data(L, "", 0, 0);
  return 3;
}


int lgreen_sock_simultaneous(lua_State *L, lsock *s, gl_link_t *q,
                             const char *op) {
  lsock_waiter *other = GL_CONTAINER(q->next, lsock_waiter, qlink);
  gl_hub_t *hub = lgreen_hub(L);
  uv_os_fd_t fd = -1;
  const char *me = "?", *that;
  uv_fileno((uv_handle_t *)&s->tcp, &fd);
  if (hub->current != NULL) {
    lgreen_pushthread(L, hub->current);
    me = luaL_tolstring(L, -1, NULL);
  }
  lgreen_pushthread(L, other->t);
  that = luaL_tolstring(L, -1, NULL);
  return luaL_error(
      L,
      "Second simultaneous %s on fileno %d detected. Unless you really "
      "know what you're doing, make sure that only one green thread can "
      "%s any particular socket. Consider using a pools.Pool. If you do "
      "know what you're doing and want to disable this error, call "
      "green.debug.hub_prevent_multiple_readers(false) - MY THREAD=%s; "
      "THAT THREAD=%s",
      op, (int)fd, op, me, that);
}

/* }====================================================== */


/*
** {======================================================
** Fairness
** =======================================================
*/

/* Can the caller yield to the hub right now (without raising)? */
int lgreen_sock_can_yield(lua_State *L, gl_hub_t *hub) {
  gl_thread_t *t = hub->current;
  if (t == NULL || (t->flags & GL_F_KILLED))
    return 0;
  if (t->flags & GL_F_MAIN)
    return 1;
  return hub->nonyield == 0 && lua_isyieldable(L);
}


static int sock_receive(lua_State *L);
static int sock_recv(lua_State *L);
static int sock_send(lua_State *L);
static int sock_sendall(lua_State *L);

static const lua_CFunction fair_fns[] = {
    sock_receive, sock_recv, sock_send, sock_sendall, lgreen_sock_accept};


/* After the fairness yield, run the method again from the start. */
static int fair_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_resumed(L, lgreen_hub(L)->current);
  return fair_fns[ctx](L);
}


/* Yield like sleep(0), then re-run method 'which' (its arguments are
   still on the stack). The caller reset the socket's streak. */
int lgreen_sock_fair(lua_State *L, gl_hub_t *hub, int which) {
  gl_thread_t *t = lgreen_begin(L, hub, "socket (fairness yield)");
  t->state = GL_READY;
  gl_ready(t);
  return lgreen_block(L, t, fair_k, (lua_KContext)which);
}

/* }====================================================== */


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
  if (s == NULL || w->status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return push_closed(L, w->mode);
  }
  if (w->status == LSOCK_W_TIMEOUT) { /* LuaSocket: return the partial */
    plan_fail(s, w->mode, UV_ETIMEDOUT, &p);
    n = push_plan(L, s, w->mode, &p);
    maybe_read(s);
    return n;
  }
  if (plan_read(s, w->mode, w->count, &w->scanned, &p) != P_WAIT) {
    /* Out of the queue before pushing (which may raise), then hand the
       socket to the next reader. */
    gl_link_remove(&w->qlink);
    w->s = NULL;
    n = push_plan(L, s, w->mode, &p);
    lgreen_sock_kick_readers(s);
    maybe_read(s);
    lgreen_sock_reref(s);
    return n;
  }
  /* Woken, but the data is not all there yet: wait again, first in line. */
  t = lgreen_begin(L, hub, "socket:receive");
  lgreen_sock_arm(L, w, t);
  maybe_read(s);
  lgreen_sock_suspend(w, t, "socket:receive");
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
    push_data(L, "", 0, 0);
    return 1;
  }
  if (gl_link_empty(&s->readers)) {
    size_t scanned = 0;
    if (s->streak >= FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub, which);
    }
    if (plan_read(s, mode, count, &scanned, &p) != P_WAIT) {
      int n = push_plan(L, s, mode, &p);
      s->streak++;
      maybe_read(s);
      return n;
    }
    if (s->timeout == 0) { /* non-blocking: fail now with the partial */
      int n;
      plan_fail(s, mode, UV_ETIMEDOUT, &p);
      n = push_plan(L, s, mode, &p);
      maybe_read(s);
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
  w = lgreen_sock_newwaiter(L, s, mode);
  w->count = count;
  w->due = lgreen_sock_deadline(s->timeout);
  lgreen_sock_arm(L, w, t);
  gl_link_push(&s->readers, &w->qlink);
  s->streak = 0;
  maybe_read(s);
  lgreen_sock_suspend(w, t, "socket:receive");
  lgreen_sock_reref(s);
  lgreen_sock_kick_readers(s); /* a read error may already be there */
  return lgreen_block(L, t, recv_k, (lua_KContext)w);
}


/***
** sock:receive([pattern="*l"], [prefix]): "*l"/"l" a line (without the
** end of line; every CR dropped, as LuaSocket does), "*a"/"a" everything
** up to the end of the stream, n exactly n bytes. Returns prefix .. data,
** or nil, err, prefix .. partial (the partial is consumed).
*/
static int sock_receive(lua_State *L) {
  int mode;
  size_t count = 0;
  checkud(L);
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
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TSTRING);
  lua_settop(L, 3);
  return recv_start(L, mode, count, LSOCK_FAIR_RECEIVE);
}


/***
** sock:recv([max=65536]): whatever is available, at least one byte and at
** most max; waits if nothing is. nil, err at the end of the stream.
*/
static int sock_recv(lua_State *L) {
  lua_Integer max;
  checkud(L);
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
  if (s == NULL || w->status == LSOCK_W_CLOSED) {
    lgreen_sock_leave(w);
    return send_done(L, w->all, UV_EOF, w->pos);
  }
  if (w->status == LSOCK_W_TIMEOUT)
    return send_done(L, w->all, UV_ETIMEDOUT, w->pos);
  data = lua_tostring(L, 2);
  write_some(s, data, &w->pos, w->end);
  if (w->pos == w->end || s->werr != 0) {
    lgreen_sock_leave(w);
    return send_done(L, w->all, w->pos == w->end ? 0 : s->werr, w->pos);
  }
  t = lgreen_begin(L, hub, w->all ? "socket:sendall" : "socket:send");
  lgreen_sock_arm(L, w, t);
  lgreen_sock_suspend(w, t, w->all ? "socket:sendall" : "socket:send");
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
    if (s->streak >= FAIR_BUDGET && lgreen_sock_can_yield(L, hub)) {
      s->streak = 0;
      return lgreen_sock_fair(L, hub,
                              all ? LSOCK_FAIR_SENDALL : LSOCK_FAIR_SEND);
    }
    write_some(s, data, &pos, end);
    if (pos == end) {
      s->streak++;
      return send_done(L, all, 0, pos);
    }
    if (s->werr != 0)
      return send_done(L, all, s->werr, pos);
    if (s->timeout == 0)
      return send_done(L, all, UV_ETIMEDOUT, pos);
  } else if (s->st->prevent) {
    return lgreen_sock_simultaneous(L, s, &s->writers, "write");
  } else if (s->timeout == 0) {
    return send_done(L, all, UV_ETIMEDOUT, pos);
  }
  t = lgreen_begin(L, hub, what);
  w = lgreen_sock_newwaiter(L, s, LSOCK_WRITE);
  w->pos = pos;
  w->end = end;
  w->all = all;
  w->due = lgreen_sock_deadline(s->timeout);
  lgreen_sock_arm(L, w, t);
  gl_link_push(&s->writers, &w->qlink);
  s->streak = 0;
  lgreen_sock_suspend(w, t, what);
  lgreen_sock_reref(s);
  return lgreen_block(L, t, send_k, (lua_KContext)w);
}


/***
** sock:send(data, [i=1], [j=-1]): send data:sub(i, j). Returns the index
** of the last byte sent (j), or nil, err, last index sent. Waits while
** the socket's write queue is full (a slow peer).
*/
static int sock_send(lua_State *L) {
  size_t len;
  lua_Integer i, j;
  checkud(L);
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
static int sock_sendall(lua_State *L) {
  size_t len;
  checkud(L);
  luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  return send_start(L, 0, len, 1);
}

/* }====================================================== */


/*
** {======================================================
** Other methods
** =======================================================
*/

/* sock:close(): wakes every waiting thread with nil, "closed". */
static int sock_gc(lua_State *L) {
  lsock **pp = checkud(L);
  if (*pp != NULL)
    lgreen_sock_shut(*pp);
  return 0;
}


static int sock_close(lua_State *L) {
  sock_gc(L);
  lua_pushinteger(L, 1);
  return 1;
}


/* sock:settimeout(seconds, [mode]): nil or negative blocks forever; 0
   never blocks. The limit applies to each call as a whole. */
static int sock_settimeout(lua_State *L) {
  lsock **pp = checkud(L);
  double t = luaL_optnumber(L, 2, -1);
  luaL_optstring(L, 3, "b");
  if (*pp != NULL)
    (*pp)->timeout = t < 0 ? -1 : t;
  lua_pushinteger(L, 1);
  return 1;
}


static int sock_gettimeout(lua_State *L) {
  lsock *s = *checkud(L);
  if (s == NULL || s->timeout < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, s->timeout);
  return 1;
}


/* sock:shutdown([how="both"]): "send", "receive" or "both". */
static int sock_shutdown(lua_State *L) {
  static const char *const hows[] = {"both", "send", "receive", NULL};
  lsock *s = *checkud(L);
  int how = luaL_checkoption(L, 2, "both", hows);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if (how != 2 && !(s->flags & LSOCK_SHUT_WR)) {
    uv_shutdown_t *req = (uv_shutdown_t *)malloc(sizeof(*req));
    int r;
    if (req == NULL)
      return luaL_error(L, "not enough memory");
    r = uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown);
    if (r < 0) {
      free(req);
      return lgreen_sock_fail(L, r);
    }
    s->flags |= LSOCK_SHUT_WR;
  }
  if (how != 1 && s->rerr == 0) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
      shutdown(fd, SHUT_RD);
    s->rerr = UV_EOF;
    maybe_read(s);
    lgreen_sock_kick_readers(s);
  }
  lua_pushinteger(L, 1);
  return 1;
}


static const char *const optnames[] = {"tcp-nodelay", "keepalive",
                                       "reuseaddr",   "reuseport",
                                       "linger",      NULL};
static const int optlevels[] = {IPPROTO_TCP, SOL_SOCKET, SOL_SOCKET,
                                SOL_SOCKET, SOL_SOCKET};
static const int optcodes[] = {TCP_NODELAY, SO_KEEPALIVE, SO_REUSEADDR,
                               SO_REUSEPORT, SO_LINGER};


/***
** sock:setoption(name, value): "tcp-nodelay", "keepalive", "reuseaddr",
** "reuseport" (booleans) or "linger" ({on = bool, timeout = seconds}).
** Returns 1, or nil, err.
*/
static int sock_setoption(lua_State *L) {
  lsock *s = *checkud(L);
  int o = luaL_checkoption(L, 2, NULL, optnames);
  uv_os_fd_t fd;
  int r, on;
  struct linger li;
  const void *val = &on;
  socklen_t len = sizeof(on);
  if (o == 4) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "on");
    lua_getfield(L, 3, "timeout");
    li.l_onoff = lua_toboolean(L, -2);
    li.l_linger = (int)luaL_optinteger(L, -1, 0);
    val = &li;
    len = sizeof(li);
  } else {
    on = lua_toboolean(L, 3);
  }
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if ((r = uv_fileno((uv_handle_t *)&s->tcp, &fd)) < 0)
    return lgreen_sock_fail(L, r);
  if (setsockopt(fd, optlevels[o], optcodes[o], val, len) < 0)
    return lgreen_sock_fail(L, uv_translate_sys_error(errno));
  lua_pushinteger(L, 1);
  return 1;
}


static int sock_getoption(lua_State *L) {
  lsock *s = *checkud(L);
  int o = luaL_checkoption(L, 2, NULL, optnames);
  uv_os_fd_t fd;
  int r, on = 0;
  struct linger li;
  void *val = &on;
  socklen_t len = sizeof(on);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if ((r = uv_fileno((uv_handle_t *)&s->tcp, &fd)) < 0)
    return lgreen_sock_fail(L, r);
  if (o == 4) {
    val = &li;
    len = sizeof(li);
  }
  if (getsockopt(fd, optlevels[o], optcodes[o], val, &len) < 0)
    return lgreen_sock_fail(L, uv_translate_sys_error(errno));
  if (o == 4) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, li.l_onoff);
    lua_setfield(L, -2, "on");
    lua_pushinteger(L, li.l_linger);
    lua_setfield(L, -2, "timeout");
  } else {
    lua_pushboolean(L, on);
  }
  return 1;
}


/* sock:getfd(): the descriptor, or -1 once closed. */
static int sock_getfd(lua_State *L) {
  lsock *s = *checkud(L);
  uv_os_fd_t fd = -1;
  if (s != NULL)
    uv_fileno((uv_handle_t *)&s->tcp, &fd);
  lua_pushinteger(L, (lua_Integer)fd);
  return 1;
}


/***
** sock:getstats(): bytes received, bytes sent (accepted by send: written
** or queued), age in seconds (LuaSocket's three), then bytes waiting in
** the write queue and bytes waiting in the read buffer.
*/
static int sock_getstats(lua_State *L) {
  lsock *s = *checkud(L);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  lua_pushinteger(L, (lua_Integer)s->nrecv);
  lua_pushinteger(L, (lua_Integer)s->nsent);
  lua_pushnumber(L, (double)(gl_now() - s->born) / 1e9);
  lua_pushinteger(L, (lua_Integer)uv_stream_get_write_queue_size(
                         (uv_stream_t *)&s->tcp));
  lua_pushinteger(L, (lua_Integer)s->len);
  return 5;
}


/* sock:dirty(): true if received data waits in the buffer. */
static int sock_dirty(lua_State *L) {
  lsock *s = *checkud(L);
  lua_pushboolean(L, s != NULL && s->len > 0);
  return 1;
}


static int sock_tostring(lua_State *L) {
  lsock *s = *checkud(L);
  uv_os_fd_t fd = -1;
  if (s == NULL) {
    lua_pushliteral(L, "green.socket (closed)");
    return 1;
  }
  uv_fileno((uv_handle_t *)&s->tcp, &fd);
  lua_pushfstring(L, "green.socket (fd %d, %s)", (int)fd,
                  (s->flags & LSOCK_LISTENING) ? "listening"
                  : (s->flags & LSOCK_STREAM)  ? "connected"
                                               : "unconnected");
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Creation and the module
** =======================================================
*/

/*
** [-0, +1, m] Push a new socket userdata with a fresh 'lsock' (its uv
** handle not yet initialised: the caller does that, or frees the record
** and clears the slot if it cannot).
*/
lsock **lgreen_sock_new(lua_State *L, lsock_state *st) {
  lsock **pp = (lsock **)lua_newuserdatauv(L, sizeof(lsock *), 0);
  lsock *s;
  *pp = NULL;
  luaL_setmetatable(L, LGREEN_SOCKET);
  s = (lsock *)calloc(1, sizeof(*s));
  if (s == NULL)
    luaL_error(L, "not enough memory");
  s->tcp.data = s;
  s->st = st;
  s->ud = pp;
  gl_link_init(&s->readers);
  gl_link_init(&s->writers);
  gl_link_init(&s->linger);
  s->timeout = -1;
  s->born = gl_now();
  *pp = s;
  return pp;
}


/* A connected socket (client or accepted): read ahead from now on. */
void lgreen_sock_started(lsock *s) {
  s->flags |= LSOCK_STREAM;
  maybe_read(s);
  lgreen_sock_reref(s);
}


/* green.debug.hub_prevent_multiple_readers([on]): returns the old value. */
static int l_prevent(lua_State *L) {
  lsock_state *st = (lsock_state *)lua_touserdata(L, lua_upvalueindex(2));
  int old = st->prevent;
  if (!lua_isnone(L, 1))
    st->prevent = lua_toboolean(L, 1);
  lua_pushboolean(L, old);
  return 1;
}


/* At lua_close (before the hub's own finalizer closes the loop): close
   the handles that were still flushing after close(). */
static int state_gc(lua_State *L) {
  lsock_state *st = (lsock_state *)lua_touserdata(L, 1);
  while (!gl_link_empty(&st->lingering)) {
    lsock *s = GL_CONTAINER(st->lingering.next, lsock, linger);
    gl_link_remove(&s->linger);
    if (!uv_is_closing((uv_handle_t *)&s->tcp))
      uv_close((uv_handle_t *)&s->tcp, on_close);
  }
  return 0;
}


static const luaL_Reg sock_meth[] = {
    {"receive", sock_receive},
    {"recv", sock_recv},
    {"send", sock_send},
    {"sendall", sock_sendall},
    {"accept", lgreen_sock_accept},
    {"close", sock_close},
    {"shutdown", sock_shutdown},
    {"settimeout", sock_settimeout},
    {"gettimeout", sock_gettimeout},
    {"setoption", sock_setoption},
    {"getoption", sock_getoption},
    {"getpeername", lgreen_sock_getpeername},
    {"getsockname", lgreen_sock_getsockname},
    {"getfd", sock_getfd},
    {"getstats", sock_getstats},
    {"dirty", sock_dirty},
    {NULL, NULL},
};

static const luaL_Reg sock_metameth[] = {
    {"__index", NULL}, /* the methods, set below */
    {"__gc", sock_gc},
    {"__close", sock_gc},
    {"__tostring", sock_tostring},
    {NULL, NULL},
};

static const luaL_Reg mod_funcs[] = {
    {"hub_prevent_multiple_readers", l_prevent},
    {NULL, NULL},
};


/* [-0, +0, m] Adds the socket functions to the module table on the top. */
void lgreen_open_socket(lua_State *L, gl_hub_t *hub) {
  lsock_state *st;
  int state;
  struct sigaction sa;
  /* A write to a reset connection must return "closed", not kill the
     process: ignore SIGPIPE unless the host installed a handler. */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  st = (lsock_state *)lua_newuserdatauv(L, sizeof(*st), 0);
  st->hub = hub;
  st->prevent = 1;
  gl_link_init(&st->lingering);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  state = lua_gettop(L);

  luaL_newmetatable(L, LGREEN_SOCKET);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, sock_metameth, 2);
  luaL_newlibtable(L, sock_meth);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, sock_meth, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushvalue(L, state - 1); /* the module table */
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, mod_funcs, 2);
  lua_pop(L, 1);
  lgreen_open_tcp(L, hub, state);
  lua_settop(L, state - 1);
}

/* }====================================================== */
