/*
** socket.c: the core of green sockets, what every kind shares and nothing
** a kind does its own way (that is behind each socket's ops table, see
** lsocket.h): the socket record and its checks, waiting, close, LuaSocket's
** error strings, fairness, addresses, and core.sockstate. DESIGN.md
** ("Sockets") has the contract.
**
** Waiting. Each socket has two FIFO queues of blocking calls, readers
** (receive, recv, accept) and writers (send, sendall, connect); a call
** waits in its thread's own wait record, 't->w'. The head of a queue owns
** that direction; only the head is ever woken to proceed. A second thread
** that calls receive while a read is under way gets eventlet's "Second
** simultaneous read" error unless green.debug.hub_prevent_multiple_readers
** is off, in which case it queues behind. green.select waits in a third
** list ('watchers') that takes no data and owns nothing, so a thread that
** selects and then receives is an ordinary single reader. A socket's
** handle keeps the hub alive (uv_ref) only while some thread waits on it.
*/
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lsocket.h"

#define STATE_KEY "green.socket.state"


/*
** {======================================================
** Records and checks
** =======================================================
*/

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
  lsock **pp = (lsock **)lua_touserdata(L, idx);
  if (pp == NULL || mt == NULL || metaof(L, idx) != mt)
    pp = (lsock **)luaL_checkudata(L, idx, tname);
  lgreen_sock_get(pp);
  return pp;
}


/* Is the value at 'idx' a green socket (open or closed)? */
static lsock **testud(lua_State *L, int idx) {
  lsock_state *st = lgreen_sock_state(L);
  void *p = lua_touserdata(L, idx);
  const void *mt = p != NULL ? metaof(L, idx) : NULL;
  if (mt == NULL || (mt != st->mt_stream && mt != st->mt_udp))
    return NULL;
  lgreen_sock_get((lsock **)p);
  return (lsock **)p;
}


/* The socket at 'idx', of either metatable; raises otherwise. */
lsock **lgreen_sock_checkud(lua_State *L, int idx) {
  lsock **pp = testud(L, idx);
  if (pp == NULL)
    luaL_typeerror(L, idx, "green socket");
  return pp;
}


lsock *lgreen_sock_check(lua_State *L, int idx) {
  return *lgreen_sock_checkud(L, idx);
}


void lgreen_sock_pushstate(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, STATE_KEY);
}


/* [-0, +0, m] Add 'funcs' to the table on the top, each with the hub and
   the socket state as upvalues, as every socket function has them. */
void lgreen_sock_register(lua_State *L, const luaL_Reg *funcs) {
  lgreen_sock_pushstate(L);
  lgreen_register(L, funcs, 1);
}


static void sock_orphan(lgreen_owned *o);
static const lgreen_boxkind sock_box = {offsetof(lsock, own), sock_orphan};


lsock *lgreen_sock_new(lua_State *L, lsock_state *st, const lsock_ops *ops,
                       const char *tname) {
  lsock **pp = (lsock **)lgreen_newbox(L, st->hub, 0, &sock_box);
  lsock *s;
  luaL_setmetatable(L, tname);
  s = (lsock *)calloc(1, ops->size);
  if (s == NULL)
    luaL_error(L, "not enough memory");
  s->h = (uv_handle_t *)((char *)s + ops->hoff);
  s->h->data = s;
  s->ops = ops;
  s->st = st;
  gl_link_init(&s->readers);
  gl_link_init(&s->writers);
  gl_link_init(&s->watchers);
  s->timeout = -1;
  s->born = gl_now();
  s->flags = LSOCK_BOXED;
  *pp = s;
  lgreen_own(st->hub, &s->own, &sock_box);
  return s;
}


/* A record that never got its handle: its userdata reads closed, and
   lets go of it (the record is freed then). */
void lgreen_sock_discard(lsock *s) {
  s->flags |= LSOCK_CLOSED | LSOCK_HCLOSED;
}


/* Record 's' has no userdata any more: free it once its handle is
   closed. */
static void unbox(lsock *s) {
  lgreen_disown(&s->own);
  s->flags &= ~LSOCK_BOXED;
  if (s->flags & LSOCK_HCLOSED)
    free(s);
}


