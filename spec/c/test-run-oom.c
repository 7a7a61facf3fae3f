/*
** Allocation failures while green runs (test-hub-oom fails green.core's
** loading). Each workload is a Lua chunk run on the main thread of a
** state whose allocator counts the growing allocations the chunk makes
** (its setup, the modules' loading, is not counted). A first run counts
** them and notes the allocation sites of green's C code; then the chunk
** runs again with allocation N failing, for each site's first two N and
** a sample of the others (GREENLUA_OOM_FULL=1: every N), in three ways:
**
** - "one": allocation N fails for real, once (Lua retries a failed
**   allocation after an emergency collection: the retry fails too), and
**   memory is back after it;
** - "few": allocations N to N+5 fail, then memory is back;
** - "all": every allocation from N on fails, through lua_close
**   (memory exhausted: error paths and finalizers find none either).
**
** What must hold: no crash and no sanitizer report (the ASan build's
** LeakSanitizer checks after each workload); the chunk succeeds or
** raises "not enough memory" (a green thread's error is raised in the
** main thread: the workloads' 'guard' links and on_error handler), or,
** in "few" and "all", any error but one of green's own code (indexing
** nil: a peer may die with no memory to report it, and the chunk sees a
** closed socket or a 500); with memory back ("one", "few"), the hub runs
** a new thread as before; in "one" nothing hangs (a 10 s alarm fails the
** test, naming the workload and N); in "few" and "all", a chunk that
** waits for a thread that died with no memory left to run its links is
** interrupted as by Ctrl-C after 250 ms; lua_close returns and frees
** every block of the Lua heap.
**
** Each run's stderr (the error reporter's lines for the memory errors
** of handlers and threads, thousands of them in all, as designed) is
** printed only when that run fails the test: a crash, a sanitizer's
** report and a hang included ('filter'). GREENLUA_OOM_VERBOSE=1 (or
** GREENLUA_OOM_DUMP=1) prints all of it as it comes.
*/
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../../bindings/green.h"

#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define LEAK_CHECK() 0
#endif


/*
** A run's stderr is shown only if the run fails the test: the test runs
** in a child whose stderr is a pipe to this process, which holds what a
** run writes (between the child's marks, 'mark') and prints it if the
** run ends with a fail mark, or with none (a crash, a sanitizer's report,
** a hang: what killed the child is in it too), else drops it. What the
** child writes between runs (the workloads' summaries, LeakSanitizer's
** reports) is passed on as it comes. The child's exit status is the
** test's.
*/
#define MARK_BEGIN "\036run-oom:B\036" /* (all three of one length) */
#define MARK_PASS "\036run-oom:P\036"
#define MARK_FAIL "\036run-oom:F\036"
#define MARK_LEN (sizeof(MARK_BEGIN) - 1)

static int filtered; /* the child of 'filter' (its stderr is the pipe) */

static void mark(const char *m) {
  if (filtered) {
    fflush(stderr);
    (void)!write(2, m, MARK_LEN);
  }
}

static void put(const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(2, p, n);
    if (k <= 0)
      return;
    p += k;
    n -= (size_t)k;
  }
}

