/*
** fspath.c: green.fs's calls on paths (stat, lstat, rename, unlink,
** mkdir, rmdir, scandir, realpath), each one libuv request on the thread
** pool while the calling green thread waits.
**
** The request is malloc'd; libuv owns it until its callback. The waiting
** thread's wait points at it: if the thread is killed or times out, the
** wait's cancel only forgets it and the callback frees it; otherwise the
** callback leaves it to the continuation, which reads the result and
** frees it (or the undo does, for a thread woken and then interrupted
** before it ran).
*/
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lgfs.h"

enum { PK_STAT, PK_LSTAT, PK_RENAME, PK_UNLINK, PK_MKDIR, PK_RMDIR,
       PK_SCANDIR, PK_REALPATH };

typedef struct fsreq {
  uv_fs_t req;  /* first member */
  lgfs_track track;
  gl_wait_t *w; /* the waiting thread's wait, NULL once it left */
  lgfs_state *st;
} fsreq;


static void req_free(fsreq *q) {
  uv_fs_req_cleanup(&q->req);
  free(q);
}


static void req_cb(uv_fs_t *req) {
  fsreq *q = (fsreq *)req;
  lgfs_done(q->st, &q->track);
  if (q->w != NULL && req->loop->data == NULL) /* the state is closing: */
    gl_wait_abandon(q->w, GL_W_CANCELED); /* its thread never runs again */
  if (q->w != NULL) { /* the continuation reads and frees it */
    gl_wait_t *w = q->w;
    q->w = NULL;
    gl_wait_end(w, GL_W_OK);
  } else {
    req_free(q);
  }
}


/* Killed or timed out while it waits: the callback frees the request. */
static void req_cancel(gl_wait_t *w) {
  ((fsreq *)w->data)->w = NULL;
  w->data = NULL;
}


/* Woken, then interrupted before it ran, or never to run (the state
   closed first: the wait's drop): nobody reads the result. */
static void req_undo(gl_wait_t *w) {
  if (w->data != NULL) {
    req_free((fsreq *)w->data);
    w->data = NULL;
  }
}


static const char *typename(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG:
    return "file";
  case S_IFDIR:
    return "directory";
  case S_IFLNK:
    return "link";
  case S_IFSOCK:
    return "socket";
  case S_IFIFO:
    return "named pipe";
  case S_IFCHR:
    return "char device";
  case S_IFBLK:
    return "block device";
  default:
    return "other";
  }
}


static void setint(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}


static void settime(lua_State *L, const char *k, uv_timespec_t ts) {
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  lua_setfield(L, -2, k);
}


/* [-0, +1, m] LuaFileSystem's attributes table. */
static void push_stat(lua_State *L, const uv_stat_t *s) {
  static const char rwx[] = "rwxrwxrwx";
  char perm[10];
  int i;
  for (i = 0; i < 9; i++)
    perm[i] = (s->st_mode & (0400u >> i)) ? rwx[i] : '-';
  perm[9] = '\0';
  lua_createtable(L, 0, 14);
  lua_pushstring(L, typename(s->st_mode));
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, perm);
  lua_setfield(L, -2, "permissions");
  setint(L, "dev", s->st_dev);
  setint(L, "ino", s->st_ino);
  setint(L, "nlink", s->st_nlink);
  setint(L, "uid", s->st_uid);
  setint(L, "gid", s->st_gid);
  setint(L, "rdev", s->st_rdev);
  setint(L, "size", s->st_size);
  setint(L, "blocks", s->st_blocks);
  setint(L, "blksize", s->st_blksize);
  settime(L, "access", s->st_atim);
  settime(L, "modification", s->st_mtim);
  settime(L, "change", s->st_ctim);
}


static const char *dirent_type(uv_dirent_type_t t) {
  switch (t) {
  case UV_DIRENT_FILE:
    return "file";
  case UV_DIRENT_DIR:
    return "directory";
  case UV_DIRENT_LINK:
    return "link";
  case UV_DIRENT_FIFO:
    return "named pipe";
  case UV_DIRENT_SOCKET:
    return "socket";
  case UV_DIRENT_CHAR:
    return "char device";
  case UV_DIRENT_BLOCK:
    return "block device";
  default:
    return "unknown";
  }
}


/* Push what a realpath or scandir request got (its kind, 2). Called
   protected: the request is freed however this ends. */
static int push_got(lua_State *L) {
  fsreq *q = (fsreq *)lua_touserdata(L, 1);
  uv_dirent_t ent;
  lua_Integer i = 0;
  if (lua_tointeger(L, 2) == PK_REALPATH) {
    lua_pushstring(L, (const char *)q->req.ptr);
    return 1;
  }
  lua_createtable(L, (int)q->req.result, 0);
  lua_createtable(L, 0, (int)q->req.result);
  while (uv_fs_scandir_next(&q->req, &ent) == 0) {
    lua_pushstring(L, ent.name);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++i);
    lua_pushstring(L, dirent_type(ent.type));
    lua_rawset(L, -3);
  }
  return 2;
}