/*
** The slow path of 'lgreen_sock_get': the record 'pp' points to was
** closed by C. Replaced in green.fork's child ('fwd'): the userdata points
** to the new record from now on. Else it reads closed (NULL).
*/
lsock *lgreen_sock_settle(lsock **pp) {
  lsock *s = *pp;
  while (s != NULL && (s->flags & LSOCK_CLOSED)) {
    lsock *n = s->fwd;
    if (n == NULL) {
      *pp = NULL;
      unbox(s);
      return NULL;
    }
    s->fwd = NULL;
    lgreen_own_replace(&s->own, &n->own);
    s->flags &= ~LSOCK_BOXED;
    if (s->flags & LSOCK_HCLOSED)
      free(s);
    *pp = n;
    s = n;
  }
  return s;
}


/* Its userdata is gone and its __gc never ran (box.c): close it, and
   what replaced it in a child of green.fork. */
static void sock_orphan(lgreen_owned *o) {
  lsock *s = GL_CONTAINER(o, lsock, own);
  while (s != NULL) {
    lsock *n = s->fwd;
    s->fwd = NULL;
    s->flags &= ~LSOCK_BOXED;
    if (s->flags & LSOCK_HCLOSED)
      free(s);
    else
      lgreen_sock_shut(s); /* (closed already: its handle is closing) */
    s = n;
  }
}

/* }====================================================== */


/*
** {======================================================
** Waiting (no Lua code runs in the callbacks)
** =======================================================
*/

/* Raise eventlet's error for a second thread reading (writing) while
   another one waits in queue 'q'. */
