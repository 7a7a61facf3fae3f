/*
** sockopt.c: the methods every green socket has, whatever its kind (TCP,
** Unix-domain, UDP): settimeout/gettimeout, setoption/getoption, getfd,
** getstats, dirty, close, getsockname/getpeername (in tcp.c, which knows
** the addresses), and __tostring. See lsocket.h.
*/
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lsocket.h"


#define checkud(L) lgreen_sock_checkud((L), 1)


/* sock:settimeout(seconds, [mode]): nil or negative blocks forever; 0
   never blocks. The limit applies to each call as a whole. */
static int sock_settimeout(lua_State *L) {
  lsock **pp = checkud(L);
  double t = lgreen_optseconds(L, 2, -1);
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


/*
** {======================================================
** Options
** =======================================================
*/

#define OPT_BOOL 0
#define OPT_INT 1
#define OPT_LINGER 2
#define OPT_ERROR 3 /* SO_ERROR: get only */

static const char *const optnames[] = {
    "tcp-nodelay",      "keepalive",         "reuseaddr",
    "reuseport",        "linger",            "broadcast",
    "dontroute",        "ip-multicast-ttl",  "ip-multicast-loop",
    "ipv6-v6only",      "send-buffer-size",  "recv-buffer-size",
    "tcp-keepidle",     "tcp-keepcnt",       "tcp-keepintvl",
    "tcp-defer-accept", "tcp-fastopen",      "error",
    NULL};

static const struct {
  int level, code, type;
} opts[] = {
    {IPPROTO_TCP, TCP_NODELAY, OPT_BOOL},
    {SOL_SOCKET, SO_KEEPALIVE, OPT_BOOL},
    {SOL_SOCKET, SO_REUSEADDR, OPT_BOOL},
    {SOL_SOCKET, SO_REUSEPORT, OPT_BOOL},
    {SOL_SOCKET, SO_LINGER, OPT_LINGER},
    {SOL_SOCKET, SO_BROADCAST, OPT_BOOL},
    {SOL_SOCKET, SO_DONTROUTE, OPT_BOOL},
    {IPPROTO_IP, IP_MULTICAST_TTL, OPT_INT},
    {IPPROTO_IP, IP_MULTICAST_LOOP, OPT_BOOL},
    {IPPROTO_IPV6, IPV6_V6ONLY, OPT_BOOL},
    {SOL_SOCKET, SO_SNDBUF, OPT_INT},
    {SOL_SOCKET, SO_RCVBUF, OPT_INT},
    {IPPROTO_TCP, TCP_KEEPIDLE, OPT_INT},
    {IPPROTO_TCP, TCP_KEEPCNT, OPT_INT},
    {IPPROTO_TCP, TCP_KEEPINTVL, OPT_INT},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, OPT_INT},
    {IPPROTO_TCP, TCP_FASTOPEN, OPT_INT},
    {SOL_SOCKET, SO_ERROR, OPT_ERROR},
};


/***
** sock:setoption(name, value): booleans "tcp-nodelay", "keepalive",
** "reuseaddr", "reuseport", "broadcast", "dontroute", "ip-multicast-loop",
** "ipv6-v6only"; integers "ip-multicast-ttl", "send-buffer-size",
** "recv-buffer-size", "tcp-keepidle", "tcp-keepcnt", "tcp-keepintvl"
** (seconds, probes, seconds), "tcp-defer-accept" (seconds), "tcp-fastopen"
** (queue length, on a listening socket); "linger" ({on = bool, timeout =
** seconds}). Returns 1, or nil, err (an option the socket's kind lacks
** fails this way). sock:getoption(name) reads the same options, and
** "error": the socket's pending error (SO_ERROR, cleared by reading it)
** as a message, or nil if there is none.
*/
int lgreen_sockopt_setoption(lua_State *L) {
  lsock **pp = checkud(L);
  lsock *s;
  int o = luaL_checkoption(L, 2, NULL, optnames);
  uv_os_fd_t fd;
  int r, on;
  struct linger li;
  const void *val = &on;
  socklen_t len = sizeof(on);
  if (opts[o].type == OPT_ERROR)
    return luaL_argerror(L, 2, "option 'error' can only be read");
  if (opts[o].type == OPT_LINGER) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "on");
    lua_getfield(L, 3, "timeout");
    li.l_onoff = lua_toboolean(L, -2);
    if (!lua_isnil(L, -1)) {
      lua_Integer t = luaL_checkinteger(L, -1);
      luaL_argcheck(L, t >= 0 && t <= 86400, 3,
                    "linger timeout out of range (0 to 86400 seconds)");
      li.l_linger = (int)t;
    } else {
      li.l_linger = 0;
    }
    val = &li;
    len = sizeof(li);
  } else if (opts[o].type == OPT_INT) {
    on = (int)luaL_checkinteger(L, 3);
  } else {
    on = lua_toboolean(L, 3);
  }
  s = *pp; /* after the arguments: an __index could have closed it */
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if ((r = uv_fileno(&s->h.handle, &fd)) < 0)
    return lgreen_sock_fail(L, r);
  if (setsockopt(fd, opts[o].level, opts[o].code, val, len) < 0)
    return lgreen_sock_fail(L, uv_translate_sys_error(errno));
  if (opts[o].type == OPT_LINGER)
    s->flags |= LSOCK_LINGER; /* close() honours it (socket.c) */
  lua_pushinteger(L, 1);
  return 1;
}


