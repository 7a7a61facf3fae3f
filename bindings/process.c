/*
** process.c: child processes. green.process.spawn, a Process's wait and
** kill, and green.process.wait(pid) for any child of this process.
** lua/green/process.lua adds communicate, run, popen and the green
** os.execute on these.
**
** Starting. Not uv_spawn: libuv 1.44 forks, which copies the parent's
** page tables and makes the parent take a copy-on-write fault for each
** page it touches until the child has exec'd (uv_spawn of "true" plus
** its wait ran at 0.5x os.execute("true"), bench/process.lua). Children
** share our memory until they exec (CLONE_VM | CLONE_VFORK, as glibc's
** posix_spawn and system(3) do), started by our own clone3 spawner where
** the kernel has CLONE_CLEAR_SIGHAND (below: it spares the child 128
** system calls glibc's child makes for the signal handlers), else by
** posix_spawn (GREENLUA_SPAWN=posix_spawn forces it). The child gets an
** empty signal mask, SIGPIPE and SIGXFSZ at their defaults (green.core
** ignores SIGPIPE for itself; the rest of what this process ignores stays
** ignored across exec, as with system(3)), its stdin, stdout and stderr as asked,
** and no other descriptor of ours: the pipes are made with O_CLOEXEC, and
** every descriptor above 2 is closed in the child (closefrom, as Python's
** close_fds), so a descriptor this process opened without close-on-exec
** (io.open does) does not leak into children either. Exec failures
** (ENOENT, EACCES, ENOEXEC) come back from the spawner itself.
**
** Reaping. One SIGCHLD watcher per hub (a uv_signal_t) runs while a
** watched child of ours is unreaped or a thread waits for another child
** (run's children are watched only once somebody must block for them:
** see l_spawn_run and l_settle), and calls
** waitpid(pid, WNOHANG) for exactly those pids, never waitpid(-1): libuv
** reaps its own uv_spawn children the same way (src/unix/process.c,
** uv__wait_children, from its own SIGCHLD watcher; libuv hands a signal
** to every watcher of it), so neither takes the other's exit status; and
** green.process.wait(pid) refuses a pid that belongs to a uv_process_t of
** the loop. A child is reaped as soon as it exits even if nobody waits
** (a Process collected unwaited leaves no zombie: its record outlives the
** userdata until then). A child spawn did not start (a fork's) is only
** looked at (waitid WNOWAIT) and reaped by the waiting thread it wakes,
** when that thread runs (peek_pid): its pid is its own till then. The
** watcher keeps the hub alive only while a thread waits; a hub that
** never polls reaps at its next poll. (Leaving
** it started between children would save a dozen system calls per child,
** ~2% of a process.run("true"), but then a stock os.execute's child, its
** SIGCHLD taken by the watchdog's thread while system() blocks it in the
** hub's, leaves I/O ready under a hub kept by a blocking call: a
** blocking report for a program that merely used green.process once.)
**
** A Process is a 'green.Process' userdata holding a pointer to a malloc'd
** record (luv style). The pipe ends are green stream sockets (pipe.c's
** kind, over uv_pipe_t, opened on our end of each pipe). Writing to a
** child that exited gets EPIPE ("closed"), not SIGPIPE: green.core ignores
** SIGPIPE (socket.c); the child has it at its default.
*/
#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_add*_np */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lsignal.h"
#include "lsocket.h"

#define LGREEN_PROCESS "green.Process"
#define STATE_KEY "green.process.state"
#define PIPED_KEY "green.process.piped" /* weak set of Processes with pipes */

extern char **environ;

typedef struct pstate pstate;

/* A child started by spawn. */
typedef struct proc {
  gl_link_t link;     /* in st->procs, then st->done once reaped */
  lgreen_owned own;   /* while 'boxed' (box.c) */
  int boxed;          /* its userdata points to it (until collected) */
  pstate *st;
  gl_waitq_t waiters; /* pidwaits (Process:wait, green.process.wait) */
  int pid;
  int watched;  /* counted in st->running: the watcher reaps it */
  uv_poll_t *exitpoll; /* run's: on a pidfd, reaps at the exit, or NULL */
  int keep[2];  /* run's: our copies of the child's stdout and stderr
                   ends, closed once it is reaped (else -1) */
  int exited;   /* reaped */
  int disowned; /* in a child of green.fork: the parent's child */
  int reused;   /* reaped, and its pid is another child's now */
  int signaled; /* killed by signal 'code' (else exited with 'code') */
  int code;
} proc;


/* Per hub: the records, the waits for other children, the watcher. */
struct pstate {
  gl_hub_t *hub;
  gl_link_t procs;     /* records of children not reaped yet */
  gl_link_t done;      /* records of reaped children, until collected */
  gl_waitq_t foreign;  /* pidwaits for children spawn did not start */
  uv_signal_t *reaper; /* SIGCHLD; NULL once the state is closed */
  unsigned running;    /* watched children of 'procs' */
  unsigned nwaits;     /* pidwaits pending: the watcher keeps the hub */
  int reaping;         /* the watcher is started */
  /* The last spawn's attributes and file actions (without cwd), for the
     next spawn with the same descriptors: building them costs glibc two
     getrlimit calls per action. */
  int plan;            /* 'attr' set up; 'fa' valid for 'key' */
  int key[9];          /* mode, childfd, closed */
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t fa;
  int noclone3;        /* clone3 cannot start children here */
  char *cstack;        /* the clone3 child's stack, and its plan */
};


/* A thread waiting for a child: a userdata on its stack. The waker copies
   the outcome in, since the record may be gone when the thread runs. */
typedef struct pidwait {
  gl_wait_t base; /* first member */
  proc *p;        /* the Process's record, or NULL (a foreign child) */
  pstate *st;
  int pid;
  int signaled, code;
  int reaps;      /* a foreign child's: this waiter reaps it (wait_k);
                     2: other waiters got the outcome too */
} pidwait;


static void free_handle(uv_handle_t *h) {
  free(h);
}


/*
** {======================================================
** Reaping (no Lua)
** =======================================================
*/

static void on_sigchld(uv_signal_t *h, int signum);

/* The watcher runs while there is something to reap, and keeps the hub
   alive while somebody waits. 0 or a UV_E* code (starting it). */
static int reaper_update(pstate *st) {
  int want = st->running > 0 || !gl_waitq_empty(&st->foreign);
  if (st->reaper == NULL)
    return 0;
  if (want && !st->reaping) {
    int r = lgreen_signal_start(st->reaper, on_sigchld, SIGCHLD);
    if (r < 0)
      return r;
    st->reaping = 1;
  } else if (!want && st->reaping) {
    lgreen_signal_stop(st->reaper);
    st->reaping = 0;
  }
  if (st->nwaits > 0)
    uv_ref((uv_handle_t *)st->reaper);
  else
    uv_unref((uv_handle_t *)st->reaper);
  return 0;
}


/* End pidwait 'pw' with an outcome ('err' 0) or an error. */
static void deliver(pidwait *pw, int signaled, int code, int err) {
  pw->signaled = signaled;
  pw->code = code;
  pw->st->nwaits--;
  gl_link_remove(&pw->base.link);
  gl_wait_end(&pw->base, err != 0 ? err : GL_W_OK);
}


static void proc_free(proc *p) {
  gl_link_remove(&p->link);
  lgreen_disown(&p->own);
  free(p);
}


/* waitpid(pid, WNOHANG): 0 (still running), 1 (reaped: '*status'), or a
   negative UV_E* code. */