/* Reads the child's stderr from 'fd' until its end; its exit status. */
static int filter(int fd, pid_t child) {
  char *buf = NULL;     /* the pending run's stderr, or what is unread */
  size_t len = 0, cap = 0, held = 0; /* held: buf[0..held) is a run's */
  int in_run = 0, status;
  for (;;) {
    size_t i;
    ssize_t k;
    if (cap - len < 65536) {
      size_t ncap = cap * 2 + 65536;
      char *nbuf = malloc(ncap);
      if (nbuf != NULL) {
        if (len > 0)
          memcpy(nbuf, buf, len);
        free(buf);
        buf = nbuf;
        cap = ncap;
      } else if (len > 0) { /* (then it is all passed on) */
        put(buf, len);
        in_run = 0;
        held = len = 0;
      } else if (cap == 0) { /* (the child then fails) */
        fprintf(stderr, "test-run-oom: no memory to hold a run's stderr\n");
        break;
      }
    }
    k = read(fd, buf + len, cap - len);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    len += (size_t)k;
    /* buf[held..len): marks and text; a mark split by a read stays */
    for (i = held; i + MARK_LEN <= len;) {
      const char *m = buf + i;
      if (memcmp(m, MARK_BEGIN, MARK_LEN) == 0) {
        put(buf, i); /* (between runs) */
        memmove(buf, m + MARK_LEN, len - i - MARK_LEN);
        len -= i + MARK_LEN;
        i = held = 0;
        in_run = 1;
      } else if (memcmp(m, MARK_PASS, MARK_LEN) == 0 ||
                 memcmp(m, MARK_FAIL, MARK_LEN) == 0) {
        if (memcmp(m, MARK_FAIL, MARK_LEN) == 0) {
          put("--- the run's stderr:\n", 22);
          put(buf, i);
          put("--- (its end)\n", 14);
        }
        memmove(buf, m + MARK_LEN, len - i - MARK_LEN);
        len -= i + MARK_LEN;
        i = held = 0;
        in_run = 0;
      } else
        i++;
    }
    if (!in_run) { /* passed on, but for a mark's start */
      size_t keep = len < MARK_LEN - 1 ? len : MARK_LEN - 1;
      while (keep > 0 && memcmp(buf + len - keep, MARK_BEGIN, 1) != 0)
        keep--;
      put(buf, len - keep);
      memmove(buf, buf + len - keep, keep);
      len = keep;
      held = 0;
    } else
      held = len >= MARK_LEN ? len - MARK_LEN + 1 : 0;
  }
  if (in_run) { /* the child died in a run: all of it */
    put("--- the run's stderr (it did not end):\n", 39);
    put(buf, len);
    put("--- (its end)\n", 14);
  } else
    put(buf, len);
  free(buf);
  close(fd);
  while (waitpid(child, &status, 0) < 0)
    if (errno != EINTR)
      return EXIT_FAILURE;
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "test-run-oom: killed by signal %d\n", WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  return WEXITSTATUS(status);
}

/* Unless GREENLUA_OOM_VERBOSE (or GREENLUA_OOM_DUMP) asks for all of it
   as it comes, the test goes on in a child, filtered: this returns in the
   child only (or when no child could be made). */
static void filter_stderr(void) {
  int fds[2];
  pid_t pid;
  if (getenv("GREENLUA_OOM_VERBOSE") != NULL ||
      getenv("GREENLUA_OOM_DUMP") != NULL || pipe(fds) != 0)
    return;
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* (ctest's timeout kills us) */
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    filtered = 1;
    return;
  }
  close(fds[1]);
  signal(SIGPIPE, SIG_IGN);
  exit(filter(fds[0], pid));
}


enum { M_COUNT, M_ONE, M_FEW, M_ALL, M_CCOUNT, M_C };
static const char *const mode_names[] = {"count", "one",     "few",
                                         "all",   "c-count", "c"};
#define FEW 6 /* M_FEW: allocations that fail in a row */

static int mode;          /* M_* */
static int armed;         /* counting (the workload's body runs) */
static long budget;       /* growing allocations before the one that fails */
static long counted;      /* growing allocations while armed */
static volatile sig_atomic_t failed; /* the failure was injected */
static int fewleft;       /* M_FEW: failures still to come */
static void *retry_ptr;   /* M_ONE: the failed call, for its retry */
static size_t retry_size;
static int retry_pending;
static long live;         /* bytes of the Lua heap */
static char certificate[64]; /* the tls workload's (and key), made once */

/*
** The allocation sites of green's C code, found in the counting run: the
** nearest caller of the allocator in this executable (green's code is
** linked in; Lua is a shared library), as a return address. The first
** SITE_RUNS allocations of each site are always failed; the others (most
** of them made by Lua code) are sampled. A caller that runs Lua code
** (lua_callk, lua_pcallk, lua_resume: a green thread's first resume
** allocates there) is a site of its own, less often first.
*/
#define MAXSITES 4096
#define SITE_RUNS 2
extern char __executable_start, etext;
static void *sites[MAXSITES];
static long site_first[MAXSITES][SITE_RUNS];
static int site_seen[MAXSITES];
static int nsites;

static int in_exe(void *pc) {
  return (char *)pc >= &__executable_start && (char *)pc < &etext;
}

/* The frames: backtrace (ASan's), this function and the allocator, Lua's
   (green calls the allocator through Lua only), the caller in green. */
__attribute__((noinline)) static void note_site(long n) {
  void *pcs[48];
  int depth = backtrace(pcs, 48), i = 0, k;
  while (i < depth && !in_exe(pcs[i]))
    i++;
  while (i < depth && in_exe(pcs[i]))
    i++;
  while (i < depth && !in_exe(pcs[i]))
    i++;
  if (i >= depth)
    return;
  for (k = 0; k < nsites && sites[k] != pcs[i]; k++)
    ;
  if (k == MAXSITES)
    return;
  if (k == nsites) {
    sites[nsites++] = pcs[i];
    site_seen[k] = 0;
  }
  if (site_seen[k] < SITE_RUNS)
    site_first[k][site_seen[k]++] = n;
}


