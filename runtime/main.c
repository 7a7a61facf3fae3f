/*
** greenlua: the runtime's executable. Its command line mirrors lua5.4's
** (-e, -l, -i, -v, -E, -W, -, --, 'arg'), plus -h/--help; the script's
** main chunk runs as a green thread, and the hub keeps running until no
** green thread, timer or server is left. This file parses the command
** line (once) and installs Ctrl-C; lua/green/cli.lua runs what it asks.
** It knows green.core only through its public header, bindings/green.h.
*/
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
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
** arrays, short strings, closures, upvalues, small userdata and the
** GreenThreads, 272 bytes: up to POOL_MAX bytes) come from 64 KB chunks, each serving one 16-byte size
** class; larger blocks are malloc's. Lua gives every block's size back
** when it frees or resizes it, so a block needs no header, and taking or
** giving one is a list operation (glibc's malloc spends some hundreds of
** instructions per object when the collector frees in bursts more than
** its per-thread caches hold). A block is never smaller than malloc's
** would be (malloc rounds n + 8 up to 16, at least 32).
** Chunks are mapped aligned to their size, so a block's chunk is its
** address rounded down; each counts its blocks in use and keeps its own
** free list. A class takes from the chunks on its list (those with room,
** newest first); a chunk whose last block is freed leaves its class: a
** few are kept for any class to reuse, the rest go back to the system,
** so memory a burst took is returned when the burst's objects die (free
** lists per class that never gave memory back kept the sum of every
** class's peak).
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
#define POOL_MAX 512
#define POOL_CLASSES (POOL_MAX / POOL_STEP)
#define POOL_CHUNK ((size_t)64 * 1024)
#define POOL_REGION 16 /* chunks mapped at once (1 MB) */
#define POOL_SPARES 16 /* empty chunks always kept (1 MB) */
#define POOL_DECAY_MS 1000 /* spares unused this long go back */

typedef struct chunk {
  struct chunk *next, *prev; /* on its class's list (it has room) */
  void *free;                /* freed blocks, linked through them */
  char *bump, *end;          /* the untouched part */
  uint32_t live;             /* blocks in use */
  uint16_t cls;
  uint16_t listed;           /* on its class's list */
  char pad[64 - 48];
} chunk;

/* the header is 64 bytes: blocks 16-aligned */
typedef char chunk_header_size[sizeof(chunk) == 64 ? 1 : -1];

typedef struct pool {
  chunk *room[POOL_CLASSES]; /* per class: its chunks with room */
  chunk *spare;              /* empty chunks kept (linked by 'next') */
  size_t nspare;
  size_t low;                /* the fewest spares since the last trim */
  uint64_t trimmed;          /* when (ms, a coarse monotonic clock) */
  unsigned ticks;            /* blocks given back, counted to 1024 */
  char **given;              /* empty chunks whose pages went back */
  size_t ngiven, givencap;
  char *fresh, *freshend;    /* the newest region's chunks never used */
  char **regions;            /* every region mapped, for pool_close */
  size_t nregions, regionscap;
} pool;

static pool mainpool;

#define CLASS(n) (((n) - 1) / POOL_STEP)
#define CHUNK_OF(b) ((chunk *)((uintptr_t)(b) & ~(uintptr_t)(POOL_CHUNK - 1)))


/* Append 'c' to the array '*a' (n, cap); 0 if there is no memory. */
static int push_ptr(char ***a, size_t *n, size_t *cap, char *c) {
  if (*n == *cap) {
    size_t nc = *cap < 64 ? 64 : 2 * *cap;
    char **na = (char **)realloc(*a, nc * sizeof(char *));
    if (na == NULL)
      return 0;
    *a = na;
    *cap = nc;
  }
  (*a)[(*n)++] = c;
  return 1;
}


/* A region of POOL_REGION chunks, each at a multiple of its size (one
   chunk more mapped, the ends around the aligned part unmapped); its
   pages are touched only as blocks are taken. */