static int simultaneous(lua_State *L, lsock *s, gl_link_t *q,
                        const char *op) {
  gl_thread_t *other = GL_CONTAINER(q->next, gl_wait_t, link)->thread;
  gl_hub_t *hub = lgreen_hub(L);
  uv_os_fd_t fd = -1;
  const char *me = "?", *that;
  uv_fileno(s->h, &fd);
  if (hub->current != NULL) {
    lgreen_pushthread(L, hub->current);
    me = luaL_tolstring(L, -1, NULL);
  }
  lgreen_pushthread(L, other);
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


/*
** Is the caller first in queue 'q' of 's' ('readers' or 'writers'), so
** that it may try to complete at once? If others wait there, raises
** eventlet's error for 'op' ("read", "write"), unless that check is off:
** then returns 0 and the caller answers "timeout" (timeout 0) or queues.
*/
int lgreen_sock_first(lua_State *L, lsock *s, gl_link_t *q, const char *op) {
  if (gl_link_empty(q))
    return 1;
  if (s->st->prevent)
    simultaneous(L, s, q, op);
  return 0;
}


/* The deadline of a call under socket timeout 'timeout' (not NaN), or 0
   for none (negative). */
uint64_t lgreen_sock_deadline(double timeout) {
  if (timeout < 0)
    return 0;
  return gl_now() + lgreen_ns(timeout) + 1;
}


/* Would waiter 'w', the head of 's->readers', complete now? */
static void kick_head_reader(lsock *s) {
  gl_wait_t *w = GL_CONTAINER(s->readers.next, gl_wait_t, link);
  if (w->status == GL_W_PENDING && s->ops->readable(s))
    gl_wait_end(w, GL_W_OK);
}


/* End the waits of the watchers of 's' in direction 'write' that may be
   ready now. */
static void notify(lsock *s, int write) {
  gl_link_t *l;
  for (l = s->watchers.next; l != &s->watchers; l = l->next) {
    lsock_watch *e = GL_CONTAINER(l, lsock_watch, link);
    if (e->write == write && e->w->status == GL_W_PENDING &&
        (write ? s->ops->can_write(s) : s->ops->can_read(s)))
      gl_wait_end(e->w, GL_W_OK);
  }
}


/* Something came in (or failed): wake the head reader if it can complete,
   and the read watchers. */
void lgreen_sock_kick_readers(lsock *s) {
  if (!gl_link_empty(&s->readers))
    kick_head_reader(s);
  if (!gl_link_empty(&s->watchers))
    notify(s, 0);
}


/* Room to write (or a failure): wake the head writer and the write
   watchers. */
void lgreen_sock_kick_writers(lsock *s) {
  if (!gl_link_empty(&s->writers))
    gl_wait_end(GL_CONTAINER(s->writers.next, gl_wait_t, link), GL_W_OK);
  if (!gl_link_empty(&s->watchers))
    notify(s, 1);
}


void lgreen_sock_reref(lsock *s) {
  if (uv_is_closing(s->h) || (s->flags & LSOCK_CLOSED))
    return;
  if (!gl_link_empty(&s->readers) || !gl_link_empty(&s->writers) ||
      !gl_link_empty(&s->watchers))
    uv_ref(s->h);
  else
    uv_unref(s->h);
}


/*
** Suspend the running thread in its own wait record as a call of 's' in
** queue 'q' (it joins the queue at the tail; a head that waits again
** keeps its place), with 'cancel' (which must leave the queue, as
** 'lgreen_sock_leave' does) and deadline 'due' (0: none), and block; 'k'
** continues with context 'ctx' and starts with 'lgreen_waited'. Nothing
** may allocate between the caller's checks of the socket and this.
*/
int lgreen_sock_wait(lua_State *L, lsock *s, gl_link_t *q, const char *what,
                     gl_wait_cb cancel, uint64_t due, lua_KFunction k,
                     lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t = hub->current;
  if (t == NULL || gl_link_empty(&t->w.link)) { /* not in a queue yet */
    t = lgreen_begin(L, hub, what);
    gl_link_push(q, &t->w.link);
  }
  s->streak = 0;
  gl_wait_start(t, &t->w, what, cancel, s);
  if (due != 0)
    lgreen_deadline(L, &t->w, due); /* raises (having left) if no memory */
  s->ops->watched(s);
  lgreen_sock_reref(s);
  if (q == &s->readers)
    kick_head_reader(s); /* a read error may be there already */
  return lgreen_block(L, t, k, ctx);
}


/*
** The start of the continuation of a call that waited with
** 'lgreen_sock_wait', its socket at stack index 1: raises if the thread
** was interrupted (after 'undo'); else returns the wait's outcome
** (GL_W_OK, GL_W_TIMEOUT, or LSOCK_W_CLOSED if the socket was closed
** meanwhile, which took it out of its queue) with the socket in '*ps'
** (NULL once closed).
*/
int lgreen_sock_resumed(lua_State *L, gl_wait_cb undo, lsock **ps) {
  int outcome = lgreen_waited(L, lgreen_sock_self(L), undo);
  *ps = lgreen_sock_get((lsock **)lua_touserdata(L, 1));
  return *ps == NULL ? LSOCK_W_CLOSED : outcome;
}


/*
** Wait 'w' leaves its socket's queue (its call is complete, or given up
** on kill, Timeout, socket timeout or an error): the next in line owns
** the direction if 'w' did. Idempotent ('w->data' is NULL once it left).
** As a wait's 'cancel', the runtime ends the wait after it.
*/
void lgreen_sock_leave(gl_wait_t *w) {
  lsock *s = (lsock *)w->data;
  int rhead, whead;
  if (s == NULL)
    return;
  w->data = NULL;
  rhead = s->readers.next == &w->link;
  whead = s->writers.next == &w->link;
  gl_link_remove(&w->link);
  if (rhead)
    lgreen_sock_kick_readers(s);
  if (whead)
    lgreen_sock_kick_writers(s);
  s->ops->watched(s);
  lgreen_sock_reref(s);
}


/*
** A call with timeout 0 that cannot complete from what the hub has
** gathered lets libuv run once without waiting (what the hub does at the
** end of each pass), so a loop that polls with such calls sees what the
** kernel has and progresses where LuaSocket's would: libuv writes queued
** bytes and accepts a waiting connection. Callbacks only record outcomes
** and queue threads (no Lua runs), and no green thread runs inside
** uv_run, so this never re-enters it. The socket's handle is referenced
** meanwhile: a socket nobody waits on does not keep the loop alive, and
** uv_run does not poll a loop that is not alive.
*/
void lgreen_sock_poll(lsock *s) {
  uv_ref(s->h);
  uv_run(s->h->loop, UV_RUN_NOWAIT);
  lgreen_sock_reref(s);
}


/* Watch 's' for readiness in direction 'write' on behalf of wait 'w'. */
void lgreen_sock_watch(lsock *s, lsock_watch *e, gl_wait_t *w, int write) {
  e->s = s;
  e->w = w;
  e->write = write;
  gl_link_push(&s->watchers, &e->link);
  if (!write)
    s->nwatchr++;
  s->ops->watched(s);
  lgreen_sock_reref(s);
}


/* Stop watching. Idempotent. */
void lgreen_sock_unwatch(lsock_watch *e) {
  lsock *s = e->s;
  if (s == NULL)
    return;
  e->s = NULL;
  gl_link_remove(&e->link);
  if (!e->write)
    s->nwatchr--;
  s->ops->watched(s);
  lgreen_sock_reref(s);
}

/* }====================================================== */


/*
** {======================================================
** Fairness
** =======================================================
*/

/*
** Called by an operation that is about to complete without blocking: 1
** if it did LSOCK_FAIR_BUDGET of them in a row and can yield to the hub,
** and must then return 'lgreen_sock_yield' instead (its streak starts
** again).
*/
int lgreen_sock_unfair(lua_State *L, lsock *s) {
  gl_hub_t *hub = s->st->hub;
  gl_thread_t *t = hub->current;
  if (s->streak < LSOCK_FAIR_BUDGET || t == NULL ||
      (t->flags & GL_F_KILLED) || !lgreen_canblock(L, hub))
    return 0;
  s->streak = 0;
  return 1;
}


/* After the fairness yield, run the operation again from the start (its
   arguments are still on the stack). */
static int yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, lgreen_sock_self(L), NULL);
  return ((lua_CFunction)ctx)(L);
}


