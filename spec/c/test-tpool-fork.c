/*
** green.tpool in a forked child (bindings/tpool.c, 'lgreen_tpool_forget'):
** the child forgets the parent's workers; the task a worker was running
** at the fork fails in its caller, a task still queued runs on a worker
** started afresh, and new tasks run; the parent is not disturbed. Issue
** 11 (fork) will call 'lgreen_tpool_forget'; until then this test forks
** by itself, as that code will: uv_loop_fork, then forget.
*/
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../../bindings/ltpool.h"

#include "check.h"

static const char script[] =
    "local core, gate = require 'green.core', ...\n"
    "core.tpool_setup{threads = 1}\n"
    /* a task that runs until the gate file exists */
    "local busy = core.spawn(function()\n"
    "  return core.tpool_execute(function(path)\n"
    "    while true do\n"
    "      local f = io.open(path)\n"
    "      if f then f:close() return 'released' end\n"
    "    end\n"
    "  end, gate)\n"
    "end)\n"
    "while core.tpool_stats().busy == 0 do core.sleep(0.001) end\n"
    /* and one queued behind it (one thread) */
    "local queued = core.spawn(function()\n"
    "  return core.tpool_execute(function(x) return x + 1 end, 41)\n"
    "end)\n"
    "while core.tpool_stats().queued == 0 do core.sleep(0.001) end\n"
    "local pid = fork()\n"
    "if pid == 0 then\n"
    "  local ok, err = pcall(busy.wait, busy)\n"
    "  assert(not ok and err:find('when it forked', 1, true), tostring(err))\n"
    "  assert(queued:wait() == 42, 'the queued task ran in the child')\n"
    "  assert(core.tpool_execute(function(s) return s .. '!' end, 'child')\n"
    "         == 'child!')\n"
    "  local s = core.tpool_stats()\n"
    "  assert(s.workers == 1 and s.busy == 0, 'one fresh worker')\n"
    "  return 0\n"
    "end\n"
    "local f = assert(io.open(gate, 'w'))\n"
    "f:close()\n"
    "assert(busy:wait() == 'released', 'the parent keeps its task')\n"
    "assert(queued:wait() == 42)\n"
    "return waitpid(pid)\n";


/* fork(): in the child, what issue 11's fork will do. */
static int l_fork(lua_State *L) {
  pid_t pid = fork();
  if (pid == 0) {
    gl_hub_t *hub = lgreen_gethub(L);
    if (uv_loop_fork(&hub->loop) != 0)
      _exit(3);
    lgreen_tpool_forget(L);
  }
  lua_pushinteger(L, pid);
  return 1;
}


/* waitpid(pid): the exit status, or 100 + the signal. */
static int l_waitpid(lua_State *L) {
  int st = 0;
  waitpid((pid_t)luaL_checkinteger(L, 1), &st, 0);
  lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
  return 1;
}


static void test_fork(void) {
  char gate[] = "/tmp/greenlua-tpool-fork-XXXXXX";
  int fd = mkstemp(gate), r;
  pid_t self = getpid();
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  CHECK(fd >= 0);
  close(fd);
  unlink(gate); /* the script creates it to release the worker */
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  lua_pop(L, 1);
  lua_register(L, "fork", l_fork);
  lua_register(L, "waitpid", l_waitpid);
  CHECK_EQ(luaL_loadstring(L, script), LUA_OK);
  lua_pushstring(L, gate);
  r = lua_pcall(L, 1, 1, 0);
  if (r != LUA_OK)
    fprintf(stderr, "%s: %s\n", getpid() == self ? "parent" : "child",
            lua_tostring(L, -1));
  if (getpid() != self) { /* the child: its status is the verdict */
    lua_close(L);
    /* _exit: no leak check here. The parent's threads do not exist in
       the child, so what only their stacks pointed at (a FILE being
       opened by the worker at the fork) looks leaked, and LeakSanitizer
       cannot suspend threads it believes to be running. */
    _exit(r == LUA_OK ? 0 : 1);
  }
  CHECK_EQ(r, LUA_OK);
  CHECK_EQ(lua_tointeger(L, -1), 0); /* the child's exit status */
  lua_close(L);
  unlink(gate);
}


int main(void) {
  RUN(test_fork);
  return check_done();
}