static int reap_pid(int pid, int *status) {
  pid_t r;
  do
    r = waitpid(pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return uv_translate_sys_error(errno);
  return r > 0;
}


/*
** Has child 'pid' ended? Like reap_pid, but the child is left a zombie
** (waitid WNOWAIT): 0 (running), 1 ('*signaled', '*code' set), or a
** negative UV_E* code. A foreign child (forked, not spawned) is reaped
** only by the thread its end wakes, when that thread runs (wait_k): until
** then its pid is still its own, so no other thread of this hub can
** signal a process that took the pid meanwhile (prefork's workers, killed
** by pid), and a waiter killed before it ran leaves the status to the
** next wait.
*/
static int peek_pid(int pid, int *signaled, int *code) {
  siginfo_t si;
  int r;
  si.si_pid = 0;
  do
    r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return uv_translate_sys_error(errno);
  if (si.si_pid == 0)
    return 0;
  *signaled = si.si_code != CLD_EXITED;
  *code = si.si_status;
  return 1;
}


static void pidfd_closed(uv_handle_t *h) {
  close(((uv_poll_t *)h)->io_watcher.fd);
  free(h);
}


/* Stop watching 'p''s pidfd and let its pipes reach end of file. */
static void unkeep(proc *p) {
  int i;
  if (p->exitpoll != NULL) {
    uv_close((uv_handle_t *)p->exitpoll, pidfd_closed);
    p->exitpoll = NULL;
  }
  for (i = 0; i < 2; i++)
    if (p->keep[i] >= 0) {
      close(p->keep[i]);
      p->keep[i] = -1;
    }
}


/* Child 'p' ended with 'status' (or vanished: 'err'): record, wake. */
static void proc_ended(proc *p, int status, int err) {
  unkeep(p);
  p->exited = 1;
  if (p->watched)
    p->st->running--;
  gl_link_remove(&p->link);
  gl_link_push(&p->st->done, &p->link);
  if (err != 0) { /* reaped by someone else: the outcome is lost */
    p->signaled = 0;
    p->code = -1;
  } else {
    p->signaled = WIFSIGNALED(status);
    p->code = p->signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  }
  while (!gl_waitq_empty(&p->waiters))
    deliver((pidwait *)gl_waitq_first(&p->waiters), p->signaled, p->code,
            err);
  if (!p->boxed) /* collected before its child ended */
    proc_free(p);
}


static void reap(pstate *st) {
  gl_link_t *l = st->procs.next;
  while (l != &st->procs) {
    proc *p = GL_CONTAINER(l, proc, link);
    int status = 0, r;
    l = l->next; /* 'p' may be freed */
    if (p->exited || (r = reap_pid(p->pid, &status)) == 0)
      continue;
    proc_ended(p, status, r < 0 ? r : 0);
  }
  l = st->foreign.head.next;
  while (l != &st->foreign.head) {
    pidwait *pw = (pidwait *)GL_CONTAINER(l, gl_wait_t, link);
    int signaled = 0, code = 0, pid = pw->pid;
    int r = peek_pid(pid, &signaled, &code);
    gl_link_t *m;
    pidwait *first = NULL;
    if (r == 0) {
      l = l->next;
      continue;
    }
    for (m = st->foreign.head.next; m != &st->foreign.head;) {
      pidwait *w = (pidwait *)GL_CONTAINER(m, gl_wait_t, link);
      m = m->next;
      if (w->pid != pid)
        continue;
      /* One reaps: once it has, the pid may be the next child's, whom
         another waiter's reap would take (its outcome lost). */
      if (first == NULL) {
        first = w;
        w->reaps = 1;
      } else {
        first->reaps = 2;
      }
      deliver(w, signaled, code, r < 0 ? r : 0);
    }
    l = st->foreign.head.next; /* the list changed: from the start */
  }
  reaper_update(st);
}


/* Let the watcher reap 'p' and the hub wait for it: a child of run (not
   watched while nobody has to wait for it) that somebody now waits for,
   or whose Process is closed or collected. Its SIGCHLD may have come
   before the watcher started: ask once after. 0 or a UV_E* code. 'p' may
   be freed (reaped, and collected already). */
static int watch(proc *p) {
  pstate *st = p->st;
  int status = 0, r;
  if (p->watched || p->exited)
    return 0;
  p->watched = 1;
  st->running++;
  if ((r = reaper_update(st)) < 0) {
    p->watched = 0;
    st->running--;
    return r;
  }
  if ((r = reap_pid(p->pid, &status)) != 0) {
    proc_ended(p, status, r < 0 ? r : 0);
    reaper_update(st);
  }
  return 0;
}


/* Somebody must block for 'p': make sure something reaps it, and keeps
   the hub alive meanwhile (its pidfd's poll, else the watcher). */
static int need(proc *p) {
  if (p->exitpoll != NULL) {
    uv_ref((uv_handle_t *)p->exitpoll);
    return 0;
  }
  return watch(p);
}


/* run's child has exited (its pidfd is readable): reap it. */
static void on_pidfd(uv_poll_t *h, int status, int events) {
  proc *p = (proc *)h->data;
  int st = 0, r;
  (void)status;
  (void)events;
  if ((r = reap_pid(p->pid, &st)) != 0) {
    pstate *ps = p->st;
    proc_ended(p, st, r < 0 ? r : 0);
    reaper_update(ps);
  }
}


/*
** run's (and execute's) child 'p': reap it when its pidfd says it has
** exited, and keep our copies of its stdout and stderr ends (if pipes)
** so that their end of file comes only once it has been reaped. A child ending then
** wakes the hub once, as system(3)'s caller wakes once: end of file on
** each pipe comes at a different moment of the child's exit (the kernel
** releases its files one after the other, then makes it a zombie), and
** on a loaded machine the woken parent preempts the exiting child at
** each. A grandchild holding a pipe still delays its end of file, as
** before. Without pidfd_open (Linux < 5.3) nothing is kept. Takes the
** child's ends of stdout and stderr out of 'fds' when it keeps them.
*/
static void exit_watch(gl_hub_t *hub, proc *p, int fds[3][2], int fd) {
  uv_poll_t *h;
  int i;
  if (fd < 0) /* clone3 gave none */
    fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
  if (fd < 0)
    return;
  h = (uv_poll_t *)malloc(sizeof(*h));
  if (h == NULL || uv_poll_init(&hub->loop, h, fd) < 0) {
    free(h);
    close(fd);
    return;
  }
  h->data = p;
  if (uv_poll_start(h, UV_READABLE, on_pidfd) < 0) {
    uv_close((uv_handle_t *)h, pidfd_closed);
    return;
  }
  uv_unref((uv_handle_t *)h); /* the readers keep the hub, not this */
  p->exitpoll = h;
  for (i = 1; i < 3; i++) {
    p->keep[i - 1] = fds[i][1];
    fds[i][1] = -1;
  }
}


static void on_sigchld(uv_signal_t *h, int signum) {
  (void)signum;
  reap((pstate *)h->data);
}


/* A wait leaves (timeout, kill). */
static void pidwait_cancel(gl_wait_t *w) {
  pidwait *pw = (pidwait *)w;
  gl_link_remove(&w->link);
  if (pw->p != NULL && pw->p->exitpoll != NULL &&
      gl_waitq_empty(&pw->p->waiters)) /* the last waiter left */
    uv_unref((uv_handle_t *)pw->p->exitpoll);
  pw->st->nwaits--;
  reaper_update(pw->st);
}

/* }====================================================== */


/*
** {======================================================
** Waiting
** =======================================================
*/

/* [-0, +2, -] "exit", code or "signal", signum. */
static int push_outcome(lua_State *L, int signaled, int code) {
  if (signaled)
    lua_pushliteral(L, "signal");
  else
    lua_pushliteral(L, "exit");
  lua_pushinteger(L, code);
  return 2;
}


static int push_fail(lua_State *L, int err) {
  luaL_pushfail(L);
  if (err == UV_ETIMEDOUT)
    lua_pushliteral(L, "timeout");
  else if (err == -ECHILD) /* libuv has no name for it */
    lua_pushliteral(L, "no child processes");
  else
    lua_pushstring(L, uv_strerror(err));
  return 2;
}


/* A Process's outcome; a child somebody else reaped has none. */
static int push_proc(lua_State *L, proc *p) {
  if (p->code < 0)
    return push_fail(L, -ECHILD);
  return push_outcome(L, p->signaled, p->code);
}


/* The reaper of a foreign child, killed before it ran: the other waiters
   returned its outcome, nobody else reaps it; alone, it leaves the
   outcome to the next wait. */
static void reaper_undo(gl_wait_t *w) {
  pidwait *pw = (pidwait *)w;
  int ignored;
  if (pw->p == NULL && pw->reaps == 2 && w->status == GL_W_OK)
    reap_pid(pw->pid, &ignored);
}


/* The state closes with the reaper of a foreign child woken but never run
   (gl_hub_close): reap it as its continuation would have, or the child
   stays a zombie for as long as the process runs (a host that goes on
   after lua_close). */
static void reaper_dropped(gl_wait_t *w) {
  pidwait *pw = (pidwait *)w;
  int ignored;
  if (pw->p == NULL && pw->reaps && w->status == GL_W_OK)
    reap_pid(pw->pid, &ignored);
}


static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  pidwait *pw = (pidwait *)ctx;
  int st = lgreen_waited(L, &pw->base, reaper_undo); /* killed alone: a
                                                        zombie still */
  (void)status;
  if (st != GL_W_OK)
    return push_fail(L, st);
  if (pw->p == NULL && pw->reaps) { /* a foreign child: reap it now */
    int ignored;
    reap_pid(pw->pid, &ignored); /* (a wait(pid) may have, meanwhile) */
  }
  return push_outcome(L, pw->signaled, pw->code);
}


