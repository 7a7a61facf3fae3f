/*
** The resolver, on its own: getaddrinfo, getnameinfo and gethostname for
** Lua (green.socket's dns.* is built on them). Lookups run on libuv's
** thread pool, so a slow name server never blocks the hub.
**
** A lookup's record is malloc'd: libuv owns it until its callback runs,
** even when the waiting thread was killed or timed out first (the cancel
** only forgets the thread, and the callback then frees the record).
*/
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lsocket.h"

#define MAXADDRS 32

typedef struct lookup {
  union {
    uv_getaddrinfo_t ai;
    uv_getnameinfo_t ni;
  } req;
  gl_thread_t *t; /* the waiting thread; NULL once it gave up */
  int status;     /* libuv's result */
  int done;       /* the callback ran and woke 't' */
  int family;     /* getaddrinfo: AF_UNSPEC, AF_INET or AF_INET6 */
  int n;          /* getaddrinfo: addresses found */
  struct sockaddr_storage addrs[MAXADDRS];
  char host[NI_MAXHOST]; /* getnameinfo */
  char service[NI_MAXSERV];
} lookup;


/*
** {======================================================
** libuv side
** =======================================================
*/

static void finish(lookup *lk, int status) {
  if (lk->t == NULL) { /* abandoned */
    free(lk);
    return;
  }
  lk->status = status;
  lk->done = 1;
  gl_wake(lk->t, 0);
}


static void on_addrinfo(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  lookup *lk = (lookup *)req;
  struct addrinfo *ai;
  lk->n = 0;
  for (ai = res; status == 0 && ai != NULL && lk->n < MAXADDRS;
       ai = ai->ai_next) {
    if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
        ai->ai_addrlen <= sizeof(struct sockaddr_storage))
      memcpy(&lk->addrs[lk->n++], ai->ai_addr, ai->ai_addrlen);
  }
  if (status == 0 && lk->n == 0)
    status = UV_EAI_NONAME;
  uv_freeaddrinfo(res);
  finish(lk, status);
}


static void on_nameinfo(uv_getnameinfo_t *req, int status,
                        const char *host, const char *service) {
  lookup *lk = (lookup *)req;
  if (status == 0) {
    strncpy(lk->host, host ? host : "", sizeof(lk->host) - 1);
    strncpy(lk->service, service ? service : "", sizeof(lk->service) - 1);
  }
  finish(lk, status);
}


static void lookup_cancel(gl_thread_t *t) {
  ((lookup *)t->wait)->t = NULL; /* the callback frees it */
}

/* }====================================================== */


/* [-0, +0, v] after the wait: raise a kill or Timeout, freeing 'lk' if
   its callback already ran (else the callback frees it). */
static void resumed(lua_State *L, lookup *lk, gl_thread_t *t) {
  if (t->flags & GL_F_PENDING) {
    if (lk->done)
      free(lk);
    else
      lk->t = NULL;
    lgreen_resumed(L, t);
  }
}


/* Start waiting for 'lk' (whose request libuv now owns). */
static int wait_lookup(lua_State *L, gl_thread_t *t, lookup *lk,
                       const char *what, lua_KFunction k) {
  lk->t = t;
  gl_suspend(t, what, lookup_cancel);
  t->wait = lk;
  return lgreen_block(L, t, k, (lua_KContext)lk);
}


static int addrinfo_k(lua_State *L, int status, lua_KContext ctx) {
  lookup *lk = (lookup *)ctx;
  int i, err;
  (void)status;
  resumed(L, lk, lgreen_hub(L)->current);
  err = lk->status;
  if (err == 0) {
    lua_createtable(L, lk->n, 0);
    for (i = 0; i < lk->n; i++) {
      struct sockaddr *sa = (struct sockaddr *)&lk->addrs[i];
      char ip[INET6_ADDRSTRLEN];
      if (sa->sa_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)sa, ip, sizeof(ip));
      else
        uv_ip4_name((struct sockaddr_in *)sa, ip, sizeof(ip));
      lua_createtable(L, 0, 2);
      lua_pushstring(L, sa->sa_family == AF_INET6 ? "inet6" : "inet");
      lua_setfield(L, -2, "family");
      lua_pushstring(L, ip);
      lua_setfield(L, -2, "addr");
      lua_rawseti(L, -2, i + 1);
    }
  }
  free(lk);
  if (err != 0)
    return lgreen_sock_fail(L, err);
  return 1;
}