/* Yield like sleep(0), then run method 'again' from the start. */
int lgreen_sock_yield(lua_State *L, lua_CFunction again) {
  gl_thread_t *t = lgreen_begin(L, lgreen_hub(L), "socket (fairness yield)");
  t->state = GL_READY;
  gl_ready(t);
  return lgreen_block(L, t, yield_k, (lua_KContext)again);
}

/* }====================================================== */


/*
** {======================================================
** Close
** =======================================================
*/

/* The socket closes: every waiter, suspended or woken, sees "closed". */
static void wake_all(gl_link_t *q) {
  while (!gl_link_empty(q)) {
    gl_wait_t *w = GL_CONTAINER(q->next, gl_wait_t, link);
    gl_link_remove(&w->link);
    w->data = NULL;
    if (!gl_wait_end(w, LSOCK_W_CLOSED))
      w->status = LSOCK_W_CLOSED; /* woken, but not run yet */
  }
}


/*
** Close 's' without running Lua: mark it closed (its userdata, if any,
** reads closed from now on: 'lgreen_sock_get'), wake every waiter with
** "closed" and every watcher, then the kind closes its handle (memory
** freed in on_close, or once no userdata points to it), after its writes
** are out if it lingers.
*/
void lgreen_sock_shut(lsock *s) {
  if (s->flags & LSOCK_CLOSED)
    return;
  s->flags |= LSOCK_CLOSED;
  wake_all(&s->readers);
  wake_all(&s->writers);
  while (!gl_link_empty(&s->watchers)) {
    lsock_watch *e = GL_CONTAINER(s->watchers.next, lsock_watch, link);
    gl_wait_end(e->w, GL_W_OK);
    lgreen_sock_unwatch(e);
  }
  s->ops->close(s);
}


/* The user's SO_LINGER (set with setoption): 1 if on, its timeout in
   '*secs'. */
int lgreen_sock_solinger(lsock *s, int *secs) {
  struct linger li;
  socklen_t len = sizeof(li);
  uv_os_fd_t fd;
  if (!(s->flags & LSOCK_LINGER) || uv_fileno(s->h, &fd) < 0 ||
      getsockopt(fd, SOL_SOCKET, SO_LINGER, &li, &len) < 0 || !li.l_onoff)
    return 0;
  *secs = li.l_linger;
  return 1;
}


