/*
** fs.c: green files (green.fs.open, green.fs.lines). A file's I/O runs
** on libuv's thread pool (uv_fs_read/write/close, one request at a time
** per file); the calling green thread waits in the hub meanwhile.
**
** The record ('gfile') is malloc'd and shared by the Lua object (a
** userdata holding a pointer, NULL once closed) and the request in flight,
** which libuv owns until its callback: a thread killed while it waits only
** forgets the request (its wait's cancel), and the callback puts what the
** request did into the record, so a read that nobody waits for any more
** still lands in the buffer for the next read, and a write still happens.
** A record whose Lua side is gone (closed, collected, or an open nobody
** waits for) is 'closing': the callbacks flush it, close the descriptor
** and free it.
**
** Reads are buffered: the formats of one read (io.read's) are matched
** against the buffered bytes without consuming them, the buffer is
** refilled while they cannot complete, and the bytes are consumed at once
** when they all do. A read that raises (a kill, a Timeout) consumes
** nothing. Writes collect in a buffer flushed as C's stdio would (full,
** line, or no buffering: setvbuf).
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lgfs.h"

#define FS_FILE "green.fs.File"
#define FS_DEFBUF (64 * 1024)        /* default buffer size (setvbuf) */
#define FS_MINREAD 4096              /* smallest read request */
#define FS_RAMAX (1024 * 1024)       /* largest read-ahead of a sequential reader */
#define FS_REQMAX (16 * 1024 * 1024) /* largest single read request */
#define FS_WRITEMAX (1u << 30) /* largest write request (a uv_buf_t's
                                  length is 32 bits; the rest follows) */
#define FS_MAXARGLINE 250            /* formats of lines(), as liolib */
#define FS_MAXLENNUM 200             /* longest numeral read("n") takes */
#define FS_SPANS 16                  /* formats matched without a userdata */
#define FS_LOST UV_ECANCELED /* result of a request lost at a fork */

enum { OP_NONE, OP_OPEN, OP_OPENSTAT, OP_READ, OP_WRITE, OP_FSTAT, OP_CLOSE };
enum { VB_NO, VB_FULL, VB_LINE };

#define M_READ 1
#define M_WRITE 2
#define M_APPEND 4

typedef struct gfile {
  uv_fs_t req;      /* the request in flight ('busy') */
  gl_hub_t *hub;
  lgfs_state *st;
  gl_wait_t *owner; /* the wait of the thread the request is for, or NULL */
  gl_waitq_t queue; /* threads waiting for the request to end */
  int fd;           /* -1 before open and once closed */
  int mode;         /* M_* */
  lgfs_track track; /* on the state's 'pending' while 'busy' */
  gl_link_t alive;  /* on the state's 'alive' till freed (fs_exit) */
  lgreen_owned own; /* while its userdata points to it (box.c) */
  int busy;         /* the OP_* in flight, or OP_NONE */
  int closing;      /* the Lua side is gone: flush, close, free */
  int closer;       /* 'owner' is a thread waiting in close() */
  int result;       /* outcome of open or fstat, for its owner */
  int rerr;         /* error of the last read request, for a reader */
  int werr;         /* error of a flush, for the next write/flush/close */
  int cerr;         /* first error of the closing sequence */
  int eof;          /* the last read request found the end */
  int seq;          /* the last refill was not followed by a seek */
  int vmode;        /* VB_*: when writes are flushed */
  size_t vsize;     /* buffer size */
  size_t ra;        /* size of the next refill of a sequential reader */
  unsigned gen;     /* changes whenever the buffered bytes move */
  unsigned wgen;    /* counts the write requests that ended */
  unsigned sgen;    /* 'wgen' when 'size' was taken */
  int64_t size;     /* from the last fstat */
  char *rbuf;       /* read buffer: [rpos, rend) not yet consumed */
  size_t rcap, rpos, rend;
  char *wbuf;       /* write buffer: [wdone, wlen) not yet written */
  size_t wcap, wlen, wdone;
} gfile;


/*
** {======================================================
** Shared helpers
** =======================================================
*/

int lgfs_fail(lua_State *L, int err, const char *path) {
  luaL_pushfail(L);
  if (path != NULL)
    lua_pushfstring(L, "%s: %s", path, strerror(-err));
  else
    lua_pushstring(L, strerror(-err));
  lua_pushinteger(L, -err);
  return 3;
}


const char *lgfs_checkpath(lua_State *L, int arg) {
  size_t len;
  const char *s = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, strlen(s) == len, arg, "path contains a zero byte");
  return s;
}


int lgfs_canwait(lua_State *L, gl_hub_t *hub) {
  gl_thread_t *t = hub->current;
  return t != NULL && !(t->flags & GL_F_KILLED) && lgreen_canblock(L, hub);
}

/* }====================================================== */


/*
** {======================================================
** The record and its requests (hub side: no Lua here)
** =======================================================
*/

static void file_cb(uv_fs_t *req);


static void file_free(gfile *f) {
  lgreen_disown(&f->own);
  gl_link_remove(&f->alive);
  f->st->files--;
  free(f->rbuf);
  free(f->wbuf);
  free(f);
}


/* Has a request gone to libuv's pool since the process (or this forked
   child) started? See lgfs_mask. */
static int pool_started;

int lgfs_mask(sigset_t *old) {
  sigset_t all;
  if (pool_started)
    return 0;
  sigfillset(&all);
  return pthread_sigmask(SIG_SETMASK, &all, old) == 0;
}


void lgfs_unmask(int masked, const sigset_t *old, int r) {
  if (!masked)
    return;
  pthread_sigmask(SIG_SETMASK, old, NULL);
  if (r == 0)
    pool_started = 1;
}


void lgfs_submitted(lgfs_state *st, lgfs_track *t) {
  st->requests++;
  st->inflight++;
  gl_link_push(&st->pending, &t->link);
}


void lgfs_done(lgfs_state *st, lgfs_track *t) {
  st->inflight--;
  gl_link_remove(&t->link);
}


static void submitted(gfile *f, int op) {
  f->busy = op;
  lgfs_submitted(f->st, &f->track);
}


/* Room for 'n' more bytes after 'rend' (not while a request is in
   flight: it may be reading into the buffer). 0 or UV_ENOMEM. */
static int rbuf_room(gfile *f, size_t n) {
  if (f->rcap - f->rend >= n)
    return 0;
  if (f->rpos > 0) { /* move the unconsumed bytes to the front */
    memmove(f->rbuf, f->rbuf + f->rpos, f->rend - f->rpos);
    f->rend -= f->rpos;
    f->rpos = 0;
    f->gen++;
  }
  if (f->rcap - f->rend < n) {
    size_t cap = f->rend + n;
    char *b = (char *)realloc(f->rbuf, cap);
    if (b == NULL)
      return UV_ENOMEM;
    f->rbuf = b;
    f->rcap = cap;
    f->gen++;
  }
  return 0;
}


static int submit_read(gfile *f, size_t n) {
  uv_buf_t b;
  int r = rbuf_room(f, n);
  if (r < 0)
    return r;
  b = uv_buf_init(f->rbuf + f->rend, (unsigned)n);
  lgfs_call(r, uv_fs_read(&f->hub->loop, &f->req, f->fd, &b, 1, -1,
                          file_cb));
  if (r == 0)
    submitted(f, OP_READ);
  return r;
}


static int submit_write(gfile *f) {
  size_t n = f->wlen - f->wdone;
  uv_buf_t b = uv_buf_init(f->wbuf + f->wdone,
                           (unsigned)(n > FS_WRITEMAX ? FS_WRITEMAX : n));
  int r;
  lgfs_call(r, uv_fs_write(&f->hub->loop, &f->req, f->fd, &b, 1, -1,
                           file_cb));
  if (r == 0)
    submitted(f, OP_WRITE);
  return r;
}


static int submit_fstat(gfile *f, int op) {
  int r;
  lgfs_call(r, uv_fs_fstat(&f->hub->loop, &f->req, f->fd, file_cb));
  if (r == 0)
    submitted(f, op);
  return r;
}


/* The next step of closing: flush, then close. 1 if a request was
   submitted, 0 when there is nothing left to do. */