/***
** getaddrinfo(host, [opts]): { {family = "inet"|"inet6", addr = ip}, ... }
** (duplicates removed, the resolver's order kept), or nil, "host not found"
** (LuaSocket's wording for every failed lookup of a name). opts.family:
** "inet" or "inet6" to ask for one family only.
*/
static int l_getaddrinfo(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *host = luaL_checkstring(L, 1);
  struct addrinfo hints;
  gl_thread_t *t;
  lookup *lk;
  int r, family = AF_UNSPEC;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "family") != LUA_TNIL) {
      const char *f = luaL_checkstring(L, -1);
      if (strcmp(f, "inet") == 0)
        family = AF_INET;
      else if (strcmp(f, "inet6") == 0)
        family = AF_INET6;
      else
        return luaL_error(L, "getaddrinfo: bad family '%s' (inet or inet6)",
                          f);
    }
  }
  t = lgreen_begin(L, hub, "green.getaddrinfo");
  lk = (lookup *)calloc(1, sizeof(*lk));
  if (lk == NULL)
    return luaL_error(L, "not enough memory");
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM; /* one entry per address */
  r = uv_getaddrinfo(&hub->loop, &lk->req.ai, on_addrinfo, host, NULL,
                     &hints);
  if (r < 0) {
    free(lk);
    return lgreen_sock_fail(L, r);
  }
  return wait_lookup(L, t, lk, "green.getaddrinfo", addrinfo_k);
}


static int nameinfo_k(lua_State *L, int status, lua_KContext ctx) {
  lookup *lk = (lookup *)ctx;
  int err;
  (void)status;
  resumed(L, lk, lgreen_hub(L)->current);
  err = lk->status;
  if (err == 0) {
    lua_pushstring(L, lk->host);
    lua_pushstring(L, lk->service);
  }
  free(lk);
  if (err != 0)
    return lgreen_sock_fail(L, err);
  return 2;
}


/***
** getnameinfo(ip, [port]): host name, service name; or nil, err. 'ip' must
** be a literal IPv4 or IPv6 address.
*/
static int l_getnameinfo(lua_State *L) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_optinteger(L, 2, 0);
  struct sockaddr_storage ss;
  gl_thread_t *t;
  lookup *lk;
  int r;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  memset(&ss, 0, sizeof(ss));
  if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&ss) != 0)
    return luaL_argerror(L, 1, "not an IP address");
  t = lgreen_begin(L, hub, "green.getnameinfo");
  lk = (lookup *)calloc(1, sizeof(*lk));
  if (lk == NULL)
    return luaL_error(L, "not enough memory");
  r = uv_getnameinfo(&hub->loop, &lk->req.ni, on_nameinfo,
                     (struct sockaddr *)&ss, 0);
  if (r < 0) {
    free(lk);
    return lgreen_sock_fail(L, r);
  }
  return wait_lookup(L, t, lk, "green.getnameinfo", nameinfo_k);
}


/*** gethostname(): this machine's name (never blocks). */
static int l_gethostname(lua_State *L) {
  char name[256];
  size_t n = sizeof(name);
  int r = uv_os_gethostname(name, &n);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushlstring(L, name, n);
  return 1;
}


static const luaL_Reg dns_funcs[] = {{"getaddrinfo", l_getaddrinfo},
                                     {"getnameinfo", l_getnameinfo},
                                     {"gethostname", l_gethostname},
                                     {NULL, NULL}};


/* [-0, +0, m] Adds the resolver to the module table on the top. */
void lgreen_open_dns(lua_State *L, gl_hub_t *hub) {
  lua_pushlightuserdata(L, hub);
  luaL_setfuncs(L, dns_funcs, 1);
}