static int map_region(pool *p) {
  size_t size = POOL_REGION * POOL_CHUNK;
  char *m = (char *)mmap(NULL, size + POOL_CHUNK, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *r;
  size_t head;
  if (m == MAP_FAILED)
    return 0;
  r = (char *)(((uintptr_t)m + POOL_CHUNK - 1) &
               ~(uintptr_t)(POOL_CHUNK - 1));
  head = (size_t)(r - m);
  if (head > 0)
    munmap(m, head);
  munmap(r + size, POOL_CHUNK - head);
  if (!push_ptr(&p->regions, &p->nregions, &p->regionscap, r)) {
    munmap(r, size);
    return 0;
  }
  p->fresh = r;
  p->freshend = r + size;
  return 1;
}


static void unlist(pool *p, chunk *c) {
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    p->room[c->cls] = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->listed = 0;
}


static void list(pool *p, chunk *c) {
  c->prev = NULL;
  c->next = p->room[c->cls];
  if (c->next != NULL)
    c->next->prev = c;
  p->room[c->cls] = c;
  c->listed = 1;
}


/* A chunk for class 'k', on the class's list: a spare, else one whose
   pages went back, else a fresh one. */
static chunk *chunk_new(pool *p, size_t k) {
  chunk *c = p->spare;
  if (c != NULL) {
    p->spare = c->next;
    if (--p->nspare < p->low)
      p->low = p->nspare;
  } else if (p->ngiven > 0) {
    c = (chunk *)p->given[--p->ngiven];
  } else {
    if (p->fresh == p->freshend && !map_region(p))
      return NULL;
    c = (chunk *)p->fresh;
    p->fresh += POOL_CHUNK;
  }
  c->free = NULL;
  c->bump = (char *)c + sizeof(chunk);
  c->end = (char *)c + POOL_CHUNK;
  c->live = 0;
  c->cls = (uint16_t)k;
  list(p, c);
  return c;
}


/* Chunk 'c' is empty: a spare, for any class. */
static void chunk_empty(pool *p, chunk *c) {
  if (c->listed)
    unlist(p, c);
  c->next = p->spare;
  p->spare = c;
  p->nspare++;
}


/*
** Every 1024 blocks given back, and at most once per POOL_DECAY_MS: the
** spares that stayed unused since the last time (the fewest there were
** meanwhile), beyond POOL_SPARES, give their pages back to the system
** (their addresses are kept for reuse). A workload whose memory goes up
** and down keeps reusing its spares; the memory of a burst that is over
** goes back within a second or two of its end, as long as the program
** allocates at all.
*/
static void pool_trim(pool *p) {
  struct timespec ts;
  uint64_t now;
  size_t n;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  if (now - p->trimmed < POOL_DECAY_MS)
    return;
  p->trimmed = now;
  for (n = p->low > POOL_SPARES ? p->low - POOL_SPARES : 0; n > 0; n--) {
    chunk *c = p->spare;
    if (!push_ptr(&p->given, &p->ngiven, &p->givencap, (char *)c))
      break; /* (kept as a spare) */
    p->spare = c->next;
    p->nspare--;
    madvise(c, POOL_CHUNK, MADV_DONTNEED);
  }
  p->low = p->nspare;
}


static void *pool_take(pool *p, size_t n) {
  size_t k = CLASS(n);
  chunk *c = p->room[k];
  void *b;
  if (c == NULL && (c = chunk_new(p, k)) == NULL)
    return NULL;
  if (c->free != NULL) {
    b = c->free;
    c->free = *(void **)b;
  } else { /* a listed chunk without free blocks has untouched room */
    b = c->bump;
    c->bump += (k + 1) * POOL_STEP;
  }
  c->live++;
  if (c->free == NULL &&
      (size_t)(c->end - c->bump) < (k + 1) * POOL_STEP)
    unlist(p, c); /* full */
  return b;
}


static void pool_give(pool *p, void *b) {
  chunk *c = CHUNK_OF(b);
  *(void **)b = c->free;
  c->free = b;
  if (--c->live == 0)
    chunk_empty(p, c);
  else if (!c->listed)
    list(p, c);
  if ((++p->ticks & 1023) == 0)
    pool_trim(p);
}


static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool *p = (pool *)ud;
  void *nb;
  if (ptr == NULL)
    osize = 0; /* (osize is the kind of object then) */
  if (nsize == 0) {
    if (ptr != NULL) {
      if (osize <= POOL_MAX)
        pool_give(p, ptr);
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
    pool_give(p, ptr);
  else
    free(ptr);
  return nb;
}


/* After lua_close (every block given back): the regions are unmapped. */
static void pool_close(pool *p) {
  size_t i;
  for (i = 0; i < p->nregions; i++)
    munmap(p->regions[i], POOL_REGION * POOL_CHUNK);
  free(p->regions);
  free(p->given);
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
#ifdef M_TRIM_THRESHOLD
  /* What malloc still serves (blocks over POOL_MAX: thread stacks, call
     records, arrays) rises and falls with the threads; glibc gives the
     top of its heap back whenever 128 KB are free there, and a program
     whose threads come and go paid a brk and the page faults after it
     for every wave (the pool's chunks, in malloc's heap before, held it
     up). Freed memory goes back from 8 MB at the top; blocks of 1 MB
     and more are mapped apart (and go back when freed), as glibc's
     threshold would have risen to anyway. */
  mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
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