static int close_step(gfile *f) {
  if (f->werr != 0) { /* an earlier flush failed: the rest is dropped */
    if (f->cerr == 0)
      f->cerr = f->werr;
    f->werr = 0;
    f->wlen = f->wdone = 0;
  }
  if (f->fd >= 0 && f->wlen > f->wdone) {
    int r = submit_write(f);
    if (r == 0)
      return 1;
    if (f->cerr == 0)
      f->cerr = r;
    f->wlen = f->wdone = 0;
  }
  if (f->fd >= 0) {
    int r;
    lgfs_call(r, uv_fs_close(&f->hub->loop, &f->req, f->fd, file_cb));
    if (r == 0) {
      submitted(f, OP_CLOSE);
      return 1;
    }
    close(f->fd); /* cannot happen with libuv 1.x; do not leak it */
    f->fd = -1;
  }
  return 0;
}


/* Write the rest of the buffer, [wdone, wlen), on this thread (write(2):
   no hub to run it), as far as it goes; the buffer is empty after. For
   the ends that run no callback: a closed hub's, exit()'s. */
static void write_rest(gfile *f) {
  while (f->fd >= 0 && f->wdone < f->wlen) {
    ssize_t n = write(f->fd, f->wbuf + f->wdone, f->wlen - f->wdone);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    f->wdone += (size_t)n;
  }
  f->wlen = f->wdone = 0;
}


/* The closing sequence is over: the closer frees the record, or it is
   freed here if no close() waits for it. The owner may be another thread
   whose request was in flight when the file was closed in the background
   (a killed thread's <close>, a finalizer's close): it is woken, finds
   the file closed and touches the record no more. */
static void close_end(gfile *f) {
  gl_wait_t *w = f->owner;
  int closer = f->closer;
  gl_waitq_wake_all(&f->queue, GL_W_OK);
  f->owner = NULL;
  if (w != NULL)
    gl_wait_end(w, GL_W_OK);
  if (w == NULL || !closer)
    file_free(f);
}


/* The Lua side is gone (collected, closed by a thread that cannot wait,
   an open nobody waits for): finish in the background. */
static void start_closing(gfile *f) {
  f->closing = 1;
  f->gen++;
  if (f->busy != OP_NONE)
    return; /* file_cb goes on */
  if (f->hub->loop.data == NULL) { /* the hub is closed: finish here */
    write_rest(f);
    if (f->fd >= 0)
      close(f->fd);
    file_free(f);
    return;
  }
  if (!close_step(f))
    close_end(f);
}


/* Its userdata is gone and its __gc never ran (box.c): close it as the
   __gc would have (its buffered writes flushed first). */
static void file_orphan(lgreen_owned *o) {
  start_closing(GL_CONTAINER(o, gfile, own));
}

static const lgreen_boxkind file_box = {offsetof(gfile, own), file_orphan};


static void file_cb(uv_fs_t *req) {
  gfile *f = (gfile *)req->data;
  ssize_t r = req->result;
  int op = f->busy;
  f->busy = OP_NONE;
  lgfs_done(f->st, &f->track);
  if (f->owner != NULL && f->hub->loop.data == NULL)
    /* the state is closing (gl_hub_close runs the loop until the pool's
       requests end): the owner never runs again, as if it was killed (an
       open's file is closed, a close's record freed) */
    gl_wait_abandon(f->owner, GL_W_CANCELED);
  if ((op == OP_FSTAT || op == OP_OPENSTAT) && r >= 0)
    f->size = (int64_t)req->statbuf.st_size;
  if (op == OP_FSTAT || op == OP_OPENSTAT)
    f->sgen = f->wgen;
  else if (op == OP_WRITE)
    f->wgen++;
  uv_fs_req_cleanup(req);
  switch (op) {
  case OP_OPEN:
    f->result = r < 0 ? (int)r : 0;
    if (r < 0)
      break;
    f->fd = (int)r;
    /* "a" starts at the end, as C's fopen does ("a+" at 0) */
    if ((f->mode & (M_APPEND | M_READ)) == M_APPEND && !f->closing &&
        submit_fstat(f, OP_OPENSTAT) == 0)
      return;
    break;
  case OP_OPENSTAT:
    if (r >= 0)
      lseek(f->fd, (off_t)f->size, SEEK_SET); /* no I/O */
    break;
  case OP_READ:
    if (r == FS_LOST) /* nothing read here: the parent's read */
      break;
    if (r > 0) {
      f->rend += (size_t)r;
      f->eof = 0;
    } else if (r == 0) {
      f->eof = 1;
    } else {
      f->rerr = (int)r;
    }
    break;
  case OP_WRITE:
    if (r == FS_LOST) { /* the parent writes these bytes */
      f->wlen = f->wdone = 0;
      break;
    }
    if (r > 0) {
      f->wdone += (size_t)r;
      if (f->wdone < f->wlen) { /* a short write: the rest */
        r = submit_write(f);
        if (r == 0)
          return;
      }
    }
    if (r <= 0 && f->wdone < f->wlen)
      f->werr = r < 0 ? (int)r : UV_EIO;
    f->wlen = f->wdone = 0; /* written, or dropped after an error */
    if (f->wcap > 2 * f->vsize && f->wcap > FS_DEFBUF) {
      free(f->wbuf); /* a large write's buffer goes */
      f->wbuf = NULL;
      f->wcap = 0;
    }
    break;
  case OP_FSTAT:
    f->result = r < 0 ? (int)r : 0;
    break;
  case OP_CLOSE:
    if (r == FS_LOST) { /* the parent closes its descriptor; this one */
      close(f->fd);
      r = 0;
    }
    f->fd = -1;
    if (r < 0 && f->cerr == 0)
      f->cerr = (int)r;
    break;
  }
  if (f->closing) {
    if (!close_step(f))
      close_end(f);
    return;
  }
  /* The threads that waited for this request run before its owner, so
     threads sharing a file take turns (the first to run takes what is
     buffered); each tries again. */
  gl_waitq_wake_all(&f->queue, GL_W_OK);
  if (f->owner != NULL) {
    gl_wait_t *w = f->owner;
    f->owner = NULL;
    gl_wait_end(w, GL_W_OK);
  }
}


/* A thread waits for the file's request: its owner or one in its queue. */
static int file_wanted(const lgfs_track *t) {
  const gfile *f = GL_CONTAINER(t, gfile, track);
  return f->owner != NULL || !gl_waitq_empty(&f->queue);
}


/* Cancel of the wait for a request: forget the thread. The request goes
   on; its callback keeps what it did. */
static void owner_cancel(gl_wait_t *w) {
  gfile *f = (gfile *)w->data;
  if (f->owner == w)
    f->owner = NULL;
  w->data = NULL; /* for the undo: nothing to give back */
}


/* An open nobody waits for any more: close what it opens. */
static void open_cancel(gl_wait_t *w) {
  gfile *f = (gfile *)w->data;
  owner_cancel(w);
  f->closing = 1;
}


/* Woken, then interrupted before it ran: the opened file is nobody's. */
static void open_undo(gl_wait_t *w) {
  gfile *f = (gfile *)w->data;
  if (f == NULL)
    return;
  if (f->fd >= 0)
    start_closing(f);
  else
    file_free(f);
}


/* Woken at the end of closing, then interrupted: free it. */
static void close_undo(gl_wait_t *w) {
  if (w->data != NULL)
    file_free((gfile *)w->data);
}

/* }====================================================== */


/*
** {======================================================
** Waiting
** =======================================================
*/

/* Wait for the request of another thread to end, then run 'k'. */
static int wait_turn(lua_State *L, gfile *f, const char *what,
                     lua_KFunction k, lua_KContext ctx) {
  gl_thread_t *t = lgreen_begin(L, f->hub, what);
  gl_wait_start(t, &t->w, what, NULL, f);
  gl_waitq_push(&f->queue, &t->w);
  return lgreen_block(L, t, k, ctx);
}


/* Wait for the request just submitted for thread 't'. */
static int wait_request(lua_State *L, gl_thread_t *t, gfile *f,
                        const char *what, lua_KFunction k, lua_KContext ctx) {
  f->owner = &t->w;
  gl_wait_start(t, &t->w, what, owner_cancel, f);
  return lgreen_block(L, t, k, ctx);
}


