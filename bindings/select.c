/*
** select.c: green.select(recvt, sendt, [timeout]), LuaSocket's select for
** green sockets (TCP, Unix-domain, UDP), as one wait on many sockets.
**
** The waiting thread holds one 'selwait' record (a userdata on its own
** stack) with an entry per socket and direction, each a watcher of its
** socket (the core's 'lsock_watch', asking the socket's ops whether it is
** ready). The first socket that becomes ready wakes the thread; the
** continuation unwatches every entry and scans the tables again, so the
** result always describes the sockets as they are when the thread runs,
** and nothing is consumed: select takes no data and is not a reader, so a
** thread that selects and then receives is the socket's only reader.
** Kill, a green.Timeout, the select timeout, and closing a socket all
** unwatch every entry; no entry outlives the call.
**
** Readable: a receive would return at once (data or a datagram buffered,
** end of stream or an error, a connection waiting on a server). Writable:
** a send would not wait (room in the write queue; always for UDP).
** A closed socket is both: its calls return nil, "closed" at once.
** The lists are copied (and checked) on entry; see own_list.
** Bytes the kernel holds but libuv has not read yet count as readable
** too (one poll(2) with timeout 0 over the other sockets of recvt), so
** select sees what LuaSocket's select would: data a peer just sent on
** the loopback is readable at once, not after the next hub pass.
*/
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "lsocket.h"

typedef struct selwait {
  gl_wait_t base;      /* first member: GL_W_OK (a socket is ready), or */
  uint64_t due;        /* GL_W_TIMEOUT; deadline (gl_now() ns), 0 for none */
  int n;               /* entries */
  lsock_watch ents[1]; /* 'n' of them (at least room for one) */
} selwait;


/* Every entry unwatched. Idempotent. */
static void unwatch_all(selwait *sel) {
  int i;
  for (i = 0; i < sel->n; i++)
    lgreen_sock_unwatch(&sel->ents[i]);
}


/* Timeout, kill or green.Timeout: the runtime ends the wait after. */
static void sel_cancel(gl_wait_t *w) {
  unwatch_all((selwait *)w);
}


/* Is 's' (NULL: closed, which is both) ready in direction 'write'? */
static int isready(lsock *s, int write) {
  return s == NULL || (write ? s->ops->can_write(s) : s->ops->can_read(s));
}


/*
** {======================================================
** green.select
** =======================================================
*/

/* The socket at stack top (any kind), or raises naming the slot. */
static lsock **checkent(lua_State *L, int tab, lua_Integer i) {
  void *p = luaL_testudata(L, -1, LGREEN_SOCKET);
  if (p == NULL)
    p = luaL_testudata(L, -1, LGREEN_UDP);
  if (p == NULL)
    luaL_error(L, "bad argument #%d to 'select' (item %d is a %s, not a "
               "green socket)", tab, (int)i, luaL_typename(L, -1));
  return (lsock **)p;
}


/*
** [-0, +0, m] Add item 'i' of the list at 'tab' to the result table at
** 'out' (out[k] = sock and out[sock] = k, as LuaSocket does) unless it is
** there already. Returns 1 if it added it.
*/
static int add(lua_State *L, int tab, lua_Integer i, int out) {
  lua_Integer k;
  lua_rawgeti(L, tab, i);
  if (lua_rawget(L, out) != LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  k = (lua_Integer)lua_rawlen(L, out) + 1;
  lua_rawgeti(L, tab, i);
  lua_pushvalue(L, -1);
  lua_rawseti(L, out, k);
  lua_pushinteger(L, k);
  lua_rawset(L, out);
  return 1;
}


/*
** [-0, +0, m] Add the ready sockets of the list at 'tab' to the result
** table at 'out'. Returns how many it added; '*total' counts the list.
*/
static int collect(lua_State *L, int tab, int out, int write, int *total) {
  lua_Integer i;
  int n = 0;
  if (lua_isnil(L, tab))
    return 0;
  for (i = 1; lua_rawgeti(L, tab, i) != LUA_TNIL; i++) {
    lsock *s = *checkent(L, tab, i);
    lua_pop(L, 1);
    (*total)++;
    if (isready(s, write))
      n += add(L, tab, i, out);
  }
  lua_pop(L, 1);
  return n;
}


/*
** [-0, +0, m] Add to 'out' the sockets of the list at 'tab' that are not
** readable from their buffers but whose descriptor the kernel reports
** readable. Returns how many it added.
*/
static int kernel_ready(lua_State *L, int tab, int out, int total) {
  struct pollfd *fds;
  lua_Integer *idx, i;
  int n = 0, k, added = 0;
  if (lua_isnil(L, tab) || total == 0)
    return 0;
  fds = (struct pollfd *)lua_newuserdatauv(
      L, (size_t)total * (sizeof(*fds) + sizeof(*idx)), 0);
  idx = (lua_Integer *)(fds + total);
  for (i = 1; lua_rawgeti(L, tab, i) != LUA_TNIL; i++) {
    lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, -1));
    uv_os_fd_t fd;
    lua_pop(L, 1);
    if (n < total && s != NULL && !s->ops->can_read(s) &&
        uv_fileno(s->h, &fd) == 0) {
      fds[n].fd = fd;
      fds[n].events = POLLIN;
      fds[n].revents = 0;
      idx[n++] = i;
    }
  }
  lua_pop(L, 1);
  if (n > 0 && poll(fds, (nfds_t)n, 0) > 0) {
    for (k = 0; k < n; k++)
      if (fds[k].revents != 0)
        added += add(L, tab, idx[k], out);
  }
  lua_pop(L, 1);
  return added;
}