/* [-0, +1, m] A pidwait on the stack. */
static pidwait *newpidwait(lua_State *L, pstate *st, int pid) {
  pidwait *pw = (pidwait *)lua_newuserdatauv(L, sizeof(*pw), 0);
  gl_wait_init(&pw->base);
  pw->p = NULL;
  pw->st = st;
  pw->pid = pid;
  pw->signaled = pw->code = pw->reaps = 0;
  return pw;
}


/* The deadline of a wait of 'timeout' seconds (-1: none). */
static uint64_t deadline(double timeout) {
  return timeout < 0 ? 0 : gl_now() + lgreen_ns(timeout) + 1;
}


/* Block the caller in 'pw' (on the top of the stack), queued in 'q'. */
static int wait_in(lua_State *L, pidwait *pw, gl_waitq_t *q, uint64_t due,
                   const char *what) {
  gl_thread_t *t = lgreen_begin(L, lgreen_hub(L), what);
  gl_wait_start(t, &pw->base, what, pidwait_cancel, NULL);
  pw->base.drop = reaper_dropped;
  gl_waitq_push(q, &pw->base);
  pw->st->nwaits++;
  reaper_update(pw->st); /* refs the watcher: running already */
  if (due != 0)
    lgreen_deadline(L, &pw->base, due);
  return lgreen_block(L, t, wait_k, (lua_KContext)pw);
}


#define checkud(L) ((proc **)luaL_checkudata(L, 1, LGREEN_PROCESS))

static proc *checkproc(lua_State *L) {
  proc *p = *checkud(L);
  if (p == NULL)
    luaL_error(L, "attempt to use a released Process");
  return p;
}


/***
** p:wait([timeout]): "exit", code or "signal", signum once the child has
** ended (at once if it has); nil, "timeout" after 'timeout' seconds (0:
** never waits). Any number of threads may wait.
*/
static int proc_wait(lua_State *L) {
  proc *p = checkproc(L);
  double timeout = lgreen_optwait(L, 2); /* negative: 0 */
  pidwait *pw;
  int status = 0, r;
  lua_settop(L, 2);
  /* Ask first: a child that closed its pipes (what communicate waited
     for) has usually ended by now, and waiting for its SIGCHLD would
     cost a second wakeup of the hub. */
  if (!p->exited && (r = reap_pid(p->pid, &status)) != 0) {
    proc_ended(p, status, r < 0 ? r : 0);
    reaper_update(p->st);
  }
  if (p->exited)
    return push_proc(L, p);
  if (timeout == 0)
    return push_fail(L, UV_ETIMEDOUT);
  pw = newpidwait(L, p->st, p->pid);
  if ((r = need(p)) < 0)
    return luaL_error(L, "process:wait: %s", uv_strerror(r));
  if (p->exited) /* its SIGCHLD came before the watcher */
    return push_proc(L, p);
  pw->p = p;
  return wait_in(L, pw, &p->waiters, deadline(timeout), "process:wait");
}


/*
** core.process_settle(p): p's child has just closed every pipe we read
** (communicate saw end of file on all): it is exiting, and its exit
** status follows within microseconds (the kernel closes a dying
** process's descriptors a little before it makes it a zombie). Ask for
** it for up to SETTLE_NS, so that the wait that follows finds it reaped
** instead of sleeping until SIGCHLD: one wakeup of the hub fewer per
** child, which on a loaded machine is a time slice (bench/process.lua).
** True if reaped. A child that closed its output and lives on costs the
** hub at most SETTLE_NS, once.
*/
#define SETTLE_NS 50000

static int l_settle(lua_State *L) {
  proc *p = checkproc(L);
  uint64_t t0 = 0;
  int status = 0, r = 0;
  while (!p->exited) {
    if ((r = reap_pid(p->pid, &status)) != 0) {
      proc_ended(p, status, r < 0 ? r : 0);
      reaper_update(p->st);
      break;
    }
    if (t0 == 0)
      t0 = uv_hrtime();
    else if (uv_hrtime() - t0 > SETTLE_NS)
      break;
  }
  lua_pushboolean(L, p->exited);
  return 1;
}


/*
** The record of child 'pid', or NULL: the unreaped child that has it, or
** the last one reaped. A reaped child's pid is free for the kernel to
** give to the next child, which is that pid's from then on: a later
** spawn's (reaped later: nearer the tail of 'done', searched from the
** tail), or one spawn did not start (a fork's), which 'stale' finds.
*/
static proc *findproc(pstate *st, int pid) {
  gl_link_t *l;
  for (l = st->procs.next; l != &st->procs; l = l->next) {
    proc *p = GL_CONTAINER(l, proc, link);
    if (p->pid == pid)
      return p;
  }
  for (l = st->done.prev; l != &st->done; l = l->prev) {
    proc *p = GL_CONTAINER(l, proc, link);
    if (p->pid == pid && !p->reused)
      return p;
  }
  return NULL;
}


/*
** Reaped record 'p': is its pid another child's now (one spawn did not
** start: a fork's)? Then the record is marked reused, never to be found
** by pid again. Asked without reaping (WNOWAIT): the child may be a
** libuv process handle's.
*/
static int stale(proc *p) {
  siginfo_t si;
  int r;
  do
    r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == ECHILD)
    return 0;
  p->reused = 1;
  return 1;
}


/* uv_walk: is 'h' a process handle of pid '*arg'? */
static void find_uv_child(uv_handle_t *h, void *arg) {
  int *pid = (int *)arg;
  if (h->type == UV_PROCESS && ((uv_process_t *)h)->pid == *pid)
    *pid = -1;
}


/***
** green.process.wait(pid, [timeout]): wait for child 'pid' of this process
** (spawned, or forked) to end: "exit", code or "signal", signum; nil,
** "timeout"; nil, "no child processes" if 'pid' is not a child, or was
** reaped already. A green wait: the hub runs meanwhile.
*/
static int l_waitpid(lua_State *L) {
  pstate *st = (pstate *)lua_touserdata(L, lua_upvalueindex(3));
  lua_Integer pid = luaL_checkinteger(L, 1);
  double timeout = lgreen_optwait(L, 2); /* negative: 0 */
  int upid, status = 0, r;
  pidwait *pw;
  proc *p;
  luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1,
                "a positive process id expected");
  lgreen_checkopen(L, lgreen_hub(L)); /* uv_walk of a closed loop */
  lua_settop(L, 2);
  pw = newpidwait(L, st, (int)pid); /* allocation first */
  if ((p = findproc(st, (int)pid)) != NULL && p->exited && stale(p))
    p = NULL; /* its pid is another child's: waited for below */
  if (p != NULL) {
    if (p->exited)
      return push_proc(L, p);
    if (timeout == 0)
      return push_fail(L, UV_ETIMEDOUT);
    if ((r = need(p)) < 0)
      return luaL_error(L, "green.process.wait: %s", uv_strerror(r));
    if (p->exited)
      return push_proc(L, p);
    pw->p = p;
    return wait_in(L, pw, &p->waiters, deadline(timeout), "process:wait");
  }
  upid = (int)pid;
  uv_walk(&lgreen_hub(L)->loop, find_uv_child, &upid);
  if (upid < 0) /* libuv reaps it: waiting here would steal its status */
    return luaL_error(L, "green.process.wait: process %d belongs to a libuv "
                         "process handle (uv_spawn): wait through it",
                      (int)pid);
  if ((r = reap_pid((int)pid, &status)) < 0)
    return push_fail(L, r);
  if (r > 0)
    return WIFSIGNALED(status) ? push_outcome(L, 1, WTERMSIG(status))
                               : push_outcome(L, 0, WEXITSTATUS(status));
  if (timeout == 0)
    return push_fail(L, UV_ETIMEDOUT);
  lgreen_begin(L, lgreen_hub(L), "green.process.wait"); /* raises first */
  gl_waitq_push(&st->foreign, &pw->base); /* so the watcher starts */
  r = reaper_update(st);
  gl_link_remove(&pw->base.link);
  if (r < 0) {
    reaper_update(st);
    return luaL_error(L, "green.process.wait: %s", uv_strerror(r));
  }
  /* It may have ended before the watcher started. */
  if ((r = reap_pid((int)pid, &status)) != 0) {
    reaper_update(st);
    if (r < 0)
      return push_fail(L, r);
    return WIFSIGNALED(status) ? push_outcome(L, 1, WTERMSIG(status))
                               : push_outcome(L, 0, WEXITSTATUS(status));
  }
  return wait_in(L, pw, &st->foreign, deadline(timeout),
                 "green.process.wait");
}

