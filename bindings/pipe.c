/*
** pipe.c: Unix-domain stream sockets over uv_pipe_t:
** green.connect_unix(path) and green.listen_unix(path), and the Unix part
** of their ops table (the handle, the addresses, which are paths). The
** sockets are ordinary 'green.socket's: receive, send, accept, close and
** the rest are the stream code (stream.c).
**
** Paths longer than sockaddr_un can hold fail with "name too long" rather
** than being cut short (libuv would truncate them silently and bind or
** connect to another path). listen_unix binds the descriptor itself
** (bind_path) and hands it to libuv with the path, so that closing the
** listening socket removes the socket file it created (libuv unlinks
** it); a file already at the path makes listen_unix fail with "address
** already in use".
*/
#define _GNU_SOURCE /* O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lsocket.h"

#define DEFAULT_BACKLOG 511


/*
** {======================================================
** The Unix ops
** =======================================================
*/

static int pipe_init(uv_loop_t *loop, lsock *s) {
  return uv_pipe_init(loop, (uv_pipe_t *)s->h, 0);
}


/*
** [-0, +1 or +2, m] Push the path of 's' (its peer's if 'peer'): "" for
** an unnamed socket (a client that did not bind). Returns 1, or pushes
** nil, err and returns 2.
*/
static int pipe_address(lua_State *L, lsock *s, int peer) {
  char buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t len = sizeof(buf);
  uv_pipe_t *h = (uv_pipe_t *)s->h;
  int r;
  buf[0] = '\0'; /* libuv 1.44 reads it for an unnamed peer (0 bytes
                    copied): valgrind's "uninitialised value" */
  r = peer ? uv_pipe_getpeername(h, buf, &len)
               : uv_pipe_getsockname(h, buf, &len);
  if (r < 0)
    return lgreen_sock_fail(L, r);
  lua_pushlstring(L, buf, len);
  return 1;
}


/* accept's second result: the peer's path ("" if unnamed). */
static void pipe_pushpeer(lua_State *L, lsock *s) {
  if (pipe_address(L, s, 1) != 1) {
    lua_pop(L, 2);
    lua_pushliteral(L, "");
  }
}


static int pipe_open(lsock *s, uv_os_fd_t fd) {
  LSTREAM(s)->pending = 0; /* a connection libuv held is the parent's */
  return uv_pipe_open((uv_pipe_t *)s->h, fd);
}


/*
** The child's old handle of a listening socket still names the socket file
** the parent bound (uv_pipe_bind keeps a copy, and libuv unlinks it when
** the handle closes): closing it there removed the parent's socket file at
** every green.fork, and no client could reach the parent's server any
** more. The file is the parent's: its handle removes it. (The child's new
** handle, opened on a descriptor, names no file.)
*/
static void pipe_forked(lsock *s) {
  uv_pipe_t *p = (uv_pipe_t *)s->h;
  free((char *)p->pipe_fname); /* uv__malloc'd: libuv's allocator is
                                  malloc, greenlua replaces none */
  p->pipe_fname = NULL;
}


static const lsock_ops pipe_ops = {LSOCK_STREAM_OPS, .tag = "unix, ",
                                   .size = LSTREAM_SIZE(pipe),
                                   .init = pipe_init, .open = pipe_open,
                                   .forked = pipe_forked,
                                   .address = pipe_address,
                                   .pushpeer = pipe_pushpeer};

/* }====================================================== */


/*
** The arguments (path, [opts]), opts naming only 'known': returns the path, a string without NULs
** that fits in a sockaddr_un, with the stack [path, opts, opts[field]];
** or NULL, having pushed nil, err, if the path is too long.
*/
static const char *checkargs(lua_State *L, const char *field,
                             const char *const known[]) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, strlen(path) == len, 1, "path contains a zero byte");
  luaL_argcheck(L, len > 0, 1, "empty path");
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lgreen_checkopts(L, 2, known, 0);
  lua_settop(L, 2);
  if (lua_istable(L, 2))
    lua_getfield(L, 2, field);
  else
    lua_pushnil(L);
  if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    lgreen_sock_fail(L, UV_ENAMETOOLONG);
    return NULL;
  }
  return path;
}


/* [-0, +1, m] A new Unix socket, or NULL having pushed nil, err. Also
   process.c's pipe ends: it opens a descriptor in the handle
   (uv_pipe_open), then calls 'lgreen_stream_started'. */
lsock *lgreen_pipe_new(lua_State *L) {
  lsock *s = lgreen_stream_new(L, lgreen_sock_state(L), &pipe_ops);
  int r = pipe_init(&lgreen_hub(L)->loop, s);
  if (r < 0) {
    lgreen_sock_discard(s);
    lgreen_sock_fail(L, r);
    return NULL;
  }
  return s;
}


/* Stack: [path, opts, sock]. */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  int err, outcome = lgreen_stream_connected(L, &err);
  (void)status;
  (void)ctx;
  if (outcome != GL_W_OK)
    return lgreen_sock_fail(L, outcome); /* "closed", "timeout" */
  if (err != 0)
    return lgreen_sock_fail(L, err);
  lua_settop(L, 3);
  return 1;
}


