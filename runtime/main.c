/*
** greenlua: the runtime's executable. Its command line mirrors lua5.4's
** (-e, -l, -i, -v, -E, -W, -, --, 'arg'), plus -h/--help; the script's
** main chunk runs as a green thread, and the hub keeps running until no
** green thread, timer or server is left. This file parses the command
** line (once) and installs Ctrl-C; lua/green/cli.lua runs what it asks.
** It knows green.core only through its public header, bindings/green.h.
*/
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "../bindings/green.h"

#ifndef GL_SOURCE_LUA_DIR
#define GL_SOURCE_LUA_DIR ""
#endif
#ifndef GL_BUILD_DIR
#define GL_BUILD_DIR ""
#endif
#ifndef GL_EXE_LUA_DIR /* from the executable's directory */
#define GL_EXE_LUA_DIR "../share/lua/5.4"
#endif
#ifndef GL_EXE_CMOD_DIR
#define GL_EXE_CMOD_DIR "../lib/lua/5.4"
#endif
#ifndef GL_INSTALL_LUA_DIR /* where the build installs, as configured */
#define GL_INSTALL_LUA_DIR "/usr/local/share/lua/5.4"
#endif
#ifndef GL_INSTALL_CMOD_DIR
#define GL_INSTALL_CMOD_DIR "/usr/local/lib/lua/5.4"
#endif

static const char *progname = "greenlua";
static green_hub *hub; /* for the SIGINT handler */


/*
** {======================================================
** The main state's allocator: Lua's small objects (tables, their node
** arrays, short strings, closures, upvalues, small userdata: up to
** POOL_MAX bytes) come from free lists per 16-byte size class, carved
** from 64 KB chunks; larger blocks are malloc's. Lua gives every block's
** size back when it frees or resizes it, so a block needs no header, and
** taking or giving one is a list operation (glibc's malloc spends some
** hundreds of instructions per object when the collector frees in bursts
** more than its per-thread caches hold). A block is never smaller than
** malloc's would be (malloc rounds n + 8 up to 16, at least 32). Memory
** freed into a class stays in that class until the state closes.
** Only the main state's (one OS thread: the hub's); the thread pool's
** states keep luaL_newstate's. Off in sanitized builds (AddressSanitizer
** must see every block) and with GREENLUA_POOL=0 in the environment
** (valgrind's memcheck, likewise).
** =======================================================
*/

#if defined(__SANITIZE_ADDRESS__)
#define GL_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GL_POOL 0
#endif
#endif
#ifndef GL_POOL
#define GL_POOL 1
#endif

#define POOL_STEP 16
#define POOL_MAX 256
#define POOL_CLASSES (POOL_MAX / POOL_STEP)
#define POOL_CHUNK (64 * 1024)

typedef struct pool {
  void *free[POOL_CLASSES]; /* per class: a list linked through the blocks */
  char *next, *end;         /* the newest chunk's untouched part */
  void *chunks;             /* every chunk, linked through its first word */
} pool;

static pool mainpool;

#define CLASS(n) (((n) - 1) / POOL_STEP)


static void *pool_take(pool *p, size_t n) {
  size_t k = CLASS(n), size = (k + 1) * POOL_STEP;
  void *b = p->free[k];
  if (b != NULL) {
    p->free[k] = *(void **)b;
    return b;
  }
  if ((size_t)(p->end - p->next) < size) {
    char *c = (char *)malloc(POOL_CHUNK);
    if (c == NULL)
      return NULL;
    *(void **)c = p->chunks;
    p->chunks = c;
    p->next = c + POOL_STEP; /* blocks stay 16-aligned */
    p->end = c + POOL_CHUNK;
  }
  b = p->next;
  p->next += size;
  return b;
}


static void pool_give(pool *p, void *b, size_t n) {
  size_t k = CLASS(n);
  *(void **)b = p->free[k];
  p->free[k] = b;
}