/*
** core.process_drain(sock): wait until what 'sock' (a child's stdin) has
** queued in the hub is written. true; nil, "closed" when the child no
** longer reads (EPIPE) or the socket is closed. communicate and popen's
** close call it before they close a child's stdin: close lets queued
** bytes linger only while they make progress (2 s, socket.c), and a
** child that starts reading later would lose the rest and see its input
** end early.
*/
static int drain_k(lua_State *L, int status, lua_KContext ctx);

static int drain_wait(lua_State *L, lsock *s) {
  return lgreen_sock_wait(L, s, &s->writers, "process:drain",
                          lgreen_sock_leave, 0, drain_k, 0);
}

static int drain_done(lua_State *L, lsock *s) {
  int err = LSTREAM(s)->werr;
  if (err != 0)
    return lgreen_sock_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int drain_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_sock_leave, &s);
  (void)status;
  (void)ctx;
  if (outcome != GL_W_OK)
    return lgreen_sock_fail(L, outcome);
  if (LSTREAM(s)->werr != 0 || s->ops->queued(s) == 0) {
    lgreen_sock_leave(lgreen_sock_self(L));
    return drain_done(L, s);
  }
  return drain_wait(L, s); /* woken below half the queue: again */
}

static int l_drain(lua_State *L) {
  lsock *s = *lgreen_sock_checkstream(L);
  lua_settop(L, 1);
  if (s == NULL)
    return lgreen_sock_fail(L, LSOCK_W_CLOSED);
  if (LSTREAM(s)->werr != 0 || s->ops->queued(s) == 0)
    return drain_done(L, s);
  return drain_wait(L, s);
}

/* }====================================================== */


/*
** {======================================================
** Kill, close, fields
** =======================================================
*/

/***
** p:kill([sig="TERM"]): send signal 'sig' (a name such as "KILL" or a
** number; 0 only checks) to the child. true, or nil, err: "no such
** process" once it has been reaped (its pid may belong to another
** process by then, so nothing is sent).
*/
static int proc_kill(lua_State *L) {
  proc *p = checkproc(L);
  int signum = lua_isnoneornil(L, 2) ? SIGTERM : lgreen_signum(L, 2, 1);
  int r = p->exited ? UV_ESRCH : uv_kill(p->pid, signum);
  if (r < 0)
    return push_fail(L, r);
  lua_pushboolean(L, 1);
  return 1;
}


/* Shut the pipe sockets that are user values of the Process at 'ud'. */
static void shut_pipes(lua_State *L, int ud) {
  int i;
  for (i = 1; i <= 3; i++) {
    if (lua_getiuservalue(L, ud, i) == LUA_TUSERDATA) {
      lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, -1));
      if (s != NULL)
        lgreen_sock_shut(s);
    }
    lua_pop(L, 1);
  }
}


/*
** __close: close the pipe ends, SIGKILL a child still running and wait
** for it. Where the caller cannot block (a kill or an error unwinding,
** a C-call boundary) it does not wait: the hub reaps the child as it
** ends.
*/
static int proc_close(lua_State *L) {
  proc *p = *checkud(L);
  gl_hub_t *hub = lgreen_hub(L);
  pidwait *pw;
  lua_settop(L, 1);
  shut_pipes(L, 1);
  if (p == NULL || p->exited)
    return 0;
  kill(p->pid, SIGKILL);
  if (p->exitpoll == NULL) /* else its pidfd's poll reaps it */
    watch(p); /* the hub reaps it, whoever waits */
  if (p->exited || !lgreen_canblock(L, hub) ||
      (hub->current->flags & GL_F_KILLED))
    return 0;
  pw = newpidwait(L, p->st, p->pid);
  if (p->exited) /* reaped by a finalizer's wait during the allocation */
    return 0;
  need(p); /* its poll keeps the hub while we wait */
  pw->p = p;
  return wait_in(L, pw, &p->waiters, 0, "process:close");
}


/* The record's userdata is gone: a child still running keeps its record
   until it is reaped (the watcher watches it from now on). */
static void unbox(proc *p) {
  p->boxed = 0;
  lgreen_disown(&p->own);
  if (p->exited)
    proc_free(p);
  else if (p->exitpoll == NULL) /* else its pidfd's poll reaps it */
    watch(p); /* may free it */
}


/* __gc: never waits nor kills. */
static int proc_gc(lua_State *L) {
  proc **ud = checkud(L);
  proc *p = *ud;
  if (p == NULL)
    return 0;
  *ud = NULL;
  unbox(p);
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void proc_orphan(lgreen_owned *o) {
  unbox(GL_CONTAINER(o, proc, own));
}

static const lgreen_boxkind proc_box = {offsetof(proc, own), proc_orphan};


static int proc_tostring(lua_State *L) {
  proc *p = *checkud(L);
  if (p == NULL)
    lua_pushliteral(L, "green.Process (released)");
  else if (!p->exited)
    lua_pushfstring(L, "green.Process (pid %d, running)", p->pid);
  else if (p->code < 0)
    lua_pushfstring(L, "green.Process (pid %d, no status)", p->pid);
  else
    lua_pushfstring(L, "green.Process (pid %d, %s %d)", p->pid,
                    p->signaled ? "signal" : "exit", p->code);
  return 1;
}


/* p.pid, p.stdin, p.stdout, p.stderr, and the methods (upvalue 2). */
static int proc_index(lua_State *L) {
  static const char *const fields[] = {"stdin", "stdout", "stderr", NULL};
  proc *p = *checkud(L);
  int i;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "pid") == 0) {
      if (p == NULL)
        return 0;
      lua_pushinteger(L, p->pid);
      return 1;
    }
    for (i = 0; fields[i] != NULL; i++)
      if (strcmp(k, fields[i]) == 0) {
        lua_getiuservalue(L, 1, i + 1);
        return 1;
      }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Spawn
** =======================================================
*/

#define IO_INHERIT 0
#define IO_PIPE 1
#define IO_NULL 2
#define IO_STDOUT 3 /* stderr only: wherever stdout goes */

static const char *const stdio_names[] = {"stdin", "stdout", "stderr"};


/* [-0, +0, v] The mode in field 'stdio_names[i]' of the options. */
static int stdio_mode(lua_State *L, int i) {
  static const char *const modes[] = {"inherit", "pipe", "null", "stdout",
                                      NULL};
  const char *m;
  int j;
  if (lua_getfield(L, 1, stdio_names[i]) == LUA_TNIL) {
    lua_pop(L, 1);
    return IO_INHERIT;
  }
  m = lua_tostring(L, -1);
  for (j = 0; m != NULL && modes[j] != NULL; j++)
    if (strcmp(m, modes[j]) == 0 && (j != IO_STDOUT || i == 2)) {
      lua_pop(L, 1);
      return j;
    }
  return luaL_error(L,
                    "green.process.spawn: %s must be \"pipe\", \"inherit\" "
                    "or \"null\"%s",
                    stdio_names[i], i == 2 ? " or \"stdout\"" : "");
}


/* [-0, +0, v] The string at 'idx' (a number is converted in place, so
   the table or stack slot anchors the string). 'what' names it. */
static const char *checkarg(lua_State *L, int idx, const char *what,
                            int i) {
  size_t len;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "green.process.spawn: %s %d is a %s (a string expected)",
               what, i, luaL_typename(L, idx));
  s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len)
    luaL_error(L, "green.process.spawn: %s %d contains a zero byte", what,
               i);
  return s;
}


/*
** [-0, +1, m] The command's argv (a NULL-terminated array in a userdata
** on the top); its strings are anchored in the options table (numbers
** are converted there).
*/
static char **build_argv(lua_State *L) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1), i;
  char **argv;
  if (n < 1)
    luaL_error(L, "green.process.spawn: no command (the table's array "
                  "part holds the program and its arguments)");
  for (i = 1; i <= n; i++) { /* convert and check first: rawset may grow */
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      checkarg(L, -1, "argument", (int)i);
      lua_rawseti(L, 1, i);
    } else {
      checkarg(L, -1, "argument", (int)i);
      lua_pop(L, 1);
    }
  }
  argv = (char **)lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    argv[i - 1] = (char *)lua_tostring(L, -1); /* anchored by the table */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  if (argv[0][0] == '\0')
    luaL_error(L, "green.process.spawn: empty program name");
  return argv;
}