/* The thread's wait, in a continuation. */
#define mywait(L) (&lgreen_hub(L)->current->w)


static gfile **checkfile(lua_State *L) {
  return (gfile **)luaL_checkudata(L, 1, FS_FILE);
}


static gfile *tofile(lua_State *L) {
  gfile *f = *checkfile(L);
  if (f == NULL)
    luaL_error(L, "attempt to use a closed file");
  return f;
}

/* }====================================================== */


/*
** {======================================================
** read: formats matched against the buffer (liolib's g_read)
** =======================================================
*/

#define SP_STR 0  /* a string of the buffer */
#define SP_NUM 1  /* a numeral of the buffer */
#define SP_FAIL 2 /* the format failed: nil, and the read stops */

typedef struct span {
  size_t off, len;
  int kind;
} span;

enum { SCAN_DONE, SCAN_NEED, SCAN_BAD };

/* liolib's read_number, over the buffered bytes 's[i..have)'. */
typedef struct RN {
  const char *s;
  size_t i, have;
  int eof, need;
  int c; /* the look-ahead character */
  int n; /* characters kept in 'buff' */
  char buff[FS_MAXLENNUM + 1];
} RN;

static int rn_getc(RN *rn) {
  if (rn->i < rn->have)
    return (unsigned char)rn->s[rn->i++];
  if (!rn->eof)
    rn->need = 1;
  return EOF;
}

static int nextc(RN *rn) {
  if (rn->n >= FS_MAXLENNUM) {
    rn->buff[0] = '\0';
    return 0;
  }
  rn->buff[rn->n++] = (char)rn->c;
  rn->c = rn_getc(rn);
  return 1;
}

static int test2(RN *rn, const char *set) {
  if (rn->c == set[0] || rn->c == set[1])
    return nextc(rn);
  return 0;
}

static int readdigits(RN *rn, int hex) {
  int count = 0;
  while ((hex ? isxdigit(rn->c) : isdigit(rn->c)) && nextc(rn))
    count++;
  return count;
}

/* 0 if more bytes are needed; else 1 with the span (a numeral or a
   failure) and '*p' past what io.read would consume. */
static int scan_number(lua_State *L, const char *s, size_t have, int eof,
                       size_t *p, span *x) {
  RN rn;
  int count = 0, hex = 0;
  size_t start;
  char decp[2];
  rn.s = s;
  rn.i = *p;
  rn.have = have;
  rn.eof = eof;
  rn.need = 0;
  rn.n = 0;
  decp[0] = lua_getlocaledecpoint();
  decp[1] = '.';
  do
    rn.c = rn_getc(&rn);
  while (isspace(rn.c));
  start = rn.i - (rn.c != EOF);
  test2(&rn, "-+");
  if (test2(&rn, "00")) {
    if (test2(&rn, "xX"))
      hex = 1;
    else
      count = 1;
  }
  count += readdigits(&rn, hex);
  if (test2(&rn, decp))
    count += readdigits(&rn, hex);
  if (count > 0 && test2(&rn, (hex ? "pP" : "eE"))) {
    test2(&rn, "-+");
    readdigits(&rn, 0);
  }
  if (rn.need)
    return 0;
  *p = rn.i - (rn.c != EOF); /* the look-ahead stays */
  rn.buff[rn.n] = '\0';
  x->off = start;
  x->len = (size_t)rn.n;
  x->kind = SP_FAIL;
  if (rn.buff[0] != '\0' && lua_stringtonumber(L, rn.buff) != 0) {
    lua_pop(L, 1);
    x->kind = SP_NUM;
  }
  return 1;
}


#define SPAN(k, o, l) (x->kind = (k), x->off = (o), x->len = (l))

/*
** Match the formats at 'first'..'first'+'nargs'-1 against the 'have'
** unconsumed bytes at 's', allocating nothing. 'eof': no more bytes will
** come. SCAN_DONE: '*nsp' spans and '*used' bytes to consume. SCAN_NEED:
** '*want' more bytes (0 if unknown). SCAN_BAD: argument '*bad' is not a
** format; '*used' bytes were consumed by the formats before it.
*/
static int scan(lua_State *L, const char *s, size_t have, int eof,
                int first, int nargs, span *sp, int *nsp, size_t *used,
                size_t *want, int *bad) {
  size_t p = 0;
  int i;
  *want = 0;
  for (i = 0; i < nargs; i++) {
    int arg = first + i;
    span *x = &sp[i];
    if (lua_type(L, arg) == LUA_TNUMBER) {
      int isint;
      lua_Integer k = lua_tointegerx(L, arg, &isint);
      size_t left = have - p;
      if (!isint || k < 0)
        goto bad;
      if (k == 0) {
        if (left > 0)
          SPAN(SP_STR, p, 0);
        else if (eof)
          SPAN(SP_FAIL, p, 0);
        else
          return *want = 1, SCAN_NEED;
      } else if (left >= (size_t)k) {
        SPAN(SP_STR, p, (size_t)k);
        p += (size_t)k;
      } else if (eof) {
        SPAN(left > 0 ? SP_STR : SP_FAIL, p, left);
        p = have;
      } else {
        return *want = (size_t)k - left, SCAN_NEED;
      }
    } else {
      const char *fmt = lua_tostring(L, arg);
      if (fmt == NULL)
        goto bad;
      if (*fmt == '*')
        fmt++;
      switch (*fmt) {
      case 'n':
        if (!scan_number(L, s, have, eof, &p, x))
          return SCAN_NEED;
        break;
      case 'l':
      case 'L': {
        const char *nl = p < have ? memchr(s + p, '\n', have - p) : NULL;
        if (nl != NULL) {
          size_t e = (size_t)(nl - s);
          SPAN(SP_STR, p, e - p + (*fmt == 'L'));
          p = e + 1;
        } else if (eof) {
          SPAN(have > p ? SP_STR : SP_FAIL, p, have - p);
          p = have;
        } else {
          return SCAN_NEED;
        }
        break;
      }
      case 'a':
        if (!eof)
          return SCAN_NEED;
        SPAN(SP_STR, p, have - p);
        p = have;
        break;
      default:
        goto bad;
      }
    }
    if (x->kind == SP_FAIL) {
      i++;
      break;
    }
  }
  *nsp = i;
  *used = p;
  return SCAN_DONE;
bad:
  *bad = first + i;
  *used = p;
  return SCAN_BAD;
}


static void consume(gfile *f, size_t n) {
  f->rpos += n;
  if (f->rpos == f->rend) {
    f->rpos = f->rend = 0;
    if (f->rcap > 2 * FS_RAMAX) { /* a large result's buffer goes */
      free(f->rbuf);
      f->rbuf = NULL;
      f->rcap = 0;
    }
  }
  f->gen++;
}


/*
** Push the spans' values and consume. Pushing allocates, and a finalizer
** run by the collector could use the file: if the buffered bytes moved
** meanwhile, -1 (the caller starts again).
*/
static int emit(lua_State *L, gfile **pp, gfile *f, const span *sp, int nsp,
                size_t used) {
  unsigned gen = f->gen;
  int i;
  for (i = 0; i < nsp; i++) {
    const span *x = &sp[i];
    if (x->kind == SP_FAIL) {
      luaL_pushfail(L);
    } else if (x->kind == SP_NUM) {
      char b[FS_MAXLENNUM + 1];
      memcpy(b, f->rbuf + f->rpos + x->off, x->len);
      b[x->len] = '\0';
      lua_stringtonumber(L, b);
    } else if (x->len == 0) {
      lua_pushliteral(L, "");
    } else {
      lua_pushlstring(L, f->rbuf + f->rpos + x->off, x->len);
    }
    if (*pp != f || f->gen != gen)
      return -1;
  }
  consume(f, used);
  return nsp;
}


#define RK_REFILLED 1 /* this read has refilled the buffer */
#define RK_LINES 2    /* the iterator of lines() */

static int read_run(lua_State *L, gfile **pp, lua_KContext ctx);

static gfile **read_pp(lua_State *L, lua_KContext ctx) {
  if (ctx & RK_LINES)
    return (gfile **)lua_touserdata(L, lua_upvalueindex(3));
  return (gfile **)lua_touserdata(L, 1);
}