static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool *p = (pool *)ud;
  void *nb;
  if (ptr == NULL)
    osize = 0; /* (osize is the kind of object then) */
  if (nsize == 0) {
    if (ptr != NULL) {
      if (osize <= POOL_MAX)
        pool_give(p, ptr, osize);
      else
        free(ptr);
    }
    return NULL;
  }
  if (ptr == NULL)
    return nsize <= POOL_MAX ? pool_take(p, nsize) : malloc(nsize);
  if (osize > POOL_MAX && nsize > POOL_MAX)
    return realloc(ptr, nsize);
  if (osize <= POOL_MAX && nsize <= POOL_MAX && CLASS(osize) == CLASS(nsize))
    return ptr; /* the block has the room */
  nb = nsize <= POOL_MAX ? pool_take(p, nsize) : malloc(nsize);
  if (nb == NULL)
    return NULL; /* the old block stays as it was */
  memcpy(nb, ptr, osize < nsize ? osize : nsize);
  if (osize <= POOL_MAX)
    pool_give(p, ptr, osize);
  else
    free(ptr);
  return nb;
}


/* After lua_close: the chunks go back to malloc. */
static void pool_close(pool *p) {
  while (p->chunks != NULL) {
    void *c = p->chunks;
    p->chunks = *(void **)c;
    free(c);
  }
  memset(p, 0, sizeof(*p));
}


/* luaL_newstate's panic and warning functions (lauxlib.c keeps its own
   static): warnings are off until "@on", and go to stderr. */
static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL)
    msg = "error object is not a string";
  lua_writestringerror("PANIC: unprotected error in call to Lua API (%s)\n",
                       msg);
  return 0;
}

static void warnfoff(void *ud, const char *message, int tocont);
static void warnfon(void *ud, const char *message, int tocont);
static void warnfcont(void *ud, const char *message, int tocont);

/* A control message ("@on", "@off"); 1 if 'message' was one. */
static int checkcontrol(lua_State *L, const char *message, int tocont) {
  if (tocont || *(message++) != '@')
    return 0;
  if (strcmp(message, "off") == 0)
    lua_setwarnf(L, warnfoff, L);
  else if (strcmp(message, "on") == 0)
    lua_setwarnf(L, warnfon, L);
  return 1;
}

static void warnfoff(void *ud, const char *message, int tocont) {
  checkcontrol((lua_State *)ud, message, tocont);
}

static void warnfcont(void *ud, const char *message, int tocont) {
  lua_State *L = (lua_State *)ud;
  lua_writestringerror("%s", message);
  if (tocont) {
    lua_setwarnf(L, warnfcont, L);
  } else {
    lua_writestringerror("%s", "\n");
    lua_setwarnf(L, warnfon, L);
  }
}

static void warnfon(void *ud, const char *message, int tocont) {
  if (checkcontrol((lua_State *)ud, message, tocont))
    return;
  lua_writestringerror("%s", "Lua warning: ");
  warnfcont(ud, message, tocont);
}


/* The main state: luaL_newstate's, with the pool as its allocator. */
static lua_State *newstate(void) {
  lua_State *L;
  const char *env = getenv("GREENLUA_POOL");
  if (!GL_POOL || (env != NULL && strcmp(env, "0") == 0))
    return luaL_newstate();
  L = lua_newstate(pool_alloc, &mainpool);
  if (L != NULL) {
    lua_atpanic(L, panic);
    lua_setwarnf(L, warnfoff, L);
  }
  return L;
}

/* }====================================================== */


static void print_usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --time-slice=S  preempt Lua code that runs S seconds while\n"
          "            other green threads wait (green.debug.time_slice)\n"
          "  -h        show this help and exit (also --help)\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(f);
}


