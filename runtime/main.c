/*
** greenlua: the runtime's executable. Its command line mirrors lua5.4's
** (-e, -l, -i, -v, -E, -W, -, --, 'arg'); the script's main chunk runs
** as a green thread, and the hub keeps running until no green thread,
** timer or server is left. The sequencing lives in lua/green/cli.lua.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../bindings/lgreen.h"

#ifndef GL_SOURCE_LUA_DIR
#define GL_SOURCE_LUA_DIR ""
#endif
#ifndef GL_BUILD_DIR
#define GL_BUILD_DIR ""
#endif
#ifndef GL_INSTALL_LUA_DIR
#define GL_INSTALL_LUA_DIR "/usr/local/share/lua/5.4"
#endif

static const char *progname = "greenlua";
static gl_hub_t *hub;
static uv_async_t wakeup;


static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(stderr);
}


/*
** {======================================================
** Ctrl-C: interrupt the main chunk, like lua5.4
** =======================================================
*/

static void lstop(lua_State *L, lua_Debug *ar) {
  gl_thread_t *t = lgreen_base(hub, L);
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  /* Raise here only in the main chunk's own code; elsewhere the hub
     delivers it at the main chunk's blocking call. */
  if (hub->interrupt && t != NULL && t == hub->interrupt_target) {
    hub->interrupt = 0;
    luaL_error(L, "interrupted!");
  }
}


static void on_sigint(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the process */
  hub->interrupt = 1;
  if (hub->current != NULL && hub->current->L != NULL)
    lua_sethook(hub->current->L, lstop, flag, 1);
  uv_async_send(&wakeup); /* async-signal-safe: wakes the poller */
}


static void on_wakeup(uv_async_t *h) {
  (void)h;
}


/* Called by the hub (no thread running) once SIGINT was seen. */
static void deliver_interrupt(gl_hub_t *h, lua_State *L) {
  gl_thread_t *t = h->interrupt_target;
  h->interrupt = 0;
  signal(SIGINT, on_sigint);
  if (t == NULL || t->state == GL_DEAD)
    t = h->main; /* the main chunk has ended: stop waiting for the rest */
  lua_pushliteral(L, "interrupted!");
  lgreen_throw(L, t, -1, 0);
  lua_pop(L, 1);
}


/* cli.lua names the thread that Ctrl-C interrupts. */
static int l_interrupt_target(lua_State *L) {
  hub->interrupt_target = lgreen_checkthread(L, 1);
  return 0;
}

/* }====================================================== */


/*
** Collect the options as lua.c does. Returns the index of the script
** (or argc), with 'flags' set; -1 on a bad option (printed).
*/
#define has_e 1
#define has_i 2
#define has_v 4
#define has_E 8
#define has_W 16

static int collectargs(char **argv, int *flags) {
  int i;
  *flags = 0;
  for (i = 1; argv[i] != NULL; i++) {
    if (argv[i][0] != '-')
      return i;
    switch (argv[i][1]) {
    case '-':
      if (argv[i][2] != '\0') {
        print_usage(argv[i]);
        return -1;
      }
      return i + 1;
    case '\0':
      return i;
    case 'E':
      if (argv[i][2] != '\0') {
        print_usage(argv[i]);
        return -1;
      }
      *flags |= has_E;
      break;
    case 'W':
      if (argv[i][2] != '\0') {
        print_usage(argv[i]);
        return -1;
      }
      *flags |= has_W;
      break;
    case 'i':
      *flags |= has_i; /* -i implies -v */
      /* FALLTHROUGH */
    case 'v':
      if (argv[i][2] != '\0') {
        print_usage(argv[i]);
        return -1;
      }
      *flags |= has_v;
      break;
    case 'e':
      *flags |= has_e;
      /* FALLTHROUGH */
    case 'l':
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') {
          print_usage(argv[i - 1]);
          return -1;
        }
      }
      break;
    default:
      print_usage(argv[i]);
      return -1;
    }
  }
  return i;
}


/* Find lua/green: the source tree when run from the build tree. */
static void set_path(lua_State *L) {
  char exe[4096], dir[4096];
  size_t n = sizeof(exe);
  const char *luadir = GL_INSTALL_LUA_DIR;
  if (uv_exepath(exe, &n) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = '\0';
      if (realpath(exe, dir) != NULL && strcmp(dir, GL_BUILD_DIR) == 0)
        luadir = GL_SOURCE_LUA_DIR;
    }
  }
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", luadir, luadir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}


static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int flags, script, i;
  script = collectargs(argv, &flags);
  if (script < 0)
    return 0;
  if (flags & has_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_green_core);
  lua_setfield(L, -2, "green.core");
  lua_pop(L, 1);
  set_path(L);
  /* arg: script at 0, interpreter and options negative, args positive */
  lua_createtable(L, argc, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - (script < argc ? script : argc));
  }
  lua_setglobal(L, "arg");
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  lua_pushcfunction(L, l_interrupt_target);
  lua_setfield(L, -2, "interrupt_target");
  lua_pop(L, 1);
  hub = lgreen_gethub(L);
  gl_on_interrupt = deliver_interrupt;
  if (uv_async_init(&hub->loop, &wakeup, on_wakeup) == 0)
    uv_unref((uv_handle_t *)&wakeup);
  signal(SIGINT, on_sigint);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "green.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_newtable(L);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, script);
  lua_pushboolean(L, flags & has_i);
  lua_pushboolean(L, flags & has_v);
  lua_pushboolean(L, flags & has_e);
  lua_pushboolean(L, flags & has_W);
  lua_call(L, 6, 1);
  return 1;
}


int main(int argc, char **argv) {
  int status, code = 1;
  lua_State *L = luaL_newstate();
  if (argv[0] && argv[0][0])
    progname = argv[0];
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n",
            progname);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object)");
  } else if (lua_isinteger(L, -1)) {
    code = (int)lua_tointeger(L, -1);
  }
  signal(SIGINT, SIG_DFL);
  lua_close(L);
  return code;
}