/*
** Lingering: close() must not lose what send() accepted. A kind whose
** closed socket still has writes queued (stream.c: at most its write
** bound) keeps the handle open until they are out, as the kernel goes on
** sending what it already took. But a peer that never reads must not pin
** the descriptor, nor keep the process from exiting: a lingering socket
** is dropped once it has made no progress (its queue did not shrink:
** partial writes count, so a slow reader keeps its data coming) for
** LSOCK_LINGER_DEFAULT seconds, or the SO_LINGER timeout the user set. The
** hub stays up while a socket lingers (the state's timer is armed), so a
** script's last sendall reaches a peer that reads; what still lingers
** when the Lua state closes is closed then.
*/

/* The state of a lingering socket, malloc'd when it starts. */
struct lsock_linger {
  gl_link_t link; /* in st->lingering */
  lsock *s;
  uint64_t ns;    /* how long it may go without progress */
  uint64_t due;   /* checked for progress at gl_now() */
  size_t left;    /* bytes queued at the last check */
};

#define LINGERER(l) GL_CONTAINER((l), lsock_linger, link)


static void on_close(uv_handle_t *h) {
  lsock *s = (lsock *)h->data;
  if (s->flags & LSOCK_BOXED)
    s->flags |= LSOCK_HCLOSED; /* its userdata still points to it */
  else
    free(s);
}