/*
** [-0, +2, m] The child's environment: this process's, changed by the
** table in field "env" (name = string sets, name = false unsets). Pushes
** a table anchoring the new strings and the array (a userdata), and
** returns the array; pushes two nils and returns NULL without "env".
*/
static char **build_env(lua_State *L) {
  int env, anchor, n = 0, count = 0, i;
  char **arr;
  if (lua_getfield(L, 1, "env") == LUA_TNIL) {
    lua_pushnil(L);
    return NULL;
  }
  if (!lua_istable(L, -1))
    luaL_error(L, "green.process.spawn: env must be a table");
  env = lua_gettop(L);
  lua_newtable(L);
  anchor = env + 1;
  lua_pushnil(L);
  while (lua_next(L, env)) { /* check, and make "name=value" strings */
    size_t len;
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "green.process.spawn: env keys must be names");
    k = lua_tolstring(L, -2, &len);
    if (len == 0 || strchr(k, '=') != NULL || strlen(k) != len)
      luaL_error(L, "green.process.spawn: bad environment variable name "
                    "'%s'", k);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      size_t vlen;
      /* a number value is converted on the stack: lua_next needs only
         the key as it was */
      const char *v = lua_tolstring(L, -1, &vlen);
      if (strlen(v) != vlen)
        luaL_error(L, "green.process.spawn: env.%s contains a zero byte", k);
      lua_pushfstring(L, "%s=%s", k, v);
      lua_rawseti(L, anchor, ++n);
    } else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
      luaL_error(L, "green.process.spawn: env.%s must be a string or false",
                 k);
    }
    lua_pop(L, 1);
  }
  for (i = 0; environ[i] != NULL; i++)
    count++;
  arr = (char **)lua_newuserdatauv(L, (size_t)(count + n + 1) *
                                          sizeof(char *), 0);
  count = 0;
  for (i = 0; environ[i] != NULL; i++) { /* kept unless the table names it */
    const char *eq = strchr(environ[i], '=');
    int named;
    if (eq == NULL)
      continue;
    lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
    named = lua_rawget(L, env) != LUA_TNIL;
    lua_pop(L, 1);
    if (!named)
      arr[count++] = environ[i];
  }
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, anchor, i);
    arr[count++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  arr[count] = NULL;
  lua_replace(L, env); /* [arr, anchor] */
  return arr;
}


/* The options' names besides the program and its arguments (1..n). */
static const char *const spawn_opts[] = {"cwd",    "env",    "stdin",
                                         "stdout", "stderr", NULL};


/* nil, "<what>: <message>", errno: as io.open fails. */
static int fail_errno(lua_State *L, const char *what, int err) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", what, strerror(-err));
  lua_pushinteger(L, -err);
  return 3;
}


static void close_fds(int fds[3][2]) {
  int i, j;
  for (i = 0; i < 3; i++)
    for (j = 0; j < 2; j++)
      if (fds[i][j] >= 0) {
        close(fds[i][j]);
        fds[i][j] = -1;
      }
}



/*
** Searching PATH for a program name without '/', as glibc's execvp (2.36,
** posix/execvpe.c) does, in both spawners: the child's PATH (the one its
** environment 'env' has, as Python's subprocess searches, where
** posix_spawnp would search ours), glibc's default "/bin:/usr/bin" if it
** has none; an empty element is the child's working directory, and a
** relative one is relative to it (the search runs after the chdir to
** 'cwd'). A name longer than NAME_MAX is ENAMETOOLONG (glibc's stated rule:
** its check of it never fires, and it then execs a name cut short). An
** element of PATH_MAX bytes or more is skipped (glibc then also tries the
** current directory by accident: not here). Each candidate is execve'd:
** EACCES is remembered and reported if nothing else runs, SEARCH_ON errors
** go on to the next element, any other (ENAMETOOLONG for a candidate over
** PATH_MAX, ENOEXEC, ELOOP, ETXTBSY, E2BIG...) is the spawn's error; with
** every element tried, EACCES, else the last element's error (ENOENT if
** none was tried).
*/
#define SEARCH_ON(e)                                                     \
  ((e) == ENOENT || (e) == ENOTDIR || (e) == ESTALE || (e) == ENODEV ||  \
   (e) == ETIMEDOUT)

/* A candidate's buffer: an element under PATH_MAX, '/', the name, '\0'. */
#define CANDIDATE_SIZE (PATH_MAX + NAME_MAX + 2)

/* The PATH of environment 'env' as getenv finds it, or glibc's default. */
static const char *env_path(char **env) {
  int i;
  for (i = 0; env[i] != NULL; i++)
    if (strncmp(env[i], "PATH=", 5) == 0)
      return env[i] + 5;
  return "/bin:/usr/bin"; /* confstr(_CS_PATH) */
}


/*
** posix_spawn of 'file' searched in 'path' as above, from here: the
** fallback's search (posix_spawnp would search our PATH, in glibc's way).
** Each candidate is looked up first, where the child will look (under
** 'cwd'), so that only one that exists costs a child; the child's execve
** then decides as for execvp. 0 with '*pid', or an errno value.
*/
static int spawn_search(pid_t *pid, const char *cwd, const char *file,
                        const char *path,
                        const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *attr, char **argv,
                        char **env) {
  char buf[CANDIDATE_SIZE], at[PATH_MAX + CANDIDATE_SIZE];
  size_t flen = strlen(file), clen = cwd != NULL ? strlen(cwd) : 0;
  const char *p, *end;
  int err = ENOENT, eacces = 0;
  for (p = path;; p = end + 1) {
    size_t n;
    end = strchrnul(p, ':');
    n = (size_t)(end - p);
    if (n < PATH_MAX) {
      const char *look = buf;
      struct stat sb;
      memcpy(buf, p, n);
      if (n > 0)
        buf[n++] = '/';
      memcpy(buf + n, file, flen + 1);
      if (buf[0] != '/' && cwd != NULL) { /* the child's, after chdir */
        look = NULL; /* too long to look up from here: spawn it */
        if (clen + 1 + n + flen < sizeof(at)) {
          memcpy(at, cwd, clen);
          at[clen] = '/';
          memcpy(at + clen + 1, buf, n + flen + 1);
          look = at;
        }
      }
      if (look != NULL && stat(look, &sb) < 0 &&
          (errno == ENOENT || errno == ENOTDIR))
        err = errno; /* as its execve would fail: no child for it */
      else if ((err = posix_spawn(pid, buf, fa, attr, argv, env)) == 0)
        return 0;
      if (err == EACCES)
        eacces = 1;
      else if (!SEARCH_ON(err))
        return err;
    }
    if (*end == '\0')
      return eacces ? EACCES : err;
  }
}


/*
** Start 'argv' with the descriptors of 'mode' ('childfd': the child's end
** of each pipe, all above 2; 'closed': per inherited stdio descriptor,
** 1 if this process does not have it, -1 if it is close-on-exec here, 0
** if the child inherits it as it is). Returns 0 with '*pid', or an errno
** value. No Lua.
*/
/* The spawn attributes, the same for every child: 0 or an errno. */
static int plan_attr(posix_spawnattr_t *attr) {
  sigset_t dfl, none;
  int err;
  if ((err = posix_spawnattr_init(attr)) != 0)
    return err;
  /* exec resets every caught signal; an ignored one stays ignored, which
     is right for what our own caller ignored (nohup's SIGHUP) but not
     for what green.core ignores for itself (SIGPIPE, socket.c), nor
     SIGXFSZ (Python's restore_signals). A full set would cost the child
     a sigaction per signal (glibc's __spawni_child): ~5% of a spawn. */
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  sigaddset(&dfl, SIGXFSZ);
  sigemptyset(&none);
  err = posix_spawnattr_setsigdefault(attr, &dfl);
  if (err == 0)
    err = posix_spawnattr_setsigmask(attr, &none);
  if (err == 0)
    err = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF |
                                             POSIX_SPAWN_SETSIGMASK);
  if (err != 0)
    posix_spawnattr_destroy(attr);
  return err;
}


static int plan_files(posix_spawn_file_actions_t *fa, const char *cwd,
                      const int mode[3], const int childfd[3],
                      const int closed[3]) {
  int i, err;
  if ((err = posix_spawn_file_actions_init(fa)) != 0)
    return err;
  if (cwd != NULL)
    err = posix_spawn_file_actions_addchdir_np(fa, cwd);
  for (i = 0; i < 3 && err == 0; i++) {
    if (mode[i] == IO_PIPE)
      err = posix_spawn_file_actions_adddup2(fa, childfd[i], i);
    else if (mode[i] == IO_STDOUT)
      err = posix_spawn_file_actions_adddup2(fa, 1, 2);
    else if (mode[i] == IO_NULL || closed[i] > 0)
      err = posix_spawn_file_actions_addopen(fa, i, "/dev/null",
                                             i == 0 ? O_RDONLY : O_WRONLY,
                                             0);
    else if (closed[i] < 0) /* inherit: dup2 onto itself clears
                               close-on-exec (glibc 2.29) */
      err = posix_spawn_file_actions_adddup2(fa, i, i);
  }
  if (err == 0)
    err = posix_spawn_file_actions_addclosefrom_np(fa, 3);
  if (err != 0)
    posix_spawn_file_actions_destroy(fa);
  return err;
}