/* Called at each injected failure: a place for a debugger's breakpoint
   (gdb -ex 'break injected', with GREENLUA_OOM_ONLY and GREENLUA_OOM_AT). */
__attribute__((noinline)) static void injected(void) {
  __asm__ volatile("");
}


/*
** The C heap of green's own code (its objects are linked in: their
** malloc, calloc and realloc are wrapped, -Wl,--wrap): in M_CCOUNT and
** M_C ('cheap' set) these count, and fail once, instead of the Lua
** allocator.
*/
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
static int cheap;

static pthread_t main_thread; /* (not the thread pool's workers) */

static int c_fails(void) {
  if (!cheap || !armed || !pthread_equal(pthread_self(), main_thread))
    return 0;
  counted++;
  if (mode == M_C && budget-- == 0) {
    failed = 1;
    injected();
    return 1;
  }
  return 0;
}

void *__wrap_malloc(size_t n) {
  return c_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n) {
  return c_fails() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n) {
  return c_fails() ? NULL : __real_realloc(p, n);
}


static void *limited(void *ud, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr != NULL ? osize : 0;
  void *p;
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    live -= (long)old;
    return NULL;
  }
  if (armed && !cheap && nsize > old) {
    if (mode == M_COUNT)
      note_site(counted);
    counted++;
    if (retry_pending) { /* Lua's retry after its emergency collection */
      retry_pending = 0;
      if (ptr == retry_ptr && nsize == retry_size) {
        injected();
        return NULL;
      }
    }
    if (mode == M_ALL && failed)
      return NULL;
    if (mode == M_FEW && fewleft > 0) {
      fewleft--;
      injected();
      return NULL;
    }
    if (mode != M_COUNT && budget-- == 0) {
      failed = 1;
      retry_pending = mode == M_ONE;
      fewleft = mode == M_FEW ? FEW - 1 : 0;
      retry_ptr = ptr;
      retry_size = nsize;
      injected();
      return NULL;
    }
  }
  p = __real_realloc(ptr, nsize);
  if (p != NULL)
    live += (long)nsize - (long)old;
  return p;
}


static const char setup[] =
    "package.path = '" GREENLUA_SOURCE_DIR "/lua/?.lua;" GREENLUA_SOURCE_DIR
    "/lua/?/init.lua;' .. package.path\n"
    "green = require 'green'\n"

    /* a Timeout's or a kill's error, else raised again */
    "function expect_timeout(ok, err, ...)\n"
    "  if ok or green.is_timeout(err) or err == green.GreenletExit then\n"
    "    return ok, err, ...\n"
    "  end\n"
    "  error(err, 0)\n"
    "end\n"
    /* gt's error raised in the main thread, wherever it waits (a peer
       that died leaves it waiting for what the peer would have done) */
    "local main = green.getcurrent()\n"
    /* an error nobody observes (an HTTP handler's included) too */
    "green.on_error(function(_, err) main:kill(err) end)\n"
    "function guard(gt)\n"
    "  gt:link(function(t)\n"
    "    local ok, err = pcall(t.wait, t)\n"
    "    if not ok then main:kill(err) end\n"
    "  end)\n"
    "  return gt\n"
    "end\n";

/* Once memory is back, the hub runs a new thread as ever (a kill for the
   main thread from the chunk's threads may still be on its way: its first
   blocking call raises it). */
static const char after[] =
    "local function check()\n"
    "  local t = green.spawn(function(a) green.sleep(0.001) return a end, 1)\n"
    "  green.sleep(0)\n"
    "  assert(t:wait() == 1)\n"
    "end\n"
    "if not pcall(check) then check() end\n";

typedef struct {
  const char *name;
  const char *setup; /* not counted: loads what the body uses */
  const char *body;
} workload;