/*
** Close the handle now. With SO_LINGER on and a timeout, close(2) would
** block the hub until the kernel sent its queue: turn it off first (the
** kernel then sends in the background). {on, 0} stays: that close resets.
*/
static void close_now(lsock *s) {
  int secs;
  if (s->linger != NULL) {
    gl_link_remove(&s->linger->link);
    free(s->linger);
    s->linger = NULL;
  }
  if (lgreen_sock_solinger(s, &secs) && secs > 0) {
    struct linger off = {0, 0};
    uv_os_fd_t fd;
    if (uv_fileno(s->h, &fd) == 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
  }
  if (!uv_is_closing(s->h))
    uv_close(s->h, on_close);
}



static void on_linger(gl_timer_t *tm);

/* Arm the state's timer at the earliest deadline of its lingering
   sockets, or stop it when none is left. */
static void linger_arm(lsock_state *st) {
  uint64_t due = UINT64_MAX;
  gl_link_t *l;
  for (l = st->lingering.next; l != &st->lingering; l = l->next)
    if (LINGERER(l)->due < due)
      due = LINGERER(l)->due;
  if (due == UINT64_MAX) {
    gl_timer_stop(st->hub, &st->ltimer);
    return;
  }
  if (gl_timer_start(st->hub, &st->ltimer, due, on_linger) < 0) {
    while (!gl_link_empty(&st->lingering)) /* no memory: drop them */
      close_now(LINGERER(st->lingering.next)->s);
  }
}


/* Drop the lingering sockets that made no progress since their last
   check. */
static void on_linger(gl_timer_t *tm) {
  lsock_state *st = GL_CONTAINER(tm, lsock_state, ltimer);
  uint64_t now = gl_now();
  gl_link_t *l = st->lingering.next;
  while (l != &st->lingering) {
    lsock_linger *g = LINGERER(l);
    l = l->next;
    if (g->due <= now) {
      size_t left = g->s->ops->queued(g->s);
      if (left < g->left) {
        g->left = left;
        g->due = now + g->ns;
      } else {
        close_now(g->s);
      }
    }
  }
  linger_arm(st);
}


/* Closed 's' (its writes queued) lingers, for at most 'secs' seconds
   without progress; the kind closes its handle once they are out. 0, or
   UV_ENOMEM: the kind closes it now. */
int lgreen_sock_lingering(lsock *s, int secs) {
  lsock_linger *g = (lsock_linger *)malloc(sizeof(*g));
  if (g == NULL)
    return UV_ENOMEM;
  g->s = s;
  g->ns = lgreen_ns(secs);
  g->due = gl_now() + g->ns;
  g->left = s->ops->queued(s);
  s->linger = g;
  uv_unref(s->h);
  gl_link_push(&s->st->lingering, &g->link);
  linger_arm(s->st);
  return 0;
}


/* Close the handle of closed 's' now (it lingers no more). */
void lgreen_sock_close_handle(lsock *s) {
  int lingered = s->linger != NULL;
  close_now(s);
  if (lingered)
    linger_arm(s->st);
}


/* sock:close(): wakes every waiting thread with nil, "closed". */
int lgreen_sock_gc(lua_State *L) {
  lsock **pp = lgreen_sock_checkud(L, 1);
  lsock *s = *pp;
  if (s != NULL) {
    *pp = NULL;
    lgreen_disown(&s->own);
    s->flags &= ~LSOCK_BOXED;
    lgreen_sock_shut(s);
  }
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
** fork
** =======================================================
*/

/*
** The child of green.fork (fork.c) shares every socket's descriptor with
** its parent, but none of the parent's threads. What the parent's loop had
** under way on a socket stays the parent's: reading ahead (the child would
** take bytes meant for the parent), writes queued in libuv (the child's
** loop would send them a second time), a connection libuv took from a
** listening socket and holds. So in the child each socket gets a new
** record and handle on a duplicate of its descriptor, and the old handle
** closes -- the child's copies only: no FIN, no RST reaches a peer while
** the parent holds the socket. The new one is idle until a thread of the
** child uses it; its settings and the bytes read already come along. The
** userdata learns of it the next time it is looked through (the old
** record forwards, 'fwd': nothing here writes into a userdata, which Lua
** may have freed without its __gc). A lingering socket (closed, flushing
** its writes) just closes.
*/

/* Every TCP, pipe and UDP handle on the hub's loop is a socket's, its data
   the socket's record (the resolver watches its own with uv_poll). */
static lsock *sockof(uv_handle_t *h, lsock_state *st) {
  lsock *s;
  if (h->type != UV_TCP && h->type != UV_NAMED_PIPE && h->type != UV_UDP)
    return NULL;
  s = (lsock *)h->data;
  return (s != NULL && s->h == h && s->st == st) ? s : NULL;
}


static void refork(uv_handle_t *h, void *arg) {
  lsock *s = sockof(h, (lsock_state *)arg), *n = NULL;
  uv_os_fd_t fd;
  int r;
  if (s == NULL || uv_is_closing(h))
    return;
  if (s->flags & LSOCK_CLOSED) { /* lingering */
    close_now(s);
    return;
  }
  if (uv_fileno(h, &fd) < 0)
    return; /* no descriptor yet: nothing under way */
  fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (fd >= 0 && (n = (lsock *)malloc(s->ops->size)) != NULL) {
    memcpy(n, s, s->ops->size); /* the kind's part: its 'open' sees to it */
    n->h = (uv_handle_t *)((char *)n + s->ops->hoff);
    if ((r = s->ops->init(h->loop, n)) == 0) {
      n->h->data = n;
      if ((r = s->ops->open(n, fd)) < 0) {
        n->flags &= ~LSOCK_BOXED; /* (s's copied flag: no userdata has n) */
        uv_close(n->h, on_close); /* ('fd' is not its yet); frees 'n' */
      }
      else
        fd = -1;
    } else {
      free(n);
    }
    if (r < 0)
      n = NULL;
  }
  if (fd >= 0)
    close(fd);
  if (n == NULL) { /* no memory, no descriptor: it reads closed */
    s->flags &= ~LSOCK_CONNECTED; /* and sends nothing more */
    lgreen_sock_shut(s);
    return;
  }
  gl_link_init(&n->readers); /* (the child's waits are undone: all empty) */
  gl_link_init(&n->writers);
  gl_link_init(&n->watchers);
  n->nwatchr = 0;
  n->flags &= ~(LSOCK_READING | LSOCK_POLLING);
  gl_link_init(&n->own.link); /* owned once its userdata looks (settle) */
  n->fwd = NULL;
  s->fwd = n; /* its userdata moves to 'n' at its next use */
  s->flags |= LSOCK_CLOSED;
  if (s->ops->forked != NULL)
    s->ops->forked(s);
  uv_close(h, on_close); /* what it holds is 'n''s now */
  lgreen_sock_reref(n);
}


static void sock_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  lsock_state *st = (lsock_state *)ud;
  (void)L;
  uv_walk(&hub->loop, refork, st);
  linger_arm(st); /* none lingers now: the timer stops */
}

/* }====================================================== */


/*
** {======================================================
** Errors, addresses, states
** =======================================================
*/

/*
** The socket error strings, in one place: LuaSocket's messages for the
** errors a caller branches on ("closed", "timeout", ...), libuv's for the
** others. The LuaSocket-compatible module (green.socket) words a few of
** them as LuaSocket does (a reset connection is "closed" there), and the
** others with the C library's message, as LuaSocket does (strerror).
*/

/* Green sockets' own message for 'err', or NULL (libuv's is used). */
static const char *message(int err) {
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
    return NULL;
  }
}