static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, mywait(L), NULL);
  return read_run(L, read_pp(L, ctx), ctx);
}


static void close_background(gfile **pp) {
  gfile *f = *pp;
  *pp = NULL;
  lgreen_disown(&f->own);
  start_closing(f);
}


/* The results of a read: as they are, or as the lines() iterator turns
   them (liolib's io_readline). */
static int read_done(lua_State *L, lua_KContext ctx, int n) {
  gfile **pp;
  if (!(ctx & RK_LINES) || lua_toboolean(L, -n))
    return n;
  if (n > 1)
    return luaL_error(L, "%s", lua_tostring(L, -n + 1));
  pp = read_pp(L, ctx);
  if (lua_toboolean(L, lua_upvalueindex(5)) && *pp != NULL)
    close_background(pp); /* opened by lines(filename): read-only */
  return 0;
}


/* The refill's size: the read-ahead, all that a count still needs, or,
   for a result that does not fit, as much again. */
static size_t refill_size(gfile *f, size_t want) {
  size_t have = f->rend - f->rpos, n;
  if (have == 0 && f->seq && f->ra < FS_RAMAX)
    f->ra *= 2; /* read sequentially: read ahead more */
  n = f->ra;
  if (have > n)
    n = have;
  if (want > n)
    n = want;
  return n > FS_REQMAX ? FS_REQMAX : n;
}


/* Raise the error of argument 'bad' of a read, as g_read does (but for
   a negative count). */
static int read_bad(lua_State *L, int bad) {
  if (lua_type(L, bad) == LUA_TNUMBER) {
    luaL_checkinteger(L, bad);
    /* io's read takes it as a huge size and fails to allocate it */
    return luaL_argerror(L, bad, "negative count");
  }
  luaL_checkstring(L, bad);
  return luaL_argerror(L, bad, "invalid format");
}


/* Stack: the formats from 2 to the top (the file at 1, or the lines()
   iterator's state). */
static int read_run(lua_State *L, gfile **pp, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  int top = lua_gettop(L), nargs = top - 1;
  span local[FS_SPANS], *sp = local;
  for (;;) {
    gfile *f = *pp;
    gl_thread_t *t;
    size_t used, want;
    int nsp, bad, r;
    if (f == NULL)
      return luaL_error(L, (ctx & RK_LINES) ? "file is already closed"
                                            : "attempt to use a closed file");
    if (f->busy != OP_NONE)
      return wait_turn(L, f, "file:read", read_k, ctx);
    if (f->wlen > 0) { /* written data goes first ("r+") */
      t = lgreen_begin(L, hub, "file:read");
      r = submit_write(f);
      if (r < 0)
        return read_done(L, ctx, lgfs_fail(L, r, NULL));
      return wait_request(L, t, f, "file:read", read_k, ctx);
    }
    if (f->werr != 0) {
      r = f->werr;
      f->werr = 0;
      return read_done(L, ctx, lgfs_fail(L, r, NULL));
    }
    if (nargs > FS_SPANS && sp == local)
      sp = (span *)lua_newuserdatauv(L, sizeof(span) * (size_t)nargs, 0);
    f = *pp; /* (a finalizer may have closed it) */
    if (f == NULL || f->busy != OP_NONE)
      continue;
    r = scan(L, f->rbuf + f->rpos, f->rend - f->rpos,
             f->eof && (ctx & RK_REFILLED), 2, nargs, sp, &nsp, &used, &want,
             &bad);
    if (r == SCAN_DONE) {
      int n = emit(L, pp, f, sp, nsp, used);
      if (n < 0) {
        lua_settop(L, sp == local ? top : top + 1);
        continue;
      }
      if (sp != local)
        lua_remove(L, top + 1);
      return read_done(L, ctx, n);
    }
    if (r == SCAN_BAD) {
      consume(f, used);
      return read_bad(L, bad);
    }
    /* more bytes are needed */
    lua_settop(L, top);
    if (f->rerr != 0) {
      r = f->rerr;
      f->rerr = 0;
      return read_done(L, ctx, lgfs_fail(L, r, NULL));
    }
    if (!(f->mode & M_READ))
      return read_done(L, ctx, lgfs_fail(L, UV_EBADF, NULL));
    t = lgreen_begin(L, hub, "file:read");
    r = submit_read(f, refill_size(f, want));
    if (r < 0)
      return read_done(L, ctx, lgfs_fail(L, r, NULL));
    f->seq = 1;
    return wait_request(L, t, f, "file:read", read_k, ctx | RK_REFILLED);
  }
}


static int f_read(lua_State *L) {
  gfile **pp = checkfile(L);
  tofile(L);
  if (lua_gettop(L) == 1)
    lua_pushliteral(L, "l");
  luaL_checkstack(L, lua_gettop(L) + LUA_MINSTACK, "too many arguments");
  return read_run(L, pp, 0);
}


/* The iterator of lines(): upvalues 3 the file, 4 the number of formats,
   5 whether to close the file at the end, 6... the formats. */
static int lines_iter(lua_State *L) {
  gfile **pp = (gfile **)lua_touserdata(L, lua_upvalueindex(3));
  int i, n = (int)lua_tointeger(L, lua_upvalueindex(4));
  if (*pp == NULL)
    return luaL_error(L, "file is already closed");
  lua_settop(L, 1);
  luaL_checkstack(L, n + LUA_MINSTACK, "too many arguments");
  for (i = 1; i <= n; i++)
    lua_pushvalue(L, lua_upvalueindex(5 + i));
  if (n == 0)
    lua_pushliteral(L, "l");
  return read_run(L, pp, RK_LINES);
}


/* [-0, +1, m] The iterator over the file at 'fidx' with the formats
   from 'first' to the top. */
static void push_lines(lua_State *L, int fidx, int first, int toclose) {
  int i, n = lua_gettop(L) - first + 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, fidx);
  lua_pushinteger(L, n);
  lua_pushboolean(L, toclose);
  for (i = 0; i < n; i++)
    lua_pushvalue(L, first + i);
  lua_pushcclosure(L, lines_iter, 5 + n);
}


static int f_lines(lua_State *L) {
  tofile(L);
  luaL_argcheck(L, lua_gettop(L) - 1 <= FS_MAXARGLINE, FS_MAXARGLINE + 2,
                "too many arguments");
  push_lines(L, 1, 2, 0);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** write, flush, seek, setvbuf
** =======================================================
*/

#define WK_FLUSHED 1 /* the flush this call started is over */

/* 0, or UV_ENOMEM. */
static int wbuf_add(gfile *f, const char *s, size_t l) {
  if (f->wcap - f->wlen < l) {
    size_t cap = f->wcap > 0 ? f->wcap : f->vsize;
    char *b;
    while (cap - f->wlen < l)
      cap = cap * 2 > cap ? cap * 2 : f->wlen + l;
    b = (char *)realloc(f->wbuf, cap);
    if (b == NULL)
      return UV_ENOMEM;
    f->wbuf = b;
    f->wcap = cap;
  }
  if (l > 0)
    memcpy(f->wbuf + f->wlen, s, l);
  f->wlen += l;
  return 0;
}


/* Writing after reading: the read-ahead is given back to the file (as
   stdio does), so the write lands where the reader was. */
static void drop_readahead(gfile *f) {
  if (f->rend > f->rpos &&
      lseek(f->fd, -(off_t)(f->rend - f->rpos), SEEK_CUR) < 0)
    return; /* not seekable: reading and writing are separate streams */
  f->rpos = f->rend = 0;
  f->eof = 0;
  f->gen++;
}


/* Write out the file's buffer for the calling thread ('what' its wait),
   and wait for it ('k' continues with WK_FLUSHED); a failed submission
   drops the buffer and fails. */
static int write_out(lua_State *L, gl_hub_t *hub, gfile *f,
                     const char *what, lua_KFunction k) {
  gl_thread_t *t = lgreen_begin(L, hub, what);
  int r = submit_write(f);
  if (r < 0) {
    f->wlen = f->wdone = 0;
    return lgfs_fail(L, r, NULL);
  }
  return wait_request(L, t, f, what, k, WK_FLUSHED);
}


static int write_run(lua_State *L, lua_KContext ctx);

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, mywait(L), NULL);
  return write_run(L, ctx);
}


