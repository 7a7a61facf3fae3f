/*
** green.core's loading failing for want of memory at each allocation in
** turn (bindings/green.c, 'luaopen_green_core'): the state gets "not
** enough memory", and once it is closed nothing of the half-made hub is
** left: a new state loads green (the process's hub, taken before the
** hub's __gc was set, refused every later state), and nothing leaked
** (the ASan build's LeakSanitizer; the process reaper was one).
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../../bindings/green.h"

#include "check.h"

static long budget; /* allocations that may grow before one fails */
static int armed;

static void *limited(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (armed && nsize > (ptr != NULL ? osize : 0) && budget-- <= 0)
    return NULL;
  return realloc(ptr, nsize);
}


static int open_core(lua_State *L) {
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  return 0;
}


/* A state that loads green and runs a green thread; 1 if it did. */
static int loads(void) {
  lua_State *L = luaL_newstate();
  int ok;
  luaL_openlibs(L);
  lua_pushcfunction(L, open_core);
  ok = lua_pcall(L, 0, 0, 0) == LUA_OK &&
       luaL_dostring(L, "local core = require 'green.core'\n"
                        "local t = core.spawn(function() core.sleep(0) "
                        "return 'ran' end)\n"
                        "while not t:dead() do core.sleep(0) end\n") ==
           LUA_OK;
  if (!ok)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return ok;
}


static void test_each_allocation(void) {
  long n;
  int loaded = 0;
  for (n = 0; n < 100000 && !loaded; n++) {
    lua_State *L = lua_newstate(limited, NULL);
    int r;
    luaL_openlibs(L);
    lua_pushcfunction(L, open_core);
    budget = n;
    armed = 1;
    r = lua_pcall(L, 0, 0, 0);
    armed = 0;
    if (r != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      CHECK(msg != NULL && strstr(msg, "not enough memory") != NULL);
      if (msg == NULL || strstr(msg, "not enough memory") == NULL)
        fprintf(stderr, "allocation %ld: %s\n", n, msg ? msg : "?");
    }
    loaded = r == LUA_OK;
    lua_close(L);
    if (!loads()) {
      fprintf(stderr, "after a failure at allocation %ld\n", n);
      CHECK(0);
      return;
    }
  }
  CHECK(loaded);
  CHECK(n > 1); /* (it did fail) */
}


int main(void) {
  RUN(test_each_allocation);
  return check_done();
}