static void bad_option(const char *option) {
  fprintf(stderr, "%s: ", progname);
  if (option[1] == 'e' || option[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", option);
  else
    fprintf(stderr, "unrecognized option '%s'\n", option);
  print_usage(stderr);
}


/*
** Ctrl-C interrupts the main chunk, like lua5.4's (bindings/interrupt.c).
** While one interrupt is still undelivered (the hub is stuck), another
** ends the process as SIGINT's default action does.
*/
static void on_sigint(int sig) {
  if (green_interrupt(hub)) {
    signal(sig, SIG_DFL);
    raise(sig); /* delivered once this handler returns */
  }
}


/* Ctrl-\ prints every green thread and the program goes on (the JVM's
   thread dump). */
static void on_sigquit(int sig) {
  (void)sig;
  green_dump(hub);
}


/*
** {======================================================
** The command line, parsed once
** =======================================================
*/

/* Has option 'o' (argv[i]) nothing after its letter? Else it is bad. */
#define ALONE(o) ((o)[2] == '\0')

/*
** Parse the command line as lua.c's collectargs does, into a table on the
** top of L's stack for green.cli, which runs it:
**   script       index in argv of the script, or argc if none
**   stdin        the script is "-" (stdin), not a file of that name
**   interactive  -i;  version: -v or -i;  execute: some -e;  noenv: -E
**   [1], [2]...  {"e", stat}, {"l", mod}, {"W"}, in command-line order
** Returns 0; 1 for -h or --help; -1 on a bad option (all printed).
*/
static int collectargs(lua_State *L, char **argv) {
  int i, n = 0;
  int interactive = 0, version = 0, execute = 0, noenv = 0, isstdin = 0;
  lua_newtable(L);
  for (i = 1; argv[i] != NULL; i++) {
    const char *o = argv[i];
    if (o[0] != '-')
      break;
    switch (o[1]) {
    case '-':
      if (strcmp(o, "--help") == 0) {
        print_usage(stdout);
        return 1;
      }
      if (strncmp(o, "--time-slice=", 13) == 0) {
        char *end;
        double s = strtod(o + 13, &end);
        if (end == o + 13 || *end != '\0' || !(s >= 0)) {
          fprintf(stderr, "%s: bad time slice '%s' (seconds expected)\n",
                  progname, o + 13);
          return -1;
        }
        lua_pushnumber(L, s);
        lua_setfield(L, -2, "time_slice");
        break;
      }
      if (!ALONE(o)) {
        bad_option(o);
        return -1;
      }
      i++;
      goto done;
    case '\0':
      isstdin = 1;
      goto done;
    case 'h':
      if (!ALONE(o)) {
        bad_option(o);
        return -1;
      }
      print_usage(stdout);
      return 1;
    case 'E':
      if (!ALONE(o)) {
        bad_option(o);
        return -1;
      }
      noenv = 1;
      break;
    case 'W':
      if (!ALONE(o)) {
        bad_option(o);
        return -1;
      }
      lua_createtable(L, 1, 0);
      lua_pushliteral(L, "W");
      lua_rawseti(L, -2, 1);
      lua_rawseti(L, -2, ++n);
      break;
    case 'i':
      interactive = 1; /* -i implies -v */
      /* FALLTHROUGH */
    case 'v':
      if (!ALONE(o)) {
        bad_option(o);
        return -1;
      }
      version = 1;
      break;
    case 'e':
      execute = 1;
      /* FALLTHROUGH */
    case 'l': {
      const char *extra = o + 2;
      if (*extra == '\0') {
        extra = argv[++i];
        if (extra == NULL || extra[0] == '-') {
          bad_option(o);
          return -1;
        }
      }
      lua_createtable(L, 2, 0);
      lua_pushlstring(L, o + 1, 1);
      lua_rawseti(L, -2, 1);
      lua_pushstring(L, extra);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, ++n);
      break;
    }
    default:
      bad_option(o);
      return -1;
    }
  }
done:
  lua_pushinteger(L, i);
  lua_setfield(L, -2, "script");
  lua_pushboolean(L, isstdin);
  lua_setfield(L, -2, "stdin");
  lua_pushboolean(L, interactive);
  lua_setfield(L, -2, "interactive");
  lua_pushboolean(L, version);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, execute);
  lua_setfield(L, -2, "execute");
  lua_pushboolean(L, noenv);
  lua_setfield(L, -2, "noenv");
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Where greenlua's own Lua modules are
** =======================================================
*/

/* The canonical path of 'dir' (taken relative to 'base' unless absolute
   or 'base' is NULL) into 'out' (PATH_MAX bytes); 0 if it does not
   exist. */
static int resolve(char *out, const char *base, const char *dir) {
  char joined[2 * PATH_MAX];
  int n;
  if (base == NULL || dir[0] == '/')
    n = snprintf(joined, sizeof(joined), "%s", dir);
  else
    n = snprintf(joined, sizeof(joined), "%s/%s", base, dir);
  return n > 0 && (size_t)n < sizeof(joined) && realpath(joined, out) != NULL;
}


/* Does 'dir' hold green's Lua modules? */
static int has_green(const char *dir) {
  char init[PATH_MAX + 32];
  int n = snprintf(init, sizeof(init), "%s/green/init.lua", dir);
  return n > 0 && (size_t)n < sizeof(init) && access(init, R_OK) == 0;
}


/* package[field] = the string on the top .. package[field], popping that
   string; package is just below it. */
static void prepend(lua_State *L, const char *field) {
  lua_getfield(L, -2, field);
  lua_concat(L, 2);
  lua_setfield(L, -2, field);
}


/*
** Put green's Lua modules first on package.path. They are, first found:
**   1. the source tree's lua/, when this is the build tree's executable
**      (the specs run it there);
**   2. GL_EXE_LUA_DIR from the executable's own directory: an install,
**      where it was installed or moved to since, or a LuaRocks tree;
**   3. GL_INSTALL_LUA_DIR, where the build was configured to install
**      (the executable copied elsewhere alone).
** In cases 2 and 3 the C module directory beside it goes first on
** package.cpath too, so C modules installed in the same tree load. When
** none holds green/init.lua, the paths stay as LUA_PATH and LUA_CPATH (or
** the defaults) made them.
*/
static void set_path(lua_State *L) {
  char exe[PATH_MAX], dir[PATH_MAX], lua[PATH_MAX], cmod[PATH_MAX];
  size_t n = sizeof(exe);
  char *slash;
  int found = 0, hascmod = 0;
  if (uv_exepath(exe, &n) == 0 && (slash = strrchr(exe, '/')) != NULL) {
    *slash = '\0';
    if (realpath(exe, dir) != NULL) {
      if (strcmp(dir, GL_BUILD_DIR) == 0) {
        snprintf(lua, sizeof(lua), "%s", GL_SOURCE_LUA_DIR);
        found = 1;
      } else if (resolve(lua, dir, GL_EXE_LUA_DIR) && has_green(lua)) {
        found = 1;
        hascmod = resolve(cmod, dir, GL_EXE_CMOD_DIR);
      }
    }
  }
  if (!found && resolve(lua, NULL, GL_INSTALL_LUA_DIR) && has_green(lua)) {
    found = 1;
    hascmod = resolve(cmod, NULL, GL_INSTALL_CMOD_DIR);
  }
  if (!found)
    return;
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua, lua);
  prepend(L, "path");
  if (hascmod) {
    lua_pushfstring(L, "%s/?.so;", cmod);
    prepend(L, "cpath");
  }
  lua_pop(L, 1);
}