int lgreen_sockopt_getoption(lua_State *L) {
  lsock *s = *checkud(L);
  int o = luaL_checkoption(L, 2, NULL, optnames);
  uv_os_fd_t fd;
  int r, on = 0;
  struct linger li;
  void *val = &on;
  socklen_t len = sizeof(on);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if ((r = uv_fileno(&s->h.handle, &fd)) < 0)
    return lgreen_sock_fail(L, r);
  if (opts[o].type == OPT_LINGER) {
    val = &li;
    len = sizeof(li);
  }
  if (getsockopt(fd, opts[o].level, opts[o].code, val, &len) < 0)
    return lgreen_sock_fail(L, uv_translate_sys_error(errno));
  if (opts[o].type == OPT_LINGER) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, li.l_onoff);
    lua_setfield(L, -2, "on");
    lua_pushinteger(L, li.l_linger);
    lua_setfield(L, -2, "timeout");
  } else if (opts[o].type == OPT_ERROR) {
    if (on == 0)
      lua_pushnil(L);
    else
      lua_pushstring(L, lgreen_sock_strerror(uv_translate_sys_error(on)));
  } else if (opts[o].type == OPT_INT) {
    lua_pushinteger(L, on);
  } else {
    lua_pushboolean(L, on);
  }
  return 1;
}

/* }====================================================== */


/* sock:getfd(): the descriptor, or -1 once closed. */
static int sock_getfd(lua_State *L) {
  lsock *s = *checkud(L);
  uv_os_fd_t fd = -1;
  if (s != NULL)
    uv_fileno(&s->h.handle, &fd);
  lua_pushinteger(L, (lua_Integer)fd);
  return 1;
}


static size_t queued(lsock *s) {
  if (s->kind == LSOCK_UDP)
    return uv_udp_get_send_queue_size(&s->h.udp);
  return lgreen_stream_queued(s);
}


/***
** sock:getstats(): bytes received, bytes sent (accepted by send: written
** or queued), age in seconds (LuaSocket's three), then bytes waiting in
** the write queue and bytes (UDP: datagrams) waiting to be received.
*/
static int sock_getstats(lua_State *L) {
  lsock *s = *checkud(L);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  lua_pushinteger(L, (lua_Integer)s->nrecv);
  lua_pushinteger(L, (lua_Integer)s->nsent);
  lua_pushnumber(L, (double)(gl_now() - s->born) / 1e9);
  lua_pushinteger(L, (lua_Integer)queued(s));
  lua_pushinteger(L,
                  (lua_Integer)(s->kind == LSOCK_UDP ? s->ndq : s->len));
  return 5;
}


/* sock:dirty(): true if received data (UDP: a datagram) waits in the
   socket's buffer, so a receive returns without waiting. */
static int sock_dirty(lua_State *L) {
  lsock *s = *checkud(L);
  lua_pushboolean(L, s != NULL && (s->len > 0 || s->ndq > 0));
  return 1;
}


/* "listening", "connected", "unconnected" or "closed". */
static const char *statename(lsock *s) {
  if (s == NULL)
    return "closed";
  if (s->flags & LSOCK_LISTENING)
    return "listening";
  if (s->flags & (LSOCK_STREAM | LSOCK_PEER))
    return "connected";
  return "unconnected";
}


/* core.sockstate(x): the state of green socket x (see 'statename'), or
   nil if x is not a green socket. For argument checks in Lua. */
int lgreen_sockopt_state(lua_State *L) {
  lsock_state *st = lgreen_sock_state(L);
  void *p = lua_touserdata(L, 1);
  const void *mt = NULL;
  if (p != NULL && lua_getmetatable(L, 1)) {
    mt = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  if (p == NULL || (mt != st->mt_stream && mt != st->mt_udp))
    return 0;
  lua_pushstring(L, statename(*(lsock **)p));
  return 1;
}


int lgreen_sock_tostring(lua_State *L) {
  lsock *s = *checkud(L);
  const char *name = luaL_testudata(L, 1, LGREEN_UDP) ? "green.udp"
                                                       : "green.socket";
  uv_os_fd_t fd = -1;
  const char *state = statename(s);
  if (s == NULL) {
    lua_pushfstring(L, "%s (closed)", name);
    return 1;
  }
  uv_fileno(&s->h.handle, &fd);
  lua_pushfstring(L, "%s (%sfd %d, %s)", name,
                  s->kind == LSOCK_PIPE ? "unix, " : "", (int)fd, state);
  return 1;
}


const luaL_Reg lgreen_sockopt_meth[] = {
    {"close", lgreen_sock_close},
    {"settimeout", sock_settimeout},
    {"gettimeout", sock_gettimeout},
    {"setoption", lgreen_sockopt_setoption},
    {"getoption", lgreen_sockopt_getoption},
    {"getpeername", lgreen_sock_getpeername},
    {"getsockname", lgreen_sock_getsockname},
    {"getfd", sock_getfd},
    {"getstats", sock_getstats},
    {"dirty", sock_dirty},
    {NULL, NULL},
};