/*
** {======================================================
** Our own spawner: clone3 with CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND
** =======================================================
**
** glibc's posix_spawn child (2.36) cannot know which signals have a
** handler in the parent, so before it execs it asks for every one of the
** 64 and resets each: 128 system calls, while the parent waits (vfork).
** On this paravirtualized machine that was ~40% of the child's work
** before exec and made process.run("true") lose to system(3), which
** pays it too but has no pipes to set up. clone3's CLONE_CLEAR_SIGHAND
** (Linux 5.5) has the kernel reset every handled signal to its default in
** the child as it is made, so the child does only what was asked: SIGPIPE
** and SIGXFSZ to their defaults, an empty signal mask, the stdio
** descriptors, closefrom(3), exec. And CLONE_PIDFD hands run a pidfd
** without a pidfd_open. Same outcome as posix_spawn with our attributes
** and file actions (the child then has no handled signal either: exec
** resets them), and the same errors.
**
** The child runs on its own stack (st->cstack) in our memory until it
** execs; it touches only its plan and makes raw system calls (no locks,
** no allocation, nothing a sanitizer instruments). On a kernel, seccomp
** filter or emulator (valgrind) without clone3 or CLONE_CLEAR_SIGHAND,
** the first spawn falls back to posix_spawn for good. x86-64 only (the
** new-stack trampoline is six instructions of assembly); elsewhere,
** posix_spawn.
*/

#if defined(__x86_64__) && defined(SYS_clone3)
#define HAVE_CLONE3 1
#include <linux/sched.h> /* struct clone_args, CLONE_CLEAR_SIGHAND */

#define CSTACK_SIZE (64 * 1024)
#if defined(__clang__)
#define NOSAN __attribute__((no_sanitize("address", "undefined"), noinline))
#else /* and no loop made into a call of memcpy */
#define NOSAN                                                            \
  __attribute__((no_sanitize("address", "undefined"), noinline,         \
                 optimize("no-tree-loop-distribute-patterns")))
#endif

/* What the child does: read-only for it, but 'err'. */
typedef struct childplan {
  const char *file;   /* argv[0] */
  const char *path;   /* the PATH to search for 'file' (no '/'), or NULL */
  char *const *argv, *const *env;
  const char *cwd;
  const int *mode, *childfd, *closed;
  char buf[CANDIDATE_SIZE]; /* a candidate path */
  int err;            /* the child's errno when it could not exec */
} childplan;

/* The kernel's struct sigaction for rt_sigaction, no restorer needed. */
typedef struct ksigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
} ksigaction;

#define RAW(...) syscall(__VA_ARGS__)

/* dup3 'from' onto 'to'. 0 or an errno value. */
static NOSAN int child_dup(int from, int to) {
  return RAW(SYS_dup3, from, to, 0) < 0 ? errno : 0;
}

/* The child's stdio descriptor 'i' as planned. 0 or an errno value. */
static NOSAN int child_stdio(childplan *c, int i) {
  int m = c->mode[i];
  if (m == IO_PIPE)
    return child_dup(c->childfd[i], i);
  if (m == IO_STDOUT)
    return child_dup(1, 2);
  if (m == IO_NULL || c->closed[i] > 0) {
    long fd;
    /* 'i' first, as posix_spawn's open action: the open takes its
       number even with no other descriptor left (0 to i-1 are open) */
    RAW(SYS_close, i);
    fd = RAW(SYS_openat, AT_FDCWD, "/dev/null",
             i == 0 ? O_RDONLY : O_WRONLY);
    if (fd < 0)
      return errno;
    if (fd != i) {
      int err = child_dup((int)fd, i);
      RAW(SYS_close, fd);
      return err;
    }
    return 0;
  }
  if (c->closed[i] < 0) /* inherited, but close-on-exec here */
    return RAW(SYS_fcntl, i, F_SETFD, 0) < 0 ? errno : 0;
  return 0;
}

/* execve each PATH candidate for 'file', as execvp does (the rules above
   env_path; without its /bin/sh for a file that is no executable:
   posix_spawnp's choice). */
static NOSAN int child_search(childplan *c) {
  const char *p = c->path, *f;
  size_t flen = 0;
  int err = ENOENT, eacces = 0;
  for (f = c->file; *f != '\0'; f++)
    flen++;
  if (flen > NAME_MAX) /* checked by start: the buffer's bound */
    return ENAMETOOLONG;
  for (;;) {
    const char *end = p;
    size_t n, k;
    while (*end != '\0' && *end != ':')
      end++;
    n = (size_t)(end - p);
    if (n < PATH_MAX) { /* a longer element is skipped */
      for (k = 0; k < n; k++)
        c->buf[k] = p[k];
      if (n > 0)
        c->buf[n++] = '/';
      for (k = 0; k <= flen; k++) /* with its '\0' */
        c->buf[n + k] = c->file[k];
      RAW(SYS_execve, c->buf, c->argv, c->env);
      err = errno;
      if (err == EACCES)
        eacces = 1;
      else if (!SEARCH_ON(err))
        return err;
    }
    if (*end == '\0')
      return eacces ? EACCES : err;
    p = end + 1;
  }
}

/* The child, on its own stack: never returns if it execs. */
static NOSAN int child_main(void *arg) {
  childplan *c = (childplan *)arg;
  ksigaction dfl = {SIG_DFL, 0, NULL, 0};
  unsigned long none = 0;
  int i, err = 0;
  /* handlers are reset already (CLONE_CLEAR_SIGHAND); these two may be
     ignored here */
  RAW(SYS_rt_sigaction, SIGPIPE, &dfl, NULL, sizeof(none));
  RAW(SYS_rt_sigaction, SIGXFSZ, &dfl, NULL, sizeof(none));
  if (RAW(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none)) < 0)
    err = errno;
  if (err == 0 && c->cwd != NULL && RAW(SYS_chdir, c->cwd) < 0)
    err = errno;
  for (i = 0; i < 3 && err == 0; i++)
    err = child_stdio(c, i);
  if (err == 0 && RAW(SYS_close_range, 3, ~0U, 0) < 0) {
    /* before Linux 5.9: one by one */
    struct rlimit rl;
    long fd, max = 65536;
    if (RAW(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY)
      max = (long)rl.rlim_cur;
    for (fd = 3; fd < max; fd++)
      RAW(SYS_close, fd);
  }
  if (err == 0) {
    if (c->path == NULL) {
      RAW(SYS_execve, c->file, c->argv, c->env);
      err = errno;
    } else
      err = child_search(c);
  }
  c->err = err != 0 ? err : ENOEXEC;
  RAW(SYS_exit, 127);
  return 127;
}

/* clone3 'ca'; the child calls fn(arg) on the stack 'ca' gives and
   exits with what it returns. The child's pid, or -1 and errno. */
static long clone3_call(struct clone_args *ca, int (*fn)(void *),
                        void *arg) {
  register long rax __asm__("rax") = SYS_clone3;
  register void *r12 __asm__("r12") = (void *)fn;
  register void *r13 __asm__("r13") = arg;
  __asm__ volatile("syscall\n\t"
                   "test %%rax, %%rax\n\t"
                   "jnz 1f\n\t"
                   "xor %%ebp, %%ebp\n\t" /* the child: outermost frame */
                   "mov %%r13, %%rdi\n\t"
                   "call *%%r12\n\t"
                   "mov %%eax, %%edi\n\t"
                   "mov $60, %%eax\n\t" /* SYS_exit */
                   "syscall\n\t"
                   "hlt\n"
                   "1:"
                   : "+r"(rax)
                   : "D"(ca), "S"(sizeof(*ca)), "r"(r12), "r"(r13)
                   : "rcx", "r11", "memory");
  if (rax < 0 && rax > -4096) {
    errno = (int)-rax;
    return -1;
  }
  return rax;
}

