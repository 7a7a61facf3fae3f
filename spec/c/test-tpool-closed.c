/*
** green.core in a green.tpool task that runs on after its host's state
** closed (bindings/green.c, the worker's mark): the task was abandoned at
** the close, the process's hub given up, and the task loads green. It is
** refused, as while the host ran (it took the process's hub, and made one
** in a worker thread while the process exited); a new state of the host
** loads green after. Host and worker load the one green/core.so of the
** build tree, as under stock lua5.4.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"

static const char paths[] =
    "package.path = '" GREENLUA_SOURCE_DIR "/lua/?.lua;" GREENLUA_SOURCE_DIR
    "/lua/?/init.lua;' .. package.path\n"
    "package.cpath = '" GREENLUA_BUILD_DIR "/?.so;' .. package.cpath\n";

/* A task that waits for the gate file (made once the host has closed),
   then loads green and writes what it got, whole (a rename). */
static const char script[] =
    "local green, gate, out = require 'green', ...\n"
    "local caller = green.spawn(green.tpool.execute, function(gate, out)\n"
    "  local t = os.time()\n"
    "  while not io.open(gate) do\n"
    "    if os.time() - t > 30 then return end\n"
    "  end\n"
    "  local ok, err = pcall(require, 'green')\n"
    "  local f = io.open(out .. '.tmp', 'w')\n"
    "  f:write(tostring(ok), ' ', tostring(err))\n"
    "  f:close()\n"
    "  os.rename(out .. '.tmp', out)\n"
    "end, gate, out)\n"
    "while green.tpool.stats().busy == 0 do green.sleep(0.001) end\n"
    "caller:kill() -- the task is abandoned at the close\n";


static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, paths) != LUA_OK)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  return L;
}


/* The process's threads (/proc/self/status), or -1. */
static int nthreads(void) {
  char line[256];
  int n = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  fclose(f);
  return n;
}


static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}


static void test_closed_host(void) {
  char dir[] = "/tmp/greenlua-tpool-closed-XXXXXX", gate[64], out[64];
  char got[512] = {0};
  int i, before;
  FILE *f;
  lua_State *L;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(gate, sizeof(gate), "%s/gate", dir);
  snprintf(out, sizeof(out), "%s/out", dir);
  L = newstate();
  CHECK_EQ(luaL_loadstring(L, script), LUA_OK);
  lua_pushstring(L, gate);
  lua_pushstring(L, out);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    CHECK(0);
  }
  lua_close(L); /* the hub given up; the task runs on */
  before = nthreads();
  f = fopen(gate, "w");
  CHECK(f != NULL);
  if (f != NULL)
    fclose(f);
  for (i = 0; i < 3000 && (f = fopen(out, "r")) == NULL; i++) /* <= 30 s */
    pause_ms(10);
  CHECK(f != NULL);
  if (f != NULL) {
    CHECK(fread(got, 1, sizeof(got) - 1, f) > 0);
    fclose(f);
  }
  CHECK(strncmp(got, "false ", 6) == 0);
  CHECK(strstr(got, "a green.tpool task cannot use green") != NULL);
  if (strncmp(got, "false ", 6) != 0)
    fprintf(stderr, "the task got: %s\n", got);
  /* The worker closes its state and ends (what it left, LeakSanitizer
     would see). */
  for (i = 0; i < 3000 && nthreads() >= before; i++)
    pause_ms(10);
  CHECK(nthreads() < before);
  /* A new state of the host has green. */
  L = newstate();
  if (luaL_dostring(L, "local green = require 'green'\n"
                       "local t = green.spawn(function() green.sleep(0) "
                       "return 'ran' end)\n"
                       "assert(t:wait() == 'ran')\n") != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    CHECK(0);
  }
  lua_close(L);
  unlink(gate);
  unlink(out);
  rmdir(dir);
}


int main(void) {
  RUN(test_closed_host);
  return check_done();
}