/* }====================================================== */


static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int opts, script, i;
  lua_settop(L, 0);
  switch (collectargs(L, argv)) {
  case 1: /* -h */
    lua_pushinteger(L, 0);
    return 1;
  case -1:
    return 0;
  }
  opts = lua_gettop(L);
  lua_getfield(L, opts, "script");
  script = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, opts, "noenv");
  if (lua_toboolean(L, -1)) {
    lua_pushboolean(L, 1); /* for the libraries: ignore LUA_PATH... */
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  lua_pop(L, 1);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_green_core);
  lua_setfield(L, -2, "green.core");
  lua_pop(L, 1);
  set_path(L);
  /* arg, as lua.c's: the script at 0 (the interpreter when there is no
     script), what precedes it negative, its arguments positive */
  if (script == argc)
    script = 0;
  lua_createtable(L, argc - (script + 1), script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  lua_pop(L, 1);
  hub = green_interruptible(L);
  if (hub == NULL)
    return luaL_error(L, "cannot set up Ctrl-C handling");
  signal(SIGINT, on_sigint);
  signal(SIGQUIT, on_sigquit);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "green.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, opts);
  lua_call(L, 2, 1);
  return 1;
}


int main(int argc, char **argv) {
  int status, code = 1;
  lua_State *L = newstate();
  if (argv[0] && argv[0][0])
    progname = argv[0];
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
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
  signal(SIGQUIT, SIG_DFL);
  lua_close(L);
  pool_close(&mainpool);
  return code;
}