static const workload workloads[] = {
    {"threads", "require 'green.debug'",
     "local t = green.spawn(function(a) green.sleep(0) return a end, 1)\n"
     "local t2 = green.spawn_after(0, function() green.sleep(0.001) end)\n"
     "local t3 = green.spawn(function() green.sleep(10) end)\n"
     "local t4 = green.spawn_after(10, function() end)\n"
     /* its results packed after a yield: outside its trampoline's pcall */
     "local t5 = green.spawn(function() green.sleep(0) return 1, 2 end)\n"
     "t3:link(function(gt, x) return x end, 'x')\n"
     "t3.name = 'sleeper'\n"
     "green.spawn_n(function() green.sleep(0) end)\n"
     "green.sleep(0)\n"
     "t3:kill()\n"
     "t4:cancel()\n"
     "do\n"
     "  local to <close> = green.Timeout(0.001)\n"
     "  expect_timeout(pcall(green.sleep, 1))\n"
     "end\n"
     "expect_timeout(pcall(green.with_timeout, 0.001, green.sleep, 1))\n"
     /* many delayed: the timer heap grows under one (C heap); one that
        could not be armed must not stay, delayed for ever */
     "local ds = {}\n"
     "for i = 1, 100 do\n"
     "  local ok, d = pcall(green.spawn_after, 10, function() end)\n"
     "  ds[i] = ok and d or nil\n"
     "end\n"
     "for i = 1, 100 do if ds[i] then ds[i]:cancel() end end\n"
     "green.sleep(0)\n"
     "for _, e in ipairs(green.debug.threads()) do\n"
     "  if e.state == 'delayed' and e.thread ~= t4 then\n"
     "    error('BUG: a delayed thread left behind')\n"
     "  end\n"
     "end\n"
     /* many armed at once: the registry grows under one */
     "local tos = {}\n"
     "for i = 1, 300 do\n"
     "  local ok, to = pcall(green.Timeout, 10)\n"
     "  tos[i] = ok and to or nil\n"
     "end\n"
     "collectgarbage()\n"
     "for i = 1, 300 do if tos[i] then tos[i]:cancel() end end\n"
     /* many spawned at once: the table of live threads grows under one */
     "local many = {}\n"
     "for i = 1, 300 do\n"
     "  local ok, gt = pcall(green.spawn, function() end)\n"
     "  many[i] = ok and gt or nil\n"
     "end\n"
     "collectgarbage()\n"
     "assert(#green.debug.threads() >= 1)\n"
     "green.sleep(0)\n"
     "local co = coroutine.wrap(function(a)\n"
     "  green.sleep(0) local b = coroutine.yield(a) return b end)\n"
     "co(1) co(2)\n"
     "assert(t:wait() == 1)\n"
     "t2:wait()\n"
     "assert(select(2, t5:wait()) == 2)\n"
     "green.run()\n"},
    {"links", "",
     /* what a link does is what the main thread waits for */
     "local ev, n = green.Event(), 0\n"
     "local t = green.spawn(function() green.sleep(0) error('x', 0) end)\n"
     "t:link(function() n = n + 1 end)\n"
     "t:link(function(gt) ev:send(select(2, pcall(gt.wait, gt))) end)\n"
     "local e = ev:wait()\n"
     "if e:sub(1, 2) ~= 'x\\n' then error(e, 0) end\n"
     /* (in "few" and "all", the first link's memory error may go
        unreported: its report found no memory either) */
     "if n ~= 1 and oom_mode == 'one' then error('n = ' .. n, 0) end\n"},
    {"interrupt", "",
     /* Ctrl-C, delivered by the hub while memory fails (its message is
        spelt here only by part: it must not be a string already) */
     "oom_interrupt()\n"
     "local ok, e = pcall(green.sleep, 0.01)\n"
     "if ok then error('no interrupt') end\n"
     "if not tostring(e):find('interrupted') then error(e, 0) end\n"
     "green.sleep(0)\n"},
    {"sync", "",
     "local ev, sem = green.Event(), green.Semaphore(0)\n"
     "local q, pq = green.Queue(1), green.PriorityQueue(2, function(a, b)\n"
     "  return a < b end)\n"
     "local getter = green.spawn(function() return q:get() + q:get() end)\n"
     "local waiter = green.spawn(function() return ev:wait() end)\n"
     "local holder = green.spawn(function() sem:acquire() sem:release() end)\n"
     "local blocked = green.spawn(function() return ev:wait() end)\n"
     "green.sleep(0)\n"
     "q:put(1) q:put(2)\n"
     "blocked:kill()\n"
     "ev:send('v')\n"
     "sem:release()\n"
     "pq:put(3) pq:put(1)\n"
     "assert(pq:get() == 1 and pq:get() == 3)\n"
     "assert(not sem:acquire(true, 0.001) or true)\n"
     "assert(select(2, expect_timeout(pcall(q.get, q, true, 0.001))) ~= nil\n"
     "       or true)\n"
     "assert(getter:wait() == 3 and waiter:wait() == 'v')\n"
     "holder:wait()\n"},
    {"tcp", "",
     "local server = assert(green.listen('127.0.0.1', 0))\n"
     "local _, port = server:getsockname()\n"
     "local peer = guard(green.spawn(function()\n"
     "  local c = assert(server:accept())\n"
     "  local line = assert(c:receive())\n"
     "  assert(c:send(line:upper() .. '\\n'))\n"
     "  local n = assert(c:receive(5))\n"
     "  c:close()\n"
     "  return n\n"
     "end))\n"
     "local c = assert(green.connect('127.0.0.1', port))\n"
     "assert(c:send('hello\\n'))\n"
     "assert(c:receive() == 'HELLO')\n"
     "c:settimeout(0.001)\n"
     "assert(select(2, c:receive(1)) == 'timeout')\n"
     "c:settimeout(nil)\n"
     "assert(c:send('12345'))\n"
     "assert(peer:wait() == '12345')\n"
     "c:receive('*a')\n"
     "c:close() server:close()\n"},
    {"udp", "",
     "local a, b = green.udp(), green.udp()\n"
     "assert(a:setsockname('127.0.0.1', 0))\n"
     "local _, port = a:getsockname()\n"
     "local r = green.spawn(function() return a:receivefrom() end)\n"
     "assert(b:sendto('ping', '127.0.0.1', port))\n"
     "assert(r:wait() == 'ping')\n"
     "a:settimeout(0.001)\n"
     "assert(select(2, a:receive()) == 'timeout')\n"
     "a:close() b:close()\n"},
    {"net", "",
     /* select, a lookup, a unix socket, a pool, a reader killed */
     "local a, b = green.udp(), green.udp()\n"
     "assert(a:setsockname('127.0.0.1', 0))\n"
     "local _, port = a:getsockname()\n"
     "assert(b:sendto('x', '127.0.0.1', port))\n"
     "local r = green.select({a}, nil, 5)\n"
     "assert(r[1] == a)\n"
     "assert(#select(1, green.select({b}, nil, 0.001)) == 0)\n"
     "assert(green.getaddrinfo('127.0.0.1')[1].addr == '127.0.0.1')\n"
     "local server = assert(green.listen('127.0.0.1', 0))\n"
     "local _, sport = server:getsockname()\n"
     "local c = assert(green.connect('127.0.0.1', sport))\n"
     "local peer = assert(server:accept())\n"
     "local reader = green.spawn(function() return c:receive() end)\n"
     "green.sleep(0)\n"
     "reader:kill()\n"
     "local pool = green.GreenPool(2)\n"
     "for i = 1, 4 do pool:spawn(function(x) green.sleep(0) return x end, i) end\n"
     "pool:waitall()\n"
     "local lq = green.LifoQueue()\n"
     "lq:put(1) lq:put(2)\n"
     "assert(lq:get() == 2)\n"
     "a:close() b:close() c:close() peer:close() server:close()\n"},
    {"http", "http = require 'green.http'",
     "local server = assert(green.listen('127.0.0.1', 0))\n"
     "local _, port = server:getsockname()\n"
     "local st = guard(green.spawn(http.serve, server, function(req)\n"
     "  return 200, {['x-a'] = 'b', ['set-cookie'] = {'1', '2'}},\n"
     "    req.method .. ' ' .. req.path .. ' ' .. (req.headers.host or '')\n"
     "end))\n"
     "local c = assert(green.connect('127.0.0.1', port))\n"
     "assert(c:send('GET /p?q=1 HTTP/1.1\\r\\nHost: h\\r\\n'\n"
     "  .. 'Connection: close\\r\\n\\r\\n'))\n"
     "local resp = assert(c:receive('*a'))\n"
     /* (a 500: the handler failed, and so did its report) */
     "assert(resp:find('GET /p h', 1, true) or resp:find(' 500 ', 1, true),\n"
     "       resp)\n"
     "c:close() server:close()\n"
     "st:wait()\n"},
    {"tls",
     "sctx = assert(green.tls.context{mode = 'server',\n"
     "  certificate = oom_certificate})\n"
     "cctx = assert(green.tls.context{verify = false})\n",
     "local server = assert(green.listen('127.0.0.1', 0,\n"
     "  {tls = {mode = 'server', context = sctx}}))\n"
     "local _, port = server:getsockname()\n"
     "local peer = guard(green.spawn(function()\n"
     "  local c = assert(server:accept())\n"
     "  local line = assert(c:receive())\n"
     "  assert(c:send(line:upper() .. '\\n'))\n"
     "  c:close()\n"
     "end))\n"
     "local c = assert(green.connect('127.0.0.1', port,\n"
     "  {tls = {context = cctx}}))\n"
     "assert(c:send('hello\\n'))\n"
     "assert(c:receive() == 'HELLO')\n"
     "c:close() server:close()\n"
     "peer:wait()\n"},
    {"ws", "http = require 'green.http'",
     "local server = assert(green.listen('127.0.0.1', 0))\n"
     "local _, port = server:getsockname()\n"
     "local st = guard(green.spawn(http.serve, server, function(req)\n"
     "  local ws = assert(req:upgrade_websocket())\n"
     "  local m = assert(ws:receive())\n"
     "  assert(ws:send(m:rep(2), 'binary'))\n"
     "  assert(ws:receive() == nil)\n"
     "end))\n"
     "local ws = assert(http.websocket('ws://127.0.0.1:' .. port .. '/'))\n"
     "assert(ws:send('abc'))\n"
     "assert(ws:receive() == 'abcabc')\n"
     "ws:close()\n"
     "server:close()\n"
     "st:wait()\n"},
    {"fs", "",
     "local dir = os.getenv('TMPDIR') or '/tmp'\n"
     "local path = dir .. '/greenlua-run-oom-' .. green.process.getpid()\n"
     "local ok, err = pcall(function()\n"
     "  assert(green.fs.writefile(path, 'abc\\ndef\\n'))\n"
     "  assert(green.fs.readfile(path) == 'abc\\ndef\\n')\n"
     "  local f = assert(green.fs.open(path, 'a+'))\n"
     "  assert(f:write('x', 1))\n"
     "  assert(f:seek('set', 0) == 0)\n"
     "  assert(f:read('l') == 'abc')\n"
     "  f:close()\n"
     "  assert(green.fs.stat(path).size == 10)\n"
     "  assert(green.fs.realpath(path))\n"
     "  assert(green.fs.mkdir(path .. '.d'))\n"
     "  assert(green.fs.writefile(path .. '.d/f', ''))\n"
     "  assert(green.fs.scandir(path .. '.d')[1] == 'f')\n"
     "  assert(green.fs.unlink(path .. '.d/f'))\n"
     "  assert(green.fs.rmdir(path .. '.d'))\n"
     "  assert(green.tpool.execute(function(a) return a + 1 end, 1) == 2)\n"
     "end)\n"
     "os.remove(path) os.remove(path .. '.d/f') os.remove(path .. '.d')\n"
     "assert(ok, err)\n"},
    {"process", "",
     "local ok, out = green.process.run({'/bin/echo', 'hi'})\n"
     "assert(ok and out == 'hi\\n')\n"
     "local p = green.process.spawn({'/bin/cat', stdin = 'pipe',\n"
     "  stdout = 'pipe'})\n"
     "assert(p.stdin:send('x'))\n"
     "p.stdin:close()\n"
     "assert(p.stdout:receive('*a') == 'x')\n"
     "assert(p:wait() == 'exit')\n"
     "local ok2, out2 = green.process.run({'/bin/cat'}, {input = 'abc'})\n"
     "assert(ok2 and out2 == 'abc')\n"
     "local f = assert(green.process.popen('echo yo'))\n"
     "assert(f:read('a') == 'yo\\n')\n"
     "f:close()\n"
     /* a caller killed while its child runs: the child is killed too */
     "local runner = green.spawn(green.process.run, {'/bin/sleep', '10'})\n"
     "green.sleep(0.01)\n"
     "runner:kill()\n"
     /* and one killed while its task runs in the thread pool */
     "local caller = green.spawn(green.tpool.execute, function(a)\n"
     "  return a end, 1)\n"
     "green.sleep(0)\n"
     "caller:kill()\n"},
    {"gc",
     /* finalizers that use green from the middle of the operations */
     "ev = green.Event()\n"
     "sem = green.Semaphore(0)\n"
     "q = green.Queue()\n"
     "mt = {__gc = function(o)\n"
     "  pcall(green.spawn, function() end)\n"
     "  pcall(green.sleep, 0)\n"
     "  pcall(ev.send, ev, o.n)\n"
     "  pcall(sem.release, sem)\n"
     "  pcall(q.put, q, o.n)\n"
     "  pcall(green.Timeout, 1)\n"
     "  pcall(green.kill, o.t)\n"
     "end}\n",
     "local ts = {}\n"
     "for i = 1, 20 do\n"
     "  ts[i] = green.spawn(function() ev:wait() green.sleep(0) end)\n"
     "  setmetatable({n = i, t = ts[i]}, mt)\n"
     "  collectgarbage('step', 1)\n"
     "  green.sleep(0)\n"
     "end\n"
     "collectgarbage()\n"
     "if not ev:ready() then ev:send('v') end\n"
     "for _, t in ipairs(ts) do t:wait() end\n"},
};

