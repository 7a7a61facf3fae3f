/*
** green.fs: files and file-system calls done off the hub, on libuv's
** thread pool (uv_fs_*). fs.c is the file object (green.fs.open) and
** opens the module table; fspath.c the calls on paths (stat, rename,
** scandir, ...). See docs/internals.md, "Files".
*/
#ifndef LGFS_H
#define LGFS_H

#include <signal.h>

#include "lgreen.h"

/*
** Per-hub counters (green.fs.stats), the userdata that is upvalue 2 of
** every function of green.fs. Requests and file records keep a pointer to
** it: it lives as long as green.core, and the hub's own finalizer (which
** runs the last callbacks) runs before any object is freed.
*/
typedef struct lgfs_state {
  lua_Integer requests; /* requests submitted to the thread pool */
  lua_Integer inflight; /* of those, not yet called back */
  lua_Integer files;    /* file records alive (open or closing) */
  gl_link_t pending;    /* the requests in flight ('lgfs_track'), for fork */
  gl_link_t alive;      /* the file records (fs.c's 'gfile'), for exit */
} lgfs_state;

/* A request in flight, on 'pending' from its submission to its callback:
   in the child of green.fork, the parent's are ended (fs.c, fs_forked). */
typedef struct lgfs_track {
  gl_link_t link;
  uv_fs_t *req;
  /* Does a thread still wait for the request's end? NULL: always while
     it is in flight (a path call's thread). */
  int (*wanted)(const struct lgfs_track *t);
} lgfs_track;

/*
** [-0, +0, -] Around a uv_fs_* call: libuv starts its pool's threads at
** the process's first request (and again at a forked child's first), and
** they take the signal mask of the thread that submits it. Until one has
** been submitted, every signal is blocked around the call, so a Ctrl-C or
** a SIGQUIT is never handled on a pool thread (the handlers set a hook on
** the hub's coroutine: the hub's thread's business). lgfs_mask returns
** whether it blocked them; lgfs_unmask takes the call's result.
*/
int lgfs_mask(sigset_t *old);
void lgfs_unmask(int masked, const sigset_t *old, int r);

/* r = call, a uv_fs_* call, between lgfs_mask and lgfs_unmask. */
#define lgfs_call(r, call)                                                    \
  do {                                                                        \
    sigset_t lgfs_old_;                                                       \
    int lgfs_masked_ = lgfs_mask(&lgfs_old_);                                 \
    (r) = (call);                                                             \
    lgfs_unmask(lgfs_masked_, &lgfs_old_, (r));                               \
  } while (0)

/* [-0, +0, -] A request was submitted / called back. */
void lgfs_submitted(lgfs_state *st, lgfs_track *t);
void lgfs_done(lgfs_state *st, lgfs_track *t);

#define lgfs_state_of(L) ((lgfs_state *)lua_touserdata(L, lua_upvalueindex(2)))

/* [-0, +3, m] nil, "path: message" (or "message" if path is NULL),
   errno, as io.open's failures; 'err' is a negative errno. Returns 3. */
int lgfs_fail(lua_State *L, int err, const char *path);

/* [-0, +0, v] The path at argument 'arg': a string (or a number), raising
   for one that holds a zero byte (the system would take the bytes before
   it for the whole path: "keep\0.tmp" would name "keep"). */
const char *lgfs_checkpath(lua_State *L, int arg);

/* Can the calling thread wait now: a green thread (or the host's main
   thread) that is not killed, outside C-call boundaries and finalizers? */
int lgfs_canwait(lua_State *L, gl_hub_t *hub);

/* Add the calls on paths to the table on the top (fspath.c); the hub
   and the state userdata are pushed as their upvalues. */
void lgfs_open_paths(lua_State *L, int state_idx);

#endif