static int write_run(lua_State *L, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gfile *f = *(gfile **)lua_touserdata(L, 1);
  int top = lua_gettop(L), arg, nl = 0, r;
  if (ctx & WK_FLUSHED) {
    if (f != NULL && f->werr != 0) {
      r = f->werr;
      f->werr = 0;
      return lgfs_fail(L, r, NULL);
    }
    lua_settop(L, 1);
    return 1;
  }
  if (f == NULL)
    return luaL_error(L, "attempt to use a closed file");
  if (f->busy != OP_NONE)
    return wait_turn(L, f, "file:write", write_k, 0);
  if (f->werr != 0) {
    r = f->werr;
    f->werr = 0;
    return lgfs_fail(L, r, NULL);
  }
  if (!(f->mode & M_WRITE)) {
    for (arg = 2; arg <= top; arg++)
      if (lua_type(L, arg) != LUA_TNUMBER)
        luaL_checkstring(L, arg);
    return lgfs_fail(L, UV_EBADF, NULL);
  }
  drop_readahead(f);
  for (arg = 2; arg <= top; arg++) {
    char nb[64];
    const char *s;
    size_t l;
    if (lua_type(L, arg) == LUA_TNUMBER) {
      int n = lua_isinteger(L, arg)
                  ? snprintf(nb, sizeof(nb), LUA_INTEGER_FMT,
                             (LUAI_UACINT)lua_tointeger(L, arg))
                  : snprintf(nb, sizeof(nb), LUA_NUMBER_FMT,
                             (LUAI_UACNUMBER)lua_tonumber(L, arg));
      s = nb;
      l = (size_t)n;
    } else {
      s = luaL_checklstring(L, arg, &l); /* what came before stays */
      if (f->vmode == VB_LINE && memchr(s, '\n', l) != NULL)
        nl = 1;
    }
    if (wbuf_add(f, s, l) < 0)
      return lgfs_fail(L, UV_ENOMEM, NULL);
  }
  if (f->vmode == VB_FULL && f->wlen < f->vsize)
    return lua_settop(L, 1), 1;
  if (f->vmode == VB_LINE && !nl && f->wlen < f->vsize)
    return lua_settop(L, 1), 1;
  if (f->wlen == 0 || (!lgfs_canwait(L, hub) &&
                       !(hub->current && (hub->current->flags & GL_F_KILLED))))
    return lua_settop(L, 1), 1; /* flushed by the next operation */
  return write_out(L, hub, f, "file:write", write_k);
}


static int f_write(lua_State *L) {
  tofile(L);
  return write_run(L, 0);
}


static int flush_run(lua_State *L, lua_KContext ctx);

static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, mywait(L), NULL);
  return flush_run(L, ctx);
}


static int flush_run(lua_State *L, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gfile *f = *(gfile **)lua_touserdata(L, 1);
  int r;
  if (f == NULL && (ctx & WK_FLUSHED))
    return lua_pushboolean(L, 1), 1;
  if (f == NULL)
    return luaL_error(L, "attempt to use a closed file");
  if (f->busy != OP_NONE)
    return wait_turn(L, f, "file:flush", flush_k, 0);
  if (f->werr != 0) {
    r = f->werr;
    f->werr = 0;
    return lgfs_fail(L, r, NULL);
  }
  if (f->wlen == 0)
    return lua_pushboolean(L, 1), 1;
  return write_out(L, hub, f, "file:flush", flush_k);
}


static int f_flush(lua_State *L) {
  tofile(L);
  return flush_run(L, 0);
}


#define SK_SIZED 1 /* the fstat this call asked for is over */

static const char *const whences[] = {"set", "cur", "end", NULL};

static int seek_run(lua_State *L, lua_KContext ctx);

static int seek_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, mywait(L), NULL);
  return seek_run(L, ctx);
}


static int seek_run(lua_State *L, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gfile *f = tofile(L);
  int op = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  int tell = op == 1 && off == 0;
  gl_thread_t *t;
  off_t cur, target;
  int r;
  /* The size asked for (SK_SIZED) holds only while no write has ended
     since it was taken (wgen): another thread's write may have come while
     it was asked. Another thread's fstat meanwhile is as good (threads
     seeking to the end together would otherwise take turns forever, each
     one's fstat making the other's stale). */
  if (f->busy != OP_NONE)
    return wait_turn(L, f, "file:seek", seek_k, ctx);
  if (f->wlen > 0 && !(tell && !(f->mode & M_APPEND))) {
    t = lgreen_begin(L, hub, "file:seek"); /* written data goes first */
    r = submit_write(f);
    if (r < 0)
      return lgfs_fail(L, r, NULL);
    return wait_request(L, t, f, "file:seek", seek_k, ctx & ~SK_SIZED);
  }
  if (f->werr != 0) {
    r = f->werr;
    f->werr = 0;
    return lgfs_fail(L, r, NULL);
  }
  if (op == 2 && (!(ctx & SK_SIZED) || f->sgen != f->wgen)) {
    /* the size, off the hub */
    t = lgreen_begin(L, hub, "file:seek");
    r = submit_fstat(f, OP_FSTAT);
    if (r < 0)
      return lgfs_fail(L, r, NULL);
    return wait_request(L, t, f, "file:seek", seek_k, ctx | SK_SIZED);
  }
  if (op == 2 && f->result < 0)
    return lgfs_fail(L, f->result, NULL);
  cur = lseek(f->fd, 0, SEEK_CUR); /* these lseeks do no I/O */
  if (cur < 0)
    return lgfs_fail(L, -errno, NULL);
  cur = cur - (off_t)(f->rend - f->rpos) + (off_t)f->wlen;
  if (cur < 0) /* a device whose offset stays 0 (/dev/zero), read ahead */
    cur = 0;
  if (tell) {
    lua_pushinteger(L, (lua_Integer)cur);
    return 1;
  }
  target = op == 0 ? 0 : op == 1 ? cur : (off_t)f->size;
  if ((off > 0 && target > INT64_MAX - off) ||
      (off < 0 && target < INT64_MIN - off))
    return lgfs_fail(L, UV_EINVAL, NULL);
  target = lseek(f->fd, target + (off_t)off, SEEK_SET);
  if (target < 0)
    return lgfs_fail(L, -errno, NULL);
  f->rpos = f->rend = 0;
  f->eof = 0;
  f->seq = 0;
  f->ra = f->vsize < FS_MINREAD ? FS_MINREAD : f->vsize;
  f->gen++;
  lua_pushinteger(L, (lua_Integer)target);
  return 1;
}


static int f_seek(lua_State *L) {
  tofile(L);
  luaL_checkoption(L, 2, "cur", whences);
  luaL_optinteger(L, 3, 0);
  return seek_run(L, 0);
}


static int f_setvbuf(lua_State *L) {
  static const char *const modes[] = {"no", "full", "line", NULL};
  static const int vmodes[] = {VB_NO, VB_FULL, VB_LINE};
  gfile *f = tofile(L);
  int op = luaL_checkoption(L, 2, NULL, modes);
  lua_Integer sz = luaL_optinteger(L, 3, FS_DEFBUF);
  if (sz < 1)
    sz = FS_DEFBUF;
  if (sz > FS_REQMAX)
    sz = FS_REQMAX;
  f->vmode = vmodes[op];
  f->vsize = (size_t)sz;
  f->ra = f->vsize < FS_MINREAD ? FS_MINREAD : f->vsize;
  lua_pushboolean(L, 1);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** close, collection
** =======================================================
*/

#define CK_LOUD 1 /* close(): results and errors; __close: nothing */

static int close_run(lua_State *L, lua_KContext ctx);

static int close_turn_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lgreen_waited(L, mywait(L), NULL);
  return close_run(L, ctx);
}


static int close_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = mywait(L);
  gfile *f;
  int err;
  (void)status;
  lgreen_waited(L, w, close_undo);
  f = (gfile *)w->data;
  err = f->cerr;
  file_free(f);
  if (!(ctx & CK_LOUD))
    return 0;
  if (err != 0)
    return lgfs_fail(L, err, NULL);
  lua_pushboolean(L, 1);
  return 1;
}


