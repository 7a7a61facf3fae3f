/*
** sockopt.c: the methods every green socket has, whatever its kind (TCP,
** Unix-domain, UDP): settimeout/gettimeout, setoption/getoption,
** getsockname/getpeername, getfd, getstats, dirty, close, __tostring; and
** the metatables, which the kinds make with 'lgreen_sock_newmeta'. What
** differs by kind is asked of the socket's ops table. See lsocket.h.
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
static int sock_setoption(lua_State *L) {
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
      int isint;
      lua_Integer t = lua_tointegerx(L, -1, &isint);
      /* (not luaL_checkinteger at -1: its message would name argument
         "#-2", a stack index, for NaN, a fraction or a string) */
      luaL_argcheck(L, isint, 3, "linger timeout: integer seconds expected");
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
  s = lgreen_sock_get(pp); /* after the arguments: an __index could have
                              closed it */
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  if ((r = uv_fileno(s->h, &fd)) < 0)
    return lgreen_sock_fail(L, r);
  if (setsockopt(fd, opts[o].level, opts[o].code, val, len) < 0)
    return lgreen_sock_fail(L, uv_translate_sys_error(errno));
  if (opts[o].type == OPT_LINGER)
    s->flags |= LSOCK_LINGER; /* close() honours it (socket.c) */
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
  if ((r = uv_fileno(s->h, &fd)) < 0)
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
    uv_fileno(s->h, &fd);
  lua_pushinteger(L, (lua_Integer)fd);
  return 1;
}


/* sock:getsockname(), sock:getpeername(): host, port, family (a Unix
   socket: its path); or nil, err. */
static int getname(lua_State *L, int peer) {
  lsock *s = lgreen_sock_check(L, 1);
  if (s == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  return s->ops->address(L, s, peer);
}


static int sock_getsockname(lua_State *L) {
  return getname(L, 0);
}


static int sock_getpeername(lua_State *L) {
  return getname(L, 1);
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
  lua_pushinteger(L, (lua_Integer)s->ops->queued(s));
  lua_pushinteger(L, (lua_Integer)s->ops->buffered(s));
  return 5;
}


/* sock:dirty(): true if received data (UDP: a datagram) waits in the
   socket's buffer, so a receive returns without waiting. */
static int sock_dirty(lua_State *L) {
  lsock *s = *checkud(L);
  lua_pushboolean(L, s != NULL && s->ops->buffered(s) > 0);
  return 1;
}


/* "green.socket (unix, fd 5, connected)", "green.udp (closed)". */
static int sock_tostring(lua_State *L) {
  lsock *s = *checkud(L);
  uv_os_fd_t fd = -1;
  luaL_getmetafield(L, 1, "__name");
  if (s == NULL) {
    lua_pushfstring(L, "%s (closed)", lua_tostring(L, -1));
    return 1;
  }
  uv_fileno(s->h, &fd);
  lua_pushfstring(L, "%s (%sfd %d, %s)", lua_tostring(L, -1), s->ops->tag,
                  (int)fd, lgreen_sock_statename(s));
  return 1;
}


/* The methods every socket has. */
static const luaL_Reg common_meth[] = {
    {"close", lgreen_sock_close},
    {"settimeout", sock_settimeout},
    {"gettimeout", sock_gettimeout},
    {"setoption", sock_setoption},
    {"getoption", sock_getoption},
    {"getpeername", sock_getpeername},
    {"getsockname", sock_getsockname},
    {"getfd", sock_getfd},
    {"getstats", sock_getstats},
    {"dirty", sock_dirty},
    {NULL, NULL},
};


/*
** Create metatable 'name' whose methods are 'meth' (the kind's) plus the
** ones every socket has; each function gets the hub and the socket state
** as upvalues. Returns the metatable, which the caller records in the
** state ('mt_stream', 'mt_udp').
*/
const void *lgreen_sock_newmeta(lua_State *L, const char *name,
                                const luaL_Reg *meth) {
  static const luaL_Reg metameth[] = {
      {"__gc", lgreen_sock_gc},
      {"__close", lgreen_sock_gc},
      {"__tostring", sock_tostring},
      {NULL, NULL},
  };
  const void *mt;
  luaL_newmetatable(L, name);
  mt = lua_topointer(L, -1);
  lgreen_sock_register(L, metameth);
  lua_createtable(L, 0, 24);
  lgreen_sock_register(L, common_meth);
  lgreen_sock_register(L, meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return mt;
}


/* Add 'meth' to the methods of metatable 'name' (made by newmeta). */
void lgreen_sock_addmeth(lua_State *L, const char *name,
                         const luaL_Reg *meth) {
  luaL_getmetatable(L, name);
  lua_getfield(L, -1, "__index");
  lgreen_sock_register(L, meth);
  lua_pop(L, 2);
}