/*
** [-0, +0, m] Replace the list at 'tab' (if any) by a copy of it, checking
** every item. The scans read the list again after allocating, and an
** allocation can run a finalizer: one that changed the caller's list in
** between (a socket more than was counted, a socket replaced by another
** value) made watch_list write past the entries it had room for, or read
** a string as a socket. Nothing but this call sees the copy.
*/
static void own_list(lua_State *L, int tab) {
  lua_Integer i;
  if (lua_isnil(L, tab))
    return;
  lua_newtable(L);
  for (i = 1; lua_rawgeti(L, tab, i) != LUA_TNIL; i++) {
    checkent(L, tab, i);
    lua_rawseti(L, -2, i);
  }
  lua_pop(L, 1);
  lua_replace(L, tab);
}


/* Watch each open socket of the list at 'tab'. Returns how many sockets
   of the list are closed. */
static int watch_list(lua_State *L, selwait *sel, int tab, int write) {
  lua_Integer i;
  int closed = 0;
  if (lua_isnil(L, tab))
    return 0;
  for (i = 1; lua_rawgeti(L, tab, i) != LUA_TNIL; i++) {
    lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (s != NULL)
      lgreen_sock_watch(s, &sel->ents[sel->n++], &sel->base, write);
    else
      closed++;
  }
  lua_pop(L, 1);
  return closed;
}


static int select_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: [recvt, sendt, timeout]. Scan, then wait until 'due' (0: none). */
static int select_scan(lua_State *L, uint64_t due, int poll) {
  gl_hub_t *hub = lgreen_hub(L);
  gl_thread_t *t;
  selwait *sel;
  int total = 0, nread = 0, ready;
  lua_settop(L, 3);
  lua_newtable(L); /* 4: readable */
  lua_newtable(L); /* 5: writable */
  ready = collect(L, 1, 4, 0, &nread);
  ready += kernel_ready(L, 1, 4, nread);
  total = nread;
  ready += collect(L, 2, 5, 1, &total);
  if (ready > 0)
    return 2;
  if (poll || (due != 0 && gl_now() >= due)) {
    lua_pushliteral(L, "timeout");
    return 3;
  }
  t = lgreen_begin(L, hub, "green.select");
  sel = (selwait *)lua_newuserdatauv(
      L, sizeof(selwait) + (size_t)(total > 0 ? total - 1 : 0) *
                               sizeof(lsock_watch), 0);
  memset(sel, 0, sizeof(*sel));
  gl_wait_init(&sel->base);
  sel->due = due;
  /* Read the sockets again after that allocation: it can run a finalizer
     that closes one, which is then ready (closed) and must be reported. */
  if (watch_list(L, sel, 1, 0) + watch_list(L, sel, 2, 1) > 0) {
    unwatch_all(sel);
    return select_scan(L, due, poll);
  }
  gl_wait_start(t, &sel->base, "green.select", sel_cancel, NULL);
  if (due != 0)
    lgreen_deadline(L, &sel->base, due);
  return lgreen_block(L, t, select_k, (lua_KContext)sel);
}


static int select_k(lua_State *L, int status, lua_KContext ctx) {
  selwait *sel = (selwait *)ctx;
  (void)status;
  unwatch_all(sel);
  if (lgreen_waited(L, &sel->base, NULL) == GL_W_TIMEOUT) {
    lua_settop(L, 3);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "timeout");
    return 3;
  }
  return select_scan(L, sel->due, 0); /* may wait again */
}


/***
** green.select(recvt, sendt, [timeout]): wait until a socket of the list
** recvt is readable or one of sendt is writable (see the header comment),
** at most timeout seconds (nil or negative: no limit; 0: poll). Returns
** the readable list and the writable list (each also keyed by socket,
** with its index), or two empty lists and "timeout". Either list may be
** nil; entries must be green sockets (TCP, Unix or UDP).
*/
static int l_select(lua_State *L) {
  double timeout = lgreen_optseconds(L, 3, -1);
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  own_list(L, 1);
  own_list(L, 2);
  if (timeout < 0)
    return select_scan(L, 0, 0);
  return select_scan(L, lgreen_sock_deadline(timeout), timeout == 0);
}

/* }====================================================== */


/***
** green.gettime(): the wall clock, in seconds since the epoch with
** microseconds (LuaSocket's socket.gettime; select's timeouts use the
** hub's monotonic clock, green.now).
*/
static int l_gettime(lua_State *L) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) < 0)
    return lgreen_sock_fail(L, UV_EINVAL);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}


static const luaL_Reg select_funcs[] = {
    {"select", l_select},
    {"gettime", l_gettime},
    {NULL, NULL},
};


/* [-0, +0, m] green.select and green.gettime in the module table on the
   top. */
void lgreen_open_select(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  lgreen_sock_register(L, select_funcs);
}