/*
** Start the child with clone3: 0 with '*pid' (and '*pidfd' if not NULL),
** an errno value, or -1 if clone3 cannot do it here (use posix_spawn).
*/
static int clone_start(pstate *st, const char *cwd, const char *file,
                       char **argv, char **env, const char *path,
                       const int mode[3],
                       const int childfd[3], const int closed[3],
                       pid_t *pid, int *pidfd) {
  struct clone_args ca;
  childplan *c;
  long r;
  int saved = errno, err;
  if (st->cstack == NULL) {
    if ((st->cstack = (char *)malloc(CSTACK_SIZE + sizeof(childplan))) ==
        NULL)
      return ENOMEM;
    /* bind syscall() here, not in the first child (lazy binding) */
    (void)syscall(SYS_getppid);
  }
  c = (childplan *)(st->cstack + CSTACK_SIZE); /* above the stack */
  c->file = file;
  c->path = path;
  c->argv = argv;
  c->env = env;
  c->cwd = cwd;
  c->mode = mode;
  c->childfd = childfd;
  c->closed = closed;
  c->err = 0;
  memset(&ca, 0, sizeof(ca));
  ca.flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND;
  if (pidfd != NULL) {
    *pidfd = -1;
    ca.flags |= CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
  }
  ca.exit_signal = SIGCHLD;
  ca.stack = (uint64_t)(uintptr_t)st->cstack;
  ca.stack_size = CSTACK_SIZE;
  r = clone3_call(&ca, child_main, c);
  if (r < 0 && pidfd != NULL && (errno == EMFILE || errno == ENFILE)) {
    /* no descriptor for the pidfd: start it without, as posix_spawn
       would (exit_watch does without one) */
    ca.flags &= ~(uint64_t)CLONE_PIDFD;
    ca.pidfd = 0;
    r = clone3_call(&ca, child_main, c);
  }
  if (r < 0) {
    err = errno;
    errno = saved;
    if (err == ENOSYS || err == EINVAL || err == EPERM || err == E2BIG)
      return -1; /* no clone3, or not these flags */
    return err;
  }
  errno = saved;
  if ((err = c->err) != 0) { /* it could not exec, and has exited */
    while (waitpid((pid_t)r, NULL, 0) < 0 && errno == EINTR)
      ;
    if (pidfd != NULL && *pidfd >= 0)
      close(*pidfd);
    errno = saved;
    return err;
  }
  *pid = (pid_t)r;
  return 0;
}
#endif

/* }====================================================== */


static int start(pstate *st, const char *cwd, char **argv, char **env,
                 const int mode[3], const int childfd[3],
                 const int closed[3], pid_t *pid, int *pidfd) {
  posix_spawn_file_actions_t own, *fa = &st->fa;
  const char *file = argv[0], *path = NULL;
  int key[9], i, err;
  if (pidfd != NULL)
    *pidfd = -1;
  if (env == NULL)
    env = environ;
  if (strchr(file, '/') == NULL) { /* searched, in the child's PATH */
    if (strlen(file) > NAME_MAX)
      return ENAMETOOLONG;
    path = env_path(env);
  }
#ifdef HAVE_CLONE3
  if (st->noclone3 == 0) {
    err = clone_start(st, cwd, file, argv, env, path, mode, childfd, closed,
                      pid, pidfd);
    if (err >= 0)
      return err;
    st->noclone3 = 1; /* for good: posix_spawn from now on */
  }
#endif
  for (i = 0; i < 3; i++) {
    key[i] = mode[i];
    key[3 + i] = childfd[i];
    key[6 + i] = closed[i];
  }
  if (st->plan == 0) {
    if ((err = plan_attr(&st->attr)) != 0)
      return err;
    st->plan = 1;
  }
  if (cwd != NULL || st->plan != 2 || memcmp(key, st->key, sizeof(key))) {
    fa = &own;
    if ((err = plan_files(fa, cwd, mode, childfd, closed)) != 0)
      return err;
  }
  if (path == NULL)
    err = posix_spawn(pid, file, fa, &st->attr, argv, env);
  else
    err = spawn_search(pid, cwd, file, path, fa, &st->attr, argv, env);
  if (fa == &own) {
    if (cwd != NULL) {
      posix_spawn_file_actions_destroy(fa);
    } else { /* the plan for the next spawn like this one */
      if (st->plan == 2)
        posix_spawn_file_actions_destroy(&st->fa);
      st->fa = own;
      memcpy(st->key, key, sizeof(key));
      st->plan = 2;
    }
  }
  return err;
}


/***
** green.process.spawn{ "cmd", "arg", ..., cwd =, env =, stdin =, stdout =,
** stderr = }: start a child; a Process, or nil, message, errno when it
** cannot start ("cmd: No such file or directory", 2). Each stdio field is
** "inherit" (the default), "pipe" (a green socket p.stdin/p.stdout/
** p.stderr) or "null" (/dev/null); stderr may also be "stdout". env
** changes the inherited environment (name = string, name = false
** removes); a program without "/" is looked up in the child's PATH, as
** execvp would in the child (after the chdir to cwd).
*/
static int spawn(lua_State *L, int watched) {
  pstate *st = (pstate *)lua_touserdata(L, lua_upvalueindex(3));
  int mode[3], closed[3], childfd[3] = {-1, -1, -1};
  int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  const char *cwd = NULL;
  char **argv, **env;
  proc **ud, *p;
  int i, err, top, pidfd = -1;
  pid_t pid;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lgreen_checkopts(L, 1, spawn_opts, 1); /* a misspelt option must not pass */
  for (i = 0; i < 3; i++)
    mode[i] = stdio_mode(L, i);
  if (lua_getfield(L, 1, "cwd") != LUA_TNIL) { /* [opts, cwd] */
    struct stat sb;
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING)
      return luaL_error(L, "green.process.spawn: cwd must be a string");
    cwd = lua_tolstring(L, 2, &len);
    if (strlen(cwd) != len) /* the child would run in a directory cut
                               short at the zero byte */
      return luaL_error(L, "green.process.spawn: cwd contains a zero byte");
    if (stat(cwd, &sb) < 0)
      return fail_errno(L, cwd, uv_translate_sys_error(errno));
    if (!S_ISDIR(sb.st_mode))
      return fail_errno(L, cwd, UV_ENOTDIR);
  }
  argv = build_argv(L);        /* 3 */
  env = build_env(L); /* 4, 5 */
  ud = (proc **)lgreen_newbox(L, st->hub, 3, &proc_box); /* 6 */
  top = lua_gettop(L);
  luaL_setmetatable(L, LGREEN_PROCESS);
  if (mode[0] == IO_PIPE || mode[1] == IO_PIPE || mode[2] == IO_PIPE) {
    lua_getfield(L, LUA_REGISTRYINDEX, PIPED_KEY); /* for proc_forked */
    lua_pushvalue(L, top);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  for (i = 0; i < 3; i++) {
    if (mode[i] != IO_PIPE)
      continue;
    if (lgreen_pipe_new(L) == NULL) { /* nil, err */
      shut_pipes(L, top);
      return 2;
    }
    lua_setiuservalue(L, top, i + 1);
  }
  p = (proc *)calloc(1, sizeof(*p));
  if (p == NULL) {
    shut_pipes(L, top);
    return luaL_error(L, "not enough memory");
  }
  p->keep[0] = p->keep[1] = -1;
  gl_link_init(&p->own.link);
  /* From here on nothing allocates in Lua: no finalizer can run while
     descriptors are open here. */
  for (i = 0; i < 3; i++) { /* before a pipe can take a free number */
    int fl = mode[i] == IO_INHERIT ? fcntl(i, F_GETFD) : 0;
    /* 1: not open here; -1: open but close-on-exec; 0: inherited as is
       (each file action costs glibc two getrlimit calls) */
    closed[i] = fl < 0 ? 1 : (fl & FD_CLOEXEC) ? -1 : 0;
  }
  err = 0;
  for (i = 0; i < 3 && err == 0; i++) {
    int pp[2];
    if (mode[i] != IO_PIPE)
      continue;
    if (pipe2(pp, O_CLOEXEC) < 0) {
      err = errno;
      break;
    }
    fds[i][0] = i == 0 ? pp[1] : pp[0]; /* ours */
    fds[i][1] = i == 0 ? pp[0] : pp[1]; /* the child's */
    if (fds[i][1] < 3) { /* would be overwritten by another dup2 */
      int d = fcntl(fds[i][1], F_DUPFD_CLOEXEC, 3);
      if (d < 0)
        err = errno;
      close(fds[i][1]);
      fds[i][1] = d;
    }
    childfd[i] = fds[i][1];
  }
  if (watched)
    st->running++; /* the watcher first: no SIGCHLD is missed */
  if (err == 0 && (err = -reaper_update(st)) == 0)
    err = start(st, cwd, argv, env, mode, childfd, closed, &pid,
                watched ? NULL : &pidfd);
  if (err == 0 && !watched) {
    p->pid = (int)pid;
    exit_watch(st->hub, p, fds, pidfd);
  }
  for (i = 0; i < 3; i++) { /* the child's ends are the child's now */
    if (fds[i][1] >= 0)
      close(fds[i][1]);
    fds[i][1] = -1;
  }
  if (err != 0) {
    if (watched)
      st->running--;
    reaper_update(st);
    close_fds(fds);
    shut_pipes(L, top);
    free(p);
    return fail_errno(L, argv[0], -err);
  }
  p->pid = (int)pid;
  p->st = st;
  p->boxed = 1;
  p->watched = watched;
  gl_waitq_init(&p->waiters);
  gl_link_push(&st->procs, &p->link);
  *ud = p;
  lgreen_own(st->hub, &p->own, &proc_box);
  for (i = 0; i < 3; i++) {
    lsock *s;
    if (fds[i][0] < 0)
      continue;
    lua_getiuservalue(L, top, i + 1);
    s = lgreen_sock_get((lsock **)lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (uv_pipe_open(&LSTREAM(s)->h.pipe, fds[i][0]) < 0) {
      close(fds[i][0]); /* a fresh pipe: cannot happen; reads "closed" */
      lgreen_sock_shut(s);
    } else {
      LSTREAM(s)->limit = SIZE_MAX; /* the child is no remote peer */
      lgreen_stream_started(LSTREAM(s));
    }
    fds[i][0] = -1;
  }
  lua_settop(L, top);
  return 1;
}

static int l_spawn(lua_State *L) {
  return spawn(L, 1);
}


/*
** core.process_spawn_run: spawn for run, whose caller always waits for
** (or kills and closes) the child. It is not watched until somebody has
** to wait for it: a child that has ended by the time run asks for it
** (process_settle) costs no SIGCHLD watcher start and stop (libuv's
** signal lock: eight system calls) and no signal handling.
*/
static int l_spawn_run(lua_State *L) {
  return spawn(L, 0);
}

/* }====================================================== */


/*
** In a child of green.fork: the parent's children are not the child's
** (waitpid would say ECHILD, and <close> or kill must not touch them).
** Each record of a child still running leaves the list (so neither the
** reaper nor green.process.wait(pid) looks at it, even if the pid comes
** back as one of the child's own children) and reads as reaped elsewhere:
** wait answers nil, "no child processes", kill nil, "no such process",
** <close> kills nothing. Records of children already reaped keep their
** outcome. The waits were the parent's threads' (fork.c undid them), and
** the watcher stops until the child spawns or waits for its own.
*/
static void proc_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  pstate *st = (pstate *)ud;
  gl_link_t *l = st->procs.next;
  (void)hub;
  while (l != &st->procs) {
    proc *p = GL_CONTAINER(l, proc, link);
    l = l->next;
    if (p->exited)
      continue;
    unkeep(p);
    p->exited = 1;
    p->disowned = 1;
    p->signaled = 0;
    p->code = -1;
    while (!gl_waitq_empty(&p->waiters)) /* none: the threads are gone */
      deliver((pidwait *)gl_waitq_first(&p->waiters), 0, 0, -ECHILD);
    if (!p->boxed)
      proc_free(p);
    else
      gl_link_remove(&p->link); /* self-linked: proc_free's remove is a
                                   no-op */
  }
  while (!gl_waitq_empty(&st->foreign))
    deliver((pidwait *)gl_waitq_first(&st->foreign), 0, 0, -ECHILD);
  st->running = 0;
  st->nwaits = 0;
  reaper_update(st);
  /* Their pipes are closed here: a copy of a stdin's end held by this
     process would keep the parent's child from ever seeing the end of
     its input (the parent's run hung as long as this process lived);
     nobody here reads or writes them (run's threads are gone, and a
     child that is not ours is nobody's business here). */
  lua_getfield(L, LUA_REGISTRYINDEX, PIPED_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    proc *q = *(proc **)lua_touserdata(L, -2);
    lua_pop(L, 1);
    if (q != NULL && q->disowned)
      shut_pipes(L, lua_gettop(L));
  }
  lua_pop(L, 1);
}


