/*
** socket.c: what every green socket shares ('green.socket' over a TCP or
** Unix-domain stream, 'green.udp' over uv_udp_t): waiter records and
** their queues, close, LuaSocket's error strings, the simultaneous-reader
** check, fairness, and the metatables. The stream side is in stream.c,
** options in sockopt.c, DNS in dns.c, connect/listen/accept in tcp.c,
** Unix paths in pipe.c, UDP in udp.c, green.select in select.c; lsocket.h
** has the records. DESIGN.md ("Sockets") has the contract.
**
** Waiting. Each socket has two FIFO queues of waiter records, readers
** (receive, recv, accept) and writers. The head of a queue owns that
** direction; only the head is ever woken with READY. A second thread that
** calls receive while a read is under way gets eventlet's "Second
** simultaneous read" error unless green.debug.hub_prevent_multiple_readers
** is off, in which case it queues behind. green.select waits in a third
** list ('selects') that takes no data and owns nothing, so a thread that
** selects and then receives is an ordinary single reader. A socket's
** handle keeps the hub alive (uv_ref) only while some thread waits on it.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lsocket.h"

#define STATE_KEY "green.socket.state"


/* The metatable of the value at 'idx', by address, or NULL. */
static const void *metaof(lua_State *L, int idx) {
  const void *mt = NULL;
  if (lua_getmetatable(L, idx)) {
    mt = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  return mt;
}


/*
** luaL_checkudata looks the metatable up in the registry by name on every
** call (a string lookup per method call, ~1,000 instructions per HTTP
** request in bench/http.sh); tables do not move, so compare addresses.
*/
lsock **lgreen_sock_checkmt(lua_State *L, int idx, const void *mt,
                            const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && mt != NULL && metaof(L, idx) == mt)
    return (lsock **)p;
  return (lsock **)luaL_checkudata(L, idx, tname);
}


/* The socket at 'idx', of either metatable; raises otherwise. */
lsock **lgreen_sock_checkud(lua_State *L, int idx) {
  lsock_state *st = lgreen_sock_state(L);
  void *p = lua_touserdata(L, idx);
  const void *mt = p != NULL ? metaof(L, idx) : NULL;
  if (p == NULL || mt == NULL ||
      (mt != st->mt_stream && mt != st->mt_udp))
    luaL_typeerror(L, idx, "green socket");
  return (lsock **)p;
}


lsock *lgreen_sock_check(lua_State *L, int idx) {
  return *lgreen_sock_checkud(L, idx);
}


/*
** Queue reader 'w' of thread 't' on 's' (its mode and count are set) and
** block in 'k'; 'start' (re)starts reading on the handle. Shared by the
** stream and UDP receives.
*/
int lgreen_sock_block_reader(lua_State *L, lsock *s, lsock_waiter *w,
                             gl_thread_t *t, const char *what,
                             void (*start)(lsock *), lua_KFunction k) {
  w->due = lgreen_sock_deadline(s->timeout);
  gl_link_push(&s->readers, &w->base.link);
  s->streak = 0;
  start(s);
  lgreen_sock_suspend(L, w, t, what);
  lgreen_sock_reref(s);
  lgreen_sock_kick_readers(s); /* a read error may already be there */
  return lgreen_block(L, t, k, (lua_KContext)w);
}


/*
** {======================================================
** Waiters and close (no Lua code runs here)
** =======================================================
*/

/* Would waiter 'w' of the reading side complete now? */
int lgreen_sock_readable(lsock *s, lsock_waiter *w) {
  if (s->kind == LSOCK_UDP)
    return lgreen_udp_readable(s);
  return lgreen_stream_readable(s, w);
}


/* End the wait of 'w' with 'status' if it is suspended; its place in a
   socket queue stays (see lsock_waiter). */
void lgreen_sock_wake(lsock_waiter *w, int status) {
  gl_wait_end(&w->base, status);
}


static void kick_head_reader(lsock *s) {
  lsock_waiter *w = LSOCK_WAITER(s->readers.next);
  if (LSOCK_PENDING(w) && lgreen_sock_readable(s, w))
    lgreen_sock_wake(w, LSOCK_W_READY);
}