/***
** green.connect_unix(path, [opts]): a connected socket, or nil, err
** ("no such file or directory", "connection refused", "timeout", ...).
** opts: timeout (seconds).
*/
static int l_connect_unix(lua_State *L) {
  static const char *const known[] = {"timeout", NULL};
  const char *path = checkargs(L, "timeout", known);
  double timeout = -1;
  uv_connect_t *req;
  lsock *s;
  if (path == NULL)
    return 2;
  if (!lua_isnil(L, 3))
    timeout = lgreen_sock_opttimeout(L, 2);
  lua_settop(L, 2);
  lgreen_begin(L, lgreen_hub(L), "green.connect_unix");
  if ((s = lgreen_pipe_new(L)) == NULL)
    return 2;
  req = (uv_connect_t *)malloc(sizeof(*req));
  if (req == NULL) {
    lgreen_sock_shut(s);
    return luaL_error(L, "not enough memory");
  }
  uv_pipe_connect(req, (uv_pipe_t *)s->h, path, lgreen_stream_on_connect);
  return lgreen_stream_connecting(L, s, "green.connect_unix",
                                  lgreen_sock_deadline(timeout), connect_k,
                                  0);
}


/*
** [-0, +0, -] A new Unix stream socket in '*fdp', with permissions 'mode'
** (-1: the umask's) given to the file as bind(2) creates it at 'path':
** the descriptor has them first (a Unix socket's file takes its
** descriptor's, less the umask). Returns 0 or a libuv error.
*/
static int bind_fd(const char *path, int mode, int *fdp) {
  struct sockaddr_un sa;
  int fd;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || (mode >= 0 && fchmod(fd, (mode_t)mode) < 0) ||
      bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int r = uv_translate_sys_error(errno);
    if (fd >= 0)
      close(fd);
    return r;
  }
  *fdp = fd;
  return 0;
}


/*
** Give the socket file just bound at 'path' the bits of 'mode' that the
** umask took away, without following a symlink: chmod(path) after bind
** followed one swapped in meanwhile (a world-writable directory without
** the sticky bit) and gave its target the mode. The file is opened as
** itself (O_PATH | O_NOFOLLOW: a symlink is opened, not followed, and
** refused), checked to be a socket of ours, and chmod-ed through its
** descriptor's /proc/self/fd entry, which names that inode (glibc's
** fchmodat(AT_SYMLINK_NOFOLLOW) does the same). 0, UV_EPERM if the file
** at 'path' is not ours any more, or another UV_E* code.
*/
static int widen(const char *path, int mode) {
  char proc[40];
  struct stat st;
  int r = 0, pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0)
    return errno == ENOENT ? UV_EPERM : uv_translate_sys_error(errno);
  if (fstat(pfd, &st) < 0)
    r = uv_translate_sys_error(errno);
  else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
    r = UV_EPERM;
  else if ((st.st_mode & 0777) != (mode_t)mode) {
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
    if (chmod(proc, (mode_t)mode) < 0)
      r = uv_translate_sys_error(errno);
  }
  close(pfd);
  return r;
}


/*
** Bind 'h' to 'path' (it fits: checkargs), as uv_pipe_bind would, with
** permissions 'mode' (-1: the umask's) given to the file as bind(2)
** creates it (bind_fd), so no other user can ever reach a socket meant
** to be private. Bits of 'mode' the umask takes away are added after
** (widen): the file only widens. This used to set the process's umask
** around uv_pipe_bind, for every thread: a file that green.fs (libuv's
** pool) or a green.thread created meanwhile got ~mode as its umask (mode
** 0666: a world-writable file). And uv_pipe_bind says "permission denied"
** for a missing directory (ENOENT, as on Windows): the error is the
** kernel's.
*/
static int bind_path(uv_pipe_t *h, const char *path, int mode) {
  char *name = strdup(path);
  int fd = -1, r;
  if (name == NULL)
    return UV_ENOMEM;
  r = bind_fd(path, mode, &fd);
  if (r == 0 && mode >= 0 && (r = widen(path, mode)) < 0) {
    if (r != UV_EPERM) /* (else the file there is not ours to remove) */
      unlink(path);
    close(fd);
  }
  if (r == 0 && (r = uv_pipe_open(h, fd)) < 0) {
    unlink(path);
    close(fd);
  }
  if (r < 0) {
    free(name);
    return r;
  }
  h->pipe_fname = name; /* libuv removes the file as the handle closes, as
                           after uv_pipe_bind */
  return 0;
}


/***
** green.listen_unix(path, [opts]): a listening socket, or nil, err
** ("address already in use" if 'path' exists, even as a stale socket
** file: remove it first). close() removes the socket file. opts:
** backlog (511), mode (the file's permissions, e.g. 384 = 0600: set as
** the file is created; default from the process's umask).
*/
static int l_listen_unix(lua_State *L) {
  static const char *const known[] = {"backlog", "mode", NULL};
  const char *path = checkargs(L, "backlog", known);
  int backlog = DEFAULT_BACKLOG, mode = -1, r;
  lsock *s;
  if (path == NULL)
    return 2;
  if (!lua_isnil(L, 3))
    backlog = lgreen_stream_backlog(L, 2);
  if (lua_istable(L, 2) && lua_getfield(L, 2, "mode") != LUA_TNIL) {
    lua_Integer m = lgreen_sock_optinteger(L, 2, "mode");
    luaL_argcheck(L, m >= 0 && m <= 0777, 2, "mode: 0 to 0777 expected");
    mode = (int)m;
  }
  lua_settop(L, 2);
  if ((s = lgreen_pipe_new(L)) == NULL)
    return 2;
  lgreen_sock_reref(s);
  r = bind_path((uv_pipe_t *)s->h, path, mode);
  if (r == 0)
    r = lgreen_stream_listen(s, backlog);
  if (r < 0) {
    lgreen_sock_shut(s);
    return lgreen_sock_fail(L, r);
  }
  return 1;
}


static const luaL_Reg pipe_funcs[] = {
    {"connect_unix", l_connect_unix},
    {"listen_unix", l_listen_unix},
    {NULL, NULL},
};


/* [-0, +0, m] green.connect_unix and green.listen_unix in the module
   table on the top. */
void lgreen_open_pipe(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  lgreen_sock_register(L, pipe_funcs);
}
