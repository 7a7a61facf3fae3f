/*
** green.listen_unix{mode} with bits the umask takes away (bindings/pipe.c,
** widen): they are added after bind(2). An attacker who can write the
** socket's directory (world-writable, no sticky bit) swaps the new socket
** file for a symlink to a file of ours between bind and that chmod: the
** chmod must not follow it. The swap is made deterministic here: the test
** links the core with -Wl,--wrap=bind, and the wrapper, right after the
** real bind of a path named "swap.sock", renames the socket file away and
** puts a symlink to a victim file (mode 0600) in its place. listen_unix
** must fail ("operation not permitted"), leave the victim's mode alone
** and leave the symlink there (not its file to remove); the same call on
** a path nobody swaps widens the mode.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../../bindings/green.h"

#include "check.h"

static char dir[64];
static char victim[128];
static int swapped;

int __real_bind(int fd, const struct sockaddr *sa, socklen_t len);

int __wrap_bind(int fd, const struct sockaddr *sa, socklen_t len) {
  int r = __real_bind(fd, sa, len);
  const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
  size_t n;
  if (r != 0 || sa->sa_family != AF_UNIX)
    return r;
  n = strlen(un->sun_path);
  if (n >= 9 && strcmp(un->sun_path + n - 9, "swap.sock") == 0) {
    char moved[sizeof(un->sun_path) + 8];
    snprintf(moved, sizeof(moved), "%s.orig", un->sun_path);
    if (rename(un->sun_path, moved) == 0 && symlink(victim, un->sun_path) == 0)
      swapped++;
  }
  return r;
}


static int open_core(lua_State *L) {
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  return 0;
}


static mode_t mode_of(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    return (mode_t)-1;
  return st.st_mode & 0777;
}


/* listen_unix(path, {mode = 0666}) under umask 022 from a green thread:
   "ok" and the socket closed, or the error's message, in 'out'. */
static void listen_at(const char *path, char *out, size_t size) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, open_core);
  CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK);
  lua_pushstring(L, path);
  lua_setglobal(L, "path");
  if (luaL_dostring(L,
                    "local core = require 'green.core'\n"
                    "local got\n"
                    "local t = core.spawn(function()\n"
                    "  local s, err = core.listen_unix(path, {mode = 438})\n"
                    "  if s then s:close() got = 'ok' else got = err end\n"
                    "end)\n"
                    "while not t:dead() do core.sleep(0) end\n"
                    "return got") != LUA_OK)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  snprintf(out, size, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_close(L);
}


static void test_swap_refused(void) {
  char path[128], link[256], got[128];
  ssize_t n;
  FILE *f;
  snprintf(victim, sizeof(victim), "%s/victim", dir);
  f = fopen(victim, "w");
  CHECK(f != NULL);
  if (f != NULL)
    fclose(f);
  chmod(victim, 0600);
  snprintf(path, sizeof(path), "%s/swap.sock", dir);
  listen_at(path, got, sizeof(got));
  CHECK_EQ(swapped, 1);
  CHECK(strcmp(got, "operation not permitted") == 0);
  if (strcmp(got, "operation not permitted") != 0)
    fprintf(stderr, "listen_unix: %s\n", got);
  CHECK_EQ(mode_of(victim), 0600); /* chmod followed no symlink */
  n = readlink(path, link, sizeof(link) - 1); /* left where it was */
  CHECK(n > 0 && (size_t)n == strlen(victim) &&
        memcmp(link, victim, (size_t)n) == 0);
  unlink(path);
  snprintf(link, sizeof(link), "%s.orig", path);
  unlink(link);
  unlink(victim);
}


static void test_widened(void) {
  char path[128], got[128];
  snprintf(path, sizeof(path), "%s/plain.sock", dir);
  swapped = 0;
  listen_at(path, got, sizeof(got));
  CHECK_EQ(swapped, 0);
  CHECK(strcmp(got, "ok") == 0);
  if (strcmp(got, "ok") != 0)
    fprintf(stderr, "listen_unix: %s\n", got);
  CHECK_EQ(access(path, F_OK), -1); /* close removed it */
}


/* The mode the socket file has while it listens. */
static void test_mode(void) {
  char path[128];
  lua_State *L = luaL_newstate();
  snprintf(path, sizeof(path), "%s/mode.sock", dir);
  luaL_openlibs(L);
  lua_pushcfunction(L, open_core);
  CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK);
  lua_pushstring(L, path);
  lua_setglobal(L, "path");
  CHECK(luaL_dostring(L, "local core = require 'green.core'\n"
                         "s = assert(core.listen_unix(path, {mode = 438}))")
        == LUA_OK);
  CHECK_EQ(mode_of(path), 0666);
  lua_close(L);
  unlink(path);
}


int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/greenlua-widen-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  umask(022);
  RUN(test_swap_refused);
  RUN(test_widened);
  RUN(test_mode);
  rmdir(dir);
  return check_done();
}