#define NWORKLOADS ((int)(sizeof(workloads) / sizeof(workloads[0])))

static const char *current;
static long current_n;
static int current_mode;
static green_hub *hub;   /* the running state's, in M_FEW and M_ALL */
static int interrupted;  /* the first alarm interrupted the chunk */
static long slow_ms;     /* the alarms' time before the failure came */
static long ninterrupted; /* runs interrupted so, of the workload */
static int dump_at_interrupt; /* GREENLUA_OOM_DUMP=1 */

static void arm_alarm(long ms) {
  struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
}


/* In M_FEW and M_ALL a chunk may wait for good for a green thread that
   died of it (with no memory even to run its links): the first alarm
   after the failure interrupts it as Ctrl-C does. Before the failure the
   chunk has lost nothing: it is only slow (a loaded machine: the process
   workload's children may take longer than an alarm to start), and is
   left to run, for 10 s in all. Any other alarm fails the test. */
static void on_alarm(int sig) {
  char msg[160];
  int len;
  (void)sig;
  if (hub != NULL && !failed && slow_ms < 10000) {
    slow_ms += 250;
    arm_alarm(250);
    return;
  }
  if (hub != NULL && failed && !interrupted) {
    interrupted = 1;
    ninterrupted++;
    if (dump_at_interrupt) /* what waits: printed before the interrupt */
      green_dump(hub);
    green_interrupt(hub);
    arm_alarm(10000);
    return;
  }
  len = snprintf(msg, sizeof(msg), "test-run-oom: %s, %s, allocation %ld: "
                 "hangs\n", current, mode_names[current_mode], current_n);
  if (len > 0)
    (void)!write(2, msg, (size_t)len);
  _exit(3);
}