static int close_run(lua_State *L, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  gfile **pp = (gfile **)lua_touserdata(L, 1);
  gfile *f = *pp;
  gl_thread_t *t;
  if (f == NULL) {
    if (ctx & CK_LOUD)
      return luaL_error(L, "attempt to use a closed file");
    return 0;
  }
  if (!lgfs_canwait(L, hub)) { /* killed, in a finalizer, a boundary */
    close_background(pp);
    if (!(ctx & CK_LOUD))
      return 0;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (f->busy != OP_NONE)
    return wait_turn(L, f, "file:close", close_turn_k, ctx);
  t = lgreen_begin(L, hub, "file:close");
  *pp = NULL;
  lgreen_disown(&f->own);
  f->closing = 1;
  f->gen++;
  if (!close_step(f)) { /* nothing to do (not for an open file) */
    int err = f->cerr;
    file_free(f);
    if (!(ctx & CK_LOUD))
      return 0;
    if (err != 0)
      return lgfs_fail(L, err, NULL);
    lua_pushboolean(L, 1);
    return 1;
  }
  f->owner = &t->w;
  f->closer = 1;
  gl_wait_start(t, &t->w, "file:close", owner_cancel, f);
  return lgreen_block(L, t, close_k, ctx);
}


static int f_close(lua_State *L) {
  tofile(L);
  return close_run(L, CK_LOUD);
}


/* __close: as close(), but quiet (an error in a <close> handler would
   replace the block's own). A thread that cannot wait (one being killed
   unwinds through here) leaves the closing to the background. */
static int f_tbc(lua_State *L) {
  checkfile(L);
  lua_settop(L, 1);
  return close_run(L, 0);
}


static int f_gc(lua_State *L) {
  gfile **pp = (gfile **)lua_touserdata(L, 1);
  if (*pp != NULL)
    close_background(pp);
  return 0;
}


static int f_tostring(lua_State *L) {
  gfile **pp = checkfile(L);
  if (*pp == NULL)
    lua_pushliteral(L, "green.fs.File (closed)");
  else
    lua_pushfstring(L, "green.fs.File (%p)", (void *)*pp);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** open, lines(filename), type, stats
** =======================================================
*/

/* liolib's l_checkmode, and the open(2) flags fopen uses. */
static int checkmode(const char *md, int *flags, int *mode) {
  const char *m = md;
  if (*m == '\0' || strchr("rwa", *m) == NULL)
    return 0;
  m++;
  if (*m == '+')
    m++;
  if (strspn(m, "b") != strlen(m))
    return 0;
  switch (md[0]) {
  case 'r':
    *flags = 0;
    *mode = M_READ;
    break;
  case 'w':
    *flags = UV_FS_O_CREAT | UV_FS_O_TRUNC;
    *mode = M_WRITE;
    break;
  default:
    *flags = UV_FS_O_CREAT | UV_FS_O_APPEND;
    *mode = M_WRITE | M_APPEND;
    break;
  }
  if (md[1] == '+') {
    *flags |= UV_FS_O_RDWR;
    *mode |= M_READ | M_WRITE;
  } else {
    *flags |= md[0] == 'r' ? UV_FS_O_RDONLY : UV_FS_O_WRONLY;
  }
  return 1;
}


#define OK_LINES 1 /* lines(filename): make the iterator */

static int open_k(lua_State *L, int status, lua_KContext ctx) {
  gl_wait_t *w = mywait(L);
  gfile *f;
  (void)status;
  lgreen_waited(L, w, open_undo);
  f = (gfile *)w->data;
  if (f->result < 0) {
    int err = f->result;
    file_free(f);
    if (ctx & OK_LINES)
      return luaL_error(L, "cannot open file '%s' (%s)", lua_tostring(L, 1),
                        strerror(-err));
    return lgfs_fail(L, err, lua_tostring(L, 1));
  }
  *(gfile **)lua_touserdata(L, -1) = f;
  lgreen_own(lgreen_hub(L), &f->own, &file_box);
  if (ctx & OK_LINES) { /* stack: filename, formats..., file */
    lua_rotate(L, 2, 1); /* filename, file, formats... */
    push_lines(L, 2, 3, 1);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, 2);
    return 4;
  }
  return 1;
}


static gfile *file_new(gl_hub_t *hub, lgfs_state *st, int mode) {
  gfile *f = (gfile *)calloc(1, sizeof(gfile));
  if (f == NULL)
    return NULL;
  f->hub = hub;
  f->st = st;
  f->fd = -1;
  f->mode = mode;
  f->vmode = VB_FULL;
  f->vsize = FS_DEFBUF;
  f->ra = FS_DEFBUF;
  gl_waitq_init(&f->queue);
  gl_link_init(&f->track.link);
  gl_link_init(&f->own.link);
  f->track.req = &f->req;
  f->track.wanted = file_wanted;
  f->req.data = f;
  gl_link_push(&st->alive, &f->alive);
  st->files++;
  return f;
}


/* Open 'path' (argument 1) and wait; the new file goes on the top. */
static int open_start(lua_State *L, int flags, int mode, lua_KContext ctx) {
  gl_hub_t *hub = lgreen_hub(L);
  const char *path = lua_tostring(L, 1);
  gl_thread_t *t = lgreen_begin(L, hub, "green.fs.open");
  gfile *f;
  int r;
  lgreen_newbox(L, hub, 0, &file_box);
  luaL_setmetatable(L, FS_FILE);
  f = file_new(hub, lgfs_state_of(L), mode);
  if (f == NULL)
    return luaL_error(L, "not enough memory");
  lgfs_call(r, uv_fs_open(&hub->loop, &f->req, path, flags, 0666, file_cb));
  if (r < 0) {
    uv_fs_req_cleanup(&f->req);
    file_free(f);
    if (ctx & OK_LINES)
      return luaL_error(L, "cannot open file '%s' (%s)", path, strerror(-r));
    return lgfs_fail(L, r, path);
  }
  submitted(f, OP_OPEN);
  f->owner = &t->w;
  gl_wait_start(t, &t->w, "green.fs.open", open_cancel, f);
  return lgreen_block(L, t, open_k, ctx);
}


/* The standard function this one stands in for (io.open, io.lines when
   green.patch{fs = true} installed it), for callers that cannot wait. */
static int fallback(lua_State *L) {
  if (lua_isnoneornil(L, lua_upvalueindex(3)) ||
      lgreen_canblock(L, lgreen_hub(L)))
    return -1;
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}


/* open(path, [mode="r"]) -> file | nil, message, errno */
static int l_open(lua_State *L) {
  int flags = 0, mode = 0, n;
  const char *md;
  lgfs_checkpath(L, 1); /* the stock function's too: it would cut it */
  n = fallback(L);
  if (n >= 0)
    return n;
  md = luaL_optstring(L, 2, "r");
  luaL_argcheck(L, checkmode(md, &flags, &mode), 2, "invalid mode");
  lua_settop(L, 2);
  return open_start(L, flags, mode, 0);
}


/* lines(filename, ...) -> iterator, nil, nil, file (io.lines) */
static int l_lines(lua_State *L) {
  int n;
  if (lua_isnoneornil(L, 1) && !lua_isnoneornil(L, lua_upvalueindex(3))) {
    lua_pushvalue(L, lua_upvalueindex(3)); /* io.lines(): default input */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  lgfs_checkpath(L, 1); /* (as open) */
  n = fallback(L);
  if (n >= 0)
    return n;
  luaL_argcheck(L, lua_gettop(L) - 1 <= FS_MAXARGLINE, FS_MAXARGLINE + 2,
                "too many arguments");
  return open_start(L, UV_FS_O_RDONLY, M_READ, OK_LINES);
}


/* type(x) -> "file" | "closed file" | nil (io.type) */
static int l_type(lua_State *L) {
  gfile **pp;
  luaL_checkany(L, 1);
  pp = (gfile **)luaL_testudata(L, 1, FS_FILE);
  if (pp == NULL)
    luaL_pushfail(L);
  else if (*pp == NULL)
    lua_pushliteral(L, "closed file");
  else
    lua_pushliteral(L, "file");
  return 1;
}


static int l_stats(lua_State *L) {
  lgfs_state *st = lgfs_state_of(L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, st->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, st->inflight);
  lua_setfield(L, -2, "inflight");
  lua_pushinteger(L, st->files);
  lua_setfield(L, -2, "files");
  return 1;
}


/* io.close standing in for upvalue 3: green files too. */
static int io_close(lua_State *L) {
  luaL_Stream *p;
  if (luaL_testudata(L, 1, FS_FILE) != NULL)
    return f_close(L);
  if (!lua_isnone(L, 1)) { /* liolib's checks, with its words */
    p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
    if (p->closef == NULL)
      return luaL_error(L, "attempt to use a closed file");
  }
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}


/* io.type that knows green files. */
static int io_type(lua_State *L) {
  luaL_Stream *p;
  luaL_checkany(L, 1);
  if (luaL_testudata(L, 1, FS_FILE) != NULL)
    return l_type(L);
  p = (luaL_Stream *)luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (p == NULL)
    luaL_pushfail(L);
  else if (p->closef == NULL)
    lua_pushliteral(L, "closed file");
  else
    lua_pushliteral(L, "file");
  return 1;
}


/* io_functions(io.open, io.lines, io.close) -> open, lines, close, type
   standing in for io's (green.patch{fs = true}): open and lines give the
   standard ones' results to callers that cannot wait, close and type
   accept green files too. */
static int l_io_functions(lua_State *L) {
  static const lua_CFunction f[] = {l_open, l_lines, io_close, io_type};
  int i;
  for (i = 1; i <= 3; i++)
    luaL_checktype(L, i, LUA_TFUNCTION);
  lua_pushnil(L);
  for (i = 1; i <= 4; i++) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, i);
    lua_pushcclosure(L, f[i - 1], 3);
  }
  return 4;
}