/* Also wakes a green.select waiting for readability. */
void lgreen_sock_kick_readers(lsock *s) {
  if (!gl_link_empty(&s->readers))
    kick_head_reader(s);
  if (!gl_link_empty(&s->selects))
    lgreen_select_notify(s, 0);
}


static void maybe_read(lsock *s) {
  if (s->kind == LSOCK_UDP)
    lgreen_udp_maybe_read(s);
  else
    lgreen_stream_maybe_read(s);
}


/* Also wakes a green.select waiting for writability. */
void lgreen_sock_kick_writers(lsock *s) {
  if (!gl_link_empty(&s->writers))
    lgreen_sock_wake(LSOCK_WAITER(s->writers.next), LSOCK_W_READY);
  if (!gl_link_empty(&s->selects))
    lgreen_select_notify(s, 1);
}


void lgreen_sock_reref(lsock *s) {
  uv_handle_t *h = &s->h.handle;
  if (uv_is_closing(h) || (s->flags & LSOCK_CLOSED))
    return;
  if (!gl_link_empty(&s->readers) || !gl_link_empty(&s->writers) ||
      !gl_link_empty(&s->selects) || s->conn != NULL)
    uv_ref(h);
  else
    uv_unref(h);
}


/*
** The waiter gives up its call (kill, Timeout, socket timeout, or an
** error on its own path): leave the queue, pass ownership on, cancel a
** pending resolve or connect. Idempotent. It does not end a suspension:
** it is the wait's 'cancel' (the runtime ends the wait after it), or
** runs once the thread runs again.
*/
void lgreen_sock_leave(lsock_waiter *w) {
  lsock *s = w->s;
  int head;
  if (w->res != NULL) { /* the resolver cancels or drops it */
    lgreen_dns_abandon(w->res);
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
    head = s->writers.next == &w->base.link;
    gl_link_remove(&w->base.link);
    if (head)
      lgreen_sock_kick_writers(s);
    break;
  default:
    head = s->readers.next == &w->base.link;
    gl_link_remove(&w->base.link);
    if (head)
      lgreen_sock_kick_readers(s);
    maybe_read(s);
    break;
  }
  lgreen_sock_reref(s);
}


/* The runtime cancels a suspended call (kill, green.Timeout, its
   deadline); it ends the wait itself. */
static void wait_cancel(gl_wait_t *w) {
  lgreen_sock_leave((lsock_waiter *)w);
}


/* The deadline of a call under socket timeout 'timeout' (not NaN), or 0
   for none (negative). */
uint64_t lgreen_sock_deadline(double timeout) {
  if (timeout < 0)
    return 0;
  return gl_now() + lgreen_ns(timeout) + 1;
}


/*
** Suspend 't' in 'w' and arm its deadline 'w->due' (if any); the caller
** then blocks. Without memory for the deadline, the call is given up
** ('w' leaves its socket) and this raises.
*/
void lgreen_sock_suspend(lua_State *L, lsock_waiter *w, gl_thread_t *t,
                         const char *what) {
  gl_wait_start(t, &w->base, what, wait_cancel, w->s);
  if (w->due != 0)
    lgreen_deadline(L, &w->base, w->due);
}


/*
** [-0, +1, m] A new waiter record (not queued, not suspended) for the
** socket in slot 'pp'. The allocation can run a finalizer that closes
** that very socket, so the slot is read after it: if the socket is gone,
** 'w->s' is NULL and its status LSOCK_W_CLOSED, and the caller must not
** queue; it runs its continuation instead, which reports "closed".
** Nothing that can allocate may run between this and the queueing.
*/
lsock_waiter *lgreen_sock_newwaiter(lua_State *L, lsock **pp, int mode) {
  lsock_waiter *w =
      (lsock_waiter *)lua_newuserdatauv(L, sizeof(lsock_waiter), 0);
  memset(w, 0, sizeof(*w));
  gl_wait_init(&w->base);
  w->s = *pp;
  w->mode = mode;
  if (w->s == NULL)
    w->base.status = LSOCK_W_CLOSED;
  return w;
}