const char *lgreen_sock_strerror(int err) {
  const char *msg = message(err);
  return msg != NULL ? msg : uv_strerror(err);
}


int lgreen_sock_fail(lua_State *L, int err) {
  luaL_pushfail(L);
  lua_pushstring(L, lgreen_sock_strerror(err));
  return 2;
}


/* LuaSocket's message for 'err' (green.socket's). */
static const char *luasocket_message(int err) {
  const char *msg;
  switch (err) {
  case UV_ECONNRESET:
    return "closed";
  case UV_EISCONN:
    return "already connected";
  case UV_EAI_NONAME: /* from connect and bind, LuaSocket 3.1 says: */
  case UV_EAI_NODATA:
  case UV_EAI_ADDRFAMILY:
  case UV_EAI_FAIL:
    return "host or service not provided, or not known";
  }
  if ((msg = message(err)) != NULL)
    return msg;
  msg = strerror(-err); /* libuv's codes are negated errno values */
  return strncmp(msg, "Unknown error", 13) != 0 ? msg : uv_strerror(err);
}


/* Every code a socket call may fail with. */
static const int codes[] = {
#define XX(code, _) UV_##code,
    UV_ERRNO_MAP(XX)
#undef XX
    LSOCK_ETOOLONG};


/* core.luasocket_error(msg): LuaSocket's wording of green sockets' error
   message 'msg'. For green.socket. */
static int l_luasocket_error(lua_State *L) {
  const char *msg = luaL_checkstring(L, 1);
  size_t i;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    if (strcmp(lgreen_sock_strerror(codes[i]), msg) == 0) {
      lua_pushstring(L, luasocket_message(codes[i]));
      return 1;
    }
  }
  lua_settop(L, 1); /* not a socket error's message */
  return 1;
}


/* [-0, +1 or +3, m] how 0: "host:port" ("[v6]:port"); how 1: host, port,
   family ("inet" or "inet6"), as LuaSocket's getpeername. */
int lgreen_sock_pushaddr(lua_State *L, const struct sockaddr *sa, int how) {
  char ip[64] = "?";
  int port, v6 = sa->sa_family == AF_INET6;
  if (v6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  }
  if (how == 0) {
    lua_pushfstring(L, v6 ? "[%s]:%d" : "%s:%d", ip, port);
    return 1;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  lua_pushstring(L, v6 ? "inet6" : "inet");
  return 3;
}


/* [-0, +0, v] Field 'field' (on the top) of the options table that is
   argument 'arg' is not a 'what': "bad argument #3 to 'connect'
   (timeout: number expected, got string)", not luaL_check*'s "#-1". */
static void optbad(lua_State *L, int arg, const char *field,
                   const char *what) {
  const char *got = lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)
                        ? "a number with a fraction"
                        : luaL_typename(L, -1);
  luaL_argerror(L, arg,
                lua_pushfstring(L, "%s: %s expected, got %s", field, what,
                                got));
}


lua_Number lgreen_sock_optnumber(lua_State *L, int arg, const char *field) {
  int isnum;
  lua_Number n = lua_tonumberx(L, -1, &isnum);
  if (!isnum)
    optbad(L, arg, field, "number");
  return n;
}


lua_Number lgreen_sock_opttimeout(lua_State *L, int arg) {
  lua_Number t = lgreen_notnan(L, lgreen_sock_optnumber(L, arg, "timeout"),
                               "timeout");
  return t < 0 ? 0 : t; /* the toolkit's rule: negative is 0, nil none */
}