static int path_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = &lgreen_hub(L)->current->w;
  fsreq *q;
  int r;
  (void)status;
  lgreen_waited(L, w, req_undo);
  q = (fsreq *)w->data;
  r = (int)q->req.result;
  if (r < 0) {
    req_free(q);
    return lgfs_fail(L, r, lua_tostring(L, 1));
  }
  /* The request is freed before anything that can raise (a memory
     error), or it leaks with its copy of the path. */
  switch (ctx) {
  case PK_STAT:
  case PK_LSTAT: {
    uv_stat_t sb = q->req.statbuf;
    req_free(q);
    push_stat(L, &sb);
    return 1;
  }
  case PK_REALPATH:
  case PK_SCANDIR: {
    int n = ctx == PK_SCANDIR ? 2 : 1;
    lua_pushcfunction(L, push_got);
    lua_pushlightuserdata(L, q);
    lua_pushinteger(L, (lua_Integer)ctx);
    r = lua_pcall(L, 2, n, 0);
    req_free(q);
    return r == LUA_OK ? n : lua_error(L);
  }
  default:
    req_free(q);
    lua_pushboolean(L, 1);
    return 1;
  }
}


static int path_call(lua_State *L, int kind, const char *what) {
  gl_hub_t *hub = lgreen_hub(L);
  lgfs_state *st = lgfs_state_of(L);
  const char *path = lgfs_checkpath(L, 1), *to = NULL;
  lua_Integer mode = 0777;
  gl_thread_t *t;
  uv_loop_t *loop = &hub->loop;
  fsreq *q;
  sigset_t old;
  int r = 0, masked;
  if (kind == PK_RENAME)
    to = lgfs_checkpath(L, 2);
  if (kind == PK_MKDIR) {
    mode = luaL_optinteger(L, 2, 0777);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 2,
                  "mode out of range (0 to 07777)");
  }
  lua_settop(L, kind == PK_RENAME || kind == PK_MKDIR ? 2 : 1);
  t = lgreen_begin(L, hub, what);
  q = (fsreq *)calloc(1, sizeof(fsreq));
  if (q == NULL)
    return luaL_error(L, "not enough memory");
  q->st = st;
  q->track.req = &q->req;
  masked = lgfs_mask(&old);
  switch (kind) {
  case PK_STAT:
    r = uv_fs_stat(loop, &q->req, path, req_cb);
    break;
  case PK_LSTAT:
    r = uv_fs_lstat(loop, &q->req, path, req_cb);
    break;
  case PK_RENAME:
    r = uv_fs_rename(loop, &q->req, path, to, req_cb);
    break;
  case PK_UNLINK:
    r = uv_fs_unlink(loop, &q->req, path, req_cb);
    break;
  case PK_MKDIR:
    r = uv_fs_mkdir(loop, &q->req, path, (int)mode, req_cb);
    break;
  case PK_RMDIR:
    r = uv_fs_rmdir(loop, &q->req, path, req_cb);
    break;
  case PK_SCANDIR:
    r = uv_fs_scandir(loop, &q->req, path, 0, req_cb);
    break;
  case PK_REALPATH:
    r = uv_fs_realpath(loop, &q->req, path, req_cb);
    break;
  }
  lgfs_unmask(masked, &old, r);
  if (r < 0) {
    req_free(q);
    return lgfs_fail(L, r, path);
  }
  lgfs_submitted(st, &q->track);
  q->w = &t->w;
  gl_wait_start(t, &t->w, what, req_cancel, q);
  t->w.drop = req_undo;
  return lgreen_block(L, t, path_k, kind);
}


static int l_stat(lua_State *L) {
  return path_call(L, PK_STAT, "green.fs.stat");
}

static int l_lstat(lua_State *L) {
  return path_call(L, PK_LSTAT, "green.fs.lstat");
}

static int l_rename(lua_State *L) {
  return path_call(L, PK_RENAME, "green.fs.rename");
}

static int l_unlink(lua_State *L) {
  return path_call(L, PK_UNLINK, "green.fs.unlink");
}

static int l_mkdir(lua_State *L) {
  return path_call(L, PK_MKDIR, "green.fs.mkdir");
}

static int l_rmdir(lua_State *L) {
  return path_call(L, PK_RMDIR, "green.fs.rmdir");
}

static int l_scandir(lua_State *L) {
  return path_call(L, PK_SCANDIR, "green.fs.scandir");
}

static int l_realpath(lua_State *L) {
  return path_call(L, PK_REALPATH, "green.fs.realpath");
}


static const luaL_Reg path_funcs[] = {
    {"stat", l_stat},       {"lstat", l_lstat},     {"rename", l_rename},
    {"unlink", l_unlink},   {"mkdir", l_mkdir},     {"rmdir", l_rmdir},
    {"scandir", l_scandir}, {"realpath", l_realpath}, {NULL, NULL},
};


void lgfs_open_paths(lua_State *L, int state_idx) {
  lua_pushlightuserdata(L, lgreen_gethub(L));
  lua_pushvalue(L, state_idx);
  luaL_setfuncs(L, path_funcs, 2);
}