/* }====================================================== */


static const luaL_Reg file_methods[] = {
    {"read", f_read},       {"write", f_write}, {"lines", f_lines},
    {"seek", f_seek},       {"flush", f_flush}, {"close", f_close},
    {"setvbuf", f_setvbuf}, {NULL, NULL},
};

static const luaL_Reg file_meta[] = {
    {"__gc", f_gc},
    {"__close", f_tbc},
    {"__tostring", f_tostring},
    {NULL, NULL},
};

static const luaL_Reg fs_funcs[] = {
    {"open", l_open},
    {"lines", l_lines},
    {"type", l_type},
    {"stats", l_stats},
    {"io_functions", l_io_functions},
    {NULL, NULL},
};


/* Push hub and state as the 2 upvalues, then set 'funcs' in the table
   below them. */
static void setfuncs(lua_State *L, gl_hub_t *hub, int st,
                     const luaL_Reg *funcs) {
  lua_pushlightuserdata(L, hub);
  lua_pushvalue(L, st);
  luaL_setfuncs(L, funcs, 2);
}


/*
** {======================================================
** green.fork: the parent's requests, in the child
** =======================================================
*/

/* Is 'node' on the libuv queue 'head' (void *[2]: next, prev)? */
static int on_queue(void **head, void **node) {
  void **q;
  for (q = (void **)head[0]; q != head; q = (void **)q[0])
    if (q == node)
      return 1;
  return 0;
}


/*
** In the child of green.fork. The thread pool's workers are not copied:
** a request that was queued or running in the parent never completes
** here (it is the parent's, which finishes it), yet the loop would count
** it alive forever (an orphaned child would never exit) and its file
** would stay busy (the child's next read would wait forever). Each such
** request is ended as libuv's cancel does, with FS_LOST: put on the
** loop's queue of completed work, its callback runs on the child's next
** turn of the loop, where nobody waits for it (the parent's threads are
** gone) -- a read leaves the buffer as it was, a write's bytes are the
** parent's to write, a close closes the child's copy of the descriptor.
** Requests that completed but were not yet called back are on that
** queue already; they are the parent's too (it delivers them: a read's
** bytes must not reach both processes), so they end with FS_LOST as well,
** and a completed open's descriptor is closed in the child. libuv (1.44) does not reset the completion
** signal's 'pending' flag or the queue's mutex across fork: a worker
** caught in the middle of posting a completion would leave either set
** and the child's requests would never be delivered; both are reset.
** libuv re-creates the pool in the child on the next request (its own
** pthread_atfork handler).
*/
static void fs_forked(lua_State *L, gl_hub_t *hub, void *ud) {
  lgfs_state *st = (lgfs_state *)ud;
  uv_loop_t *loop = &hub->loop;
  void **head = loop->wq;
  gl_link_t *l;
  (void)L;
  pool_started = 0; /* libuv starts the child's pool at its first request */
  /* Bytes buffered and not yet written are the parent's to write too
     (it has the same buffers): the child's flush or exit would write
     them twice (C's stdio does). */
  for (l = st->alive.next; l != &st->alive; l = l->next) {
    gfile *f = GL_CONTAINER(l, gfile, alive);
    if (f->busy == OP_NONE)
      f->wlen = f->wdone = 0;
  }
  if (gl_link_empty(&st->pending))
    return;
  if (uv_mutex_trylock(&loop->wq_mutex) == 0)
    uv_mutex_unlock(&loop->wq_mutex);
  else /* held by a worker of the parent: nobody here */
    uv_mutex_init(&loop->wq_mutex);
  for (l = st->pending.next; l != &st->pending; l = l->next) {
    uv_fs_t *req = GL_CONTAINER(l, lgfs_track, link)->req;
    void **q = req->work_req.wq;
    /* A scandir's entries (done, or being listed) are freed here, while
       the result still counts them: libuv's cleanup frees as many as the
       result says, and FS_LOST read as unsigned is billions. */
    if (req->fs_type == UV_FS_SCANDIR && req->result >= 0)
      uv_fs_req_cleanup(req);
    if (on_queue(head, q)) { /* completed for the parent */
      if (req->fs_type == UV_FS_OPEN && req->result >= 0)
        close((int)req->result); /* the child's copy */
      req->result = FS_LOST;
      continue;
    }
    req->result = FS_LOST;
    req->work_req.work = NULL; /* done */
    q[0] = head;               /* insert at the tail */
    q[1] = head[1];
    ((void **)head[1])[0] = q;
    head[1] = q;
  }
  loop->wq_async.pending = 0;
  uv_async_send(&loop->wq_async);
}

/* }====================================================== */


/*
** {======================================================
** exit(): reads that may never end
** =======================================================
*/

/* The process's green.fs state while its Lua state is open (one hub per
   process), for the exit handler. */
static lgfs_state *exit_state;

/*
** Requests of closed hubs that may never end (lgreen_fs_abandon): a read
** of a FIFO nobody writes, left in a worker of libuv's pool when the
** state closed. Their records stay for good, on this process-lifetime
** list (so they are not leaks), with the hub's loop (green.c): the worker
** writes into both when the request ends, if ever. fs_exit ends the
** process without waiting for them.
*/
static gl_link_t lost = {&lost, &lost};


/* Can request 'req' stay in the pool for good: a read of a FIFO, a
   terminal or a socket (until the other end writes), an open of a FIFO
   or a device (until the other end opens)? Writes are not counted: their
   bytes are written before the process ends, as they are when the writer
   is killed. */
static int may_hang(const uv_fs_t *req) {
  struct stat sb;
  if (req->fs_type == UV_FS_READ) {
    if (fstat(req->file, &sb) != 0)
      return 0;
  } else if (req->fs_type == UV_FS_OPEN) {
    if (stat(req->path, &sb) != 0) /* a FIFO removed since (a missing */
      return !(req->flags & O_CREAT); /* path fails at once), or new */
  } else {
    return 0;
  }
  return !S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode) && !S_ISDIR(sb.st_mode);
}


/* Is 'req' in the pool still (queued or in a worker)? The worker clears
   'work' under the loop's 'wq_mutex' when it is done. */
static int running(uv_fs_t *req) {
  int r;
  uv_mutex_lock(&req->loop->wq_mutex);
  r = req->work_req.work != NULL;
  uv_mutex_unlock(&req->loop->wq_mutex);
  return r;
}