/* At lua_close, after every Process's __gc (and box.c's, for those
   collected without it): children still running are left to the system
   (init reaps what outlives this process). */
static int state_gc(lua_State *L) {
  pstate *st = (pstate *)lua_touserdata(L, 1);
  gl_link_t *head;
  for (head = &st->procs; head != NULL;
       head = head == &st->procs ? &st->done : NULL)
    while (!gl_link_empty(head)) {
      proc *p = GL_CONTAINER(head->next, proc, link);
      unkeep(p);
      proc_free(p);
    }
  if (st->reaper != NULL) {
    if (st->reaping)
      lgreen_signal_stop(st->reaper);
    uv_close((uv_handle_t *)st->reaper, free_handle);
    st->reaper = NULL;
  }
  if (st->plan == 2)
    posix_spawn_file_actions_destroy(&st->fa);
  if (st->plan > 0)
    posix_spawnattr_destroy(&st->attr);
  st->plan = 0;
  free(st->cstack);
  st->cstack = NULL;
  return 0;
}


static const luaL_Reg proc_meth[] = {
    {"wait", proc_wait},
    {"kill", proc_kill},
    {NULL, NULL},
};

static const luaL_Reg proc_meta[] = {
    {"__close", proc_close},
    {"__gc", proc_gc},
    {"__tostring", proc_tostring},
    {NULL, NULL},
};

/* core.process_spawner(): "clone3" or "posix_spawn", what starts the
   next child (clone3 until it has failed here once). */
static int l_spawner(lua_State *L) {
  pstate *st = (pstate *)lua_touserdata(L, lua_upvalueindex(3));
#ifdef HAVE_CLONE3
  if (!st->noclone3) {
    lua_pushliteral(L, "clone3");
    return 1;
  }
#else
  (void)st;
#endif
  lua_pushliteral(L, "posix_spawn");
  return 1;
}


static const luaL_Reg funcs[] = {
    {"process_spawn", l_spawn},
    {"process_wait", l_waitpid},
    {"process_settle", l_settle},
    {"process_spawn_run", l_spawn_run},
    {"process_drain", l_drain},
    {"process_spawner", l_spawner},
    {NULL, NULL},
};


/* [-0, +0, m] core.process_spawn, core.process_wait and core.Process (the
   methods table, for lua/green/process.lua to add to). */
void lgreen_open_process(lua_State *L, gl_hub_t *hub) {
  pstate *st;
  uv_signal_t *reaper;
  st = (pstate *)lua_newuserdatauv(L, sizeof(*st), 0);
  st->hub = hub;
  gl_link_init(&st->procs);
  gl_link_init(&st->done);
  gl_waitq_init(&st->foreign);
  st->reaper = NULL;
  st->running = st->nwaits = 0;
  st->reaping = 0;
  st->plan = 0;
  st->cstack = NULL;
  /* its __gc before the reaper: a memory error in what follows (green.core
     not loaded) leaked it */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  reaper = (uv_signal_t *)malloc(sizeof(*reaper));
  if (reaper == NULL || uv_signal_init(&hub->loop, reaper) < 0) {
    free(reaper);
    luaL_error(L, "green.core: cannot set up child processes");
  }
  st->reaper = reaper;
  { /* SIGCHLD ignored by whoever started us (env --ignore-signal=CHLD):
       the kernel would reap our children itself, and every wait would
       say "no child processes". Children are ours to reap. */
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) {
      sa.sa_handler = SIG_DFL;
      sa.sa_flags = 0;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGCHLD, &sa, NULL);
    }
  }
  { /* GREENLUA_SPAWN=posix_spawn: glibc's spawner, always */
    const char *e = getenv("GREENLUA_SPAWN");
    st->noclone3 = e != NULL && strcmp(e, "posix_spawn") == 0;
  }
  reaper->data = st;
  lgreen_on_fork(hub, proc_forked, st);
  lua_newtable(L); /* PIPED_KEY: weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, PIPED_KEY);
  lua_setfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  lgreen_sock_pushstate(L);
  lua_getfield(L, LUA_REGISTRYINDEX, STATE_KEY);
  lgreen_register(L, funcs, 2); /* hub, socket state, state */
  luaL_newmetatable(L, LGREEN_PROCESS);
  lgreen_register(L, proc_meta, 0);
  lua_newtable(L); /* the methods */
  lgreen_register(L, proc_meth, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Process"); /* core.Process */
  lua_pushlightuserdata(L, hub);
  lua_insert(L, -2);
  lua_pushcclosure(L, proc_index, 2); /* hub, methods */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