/* oom_interrupt(): what the executable's SIGINT handler does. */
static int l_interrupt(lua_State *L) {
  green_interrupt(green_interruptible(L));
  return 0;
}


static int open_core(lua_State *L) {
  luaL_requiref(L, "green.core", luaopen_green_core, 0);
  return 0;
}


/* Runs workload w in mode m with allocation n failing; the count of
   growing allocations its body made, or -1 when it failed the test. */
static long run(const workload *w, int m, long n) {
  lua_State *L;
  long made;
  int r, bad = 0;
  current = w->name;
  current_n = n;
  current_mode = m;
  hub = NULL;
  interrupted = 0;
  slow_ms = 0;
  mode = M_COUNT;
  armed = 0;
  failed = 0;
  fewleft = 0;
  retry_pending = 0;
  mark(MARK_BEGIN);
  L = lua_newstate(limited, NULL);
  luaL_openlibs(L);
  lua_pushstring(L, certificate);
  lua_setglobal(L, "oom_certificate");
  lua_pushcfunction(L, open_core);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK || luaL_dostring(L, setup) != LUA_OK ||
      luaL_dostring(L, w->setup) != LUA_OK) {
    fprintf(stderr, "%s: setup: %s\n", w->name, lua_tostring(L, -1));
    lua_close(L);
    mark(MARK_FAIL);
    CHECK(0);
    return -1;
  }
  if (luaL_loadbuffer(L, w->body, strlen(w->body), w->name) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", w->name, lua_tostring(L, -1));
    lua_close(L);
    mark(MARK_FAIL);
    CHECK(0);
    return -1;
  }
  lua_pushstring(L, mode_names[m]);
  lua_setglobal(L, "oom_mode");
  lua_register(L, "oom_interrupt", l_interrupt);
  green_interruptible(L); /* (its signal handle: made before the body) */
  if (m == M_FEW || m == M_ALL)
    hub = green_interruptible(L);
  arm_alarm(hub != NULL ? 250 : 10000);
  mode = m;
  budget = n;
  counted = 0;
  cheap = m == M_CCOUNT || m == M_C;
  armed = 1;
  r = lua_pcall(L, 0, 0, 0);
  made = counted;
  if (m != M_ALL)
    armed = 0;
  if (r != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    /* With memory gone for a while, a peer may fail with no memory to
       report it either: what the chunk then sees of it ("closed", a
       500, "deadlock", an assertion of the chunk's) is its outcome; an
       error of green's own code (indexing nil, a call that cannot block)
       never is, nor a workload's "BUG:" (what must hold however memory
       failed). */
    int ok = failed && msg != NULL &&
             (strstr(msg, "not enough memory") != NULL ||
              (m != M_ONE && strstr(msg, "attempt to ") == NULL &&
               strstr(msg, "cannot block here") == NULL &&
               strstr(msg, "BUG:") == NULL) ||
              (interrupted && strstr(msg, "interrupted!") != NULL));
    if (!ok) {
      armed = 0;
      if (msg == NULL)
        msg = luaL_tolstring(L, -1, NULL);
      fprintf(stderr, "%s, %s, allocation %ld: %s\n", w->name,
              mode_names[m], n, msg);
      bad = 1;
    }
  }
  lua_settop(L, 0);
  if (m != M_ALL && !bad && luaL_dostring(L, after) != LUA_OK) {
    fprintf(stderr, "%s, %s, allocation %ld: then: %s\n", w->name,
            mode_names[m], n, luaL_tolstring(L, -1, NULL));
    bad = 1;
  }
  lua_close(L);
  armed = 0;
  cheap = 0;
  hub = NULL;
  arm_alarm(0);
  if (live != 0) {
    fprintf(stderr, "%s, allocation %ld: %ld bytes of the Lua heap left\n",
            w->name, n, live);
    bad = 1;
    live = 0;
  }
  mark(bad ? MARK_FAIL : MARK_PASS);
  CHECK(!bad);
  return bad ? -1 : made;
}