/*
** hooks.stuck (runtime/gl.h): the requests in flight that may never end
** and that nobody waits for (a killed reader's), or with 'closing' (no
** thread will run again), all that may never end. They keep neither
** greenlua's end of the program nor the hub's close waiting.
*/
static unsigned fs_stuck(gl_hub_t *hub, int closing) {
  lgfs_state *st = (lgfs_state *)lgreen_state(hub)->fs;
  unsigned n = 0;
  gl_link_t *l;
  if (st == NULL)
    return 0;
  for (l = st->pending.next; l != &st->pending; l = l->next) {
    lgfs_track *t = GL_CONTAINER(l, lgfs_track, link);
    if (!closing && (t->wanted == NULL || t->wanted(t)))
      continue;
    if (running(t->req) && may_hang(t->req))
      n++;
  }
  return n;
}


/*
** The state closes (green.c, hub_gc, after gl_hub_close): threads whose
** request has ended but who have not run since never will. What their
** continuation would have freed is freed here: a file record no
** userdata holds with no request under way (an open's, its file closed;
** a close's). A path call's request is freed by its wait's drop
** (fspath.c, req_undo), which gl_hub_close calls.
*/
void lgreen_fs_closed(gl_hub_t *hub) {
  lgfs_state *st = (lgfs_state *)lgreen_state(hub)->fs;
  gl_link_t *l, *next;
  if (st == NULL)
    return;
  for (l = st->alive.next; l != &st->alive; l = next) {
    gfile *f = GL_CONTAINER(l, gfile, alive);
    next = l->next;
    if (f->busy != OP_NONE || f->own.link.next != &f->own.link)
      continue; /* in the pool still, or its userdata's __gc closes it */
    write_rest(f);
    if (f->fd >= 0)
      close(f->fd);
    file_free(f);
  }
}


/* The hub closed with such requests (gl_hub_close left its loop open):
   they are the process's now. */
void lgreen_fs_abandon(gl_hub_t *hub) {
  lgfs_state *st = (lgfs_state *)lgreen_state(hub)->fs;
  if (st == NULL)
    return;
  while (!gl_link_empty(&st->pending)) {
    gl_link_t *l = st->pending.next;
    gl_link_remove(l);
    gl_link_push(&lost, l);
  }
  lgreen_state(hub)->fs = NULL;
}


/* What fs_exit finds in the pool. */
typedef struct exit_count {
  unsigned stuck;  /* requests in a worker that may never end */
  unsigned busy;   /* other requests in a worker */
  unsigned queued; /* requests no worker has taken yet */
} exit_count;


/* Has a worker taken 'req' (in the pool still)? libuv (1.44,
   threadpool.c) unlinks a request from its queue and links it to itself
   when a worker takes it; it is queued until then. */
static int started(uv_fs_t *req) {
  void *const *wq = (void *const *)req->work_req.wq;
  return __atomic_load_n(&wq[0], __ATOMIC_ACQUIRE) == (const void *)wq;
}


/* Count list 'head''s requests in the pool into 'n'. */
static void exit_scan(gl_link_t *head, exit_count *n) {
  gl_link_t *l;
  for (l = head->next; l != head; l = l->next) {
    uv_fs_t *req = GL_CONTAINER(l, lgfs_track, link)->req;
    if (!running(req))
      continue;
    if (!started(req))
      n->queued++;
    else if (may_hang(req))
      n->stuck++;
    else
      n->busy++;
  }
}


/* The number of libuv's workers (threadpool.c's rule, 1.44). */
static unsigned pool_size(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  long n = v != NULL ? atol(v) : 4;
  return n <= 0 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}


/*
** A write of more than FS_WRITEMAX bytes goes as several requests, the
** next submitted by the callback of the one before (file_cb), and so
** does the rest of a short write; exit() runs no callback: only the
** request in the pool was written, the rest of the buffer lost. Once the
** pool has no write left in it, the rest of each file's buffer whose
** write request has ended is written here (write(2), on this thread).
*/
static void exit_writes(gl_link_t *head) {
  gl_link_t *l;
  for (l = head->next; l != head; l = l->next) {
    lgfs_track *t = GL_CONTAINER(l, lgfs_track, link);
    gfile *f;
    if (t->wanted != file_wanted || t->req->fs_type != UV_FS_WRITE ||
        running(t->req))
      continue;
    f = GL_CONTAINER(t, gfile, track);
    if (t->req->result <= 0)
      continue; /* failed: the rest is dropped, as file_cb drops it */
    f->wdone += (size_t)t->req->result;
    write_rest(f);
    t->req->result = 0; /* counted: never twice */
  }
}


/*
** Bytes still in a file's buffer, no request begun for them (a write
** under the buffer's size, not flushed, not closed): exit() flushes C's
** stdio streams (a stock io file's "x" written before os.exit is in the
** file) and green files alike, here, on this thread. A file with a
** request of any kind under way is left to it (a close's: its descriptor
** may be another file's already); a failed flush's rest is dropped, as
** close drops it.
*/
static void exit_flush(gl_link_t *head) {
  gl_link_t *l;
  for (l = head->next; l != head; l = l->next) {
    gfile *f = GL_CONTAINER(l, gfile, alive);
    if (f->busy == OP_NONE && f->werr == 0)
      write_rest(f);
  }
}


/*
** exit() with requests in libuv's pool: libuv's destructor (1.44,
** uv_library_shutdown) joins its workers, so a read that waits for a FIFO
** nobody writes would hold the process forever, whether its thread still
** waits or was killed, or its state was closed (the 'lost' requests).
** Once every other request has ended (a write is written, all of it:
** exit_writes), a process with such a read left ends at once, stdio
** flushed, as a child of green.fork ends (fork.c, child_exit): the read's
** bytes have nobody to go to. Requests queued behind such reads that
** hold every worker would never start: they do not hold it either.
*/
static unsigned exit_settle(int child) {
  for (;;) {
    struct timespec ms = {0, 1000000};
    exit_count n = {0, 0, 0};
    if (exit_state != NULL)
      exit_scan(&exit_state->pending, &n);
    if (!child) /* in a child, the parent's: never ending there */
      exit_scan(&lost, &n);
    if (n.busy == 0 && (n.queued == 0 || n.stuck >= pool_size())) {
      if (exit_state != NULL) {
        exit_writes(&exit_state->pending);
        exit_flush(&exit_state->alive);
      }
      return n.stuck;
    }
    nanosleep(&ms, NULL);
  }
}


static void fs_exit(int status, void *ud) {
  (void)ud;
  if (exit_settle(0) == 0)
    return; /* nothing left in a worker */
  fflush(NULL);
  _exit(status);
}


/* The exit of a child of green.fork (fork.c, child_exit: the parent's
   exit handlers, fs_exit among them, do not run): the child's own writes
   under way, and its green files' buffered bytes, written. */
void lgreen_fs_exit_flush(void) {
  exit_settle(1);
}


static int state_gc(lua_State *L) {
  if (exit_state == (lgfs_state *)lua_touserdata(L, 1))
    exit_state = NULL;
  return 0;
}

/* }====================================================== */


/* core.fs: the functions green.fs is made of (lua/green/fs.lua). */
void lgreen_open_fs(lua_State *L, gl_hub_t *hub) {
  static int exit_registered;
  lgfs_state *state;
  int st;
  lua_createtable(L, 0, 16);
  state = (lgfs_state *)lua_newuserdatauv(L, sizeof(lgfs_state), 0);
  memset(state, 0, sizeof(lgfs_state));
  gl_link_init(&state->pending);
  gl_link_init(&state->alive);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (!exit_registered && on_exit(fs_exit, NULL) == 0) {
    exit_registered = 1;
    lgreen_pin_code(); /* fs_exit runs after a close dlcloses us */
  }
  exit_state = state;
  lgreen_state(hub)->fs = state;
  hub->hooks.stuck = fs_stuck;
  lgreen_on_fork(hub, fs_forked, state);
  st = lua_gettop(L);
  luaL_newmetatable(L, FS_FILE);
  setfuncs(L, hub, st, file_meta);
  lua_createtable(L, 0, 8);
  setfuncs(L, hub, st, file_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushvalue(L, st - 1);
  setfuncs(L, hub, st, fs_funcs);
  lgfs_open_paths(L, st);
  lua_pop(L, 2); /* the table, the state */
  lua_setfield(L, -2, "fs");
}