lua_Integer lgreen_sock_optinteger(lua_State *L, int arg,
                                   const char *field) {
  int isnum;
  lua_Integer n = lua_tointegerx(L, -1, &isnum);
  if (!isnum)
    optbad(L, arg, field, "integer");
  return n;
}


/* [-0, +0, v] The address family in field 'family' ("inet" or "inet6")
   of the options at 'opts' (if a table), else 'def'; 'what' names the
   function in the error for another value. */
int lgreen_sock_optfamily(lua_State *L, int opts, int def,
                          const char *what) {
  int family = def;
  if (!lua_istable(L, opts))
    return def;
  if (lua_getfield(L, opts, "family") != LUA_TNIL) {
    size_t len;
    const char *f;
    if (lua_type(L, -1) != LUA_TSTRING)
      optbad(L, opts, "family", "string");
    f = lua_tolstring(L, -1, &len);
    if (strlen(f) != len) /* "inet\0..." */
      luaL_error(L, "%s: bad family (inet or inet6)", what);
    else if (strcmp(f, "inet") == 0)
      family = AF_INET;
    else if (strcmp(f, "inet6") == 0)
      family = AF_INET6;
    else
      luaL_error(L, "%s: bad family '%s' (inet or inet6)", what, f);
  }
  lua_pop(L, 1);
  return family;
}


/* libuv's allocation callback of every socket: reads land in the hub's
   scratch area, and the kind copies what it keeps. */
void lgreen_sock_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  lsock *s = (lsock *)h->data;
  (void)hint;
  *b = uv_buf_init(s->st->scratch, sizeof(s->st->scratch));
}


/* "listening", "connected", "unconnected" or "closed". */
const char *lgreen_sock_statename(lsock *s) {
  if (s == NULL)
    return "closed";
  if (s->flags & LSOCK_LISTENING)
    return "listening";
  if (s->flags & LSOCK_CONNECTED)
    return "connected";
  return "unconnected";
}


/* core.sockstate(x): the state of green socket x (see 'statename'), or
   nil if x is not a green socket. For argument checks in Lua. */
static int l_sockstate(lua_State *L) {
  lsock **pp = testud(L, 1);
  if (pp == NULL)
    return 0;
  lua_pushstring(L, lgreen_sock_statename(*pp));
  return 1;
}

/* }====================================================== */


/* green.debug.hub_prevent_multiple_readers([on]): returns the old value;
   nil, as no argument, only asks (it turned the check off). */
static int l_prevent(lua_State *L) {
  lsock_state *st = lgreen_sock_state(L);
  int old = st->prevent;
  if (!lua_isnoneornil(L, 1))
    st->prevent = lua_toboolean(L, 1);
  lua_pushboolean(L, old);
  return 1;
}


/* At lua_close (before the hub's own finalizer closes the loop): close
   the handles that were still flushing after close(). */
static int state_gc(lua_State *L) {
  lsock_state *st = (lsock_state *)lua_touserdata(L, 1);
  while (!gl_link_empty(&st->lingering))
    close_now(LINGERER(st->lingering.next)->s);
  gl_timer_stop(st->hub, &st->ltimer);
  return 0;
}


static const luaL_Reg mod_funcs[] = {
    {"hub_prevent_multiple_readers", l_prevent},
    {"sockstate", l_sockstate},
    {"luasocket_error", l_luasocket_error},
    {NULL, NULL},
};


/* [-0, +0, m] The socket state, and the core's functions in the module
   table on the top. The kinds add theirs after (lgreen_open_stream, ...). */
void lgreen_open_socket(lua_State *L, gl_hub_t *hub) {
  lsock_state *st;
  struct sigaction sa;
  /* A write to a reset connection must return "closed", not kill the
     process: ignore SIGPIPE unless the host installed a handler. */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  st = (lsock_state *)lua_newuserdatauv(L, sizeof(*st), 0);
  st->hub = hub;
  st->mt_stream = st->mt_udp = st->mt_parser = NULL;
  st->prevent = 1;
  gl_link_init(&st->lingering);
  st->ltimer.idx = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  lgreen_sock_register(L, mod_funcs);
  lgreen_on_fork(hub, sock_forked, st);
}