/* The socket closes: every waiter, suspended or woken, sees "closed". */
static void wake_all(gl_link_t *q) {
  while (!gl_link_empty(q)) {
    lsock_waiter *w = LSOCK_WAITER(q->next);
    gl_link_remove(&w->base.link);
    w->s = NULL;
    if (!gl_wait_end(&w->base, LSOCK_W_CLOSED))
      w->base.status = LSOCK_W_CLOSED; /* woken, but not run yet */
  }
}


static void on_close(uv_handle_t *h) {
  lsock *s = (lsock *)h->data;
  gl_link_remove(&s->linger);
  free(s->buf);
  free(s);
}


/*
** {======================================================
** Closing with unsent bytes (lingering)
** =======================================================
**
** close() must not lose what send() accepted: bytes still in uv_write
** requests (at most LSOCK_WRITE_HIGH) are flushed before the descriptor
** is closed, as the kernel goes on sending what it already took. But a
** peer that never reads must not pin the descriptor, nor keep the process
** from exiting: a lingering socket is dropped once it has made no progress
** for LINGER_DEFAULT seconds (or the SO_LINGER timeout the user set), and
** at once with SO_LINGER {on, 0}, which closes with a reset. The hub stays
** up while a socket lingers (its timer is armed), so a script's last
** sendall reaches a peer that reads.
*/

#define LINGER_DEFAULT 2 /* seconds without progress before dropping */


/* The user's SO_LINGER: 1 if on, with its timeout in '*secs'. */
static int user_linger(lsock *s, int *secs) {
  struct linger li;
  socklen_t len = sizeof(li);
  uv_os_fd_t fd;
  if (!(s->flags & LSOCK_LINGER) || uv_fileno(&s->h.handle, &fd) < 0 ||
      getsockopt(fd, SOL_SOCKET, SO_LINGER, &li, &len) < 0 || !li.l_onoff)
    return 0;
  *secs = li.l_linger;
  return 1;
}