/* Whether allocation n is failed: every site's first, and every
   'stride'-th. */
static int chosen(long n, long stride) {
  int k;
  if (n % stride == 0)
    return 1;
  for (k = 0; k < nsites; k++)
    if (site_first[k][0] == n || (site_seen[k] > 1 && site_first[k][1] == n))
      return 1;
  return 0;
}


/* The ASan build runs about a hundred of these a second: at most
   SAMPLES sampled allocations per workload and mode, besides the sites.
   GREENLUA_OOM_FULL=1 fails every allocation; GREENLUA_OOM_ONLY=name
   runs that workload alone, GREENLUA_OOM_AT=n only allocation n;
   GREENLUA_OOM_DUMP=1 prints the green threads at each interrupt. */
#define SAMPLES 160

static void test_workloads(void) {
  const char *only = getenv("GREENLUA_OOM_ONLY");
  const char *at = getenv("GREENLUA_OOM_AT");
  int full = getenv("GREENLUA_OOM_FULL") != NULL;
  dump_at_interrupt = getenv("GREENLUA_OOM_DUMP") != NULL;
  int i;
  for (i = 0; i < NWORKLOADS; i++) {
    const workload *w = &workloads[i];
    long count, ccount, n, from = 0, to, stride, runs = 0;
    int m;
    if (only != NULL && strcmp(only, w->name) != 0)
      continue;
    nsites = 0;
    count = run(w, M_COUNT, 0);
    if (count < 0)
      continue;
    to = count;
    if (at != NULL) {
      from = atol(at);
      to = from + 1;
    }
    stride = full || at != NULL ? 1 : (count + SAMPLES - 1) / SAMPLES;
    if (stride < 1)
      stride = 1;
    ninterrupted = 0;
    for (m = M_ONE; m <= M_ALL; m++)
      for (n = from; n < to; n++)
        if (chosen(n, stride)) {
          run(w, m, n);
          runs++;
        }
    /* green's C heap: each of its allocations, failed once */
    ccount = at == NULL ? run(w, M_CCOUNT, 0) : 0;
    for (n = 0; n < ccount; n++)
      run(w, M_C, n);
    fprintf(stderr, "%s: %ld allocations (%d sites in green's C code), "
            "%ld runs, %ld interrupted; %ld of green's C heap\n", w->name,
            count, nsites, runs, ninterrupted, ccount);
    CHECK(nsites > 0); /* (the sites are found) */
    if (LEAK_CHECK()) {
      fprintf(stderr, "%s: leaks (above)\n", w->name);
      CHECK(0);
    }
  }
}


/* Makes the tls workload's certificate and key (one PEM file). */
static void make_certificate(void) {
  char cmd[1024];
  int fd;
  strcpy(certificate, "/tmp/greenlua-run-oom-XXXXXX");
  fd = mkstemp(certificate);
  if (fd < 0) {
    certificate[0] = '\0';
    return;
  }
  close(fd);
  snprintf(cmd, sizeof(cmd),
           "env -u LD_PRELOAD openssl req -x509 -newkey ec -pkeyopt "
           "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost "
           "-keyout %s.key -out %s.crt >/dev/null 2>&1 && cat %s.crt %s.key "
           "> %s; rm -f %s.key %s.crt", certificate, certificate,
           certificate, certificate, certificate, certificate, certificate);
  if (system(cmd) != 0) {
    fprintf(stderr, "test-run-oom: no certificate (openssl)\n");
    CHECK(0);
  }
}


int main(void) {
  main_thread = pthread_self();
  filter_stderr();
  signal(SIGALRM, on_alarm);
  make_certificate();
  RUN(test_workloads);
  if (certificate[0] != '\0')
    remove(certificate);
  return check_done();
}