/*
** Close the handle now. With SO_LINGER on and a timeout, close(2) would
** block the hub until the kernel sent its queue: turn it off first (the
** kernel then sends in the background). {on, 0} stays: that close resets.
*/
static void close_now(lsock *s) {
  int secs;
  gl_link_remove(&s->linger);
  if (s->kind != LSOCK_UDP && user_linger(s, &secs) && secs > 0) {
    struct linger off = {0, 0};
    uv_os_fd_t fd;
    if (uv_fileno(&s->h.handle, &fd) == 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
  }
  if (!uv_is_closing(&s->h.handle))
    uv_close(&s->h.handle, on_close);
}


static void on_linger(gl_timer_t *tm);

/* Arm the state's timer at the earliest deadline of its lingering
   sockets, or stop it when none is left. */
static void linger_arm(lsock_state *st) {
  uint64_t due = UINT64_MAX;
  gl_link_t *l;
  for (l = st->lingering.next; l != &st->lingering; l = l->next) {
    lsock *s = GL_CONTAINER(l, lsock, linger);
    if (s->linger_due < due)
      due = s->linger_due;
  }
  if (due == UINT64_MAX) {
    gl_timer_stop(st->hub, &st->ltimer);
    return;
  }
  if (gl_timer_start(st->hub, &st->ltimer, due, on_linger) < 0) {
    while (!gl_link_empty(&st->lingering)) /* no memory: drop them */
      close_now(GL_CONTAINER(st->lingering.next, lsock, linger));
  }
}


/*
** Drop the lingering sockets that made no progress since their last
** check: their queue did not shrink (partial writes count, so a slow
** reader keeps its data coming).
*/
static void on_linger(gl_timer_t *tm) {
  lsock_state *st = GL_CONTAINER(tm, lsock_state, ltimer);
  uint64_t now = gl_now();
  gl_link_t *l = st->lingering.next;
  while (l != &st->lingering) {
    lsock *s = GL_CONTAINER(l, lsock, linger);
    l = l->next;
    if (s->linger_due <= now) {
      size_t left = uv_stream_get_write_queue_size(&s->h.stream);
      if (left < s->linger_left) {
        s->linger_left = left;
        s->linger_due = now + s->linger_ns;
      } else {
        close_now(s);
      }
    }
  }
  linger_arm(st);
}


void lgreen_stream_on_shutdown(uv_shutdown_t *req, int status) {
  lsock *s = (lsock *)req->handle->data;
  (void)status;
  free(req);
  if ((s->flags & LSOCK_CLOSED) && !uv_is_closing(&s->h.handle)) {
    close_now(s); /* flushed (or failed): done lingering */
    linger_arm(s->st);
  }
}


/*
** Close 's' without running Lua: mark the userdata closed, wake every
** waiter with "closed", and close the handle (memory freed in on_close),
** after lingering if send() left bytes queued (see above).
*/
void lgreen_sock_shut(lsock *s) {
  uv_handle_t *h = &s->h.handle;
  uv_stream_t *st = &s->h.stream;
  int secs = LINGER_DEFAULT;
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
  lgreen_select_drop(s);
  free(s->buf);
  s->buf = NULL;
  s->off = s->len = s->cap = 0;
  if (s->kind == LSOCK_UDP) {
    lgreen_udp_drop_queue(s);
    if (s->flags & LSOCK_READING)
      uv_udp_recv_stop(&s->h.udp);
    s->flags &= ~LSOCK_READING;
    uv_close(h, on_close);
    return;
  }
  if (s->flags & LSOCK_READING) {
    uv_read_stop(st);
    s->flags &= ~LSOCK_READING;
  }
  if ((s->flags & LSOCK_STREAM) && s->werr == 0 &&
      uv_stream_get_write_queue_size(st) > 0 &&
      !(user_linger(s, &secs) && secs == 0)) { /* {on, 0}: reset now */
    uv_unref(h);
    s->linger_ns = lgreen_ns(secs);
    s->linger_due = gl_now() + s->linger_ns;
    s->linger_left = uv_stream_get_write_queue_size(st);
    gl_link_push(&s->st->lingering, &s->linger);
    linger_arm(s->st);
    if (s->flags & LSOCK_SHUT_WR)
      return; /* its shutdown is pending: on_shutdown closes */
    {
      uv_shutdown_t *req = (uv_shutdown_t *)malloc(sizeof(*req));
      if (req != NULL &&
          uv_shutdown(req, st, lgreen_stream_on_shutdown) == 0) {
        s->flags |= LSOCK_SHUT_WR;
        return;
      }
      free(req);
    }
    close_now(s);
    linger_arm(s->st);
    return;
  }
  close_now(s);
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
  case LSOCK_ETOOLONG:
    return "too long";
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



int lgreen_sock_simultaneous(lua_State *L, lsock *s, gl_link_t *q,
                             const char *op) {
  lsock_waiter *other = LSOCK_WAITER(q->next);
  gl_hub_t *hub = lgreen_hub(L);
  uv_os_fd_t fd = -1;
  const char *me = "?", *that;
  uv_fileno(&s->h.handle, &fd);
  if (hub->current != NULL) {
    lgreen_pushthread(L, hub->current);
    me = luaL_tolstring(L, -1, NULL);
  }
  lgreen_pushthread(L, other->base.thread);
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
  return t != NULL && !(t->flags & GL_F_KILLED) && lgreen_canblock(L, hub);
}


/* By LSOCK_FAIR_* index. */
static const lua_CFunction fair_fns[] = {
    lgreen_stream_receive, lgreen_stream_recv,   lgreen_stream_send,
    lgreen_stream_sendall, lgreen_sock_accept,   lgreen_udp_receive,
    lgreen_udp_receivefrom};


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
** close, __gc, __close
** =======================================================
*/

/* sock:close(): wakes every waiting thread with nil, "closed". */
int lgreen_sock_gc(lua_State *L) {
  lsock **pp = lgreen_sock_checkud(L, 1);
  if (*pp != NULL)
    lgreen_sock_shut(*pp);
  return 0;
}


int lgreen_sock_close(lua_State *L) {
  lgreen_sock_gc(L);
  lua_pushinteger(L, 1);
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
lsock **lgreen_sock_newkind(lua_State *L, lsock_state *st, int kind) {
  lsock **pp = (lsock **)lua_newuserdatauv(L, sizeof(lsock *), 0);
  lsock *s;
  *pp = NULL;
  luaL_setmetatable(L, kind == LSOCK_UDP ? LGREEN_UDP : LGREEN_SOCKET);
  s = (lsock *)calloc(1, sizeof(*s));
  if (s == NULL)
    luaL_error(L, "not enough memory");
  s->h.handle.data = s;
  s->kind = kind;
  s->st = st;
  s->ud = pp;
  gl_link_init(&s->readers);
  gl_link_init(&s->writers);
  gl_link_init(&s->linger);
  gl_link_init(&s->selects);
  s->timeout = -1;
  s->limit = LSOCK_LIMIT_DEFAULT;
  s->born = gl_now();
  *pp = s;
  return pp;
}


/* [-0, +1, m] A new TCP socket (see 'lgreen_sock_newkind'). */
lsock **lgreen_sock_new(lua_State *L, lsock_state *st) {
  return lgreen_sock_newkind(L, st, LSOCK_TCP);
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
  while (!gl_link_empty(&st->lingering))
    close_now(GL_CONTAINER(st->lingering.next, lsock, linger));
  gl_timer_stop(st->hub, &st->ltimer);
  return 0;
}


/* The methods only stream sockets (TCP, Unix) have. */
static const luaL_Reg stream_meth[] = {
    {"receive", lgreen_stream_receive},
    {"recv", lgreen_stream_recv},
    {"send", lgreen_stream_send},
    {"sendall", lgreen_stream_sendall},
    {"accept", lgreen_sock_accept},
    {"shutdown", lgreen_stream_shutdown},
    {"setlimit", lgreen_stream_setlimit},
    {"getlimit", lgreen_stream_getlimit},
    {NULL, NULL},
};


/*
** [-0, +0, m] Create metatable 'name' whose methods are 'meth' plus the
** ones every socket has (sockopt.c); each function gets the hub and the
** socket state (at 'state') as upvalues.
*/
void lgreen_sock_newmeta(lua_State *L, const char *name,
                         const luaL_Reg *meth, gl_hub_t *hub, int state) {
  static const luaL_Reg metameth[] = {
      {"__gc", lgreen_sock_gc},
      {"__close", lgreen_sock_gc},
      {"__tostring", lgreen_sock_tostring},
      {NULL, NULL},
  };
  lsock_state *st = (lsock_state *)lua_touserdata(L, state);
  luaL_newmetatable(L, name);
  if (strcmp(name, LGREEN_UDP) == 0)
    st->mt_udp = lua_topointer(L, -1);
  else
    st->mt_stream = lua_topointer(L, -1);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, metameth, 2);
  lua_createtable(L, 0, 24);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, lgreen_sockopt_meth, 2);
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, meth, 2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}


static const luaL_Reg mod_funcs[] = {
    {"hub_prevent_multiple_readers", l_prevent},
    {"sockstate", lgreen_sockopt_state},
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
  st->mt_stream = st->mt_udp = NULL;
  st->prevent = 1;
  gl_link_init(&st->lingering);
  st->ltimer.idx = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  state = lua_gettop(L);

  lgreen_sock_newmeta(L, LGREEN_SOCKET, stream_meth, hub, state);

  lua_pushvalue(L, state - 1); /* the module table */
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, state);
  luaL_setfuncs(L, mod_funcs, 2);
  lua_pop(L, 1);
  lgreen_open_tcp(L, hub, state);
  lgreen_open_pipe(L, hub, state);
  lgreen_open_udp(L, hub, state);
  lgreen_open_select(L, hub, state);
  lua_settop(L, state - 1);
}

/* }====================================================== */
