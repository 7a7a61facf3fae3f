/*
** http.c: HTTP/1.x messages parsed by libhttp-parser (Debian's
** libhttp-parser, Node's former parser) straight from a green stream
** socket's read buffer, for lua/green/http.lua. Nothing here writes: the
** Lua layer builds responses and requests and sends them.
**
** A parser userdata ('green.http.parser') belongs to one connection and
** parses one message after another from it, in two phases:
**
**   head  'http_head(sock, parser, ...)' feeds the buffered bytes that it
**         has not fed yet to http_parser_execute, and waits for more until
**         the parser reports the end of the head. The buffer is not
**         consumed meanwhile, so the callbacks record where the URL, the
**         status text and each header name and value are as offsets from
**         the buffer's start ('hspan'): no copy while the head comes in,
**         however it is split across reads, and no parse twice. A complete
**         head is copied into one Lua string at once (before any other
**         allocation: a finalizer that runs during one could close the
**         socket and free its buffer), consumed, and the message table is
**         built from that string.
**   body  'http_body(sock, parser, ...)' runs the parser over whatever is
**         buffered; 'on_body' moves each piece of body down to the front
**         of the buffer (the parser never looks back at bytes it has
**         passed), so a run yields the decoded body (chunk framing
**         removed) as one contiguous piece, returned as one string.
**
** The parser pauses itself at the end of a head and at the end of a
** message, so the bytes of a pipelined request (or of a WebSocket after
** an upgrade) stay in the socket's buffer for their owner.
**
** Limits (the server's statuses; the client uses the same checks): a
** head longer than 'max_head' is 431 (414 while still in the URL), more
** than 'max_headers' header lines 431, a body beyond 'max_body' 413, any
** parse error 400 (libhttp-parser refuses a Content-Length beside
** Transfer-Encoding, repeated or malformed Content-Length, chunk sizes
** that overflow, and bytes a header may not contain).
*/
#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

#define LGREEN_HTTP_PARSER "green.http.parser"

static int is_tchar(unsigned char c);

/* Header lines recorded in the room at the front of the output's
   allocation (SPAN_ROOM: no allocation of their own, and none while the
   connection is idle); more grow a malloc'd array (up to
   'max_headers'). */
#define NINLINE 12
#define SPAN_ROOM (2 * NINLINE * sizeof(hspan))

/* The allocation whose output part starts at 'ob' (not NULL). */
#define OB_BLOCK(hp) ((hp)->ob - SPAN_ROOM)

/* Phases. */
#define PH_HEAD 0  /* reading a head */
#define PH_BODY 1  /* the head is done; the body is being read */
#define PH_DONE 2  /* the message is complete */
#define PH_ERROR 3 /* a parse error: the connection is unusable */

/* A run of bytes, as an offset from the start of the message's head. */
typedef struct hspan {
  uint32_t off, len;
} hspan;

typedef struct hparser {
  http_parser p;
  /* (small fields: a parser is an idle connection's memory) */
  short status;      /* PH_ERROR: the HTTP status to answer (400, ...) */
  short ctl;         /* requests: see 'push_results' */
  short answered;    /* requests: the status laid out for it, or 0 */
  unsigned char phase;
  char last;         /* the last head callback: 0, 'f' field, 'v' value */
  unsigned char skipbody;  /* a response to HEAD (or 204/304): no body */
  unsigned char upgrade;   /* the message switches protocols after its
                              head */
  unsigned char keepalive; /* http_should_keep_alive at the head's end */
  unsigned char expect;    /* requests: Expect: 0 none, 1 100-continue,
                              2 other */
  unsigned char head_only; /* the request is a HEAD (its response has no
                              body) */
  unsigned char http10;    /* the message is HTTP/1.0 */
  unsigned char folded;    /* a header value came in pieces apart
                              (obs-fold) */
  unsigned char began_head; /* requests: the head read so far (or
                               refused) is a HEAD's, for the server's own
                               answer (http_state) */
  unsigned char bodykind;  /* see 'push_bodykind' */
  unsigned char cstate;    /* chunked bodies: see 'chunk_scan' */
  unsigned char hbig;      /* 'h' is a malloc'd array of its own */
  uint64_t length;   /* Content-Length if bodykind is BK_LENGTH */
  uint64_t crem;     /* chunked bodies: the chunk's size, its data left */
  const char *base;  /* the buffer's start during an execute */
  size_t fed;        /* head: buffered bytes already given to the parser */
  uint64_t due;      /* head: its deadline, from its first byte (ns) */
  uint32_t max_head, max_headers;
  uint64_t max_body, nbody; /* the body's limit, and bytes so far */
  uint64_t max_body0; /* the limit each message starts with */
  char *out;         /* body: where the next piece goes */
  size_t nout;       /* body: bytes of decoded body at 'out' so far */
  hspan url, reason;
  uint32_t nh, caph; /* header lines; room in 'h' */
  hspan *h;          /* 2 spans per line: name, value; NULL (caph 0)
                        while there is no output allocation, else its
                        span room (NINLINE lines) unless 'hbig' */
  struct arena *arena; /* where raw heads go (uservalue 5), or NULL */
  char *ob;          /* responses laid out, not sent yet (malloc'd, after
                        the SPAN_ROOM bytes of the allocation, OB_BLOCK);
                        its room past them holds a head's copy while the
                        head's message is made ('push_message') */
  size_t olen, ocap; /* bytes in 'ob'; room */
  lgreen_owned own;  /* a box's record (box.c) */
} hparser;

/* The lines every response starts with, kept from one response to the
   next: one record per hub (upvalue UV_LINES), not per parser (an idle
   connection's memory: bench/idle.lua). */
typedef struct hlines {
  int stcode;        /* the status 'stline' was made for (0: none) */
  size_t stlen;
  char stline[48];   /* "HTTP/1.1 200 OK\r\n" */
  time_t datesec;    /* the second 'date' was made for */
  size_t datelen;
  char date[48];     /* "Date: ...\r\n" */
} hlines;

/* Body kinds. */
#define BK_NONE 0   /* no body */
#define BK_LENGTH 1 /* Content-Length bytes */
#define BK_CHUNKED 2
#define BK_EOF 3    /* until the connection ends (responses) */


/*
** {======================================================
** libhttp-parser callbacks (no Lua code; they record and return)
** =======================================================
*/

static hparser *hp_of(http_parser *p) {
  return (hparser *)p;
}


/* Extend 'sp' to the end of the bytes [at, at + n): the pieces of one
   element come in order, since the buffer is not consumed meanwhile, and
   adjacent, but for a header value folded over lines (obs-fold: a line
   that starts with SP or HTAB goes on with the value of the line above),
   whose pieces libhttp-parser gives without the CRLF between them: the
   span covers it, and 'unfold' makes it spaces once the head is whole. */
static void span_add(hparser *hp, hspan *sp, const char *at, size_t n) {
  uint32_t off = (uint32_t)(at - hp->base);
  if (sp->len == 0) {
    sp->off = off;
    sp->len = (uint32_t)n;
    return;
  }
  if (off != sp->off + sp->len) /* (only a value's pieces are split) */
    hp->folded = 1;
  sp->len = off + (uint32_t)n - sp->off;
}


static int on_url(http_parser *p, const char *at, size_t n) {
  span_add(hp_of(p), &hp_of(p)->url, at, n);
  return 0;
}


static int on_status(http_parser *p, const char *at, size_t n) {
  span_add(hp_of(p), &hp_of(p)->reason, at, n);
  return 0;
}


static int on_header_field(http_parser *p, const char *at, size_t n) {
  hparser *hp = hp_of(p);
  if (hp->last != 'f') { /* a new line */
    if (hp->nh >= hp->max_headers) {
      hp->status = 431;
      return -1;
    }
    if (hp->nh == hp->caph) {
      uint32_t cap = hp->caph * 2;
      hspan *nh;
      if (cap > hp->max_headers)
        cap = hp->max_headers;
      nh = (hspan *)malloc(2 * cap * sizeof(hspan));
      if (nh == NULL) {
        hp->status = 503;
        return -1;
      }
      memcpy(nh, hp->h, 2 * hp->nh * sizeof(hspan));
      if (hp->hbig)
        free(hp->h);
      hp->h = nh;
      hp->caph = cap;
      hp->hbig = 1;
    }
    memset(&hp->h[2 * hp->nh], 0, 2 * sizeof(hspan));
    hp->nh++;
    hp->last = 'f';
  }
  span_add(hp, &hp->h[2 * (hp->nh - 1)], at, n);
  return 0;
}


static int on_header_value(http_parser *p, const char *at, size_t n) {
  hparser *hp = hp_of(p);
  unsigned char c = n > 0 ? (unsigned char)at[0] : ' ';
  hp->last = 'v';
  /* libhttp-parser checks each byte of a value but the first of a line
     (a NUL or an ESC went through there): a control byte is a 400 */
  if ((c < ' ' && c != '\t') || c == 127) {
    hp->status = 400;
    return -1;
  }
  span_add(hp, &hp->h[2 * (hp->nh - 1) + 1], at, n);
  return 0;
}


/* The end of a head: pause, so the body is read only when asked for. A
   request without a body goes on to its end (on_message_complete), so
   that one run of the parser takes the whole message. */
static int on_headers_complete(http_parser *p) {
  hparser *hp = hp_of(p);
  hp->keepalive = http_should_keep_alive(p);
  hp->phase = PH_BODY;
  if ((p->flags & (F_CHUNKED | F_CONTENTLENGTH)) ==
      (F_CHUNKED | F_CONTENTLENGTH))
    hp->keepalive = 0; /* a response's (see l_http_parser): not reused */
  if (p->upgrade && p->type == HTTP_REQUEST &&
      ((p->flags & F_CHUNKED) || p->uses_transfer_encoding ||
       (p->content_length > 0 && p->content_length != ULLONG_MAX))) {
    /* An upgrade (or CONNECT) whose head announces a body: libhttp-parser
       would stop after the head, leaving the body to be read as the next
       request (smuggled), and skip its checks of the framing (a
       Transfer-Encoding other than chunked: a 400). Upgrade with a body is
       an ordinary request (RFC 9110 7.8 lets a server ignore Upgrade): the
       parser goes on through its checks, then the body. A CONNECT has no
       content (RFC 9110 9.3.6): one announced is refused. */
    p->upgrade = 0;
    if (p->method == HTTP_CONNECT) {
      hp->status = 400;
      return -1;
    }
  }
  if (p->type != HTTP_REQUEST || (p->flags & F_CHUNKED) ||
      (p->content_length > 0 && p->content_length != ULLONG_MAX))
    http_parser_pause(p, 1);
  /* no body after a HEAD, nor in a 1xx, 204 or 304 response, whatever
     its headers say (RFC 9112 6.3): libhttp-parser would read the
     Content-Length of a 204 */
  return hp->skipbody ||
                 (p->type == HTTP_RESPONSE &&
                  (p->status_code / 100 == 1 || p->status_code == 204 ||
                   p->status_code == 304))
             ? 1
             : 0;
}


/* Move the piece down to 'out' (never past it: the parser is ahead). */
static int on_body(http_parser *p, const char *at, size_t n) {
  hparser *hp = hp_of(p);
  if (hp->out == NULL) { /* a body where none is read: never moved */
    hp->status = 400;
    return -1;
  }
  hp->nbody += n;
  if (hp->nbody > hp->max_body) {
    hp->status = 413;
    return -1;
  }
  memmove(hp->out + hp->nout, at, n);
  hp->nout += n;
  return 0;
}


/* The end of a message: pause, so the next one stays buffered. */
static int on_message_complete(http_parser *p) {
  hp_of(p)->phase = PH_DONE;
  http_parser_pause(p, 1);
  return 0;
}


static const http_parser_settings settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};


/* States of 'chunk_scan'. */
enum {
  CS_HEADEND, /* the head's last LF (the parser paused before it) */
  CS_SIZE,    /* the chunk size's hex digits */
  CS_EXT,     /* after them: BWS, chunk extensions */
  CS_SIZE_LF, /* after the size line's CR */
  CS_DATA,    /* 'crem' bytes of data */
  CS_DATA_CR, /* the CRLF after the data */
  CS_DATA_LF,
  CS_TRAILER_START, /* a trailer line, or the final empty one */
  CS_TRAILER,
  CS_TRAILER_LF,
  CS_END_LF,
  CS_DONE
};

/*
** The framing of a chunked body in [data, data + n), checked before
** libhttp-parser takes it: built without its strict mode, it takes any
** byte after a CR for the LF (in a chunk's size line, after the data, in
** the trailers and at the end: "0\r\n\r\r" ended the message), any two
** bytes after a chunk's data for its CRLF, and an LF in a chunk extension
** as part of it. A front end that frames the body as RFC 9112 7.1 says
** then sees other chunks, or the message still going on where a request
** was smuggled after it. Every line of the framing must end in CRLF (or a
** bare LF where the parser ends it there: a trailer line, the last one),
** and a chunk's data in CRLF. Returns the bytes that are good: n, or
** where the message ends (CS_DONE), or the first bad byte ('*bad' set).
** Other errors (a size that is not hex, one that overflows) are the
** parser's.
*/
static size_t chunk_scan(hparser *hp, const char *data, size_t n, int *bad) {
  size_t i = 0;
  int st = hp->cstate;
  *bad = 0;
  while (i < n && st != CS_DONE) {
    unsigned char c = (unsigned char)data[i];
    switch (st) {
    case CS_HEADEND:
      st = CS_SIZE;
      if (c != '\n')
        continue; /* (not there: the size line begins) */
      break;
    case CS_SIZE:
    case CS_EXT: {
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (c == '\r')
        st = CS_SIZE_LF;
      else if (c == '\n')
        goto bad;
      else if (st == CS_SIZE && d >= 0) {
        if (hp->crem >> 56)
          goto bad; /* (the parser refuses it too, a digit or two on) */
        hp->crem = hp->crem * 16 + (uint64_t)d;
      } else
        st = CS_EXT;
      break;
    }
    case CS_SIZE_LF:
      if (c != '\n')
        goto bad;
      st = hp->crem > 0 ? CS_DATA : CS_TRAILER_START;
      break;
    case CS_DATA: {
      size_t k = n - i;
      if ((uint64_t)k > hp->crem)
        k = (size_t)hp->crem;
      hp->crem -= k;
      i += k;
      if (hp->crem == 0)
        st = CS_DATA_CR;
      continue;
    }
    case CS_DATA_CR:
      if (c != '\r')
        goto bad;
      st = CS_DATA_LF;
      break;
    case CS_DATA_LF:
      if (c != '\n')
        goto bad;
      st = CS_SIZE;
      break;
    case CS_TRAILER_START:
    case CS_TRAILER:
      if (c == '\r')
        st = st == CS_TRAILER ? CS_TRAILER_LF : CS_END_LF;
      else if (c == '\n')
        st = st == CS_TRAILER ? CS_TRAILER_START : CS_DONE;
      else
        st = CS_TRAILER;
      break;
    case CS_TRAILER_LF:
    case CS_END_LF:
      if (c != '\n')
        goto bad;
      st = st == CS_TRAILER_LF ? CS_TRAILER_START : CS_DONE;
      break;
    default:
      break;
    }
    i++;
  }
  hp->cstate = st;
  return i;
bad:
  hp->cstate = st;
  *bad = 1;
  return i;
}


/*
** Run the parser over [data, data + n), the buffer starting at 'base';
** returns the bytes it took. A pause is not an error; a parse error
** moves to PH_ERROR with the status to answer.
*/
static int out_reserve(hparser *hp, size_t n);

static size_t run(hparser *hp, const char *base, const char *data, size_t n) {
  size_t took;
  enum http_errno e;
  int bad = 0;
  hp->base = base;
  /* a head's spans go in the output's allocation: made now if the
     parser gave it back (idle) */
  if (hp->phase == PH_HEAD && hp->h == NULL && !out_reserve(hp, 1)) {
    hp->phase = PH_ERROR;
    hp->status = 503;
    return 0;
  }
  if (hp->phase == PH_BODY && (hp->p.flags & F_CHUNKED) && n > 0)
    n = chunk_scan(hp, data, n, &bad);
  /* (0 bytes would tell the parser the stream ended) */
  took = bad && n == 0 ? 0
                       : http_parser_execute(&hp->p, &settings, data, n);
  if (bad && HTTP_PARSER_ERRNO(&hp->p) == HPE_OK && hp->phase == PH_BODY) {
    hp->phase = PH_ERROR;
    hp->status = 400;
    return took;
  }
  e = HTTP_PARSER_ERRNO(&hp->p);
  if (e == HPE_PAUSED) {
    http_parser_pause(&hp->p, 0);
  } else if (e != HPE_OK) {
    hp->phase = PH_ERROR;
    if (hp->status == 0)
      hp->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
  }
  return took;
}


/* Ready for the next message's head (the parser state goes on: it is
   at the start of a message after a complete one). */
static void next_message(hparser *hp) {
  hp->phase = PH_HEAD;
  hp->last = 0;
  hp->fed = 0;
  hp->due = 0;
  hp->upgrade = hp->keepalive = 0;
  hp->bodykind = BK_NONE;
  hp->length = hp->nbody = 0;
  hp->cstate = CS_HEADEND;
  hp->crem = 0;
  hp->max_body = hp->max_body0; /* a req:body(max) was for its message */
  hp->expect = hp->ctl = hp->head_only = hp->http10 = hp->folded = 0;
  hp->began_head = 0;
  hp->answered = 0;
  hp->nout = 0;
  hp->url.off = hp->url.len = hp->reason.off = hp->reason.len = 0;
  hp->nh = 0;
}

/* }====================================================== */


/*
** {======================================================
** The parser userdata
** =======================================================
*/

static void parser_orphan(lgreen_owned *o);
static const lgreen_boxkind parser_box = {offsetof(hparser, own),
                                          parser_orphan};


/* The parser at 'idx', checked by its metatable's address, which the
   socket state 'st' of this Lua state keeps (no lookup by name per call,
   and lua_topointer is cheaper than lua_rawequal with an upvalue). */
static hparser *check_parser_st(lua_State *L, int idx, lsock_state *st) {
  void *u = lua_touserdata(L, idx);
  hparser *hp;
  int ours = 0;
  if (u != NULL && lua_getmetatable(L, idx)) {
    ours = lua_topointer(L, -1) == st->mt_parser;
    lua_pop(L, 1);
  }
  if (!ours)
    u = luaL_checkudata(L, idx, LGREEN_HTTP_PARSER);
  hp = *(hparser **)u;
  if (hp == NULL) /* (only a finalizer could see its own __gc's work) */
    luaL_error(L, "http: the parser was collected");
  return hp;
}

#define check_parser(L, idx) check_parser_st((L), (idx), lgreen_sock_state(L))


/*
** http_parser(kind, max_head, max_headers, max_body, msg_mt, headers_mt,
** [conn], [remote_addr]): a parser of requests (kind "request") or
** responses ("response"); the messages it returns get metatable 'msg_mt',
** their headers tables 'headers_mt', and fields 'conn' and 'remote_addr'
** set to the last two arguments (if not nil).
*/
static int l_http_parser(lua_State *L) {
  static const char *const kinds[] = {"request", "response", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  lua_Integer max_head = luaL_checkinteger(L, 2);
  lua_Integer max_headers = luaL_checkinteger(L, 3);
  lua_Number max_body = luaL_checknumber(L, 4);
  hparser *hp;
  void **box;
  luaL_argcheck(L, max_head > 0 && max_head < (1 << 30), 2,
                "positive size expected");
  luaL_argcheck(L, max_headers > 0 && max_headers < (1 << 20), 3,
                "positive count expected");
  luaL_argcheck(L, max_body >= 0, 4, "non-negative size expected");
  luaL_checktype(L, 5, LUA_TTABLE);
  luaL_checktype(L, 6, LUA_TTABLE);
  lua_settop(L, 8);
  box = lgreen_newbox(L, lgreen_hub(L), 5, &parser_box);
  luaL_setmetatable(L, LGREEN_HTTP_PARSER);
  if ((hp = (hparser *)calloc(1, sizeof(*hp))) == NULL)
    return luaL_error(L, "not enough memory");
  *box = hp;
  lgreen_own(lgreen_hub(L), &hp->own, &parser_box);
  http_parser_init(&hp->p, kind == 0 ? HTTP_REQUEST : HTTP_RESPONSE);
  /* a response with Content-Length and Transfer-Encoding: chunked is read
     by its chunks (RFC 9112 6.3: Transfer-Encoding wins), and its
     connection is not reused (on_headers_complete); a request with both
     stays refused, as another coding with Content-Length is in either */
  hp->p.allow_chunked_length = kind == 1;
  hp->max_head = (uint32_t)max_head;
  hp->max_headers = (uint32_t)max_headers;
  hp->max_body0 = max_body >= 1.8e19 ? UINT64_MAX : (uint64_t)max_body;
  next_message(hp); /* (no buffers until a message's first bytes) */
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 6);
  lua_setiuservalue(L, -2, 2);
  lua_pushvalue(L, 7);
  lua_setiuservalue(L, -2, 3);
  lua_pushvalue(L, 8);
  lua_setiuservalue(L, -2, 4);
  return 1;
}


/* Give back the buffers of 'hp' (it stays usable: they are remade). */
static void parser_release(hparser *hp) {
  if (hp->hbig)
    free(hp->h);
  hp->hbig = 0;
  hp->h = NULL;
  hp->caph = 0;
  hp->nh = 0;
  if (hp->ob != NULL)
    free(OB_BLOCK(hp));
  hp->ob = NULL;
  hp->olen = hp->ocap = 0;
}


/*
** The parser waits for a message's first byte (an idle keep-alive
** connection): give back the buffers a message needs, so that an idle
** connection holds none (as nginx frees a keep-alive connection's
** buffers). Not the output while it holds bytes not sent yet. A request
** retakes it (one malloc and free of 1 KB per request that waited,
** which glibc's per-thread cache serves: ~150 instructions).
*/
static void parser_idle(hparser *hp) {
  if (hp->olen == 0)
    parser_release(hp);
}


/* __close and http_free(parser): its buffers, now (the server's
   connection, the client's at their end; see box.c for why not only at
   the parser's __gc). */
static int parser_free(lua_State *L) {
  hparser *hp = *(hparser **)luaL_checkudata(L, 1, LGREEN_HTTP_PARSER);
  if (hp != NULL)
    parser_release(hp);
  return 0;
}


static int parser_gc(lua_State *L) {
  hparser **box = (hparser **)luaL_checkudata(L, 1, LGREEN_HTTP_PARSER);
  hparser *hp = *box;
  if (hp != NULL) {
    *box = NULL;
    lgreen_disown(&hp->own);
    parser_release(hp);
    free(hp);
  }
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void parser_orphan(lgreen_owned *o) {
  hparser *hp = GL_CONTAINER(o, hparser, own);
  parser_release(hp);
  free(hp);
}

/* }====================================================== */


/*
** {======================================================
** Waiting for bytes (socket.c's protocol, as stream.c's receive)
** =======================================================
*/

/* A waiter leaves (done or given up): if it headed the queue, the next
   one says what it wants (as stream.c's readers do). */
void lgreen_http_leave(gl_wait_t *w) {
  lsock *s = (lsock *)w->data;
  if (s != NULL && s->readers.next == &w->link)
    LSTREAM(s)->mode = 0;
  lgreen_sock_leave(w);
}


/* Wait until more than 'have' bytes are buffered (or an error, the end of
   the stream, or 'due'), then continue with 'k'. Nothing allocates
   between the caller's checks of 'x' and the wait. */
int lgreen_http_wait(lua_State *L, lstream *x, size_t have, uint64_t due,
                     const char *what, lua_KFunction k) {
  if (gl_link_empty(&x->base.readers) ||
      x->base.readers.next == &lgreen_sock_self(L)->link) {
    x->mode = LSTREAM_MODE_COUNT;
    x->count = have + 1;
  }
  return lgreen_sock_wait(L, &x->base, &x->base.readers, what,
                          lgreen_http_leave, due, k, (lua_KContext)due);
}


/* The socket at index 1 (a stream socket) and the parser at index 2. */
static lstream *check_args(lua_State *L, hparser **php) {
  lsock_state *st = lgreen_sock_state(L);
  lsock **pp = lgreen_sock_checkmt(L, 1, st->mt_stream, LGREEN_SOCKET);
  *php = check_parser_st(L, 2, st);
  if (*pp != NULL && ((*pp)->flags & LSOCK_LISTENING))
    luaL_error(L, "cannot read HTTP from a listening socket");
  return *pp == NULL ? NULL : LSTREAM(*pp);
}


static int fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}


static int fail_status(lua_State *L, int status) {
  luaL_pushfail(L);
  lua_pushinteger(L, status);
  return 2;
}

/* }====================================================== */


/*
** {======================================================
** Heads
** =======================================================
*/

/* Push the bytes of 'sp' in head string 'h'. [-0, +1, m] */
static void push_span(lua_State *L, const char *h, hspan sp) {
  lua_pushlstring(L, h + sp.off, sp.len);
}


/* Push the path of request target 'ub' as 'u' split it: an absolute-form
   target without one ("http://a.example?q") has "/". [-0, +1, m] */
static void push_path(lua_State *L, const char *ub,
                      const struct http_parser_url *u) {
  if (u->field_set & (1 << UF_PATH))
    lua_pushlstring(L, ub + u->field_data[UF_PATH].off,
                    u->field_data[UF_PATH].len);
  else
    lua_pushliteral(L, "/");
}


/* Set t[name] = value, or make repeated headers a list. Stack: the
   headers table at -3, name at -2, value at -1. [-2, +0, m] */
static void add_header(lua_State *L) {
  lua_pushvalue(L, -2);
  switch (lua_rawget(L, -4)) {
  case LUA_TNIL:
    lua_pop(L, 1);
    lua_rawset(L, -3);
    break;
  case LUA_TSTRING: /* the second: {first, second} */
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 2);
    lua_rawset(L, -3);
    break;
  default: /* a list already */
    lua_insert(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
    break;
  }
}


/* Strip the optional whitespace around a header value (the parser keeps
   the trailing part). */
static hspan trim(const char *h, hspan sp) {
  while (sp.len > 0 && (h[sp.off] == ' ' || h[sp.off] == '\t')) {
    sp.off++;
    sp.len--;
  }
  while (sp.len > 0 &&
         (h[sp.off + sp.len - 1] == ' ' || h[sp.off + sp.len - 1] == '\t'))
    sp.len--;
  return sp;
}


/* What follows the head: BK_* and the length. */
static void body_kind(hparser *hp) {
  http_parser *p = &hp->p;
  hp->upgrade = p->upgrade;
  if (hp->upgrade || (p->flags & F_SKIPBODY))
    hp->bodykind = BK_NONE;
  else if (p->flags & F_CHUNKED)
    hp->bodykind = BK_CHUNKED;
  else if (p->content_length > 0 && p->content_length != ULLONG_MAX) {
    hp->bodykind = BK_LENGTH;
    hp->length = p->content_length;
  } else if (p->type == HTTP_RESPONSE && p->content_length == ULLONG_MAX &&
             !(p->status_code / 100 == 1 || p->status_code == 204 ||
               p->status_code == 304))
    hp->bodykind = BK_EOF;
  else
    hp->bodykind = BK_NONE;
  hp->http10 = p->http_major == 1 && p->http_minor == 0;
  if (p->type == HTTP_REQUEST) {
    hp->head_only = p->method == HTTP_HEAD;
    if (p->http_major != 1) /* as its version string says: "0.9", "2" */
      hp->ctl = 505;
    else if (hp->bodykind == BK_LENGTH && hp->length > hp->max_body)
      hp->ctl = 413;
    else if (hp->expect == 1 && !hp->http10)
      hp->ctl = 1;
    else if (hp->expect != 0)
      hp->ctl = 417;
  }
}


/* The message tables' keys, interned once (upvalue 4 of the functions:
   a list of them, in this order); set with 'set_key'. */
static const char *const msg_keys[] = {"conn", "remote_addr", "method", "path", "query", "status", "reason", "version", "headers", "req", "upgraded", "stopping", "idle", NULL};
#define K_CONN 1
#define K_REMOTE_ADDR 2
#define K_METHOD 3
#define K_PATH 4
#define K_QUERY 5
#define K_STATUS 6
#define K_REASON 7
#define K_VERSION 8
#define K_HEADERS 9
/* (fields of the server's state tables: see http_run) */
#define K_REQ 10
#define K_UPGRADED 11
#define K_STOPPING 12
#define K_IDLE 13
/* Also in that list: the version strings (K_VERSIONS + 0, 2, 3: "1.0",
   "0.9", "2") and the method names (K_METHODS + the method's number),
   each made at its first use. */
#define K_VERSIONS 15
#define K_METHODS 20

/* More upvalues of the functions: the request tables' keys, the most
   common method and version strings, the raw heads' metatable. */
#define UV_METHOD lua_upvalueindex(5)
#define UV_PATH lua_upvalueindex(6)
#define UV_QUERY lua_upvalueindex(7)
#define UV_VERSION lua_upvalueindex(8)
#define UV_GET lua_upvalueindex(9)
#define UV_V11 lua_upvalueindex(10)
#define UV_RAWMT lua_upvalueindex(11)
#define UV_LINES lua_upvalueindex(12) /* the hub's 'hlines' */
#define NUPVALUES 12


/* t[key] = v: the table at -2, the value at -1 (popped); a raw set with the
   key from the list (no lookup of the name, no metamethod). [-1, +0, m] */
static void set_key(lua_State *L, int key) {
  lua_rawgeti(L, lua_upvalueindex(4), key);
  lua_insert(L, -2);
  lua_rawset(L, -3);
}


/*
** [-0, +1, m] The message table of the head that ends at byte 'n' of the
** buffer (its names lowercased by 'check_names'), which is copied into one
** Lua string before anything else allocates, then consumed.
*/
typedef void (*consume_fn)(void *src, size_t n);

static void consume_stream(void *src, size_t n) {
  lgreen_stream_consume((lstream *)src, n);
}

static void push_request(lua_State *L, hparser *hp, const char *h,
                         size_t n, size_t rest);
static int out_reserve(hparser *hp, size_t n);

static void push_message(lua_State *L, hparser *hp, char *b, size_t n,
                         size_t rest, consume_fn consume, void *src) {
  const char *h;
  uint32_t i;
  int onstack = 0; /* the copy is a Lua string (no room for one in C) */
  /* the copy, in the output's room past its bytes (nothing is laid out
     while the message is made: one buffer per parser, not two); the
     buffer may go from here on */
  if (out_reserve(hp, n)) {
    memcpy(hp->ob + hp->olen, b, n);
    h = hp->ob + hp->olen;
  } else {
    lua_pushlstring(L, b, n);
    h = lua_tostring(L, -1);
    onstack = 1;
  }
  consume(src, n);
  if (hp->p.type == HTTP_REQUEST) {
    push_request(L, hp, h, n, rest);
    if (onstack)
      lua_remove(L, -2); /* the head string */
    return;
  }
  lua_createtable(L, 0, 8);
  lua_getiuservalue(L, 2, 1);
  lua_setmetatable(L, -2);
  if (lua_getiuservalue(L, 2, 3) != LUA_TNIL)
    set_key(L, K_CONN);
  else
    lua_pop(L, 1);
  if (lua_getiuservalue(L, 2, 4) != LUA_TNIL)
    set_key(L, K_REMOTE_ADDR);
  else
    lua_pop(L, 1);
  if (hp->p.type == HTTP_REQUEST) {
    struct http_parser_url u;
    int connect = hp->p.method == HTTP_CONNECT;
    lua_pushstring(L, http_method_str((enum http_method)hp->p.method));
    set_key(L, K_METHOD);
    http_parser_url_init(&u);
    if (hp->url.len > 0 &&
        http_parser_parse_url(h + hp->url.off, hp->url.len, connect, &u) ==
            0 &&
        !connect && (u.field_set & ((1 << UF_PATH) | (1 << UF_HOST)))) {
      const char *ub = h + hp->url.off;
      push_path(L, ub, &u);
      set_key(L, K_PATH);
      if (u.field_set & (1 << UF_QUERY)) {
        lua_pushlstring(L, ub + u.field_data[UF_QUERY].off,
                        u.field_data[UF_QUERY].len);
        set_key(L, K_QUERY);
      }
    } else { /* "*", an authority (CONNECT): the target as sent */
      push_span(L, h, hp->url);
      set_key(L, K_PATH);
    }
  } else {
    lua_pushinteger(L, hp->p.status_code);
    set_key(L, K_STATUS);
    push_span(L, h, hp->reason);
    set_key(L, K_REASON);
  }
  lua_pushstring(L, hp->p.http_minor == 0 && hp->p.http_major == 1 ? "1.0"
                    : hp->p.http_major == 1                         ? "1.1"
                    : hp->p.http_major == 0                         ? "0.9"
                                                                    : "2");
  set_key(L, K_VERSION);
  lua_createtable(L, 0, hp->nh < 4 ? 4 : (int)hp->nh);
  lua_getiuservalue(L, 2, 2);
  lua_setmetatable(L, -2);
  for (i = 0; i < hp->nh; i++) {
    push_span(L, h, hp->h[2 * i]);
    push_span(L, h, trim(h, hp->h[2 * i + 1]));
    add_header(L);
  }
  set_key(L, K_HEADERS);
  if (onstack)
    lua_remove(L, -2); /* the head string */
}


/*
** Requests: the table holds method, path, query (if any) and version, and
** its raw head: the head's bytes and its header spans, a record in an
** arena (a userdata, metatable UV_RAWMT, uservalue: the parser, which
** holds conn and remote_addr), as the field RAW_KEY = arena (a light
** userdata key: found in one lookup, however many keys a handler adds).
** The heads of the requests buffered together (pipelined) share one
** arena: one allocation for all of them, sized from the bytes buffered;
** a record names the table it belongs to, and the records are chained
** from the newest back, so a request finds its own at once while it is
** its batch's newest (as it is while its handler runs). 'headers',
** 'conn' and 'remote_addr' come from there through the metatable's
** __index ('req_index'); 'headers' is made at its first use and then set
** in the table. Most handlers never look at most headers: no table and
** no strings for them per request.
*/
typedef struct rawhead {
  uint32_t n, nh;    /* head bytes; header lines */
  uint32_t prev, u;  /* the previous record's offset + 1 (0: none) */
  const void *owner; /* the request table (lua_topointer) */
  /* then hspan[2 * nh] (name, untrimmed value), then the n bytes */
} rawhead;

/* The requests' key of their arena (its address). */
static const char raw_key = 0;
#define RAW_KEY ((void *)&raw_key)

#define RAW_SPANS(r) ((hspan *)((r) + 1))
#define RAW_BYTES(r) ((const char *)(RAW_SPANS(r) + 2 * (r)->nh))
/* A record's room, a multiple of 8 (the next one stays aligned). */
#define RAW_SIZE(nh, n) \
  ((sizeof(rawhead) + 2 * (uint64_t)(nh) * sizeof(hspan) + (n) + 7) & \
   ~(uint64_t)7)

typedef struct arena {
  uint32_t cap, used; /* bytes of room for records; taken */
  uint32_t last, u;   /* the newest record's offset + 1 (0: none) */
  /* then the records (8-aligned) */
} arena;

#define ARENA_DATA(a) ((char *)((a) + 1))
/* An arena has room for about twice the bytes buffered behind its
   first head (their heads and spans), up to this. */
#define ARENA_MAX (16 * 1024)


/* The parser's arena is let go (it stays alive as long as requests
   refer to it): before waiting for more bytes, so an idle connection
   keeps none. Stack: the parser at 2. [-0, +0, -] */
static void drop_arena(lua_State *L, hparser *hp) {
  if (hp->arena != NULL) {
    hp->arena = NULL;
    lua_pushnil(L);
    lua_setiuservalue(L, 2, 5);
  }
}


/* Push the arena for a record of 'need' bytes, with 'rest' bytes
   buffered behind it; its offset in '*off'. [-0, +1, m] */
static arena *push_arena(lua_State *L, hparser *hp, uint64_t need,
                         size_t rest, uint32_t *off) {
  arena *a = hp->arena;
  if (a == NULL || a->cap - a->used < need) {
    uint64_t cap = need + 2 * (uint64_t)(rest < ARENA_MAX ? rest : ARENA_MAX);
    a = (arena *)lua_newuserdatauv(L, sizeof(arena) + (size_t)cap, 1);
    a->cap = (uint32_t)cap;
    a->used = 0;
    a->last = 0;
    lua_pushvalue(L, UV_RAWMT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2); /* the parser */
    lua_setiuservalue(L, -2, 1);
    if (cap - need >= 64) { /* room for more: the next heads' */
      hp->arena = a;
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, 2, 5);
    } else {
      drop_arena(L, hp);
    }
  } else {
    lua_getiuservalue(L, 2, 5);
  }
  *off = a->used;
  a->used += (uint32_t)need;
  return a;
  /* (the caller chains the record: 'last') */
}


/* Push cached string K_* 'k' of the keys list, made from 's' the first
   time. [-0, +1, m] */
static void push_cached(lua_State *L, int k, const char *s) {
  if (lua_rawgeti(L, lua_upvalueindex(4), k) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushstring(L, s);
    lua_pushvalue(L, -1);
    lua_rawseti(L, lua_upvalueindex(4), k);
  }
}


/* The request table for head 'h' (n bytes, names lowercased), whose
   spans are the parser's. [-0, +1, m] */
static void push_request(lua_State *L, hparser *hp, const char *h,
                         size_t n, size_t rest) {
  struct http_parser_url u;
  int connect = hp->p.method == HTTP_CONNECT, query = 0, v;
  int url_ok;
  rawhead *r;
  arena *a;
  uint32_t off;
  const void *owner;
  http_parser_url_init(&u);
  url_ok = hp->url.len > 0 &&
           http_parser_parse_url(h + hp->url.off, hp->url.len, connect,
                                 &u) == 0 &&
           !connect && (u.field_set & ((1 << UF_PATH) | (1 << UF_HOST)));
  query = url_ok && (u.field_set & (1 << UF_QUERY));
  lua_createtable(L, 0, 4 + query);
  owner = lua_topointer(L, -1);
  lua_getiuservalue(L, 2, 1);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, UV_METHOD);
  if (hp->p.method == HTTP_GET)
    lua_pushvalue(L, UV_GET);
  else
    push_cached(L, K_METHODS + (int)hp->p.method,
                http_method_str((enum http_method)hp->p.method));
  lua_rawset(L, -3);
  lua_pushvalue(L, UV_PATH);
  if (url_ok) {
    const char *ub = h + hp->url.off;
    push_path(L, ub, &u);
    lua_rawset(L, -3);
    if (query) {
      lua_pushvalue(L, UV_QUERY);
      lua_pushlstring(L, ub + u.field_data[UF_QUERY].off,
                      u.field_data[UF_QUERY].len);
      lua_rawset(L, -3);
    }
  } else { /* "*", an authority (CONNECT): the target as sent */
    push_span(L, h, hp->url);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, UV_VERSION);
  v = hp->p.http_major == 1 ? (hp->p.http_minor == 0 ? 0 : 1)
      : hp->p.http_major == 0 ? 2 : 3;
  if (v == 1)
    lua_pushvalue(L, UV_V11);
  else
    push_cached(L, K_VERSIONS + v, v == 0 ? "1.0" : v == 2 ? "0.9" : "2");
  lua_rawset(L, -3);
  a = push_arena(L, hp, RAW_SIZE(hp->nh, n), rest, &off);
  r = (rawhead *)(ARENA_DATA(a) + off);
  r->n = (uint32_t)n;
  r->nh = hp->nh;
  r->prev = a->last;
  r->owner = owner;
  a->last = off + 1;
  memcpy(RAW_SPANS(r), hp->h, 2 * hp->nh * sizeof(hspan));
  memcpy((char *)RAW_BYTES(r), h, n);
  lua_rawsetp(L, -2, RAW_KEY);
}


/*
** The arena of request table 1 (its RAW_KEY field, if that is an arena:
** the metatable at upvalue 3, whatever a handler put there), left at 3.
** [-0, +1, -]
*/
static arena *find_arena(lua_State *L) {
  lua_settop(L, 2);
  if (lua_rawgetp(L, 1, RAW_KEY) == LUA_TUSERDATA &&
      lua_getmetatable(L, 3)) {
    int ours = lua_rawequal(L, -1, lua_upvalueindex(3));
    lua_pop(L, 1);
    if (ours)
      return (arena *)lua_touserdata(L, 3);
  }
  return NULL;
}


/* The raw head of request table 1 in arena 'a': the record that names
   it, from the newest back. */
static rawhead *find_raw(lua_State *L, arena *a) {
  const void *self = lua_topointer(L, 1);
  uint32_t at = a->last;
  while (at != 0) {
    rawhead *r = (rawhead *)(ARENA_DATA(a) + at - 1);
    if (r->owner == self)
      return r;
    at = r->prev;
  }
  return NULL;
}


/*
** __index of the requests' metatable (made by http_request_index, with
** upvalues: the methods table, the headers tables' metatable, the
** arenas' metatable): 'headers' (made now, then set in the request),
** 'conn', 'remote_addr', else the method of that name. Each in one
** lookup of the request's arena.
*/
static int req_index(lua_State *L) {
  size_t kn = 0;
  const char *k = NULL;
  arena *a;
  int which = 0;
  if (lua_type(L, 2) == LUA_TSTRING && lua_istable(L, 1)) {
    k = lua_tolstring(L, 2, &kn);
    if (kn == 7 && memcmp(k, "headers", 7) == 0)
      which = 'h';
    else if (kn == 4 && memcmp(k, "conn", 4) == 0)
      which = 'c';
    else if (kn == 11 && memcmp(k, "remote_addr", 11) == 0)
      which = 'r';
  }
  if (which == 0) { /* a method */
    lua_settop(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  a = find_arena(L);
  if (a == NULL) {
    lua_pushnil(L);
    return 1;
  }
  if (which == 'h') {
    rawhead *r = find_raw(L, a);
    const char *h;
    const hspan *sp;
    uint32_t i;
    if (r == NULL) {
      lua_pushnil(L);
      return 1;
    }
    h = RAW_BYTES(r);
    sp = RAW_SPANS(r);
    lua_createtable(L, 0, r->nh < 4 ? 4 : (int)r->nh);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, -2);
    for (i = 0; i < r->nh; i++) {
      push_span(L, h, sp[2 * i]);
      push_span(L, h, trim(h, sp[2 * i + 1]));
      add_header(L);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
  }
  lua_getiuservalue(L, 3, 1); /* the parser */
  lua_getiuservalue(L, -1, which == 'c' ? 3 : 4);
  return 1;
}


/* http_request_index(methods, headers_mt): the __index function for the
   metatable of the request tables (see req_index). */
static int l_http_request_index(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushvalue(L, UV_RAWMT);
  lua_pushcclosure(L, req_index, 3);
  return 1;
}


/* Push the body kind: 0 none, the length, -1 chunked, -2 until EOF. */
static void push_bodykind(lua_State *L, hparser *hp) {
  switch (hp->bodykind) {
  case BK_LENGTH:
    lua_pushinteger(L, (lua_Integer)hp->length);
    break;
  case BK_CHUNKED:
    lua_pushinteger(L, -1);
    break;
  case BK_EOF:
    lua_pushinteger(L, -2);
    break;
  default:
    lua_pushinteger(L, 0);
    break;
  }
}


/*
** After the message table: its body kind, keep-alive, and for a request
** what the server must do before its handler: false nothing, true send
** "100 Continue" before reading the body (one "Expect: 100-continue" on
** HTTP/1.1), or the status to refuse it with (505 not HTTP/1.x, 413 a
** Content-Length beyond the parser's body limit, 417 another Expect).
** Responses: false. [-0, +3, -]
*/
static int push_results(lua_State *L, hparser *hp) {
  push_bodykind(L, hp);
  lua_pushboolean(L, hp->keepalive);
  if (hp->ctl > 1)
    lua_pushinteger(L, hp->ctl);
  else
    lua_pushboolean(L, hp->ctl);
  return 4;
}


/* The head is beyond 'max_head': 414 if its request line is (or it is
   still in its request line), else 431. */
static int too_large(hparser *hp) {
  hp->phase = PH_ERROR;
  hp->status = hp->p.type == HTTP_REQUEST &&
                       (hp->nh == 0 ||
                        hp->url.off + hp->url.len > hp->max_head)
                   ? 414
                   : 431;
  return -1;
}


static int ieq(const char *a, size_t n, const char *lit);


/* Header names must be tokens: libhttp-parser (built without its strict
   mode) lets a space into a name, and "Transfer-Encoding : chunked" is a
   classic of request smuggling. Lowercases them in place (the bytes are
   the head's, about to be taken), and notes a request's Expect ('expect':
   1 for one "100-continue", 2 for anything else). Returns 1, or -1
   (400). */
/* Case-insensitive equality of 'n' bytes at 'a' and 'b' (ASCII). */
static int ieqn(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x + ('a' - 'A'));
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y + ('a' - 'A'));
    if (x != y)
      return 0;
  }
  return 1;
}


/*
** An absolute-form target ("GET http://a.example/x HTTP/1.1"): the
** server must take its authority for the host, not Host (RFC 9112
** 3.2.2), but the handler reads Host (and the path alone): a front end
** that routed by the target and a handler that reads Host would disagree
** on which site was asked for. So Host must be there (HTTP/1.1) and be
** the authority, as a client must send it, byte for byte but the case;
** an authority with userinfo is refused too. And any HTTP/1.1 request
** (CONNECT and OPTIONS * too) without Host is a 400 (RFC 9112 3.2: a
** server MUST); HTTP/1.0 may go without (the handler sees none). 'host'
** is Host's value (trimmed), 'hosts' how many there were. 1 if the
** request may go on.
*/
static int target_host_ok(hparser *hp, const char *b, hspan host,
                          int hosts) {
  const char *u = b + hp->url.off, *a, *e;
  size_t n = hp->url.len, alen;
  if (hosts == 0 && hp->p.http_major == 1 && hp->p.http_minor >= 1)
    return 0;
  if (hp->p.method == HTTP_CONNECT || n == 0 || u[0] == '/' ||
      (n == 1 && u[0] == '*'))
    return 1; /* origin-form, asterisk-form, authority-form */
  a = (const char *)memchr(u, ':', n);
  if (a == NULL || (size_t)(u + n - a) < 3 || a[1] != '/' || a[2] != '/')
    return 0;
  a += 3;
  for (e = a; e < u + n && *e != '/' && *e != '?' && *e != '#'; e++)
    if (*e == '@')
      return 0;
  alen = (size_t)(e - a);
  if (hosts == 0) /* HTTP/1.0 (1.1 without Host is refused above) */
    return 1;
  return alen > 0 && host.len == alen && ieqn(b + host.off, a, alen);
}


/* How many of the comma-separated codings of 'v' are "chunked". */
static int count_chunked(const char *b, hspan v) {
  uint32_t i = 0, n = 0;
  while (i <= v.len) {
    uint32_t j = i;
    hspan t;
    while (j < v.len && b[v.off + j] != ',')
      j++;
    t.off = v.off + i;
    t.len = j - i;
    t = trim(b, t);
    if (ieq(b + t.off, t.len, "chunked"))
      n++;
    i = j + 1;
  }
  return (int)n;
}


static int check_names(hparser *hp, char *b) {
  uint32_t i, j;
  int hosts = 0, chunked = 0;
  hspan host = {0, 0};
  for (i = 0; i < hp->nh; i++) {
    hspan f = hp->h[2 * i];
    for (j = 0; j < f.len; j++) {
      unsigned char c = (unsigned char)b[f.off + j];
      if (!is_tchar(c)) {
        hp->phase = PH_ERROR;
        hp->status = 400;
        return -1;
      }
      if (c >= 'A' && c <= 'Z')
        b[f.off + j] = (char)(c + ('a' - 'A'));
    }
    /* two Hosts: which one names the target? A front end may route by
       one, the handler read the other (RFC 9112 3.2: a 400) */
    if (f.len == 4 && memcmp(b + f.off, "host", 4) == 0 &&
        hp->p.type == HTTP_REQUEST && ++hosts > 1) {
      hp->phase = PH_ERROR;
      hp->status = 400;
      return -1;
    }
    if (f.len == 4 && hosts == 1 && memcmp(b + f.off, "host", 4) == 0)
      host = trim(b, hp->h[2 * i + 1]);
    /* chunked twice, over two Transfer-Encoding lines (the parser refuses
       it in one): one framing for a front end that decodes it twice or
       takes the first line, another here (RFC 9112 6.1: never applied
       more than once) */
    if (f.len == 17 && memcmp(b + f.off, "transfer-encoding", 17) == 0 &&
        (chunked += count_chunked(b, hp->h[2 * i + 1])) > 1) {
      hp->phase = PH_ERROR;
      hp->status = 400;
      return -1;
    }
    if (f.len == 6 && memcmp(b + f.off, "expect", 6) == 0 &&
        hp->p.type == HTTP_REQUEST) {
      hspan v = trim(b, hp->h[2 * i + 1]);
      hp->expect = hp->expect == 0 && ieq(b + v.off, v.len, "100-continue")
                       ? 1
                       : 2;
    }
  }
  if (hp->p.type == HTTP_REQUEST && !target_host_ok(hp, b, host, hosts)) {
    hp->phase = PH_ERROR;
    hp->status = 400;
    return -1;
  }
  return 1;
}


/* A folded header value (see 'span_add'): each fold (its CRLF and the
   SP or HTAB that begin the next line) becomes spaces (RFC 9112 5.2: a
   user agent must replace each obs-fold by SP before it interprets the
   value; a server may). */
static void unfold(hparser *hp, char *b) {
  uint32_t i, j;
  for (i = 0; i < hp->nh; i++) {
    hspan v = hp->h[2 * i + 1];
    int fold = 0;
    for (j = 0; j < v.len; j++) {
      char *c = b + v.off + j;
      if (*c == '\r' || *c == '\n')
        fold = 1;
      else if (*c != ' ' && *c != '\t')
        fold = 0;
      if (fold)
        *c = ' ';
    }
  }
}


/* Bytes a response head may hold beyond its line ends (see
   'check_response'): 1 for HTAB, SP, VCHAR and obs-text; made once. */
static unsigned char headchars[256];

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}


/*
** A response head, [b, b + n] (n: its last LF, where the parser paused;
** 'len' bytes buffered), as strict as libhttp-parser's strict mode and
** more: built without it, the parser takes "HTTX/1.1" for "HTTP/1.1" and
** the byte after a CR for the LF, so a bare CR could end a line here
** that a proxy before the client does not end (a response split
** differently), and it lets NUL and other controls into the reason and
** values. The status line must be "HTTP/1.<digit> <3 digits>", then SP
** and the reason, or the line's end; no empty line before it; no control
** byte but HTAB in the head, and each CR followed by LF. Responses only:
** the server's requests do not pay for the scan. Returns 1, or -1 (400).
*/
static int check_response(hparser *hp, const char *b, size_t n,
                          size_t len) {
  const unsigned char *s = (const unsigned char *)b;
  size_t i;
  if (n >= len || n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) ||
      s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) ||
      !is_digit(s[11]) || (s[12] != ' ' && s[12] != '\r' && s[12] != '\n'))
    goto bad;
  for (i = 0; i <= n; i++) {
    unsigned char c = s[i];
    if (headchars[c] || c == '\n' || (c == '\r' && i < n && s[i + 1] == '\n'))
      continue;
    goto bad;
  }
  if (s[n] == '\n')
    return 1;
bad:
  hp->phase = PH_ERROR;
  hp->status = 400;
  return -1;
}


/*
** The bytes of a complete request head that libhttp-parser, built
** without its strict mode, takes without a look: the version's "HTTP/"
** ("GET / HXXP/1.1" was HTTP/1.1) and the head's last byte, taken for
** its LF whatever it is (a bare CR ended the head there, and the byte
** after it was eaten). And obs-fold, a line that begins with SP or HTAB
** to go on with the value above: refused, as nginx refuses it (RFC 9112
** 5.2 lets a server refuse or unfold; a front end that did neither saw
** other fields, "Transfer-Encoding: gzip," for one, and a fold of only
** blanks reached no callback). A few bytes per request, a memchr per
** line. Returns 1, or -1 (400).
*/
static int check_request(hparser *hp, const char *b, size_t len) {
  /* the last byte: where the parser paused (at the end of a head with a
     body to come), or the one before (at the end of the message) */
  size_t last = hp->phase == PH_DONE ? hp->fed - 1 : hp->fed;
  size_t v = (size_t)hp->url.off + hp->url.len; /* after the target */
  size_t i;
  /* one SP before the target, and in it no HTAB, VT nor FF (the parser
     takes them there): a front end may split the line at them (RFC
     9112 3 lets it), and see another target */
  if (hp->url.off < 2 || b[hp->url.off - 1] != ' ' ||
      b[hp->url.off - 2] == ' ')
    goto bad;
  for (i = hp->url.off; i < v; i++)
    if ((unsigned char)b[i] <= ' ' || b[i] == 127)
      goto bad;
  if (last < len && b[last] == '\n' &&
      (v >= len || b[v] != ' ' || /* (none: HTTP/0.9, a 505) */
       (len - v > 5 && memcmp(b + v + 1, "HTTP/", 5) == 0))) {
    const char *e = b + last, *l = v < last ? memchr(b + v, '\n', last - v)
                                             : NULL;
    while (l != NULL && l < e) {
      if (l[1] == ' ' || l[1] == '\t')
        goto bad;
      l = memchr(l + 1, '\n', (size_t)(e - l) - 1);
    }
    return 1;
  }
bad:
  hp->phase = PH_ERROR;
  hp->status = 400;
  return -1;
}


/* Does the request head [b, b + len) begin with "HEAD " (after the empty
   lines libhttp-parser skips before a request)? */
static int began_head(const char *b, size_t len) {
  size_t i = 0;
  while (i < len && (b[i] == '\r' || b[i] == '\n'))
    i++;
  return len - i >= 5 && memcmp(b + i, "HEAD ", 5) == 0;
}


/*
** Feed what was not fed yet. Returns 1 when the head is complete (its
** length in '*n'), 0 when it needs more bytes, -1 on an error
** ('hp->status' says which). A request head that is not complete notes
** whether it is a HEAD's (libhttp-parser's method is a guess until the
** SP after it), for the server's own answer to it.
*/
static int feed_head(hparser *hp, char *b, size_t len, size_t *n) {
  int r = 0;
  if (hp->fed < len) {
    hp->fed += run(hp, b, b + hp->fed, len - hp->fed);
    if (hp->phase == PH_ERROR)
      r = -1;
    else if (hp->phase != PH_HEAD) { /* paused at the end of a head */
      if (hp->fed > hp->max_head)
        r = too_large(hp);
      else if ((hp->p.type == HTTP_RESPONSE
                    ? check_response(hp, b, hp->fed, len)
                    : check_request(hp, b, len)) < 0)
        r = -1;
      else {
        *n = hp->fed;
        if (hp->folded)
          unfold(hp, b);
        if ((r = check_names(hp, b)) > 0)
          return r;
      }
    }
  }
  if (r == 0 && hp->fed > hp->max_head)
    r = too_large(hp);
  if (hp->p.type == HTTP_REQUEST && hp->p.method == HTTP_HEAD)
    hp->began_head = began_head(b, len);
  return r;
}


static int head_k(lua_State *L, int status, lua_KContext ctx);


/* A complete head of 'n' bytes in the buffer of 'x': push its message
   table and results (see push_results), or fail with its status. Stack:
   the parser at 2. */
static int take_head(lua_State *L, lstream *x, hparser *hp, size_t n) {
  body_kind(hp);
  push_message(L, hp, x->buf + x->off, n, x->len - n, consume_stream, x);
  if (hp->bodykind == BK_NONE && hp->phase == PH_BODY) {
    /* paused before the head's last LF: that completes it */
    const char *b = x->buf + x->off;
    lgreen_stream_consume(x, run(hp, b, b, x->len));
  }
  if (hp->phase == PH_ERROR)
    return fail_status(L, hp->status);
  lgreen_stream_watched(&x->base);
  return push_results(L, hp);
}


/*
** Stack: [sock, parser, _, idle_timeout, head_timeout, ...]. One step of
** http_head: complete the head from the buffer, or fail, or (with 'k',
** which continues the wait) wait for more bytes; 'queued' says the
** caller already waits at the head of the socket's readers.
*/
static int head_step(lua_State *L, lstream *x, hparser *hp, int queued,
                     lua_KFunction k) {
  size_t n = 0;
  int r;
  if (x->base.flags & LSOCK_CLOSED)
    return fail(L, "closed");
  r = feed_head(hp, x->buf + x->off, x->len, &n);
  if (r != 0 || x->rerr != 0 || k == NULL) {
    if (queued)
      lgreen_http_leave(lgreen_sock_self(L)); /* before pushing (may raise) */
    if (r < 0)
      return fail_status(L, hp->status);
    if (r > 0)
      return take_head(L, x, hp, n);
    if (x->rerr != 0) { /* "closed" (and true if a head had begun) */
      luaL_pushfail(L);
      lua_pushstring(L, lgreen_sock_strerror(x->rerr));
      lua_pushboolean(L, x->len > 0);
      return 3;
    }
    drop_arena(L, hp);
    lua_pushboolean(L, 0); /* would wait */
    return 1;
  }
  if (x->len + 1 > x->limit) { /* the socket's own receive limit */
    if (queued)
      lgreen_http_leave(lgreen_sock_self(L));
    hp->phase = PH_ERROR;
    hp->status = 431;
    return fail_status(L, 431);
  }
  drop_arena(L, hp);
  if (x->len == 0)
    parser_idle(hp);
  if (x->len > 0 && hp->due <= 1) /* the head began: its own deadline */
    hp->due = lua_isnil(L, 5) ? 1
                              : lgreen_sock_deadline(lua_tonumber(L, 5));
  return lgreen_http_wait(L, x, x->len,
                   x->len > 0 ? (hp->due > 1 ? hp->due : 0)
                   : lua_isnil(L, 4)
                       ? 0
                       : lgreen_sock_deadline(lua_tonumber(L, 4)),
                   "http: reading a head", k);
}


/* A wait of head_step ended: its outcome, or the next step ('k' continues
   a wait again). */
static int head_resumed(lua_State *L, lua_KFunction k) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_http_leave, &s);
  hparser *hp = *(hparser **)lua_touserdata(L, 2);
  if (outcome == LSOCK_W_CLOSED)
    return fail(L, "closed");
  if (outcome == GL_W_TIMEOUT) {
    lgreen_http_leave(lgreen_sock_self(L));
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    lua_pushboolean(L, LSTREAM(s)->len > 0);
    return 3;
  }
  return head_step(L, LSTREAM(s), hp, 1, k);
}


static int head_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return head_resumed(L, head_k);
}


/* Before reading a head: the parser's state allows it (else its failure
   pushed: the number of results), the next message begun if the last one
   is done. */
static int head_begin(lua_State *L, hparser *hp, int skipbody) {
  if (hp->phase == PH_ERROR)
    return fail_status(L, hp->status);
  if (hp->phase == PH_BODY)
    return luaL_error(L, "http: the previous message's body is unread");
  if (hp->phase == PH_DONE)
    next_message(hp);
  hp->skipbody = skipbody;
  return 0;
}


/* http_head once its arguments are checked (the stack as head_step's):
   the message's state, then the step; 'again' runs it again after the
   fairness yield, 'k' continues a wait (NULL: no wait). */
static int head_go(lua_State *L, lstream *x, hparser *hp, int skipbody,
                   lua_CFunction again, lua_KFunction k) {
  int n;
  if (x == NULL)
    return fail(L, "closed");
  if ((n = head_begin(L, hp, skipbody)) != 0)
    return n;
  if (k != NULL) {
    lgreen_sock_first(L, &x->base, &x->base.readers, "read");
    if (lgreen_sock_unfair(L, &x->base))
      return lgreen_sock_yield(L, again);
    x->base.streak++;
  }
  return head_step(L, x, hp, 0, k);
}


/***
** http_head(sock, parser, wait, [idle_timeout], [head_timeout],
** [skipbody]): the next message's head from 'sock'. Returns the message
** table, its body kind (0 none, the length, -1 chunked, -2 until the end
** of the stream), keep-alive and the request's control (see
** 'push_results'); or false if 'wait' is
** false and the head is not all buffered; or nil, err, [partial] where
** err is "closed", "timeout" (partial: some of a head had come) or
** another socket error, or nil, status (400, 414, 431, ...) for a bad
** head (the connection is unusable then). 'idle_timeout' bounds the
** wait for the first byte, 'head_timeout' the whole head from its first
** byte; nil is none. 'skipbody': the response to a HEAD request.
*/
static int l_http_head(lua_State *L) {
  hparser *hp;
  lstream *x = check_args(L, &hp);
  if (!lua_isnoneornil(L, 4))
    lgreen_notnan(L, luaL_checknumber(L, 4), "timeout");
  if (!lua_isnoneornil(L, 5))
    lgreen_notnan(L, luaL_checknumber(L, 5), "timeout");
  lua_settop(L, 6);
  return head_go(L, x, hp, lua_toboolean(L, 6), l_http_head,
                 lua_toboolean(L, 3) ? head_k : NULL);
}


/*
** http_next's stack: its arguments, as http_head's but for conn at 3 and
** srv at 6 (head_step reads only the timeouts). While it waits conn.idle
** is true (a stop closes an idle connection's socket); false again with
** the head's results, as the server's loop did around http_head.
*/
#define N_CONN 3
#define N_SRV 6

static void set_idle(lua_State *L, int idle) {
  lua_rawgeti(L, lua_upvalueindex(4), K_IDLE);
  lua_pushboolean(L, idle);
  lua_rawset(L, N_CONN);
}


static int next_k(lua_State *L, int status, lua_KContext ctx) {
  int n;
  (void)status;
  (void)ctx;
  n = head_resumed(L, next_k);
  set_idle(L, 0);
  return n;
}


/* After the fairness yield: the wait's start, again. */
static int next_again(lua_State *L) {
  lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, 1));
  int n = head_go(L, s == NULL ? NULL : LSTREAM(s),
                  *(hparser **)lua_touserdata(L, 2), 0, next_again, next_k);
  set_idle(L, 0);
  return n;
}


static int flush_out(lua_State *L, lstream *x, hparser *hp);
static int raw_field(lua_State *L, int idx, int k);

/*
** http_next(sock, parser, conn, [idle_timeout], [head_timeout], srv):
** the server's step between requests on a plain socket, in one call
** (lua/green/http/server.lua): http_head(sock, parser, false); if that
** would wait, http_flush(sock, parser); if all of the output went and
** srv.stopping is not true, conn.idle = true, http_head(sock, parser,
** true, idle_timeout, head_timeout), conn.idle = false. Returns
** http_head's results; or false followed by http_flush's (true, the rest
** for sendall, or nil, err) when it did not wait: the output did not all
** go at once, or srv.stopping.
*/
static int l_http_next(lua_State *L) {
  hparser *hp;
  lstream *x = check_args(L, &hp);
  int n;
  luaL_checktype(L, N_CONN, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4))
    lgreen_notnan(L, luaL_checknumber(L, 4), "timeout");
  if (!lua_isnoneornil(L, 5))
    lgreen_notnan(L, luaL_checknumber(L, 5), "timeout");
  luaL_checktype(L, N_SRV, LUA_TTABLE);
  lua_settop(L, N_SRV);
  n = head_go(L, x, hp, 0, NULL, NULL); /* (no wait) */
  if (n != 1 || lua_type(L, -1) != LUA_TBOOLEAN)
    return n; /* a head, or its failure */
  lua_pop(L, 1);
  n = flush_out(L, x, hp);
  if (lua_type(L, -n) != LUA_TBOOLEAN /* (not all of it went) */ ||
      raw_field(L, N_SRV, K_STOPPING)) {
    lua_settop(L, N_SRV + n);
    lua_pushboolean(L, 0);
    lua_insert(L, -n - 1);
    return n + 1;
  }
  set_idle(L, 1);
  n = head_go(L, x, hp, 0, next_again, next_k);
  set_idle(L, 0);
  return n;
}

/* }====================================================== */


/*
** {======================================================
** Bodies
** =======================================================
*/

static int body_k(lua_State *L, int status, lua_KContext ctx);


/* Stack: [sock, parser, timeout]. One step of http_body. */
static int body_step(lua_State *L, lstream *x, hparser *hp, int queued,
                     uint64_t due) {
  int r = 0; /* results pushed, 0 to wait */
  if (x->base.flags & LSOCK_CLOSED) {
    r = fail(L, "closed");
  } else if (hp->phase == PH_DONE) {
    lua_pushboolean(L, 0);
    r = 1;
  } else if (x->len > 0) {
    char *b = x->buf + x->off;
    size_t took;
    hp->out = b;
    hp->nout = 0;
    took = run(hp, b, b, x->len);
    hp->out = NULL;
    if (hp->phase == PH_ERROR) {
      r = fail_status(L, hp->status);
    } else if (hp->nout > 0) {
      if (queued)
        lgreen_http_leave(lgreen_sock_self(L));
      queued = 0;
      lua_pushlstring(L, b, hp->nout); /* before the buffer may go */
      lgreen_stream_consume(x, took);
      r = 1;
    } else {
      lgreen_stream_consume(x, took); /* framing only */
      if (hp->phase == PH_DONE) {
        lua_pushboolean(L, 0);
        r = 1;
      }
    }
  }
  if (r == 0 && x->rerr != 0) {
    if (x->rerr == UV_EOF && hp->bodykind == BK_EOF) {
      run(hp, NULL, NULL, 0); /* the end of the stream ends the body */
      lua_pushboolean(L, 0);
      r = 1;
    } else {
      r = fail(L, lgreen_sock_strerror(x->rerr));
    }
  }
  if (r > 0) {
    if (queued)
      lgreen_http_leave(lgreen_sock_self(L));
    lgreen_stream_watched(&x->base);
    return r;
  }
  return lgreen_http_wait(L, x, x->len, due, "http: reading a body", body_k);
}


static int body_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_http_leave, &s);
  (void)status;
  if (outcome == LSOCK_W_CLOSED)
    return fail(L, "closed");
  if (outcome == GL_W_TIMEOUT) {
    lgreen_http_leave(lgreen_sock_self(L));
    return fail(L, "timeout");
  }
  return body_step(L, LSTREAM(s), *(hparser **)lua_touserdata(L, 2), 1,
                   (uint64_t)ctx);
}


/***
** http_body(sock, parser, [timeout]): the next piece of the current
** message's body (chunk framing removed), false at its end, or nil, err
** ("closed", "timeout", ...) or nil, status (400 malformed, 413 beyond
** the parser's body limit).
*/
static int l_http_body(lua_State *L) {
  hparser *hp;
  lstream *x = check_args(L, &hp);
  double timeout = -1;
  if (!lua_isnoneornil(L, 3))
    timeout = lgreen_notnan(L, luaL_checknumber(L, 3), "timeout");
  lua_settop(L, 3);
  if (x == NULL)
    return fail(L, "closed");
  if (hp->phase == PH_ERROR)
    return fail_status(L, hp->status);
  if (hp->phase == PH_HEAD)
    return luaL_error(L, "http: no message head was read");
  lgreen_sock_first(L, &x->base, &x->base.readers, "read");
  if (lgreen_sock_unfair(L, &x->base))
    return lgreen_sock_yield(L, l_http_body);
  x->base.streak++;
  return body_step(L, x, hp, 0, lgreen_sock_deadline(timeout));
}


/*
** {======================================================
** Over TLS: the same parser on a TLS connection's plaintext buffer
** (bindings/tls.c), with no wait: lua/green/http/common.lua fills the
** buffer through the TLS socket (whose waits are its green socket's)
** and runs these again.
** =======================================================
*/

/***
** http_head_tls(conn, parser, [skipbody]): as http_head with 'wait'
** false, from TLS connection 'conn''s plaintext: the message table, body
** kind, keep-alive, control; or false, begun if the head is not all
** buffered (and the stream goes on; begun: some of it is); or nil,
** "closed", partial; or nil, status.
*/
static int l_http_head_tls(lua_State *L) {
  void *t = lgreen_tls_checkconn(L, 1);
  hparser *hp = check_parser(L, 2);
  size_t len, n = 0;
  int eof, r;
  char *b;
  lua_settop(L, 3);
  if ((r = head_begin(L, hp, lua_toboolean(L, 3))) != 0)
    return r;
  b = lgreen_tls_plain(t, &len, &eof);
  r = feed_head(hp, b, len, &n);
  if (r < 0)
    return fail_status(L, hp->status);
  if (r > 0) {
    body_kind(hp);
    push_message(L, hp, b, n, len - n, lgreen_tls_consume, t);
    if (hp->bodykind == BK_NONE && hp->phase == PH_BODY) {
      b = lgreen_tls_plain(t, &len, &eof);
      lgreen_tls_consume(t, run(hp, b, b, len));
    }
    if (hp->phase == PH_ERROR)
      return fail_status(L, hp->status);
    return push_results(L, hp);
  }
  if (eof) {
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    lua_pushboolean(L, len > 0);
    return 3;
  }
  drop_arena(L, hp);
  if (len == 0) /* the caller waits for a first byte: as http_head */
    parser_idle(hp);
  lua_pushboolean(L, 0);
  lua_pushboolean(L, len > 0); /* a head has begun */
  return 2;
}


/***
** http_body_tls(conn, parser): as http_body from TLS connection 'conn''s
** plaintext, with no wait: the next piece, false at the body's end, true
** if more must be buffered first, or nil, err / nil, status.
*/
static int l_http_body_tls(lua_State *L) {
  void *t = lgreen_tls_checkconn(L, 1);
  hparser *hp = check_parser(L, 2);
  size_t len;
  int eof;
  char *b;
  if (hp->phase == PH_ERROR)
    return fail_status(L, hp->status);
  if (hp->phase == PH_HEAD)
    return luaL_error(L, "http: no message head was read");
  if (hp->phase == PH_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  b = lgreen_tls_plain(t, &len, &eof);
  if (len > 0) {
    size_t took;
    hp->out = b;
    hp->nout = 0;
    took = run(hp, b, b, len);
    hp->out = NULL;
    if (hp->phase == PH_ERROR)
      return fail_status(L, hp->status);
    if (hp->nout > 0) {
      lua_pushlstring(L, b, hp->nout);
      lgreen_tls_consume(t, took);
      return 1;
    }
    lgreen_tls_consume(t, took); /* framing only */
    if (hp->phase == PH_DONE) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  if (eof) {
    /* the end of the stream ends the body, if it was TLS's clean end:
       without close_notify it could be a truncation */
    if (hp->bodykind == BK_EOF && eof == 1) {
      run(hp, NULL, NULL, 0);
      lua_pushboolean(L, 0);
      return 1;
    }
    return fail(L, "closed");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* }====================================================== */


/* http_state(parser): "head", "body", "done" or "error", the bytes of
   body read so far, the status of the response http_response laid out
   for the current request (false if none), whether a request head that
   is not complete (being read, refused, or timed out) is a HEAD's (the
   server's own answer to it has no body), and the bytes of the buffers
   the parser holds (its head copy, output, grown header array). */
static int l_http_state(lua_State *L) {
  static const char *const names[] = {"head", "body", "done", "error"};
  hparser *hp = check_parser(L, 1);
  lua_pushstring(L, names[hp->phase]);
  lua_pushinteger(L, (lua_Integer)hp->nbody);
  if (hp->answered)
    lua_pushinteger(L, hp->answered);
  else
    lua_pushboolean(L, 0);
  lua_pushboolean(L, hp->began_head);
  lua_pushinteger(L, (lua_Integer)((hp->ob != NULL ? SPAN_ROOM + hp->ocap
                                                   : 0) +
                                   (hp->hbig ? 2 * hp->caph * sizeof(hspan)
                                             : 0)));
  return 5;
}


/* http_setmaxbody(parser, n): the body limit of the current message
   (a handler's req:body(max) may lower or raise it). */
static int l_http_setmaxbody(lua_State *L) {
  hparser *hp = check_parser(L, 1);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 0, 2, "non-negative size expected");
  hp->max_body = n >= 1.8e19 ? UINT64_MAX : (uint64_t)n;
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Response heads (the server's writer; the Lua layer sends them)
** =======================================================
*/

/* Token characters (RFC 9110), for header names: a table, made once. */
static unsigned char tchars[256];

static void init_tchars(void) {
  const char *extra = "!#$%&'*+-.^_`|~";
  int c;
  for (c = 0; c < 256; c++)
    tchars[c] = (unsigned char)((c >= 'a' && c <= 'z') ||
                                (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9'));
  for (; *extra; extra++)
    tchars[(unsigned char)*extra] = 1;
}

static int is_tchar(unsigned char c) {
  return tchars[c];
}

static void init_headchars(void) {
  int c;
  for (c = 0; c < 256; c++)
    headchars[c] = (unsigned char)(c == '\t' || (c >= ' ' && c != 127));
}


/* Does v[0, n) hold a CR, LF or NUL (which could split a response)? */
static int has_ctl(const char *v, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c <= '\r' && (c == '\r' || c == '\n' || c == 0))
      return 1;
  }
  return 0;
}


static int ieq(const char *a, size_t n, const char *lit) {
  return strlen(lit) == n && ieqn(a, lit, n);
}


/* Is "close" one of the comma-separated tokens of 'v'? */
static int has_close(const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i, a, b;
    while (j < n && v[j] != ',')
      j++;
    a = i;
    b = j;
    while (a < b && (v[a] == ' ' || v[a] == '\t'))
      a++;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
      b--;
    if (ieq(v + a, b - a, "close"))
      return 1;
    i = j + 1;
  }
  return 0;
}


/* Where 'build' writes: nowhere (p NULL: it counts), or p[0, cap). */
typedef struct rout {
  char *p;
  size_t cap;
  int check; /* check the values (the first pass over them) */
} rout;


/* Copy 'n' bytes to p[at] (or only count them); returns the new end.
   Never past 'cap': a second pass that finds more to write than the
   first counted (a finalizer changed the headers between) is caught by
   the caller. */
static size_t put(rout *o, size_t at, const char *v, size_t n) {
  if (o->p != NULL && at + n <= o->cap)
    memcpy(o->p + at, v, n);
  return at + n;
}


/* What 'build' found out. */
typedef struct rinfo {
  int keep;
  int mode;           /* 0 all in the string, 1 chunked, 2 length, 3 eof */
  lua_Integer clen;   /* the handler's Content-Length, or -1 */
} rinfo;


/* "name: value\r\n" for the value at the top (popped), at p[at]. The
   first pass checks it: a value holding CR, LF or NUL could split the
   response. */
static size_t put_line(lua_State *L, rout *p, size_t at, const char *k,
                       size_t kn, int special, rinfo *ri) {
  size_t vn;
  const char *v;
  if (!lua_isstring(L, -1))
    luaL_error(L, "green.http: header %s: string or number expected, "
               "got %s", k, luaL_typename(L, -1));
  v = lua_tolstring(L, -1, &vn);
  if (p->check && has_ctl(v, vn))
    luaL_error(L, "green.http: header %s: value holds CR, LF or NUL", k);
  if (special == 'c' && has_close(v, vn))
    ri->keep = 0;
  at = put(p, at, k, kn);
  at = put(p, at, ": ", 2);
  at = put(p, at, v, vn);
  at = put(p, at, "\r\n", 2);
  lua_pop(L, 1);
  return at;
}


#define PUTS(lit) (at = put(p, at, (lit), sizeof(lit) - 1))


/* Decimal digits of 'v' at the end of buf[0, 24); returns their start
   (snprintf costs more than the rest of a small response's head). */
static char *digits(char *end, unsigned long long v) {
  do {
    *--end = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return end;
}


/* "Content-Length: <v>\r\n" at p[at]. */
static size_t put_length(rout *p, size_t at, unsigned long long v) {
  char num[24], *d = digits(num + sizeof(num), v);
  PUTS("Content-Length: ");
  at = put(p, at, d, (size_t)(num + sizeof(num) - d));
  return PUTS("\r\n");
}

/* The handler's results, from the index of the status (http_response's
   arguments 2-4); then http_response's keep and sock. */
#define A_STATUS 0
#define A_HEADERS 1
#define A_BODY 2
#define A_KEEP 5
#define A_SOCK 6

/* A string body longer than this is not copied into the output: the Lua
   layer sends it after the head (mode "body"). */
#define BIG_BODY (16 * 1024)

/* Output beyond this is freed once sent, rather than kept for reuse. */
#define KEEP_OUTPUT (64 * 1024)


/* The Date line, remade when the wall clock's second changes (a coarse
   clock read per response; gmtime and the formatting once a second). */
static void update_date(hlines *hp) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                     "May", "Jun", "Jul", "Aug",
                                     "Sep", "Oct", "Nov", "Dec"};
  struct timespec ts;
  struct tm tm;
  char *d = hp->date;
#ifdef CLOCK_REALTIME_COARSE
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
#else
  clock_gettime(CLOCK_REALTIME, &ts);
#endif
  if (hp->datelen > 0 && ts.tv_sec == hp->datesec)
    return;
  hp->datesec = ts.tv_sec;
  gmtime_r(&ts.tv_sec, &tm);
  memcpy(d, "Date: ", 6);
  memcpy(d + 6, days[tm.tm_wday % 7], 3);
  d[9] = ',';
  d[10] = ' ';
  d[11] = (char)('0' + tm.tm_mday / 10);
  d[12] = (char)('0' + tm.tm_mday % 10);
  d[13] = ' ';
  memcpy(d + 14, months[tm.tm_mon % 12], 3);
  d[17] = ' ';
  {
    int y = tm.tm_year + 1900, k;
    for (k = 21; k >= 18; k--) {
      d[k] = (char)('0' + y % 10);
      y /= 10;
    }
  }
  d[22] = ' ';
  d[23] = (char)('0' + tm.tm_hour / 10);
  d[24] = (char)('0' + tm.tm_hour % 10);
  d[25] = ':';
  d[26] = (char)('0' + tm.tm_min / 10);
  d[27] = (char)('0' + tm.tm_min % 10);
  d[28] = ':';
  d[29] = (char)('0' + tm.tm_sec / 10);
  d[30] = (char)('0' + tm.tm_sec % 10);
  memcpy(d + 31, " GMT\r\n", 6);
  hp->datelen = 37;
}


/* The status line for 'status' (200-999), kept for the next response. */
static void status_line(hlines *hp, int status) {
  const char *reason = http_status_str((enum http_status)status);
  char num[24], *d = digits(num + sizeof(num), (unsigned long long)status);
  size_t dn = (size_t)(num + sizeof(num) - d), rn;
  if (reason[0] == '<') /* "<unknown>" */
    reason = "Unknown";
  else if (status == 413)
    reason = "Content Too Large"; /* RFC 9110's name */
  rn = strlen(reason);
  if (9 + dn + 1 + rn + 2 > sizeof(hp->stline))
    reason = "Unknown", rn = 7; /* (none is that long) */
  memcpy(hp->stline, "HTTP/1.1 ", 9);
  memcpy(hp->stline + 9, d, dn);
  hp->stline[9 + dn] = ' ';
  memcpy(hp->stline + 10 + dn, reason, rn);
  memcpy(hp->stline + 10 + dn + rn, "\r\n", 2);
  hp->stlen = 12 + dn + rn;
  hp->stcode = status;
}


/* Header names the writer treats itself, by their first letter (most
   names are none of them: one comparison). */
static int special_name(const char *k, size_t kn) {
  switch (k[0] | 0x20) {
  case 'c':
    if (ieq(k, kn, "connection"))
      return 'c';
    if (ieq(k, kn, "content-length"))
      return 'l';
    return 0;
  case 't':
    return ieq(k, kn, "transfer-encoding") ? 't' : 0;
  default:
    return 0;
  }
}


/* The body's kind: a callable table or userdata streams as a function
   does (lgreen_iscallable). */
static int body_type(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TTABLE || t == LUA_TUSERDATA)
    return lgreen_iscallable(L, idx) ? LUA_TFUNCTION : t;
  return t;
}


/*
** Lay out the response (see l_http_response) at 'p', or, with 'p->p' NULL,
** check it and count its bytes. Stack: status, headers, body at 'a',
** a + 1, a + 2 ('A_*' offsets). The request is the parser's last head
** (HEAD? HTTP/1.0?).
*/
static size_t build(lua_State *L, hparser *hp, hlines *hl, rout *p,
                    rinfo *ri, int a, int keep) {
  lua_Integer status = lua_tointeger(L, a + A_STATUS);
  int bt = body_type(L, a + A_BODY);
  int head_only = hp->head_only;
  size_t at = 0;
  int http10 = hp->http10;
  int nobody = status < 200 || status == 204 || status == 304;
  int conn_given = 0;
  size_t bl = 0;
  const char *bs = bt == LUA_TSTRING ? lua_tolstring(L, a + A_BODY, &bl)
                                      : NULL;
  int big = bl > BIG_BODY;
  ri->keep = keep;
  ri->mode = 0;
  ri->clen = -1;
  if (status != hl->stcode)
    status_line(hl, (int)status);
  at = put(p, at, hl->stline, hl->stlen);
  at = put(p, at, hl->date, hl->datelen);
  if (lua_istable(L, a + A_HEADERS)) {
    lua_pushnil(L);
    while (lua_next(L, a + A_HEADERS)) {
      size_t kn, i;
      const char *k;
      int special;
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "green.http: header names must be strings");
      k = lua_tolstring(L, -2, &kn);
      for (i = 0; i < kn && is_tchar((unsigned char)k[i]); i++)
        ;
      if (kn == 0 || i < kn)
        luaL_error(L, "green.http: bad header name \"%s\"", k);
      special = special_name(k, kn);
      if (special == 'c')
        conn_given = 1;
      if (special == 'l') {
        int isnum;
        ri->clen = lua_tointegerx(L, -1, &isnum);
        if (!isnum || ri->clen < 0)
          luaL_error(L, "green.http: bad Content-Length");
        lua_pop(L, 1);
      } else if (special == 't') {
        lua_pop(L, 1); /* the writer chooses */
      } else if (lua_istable(L, -1)) {
        lua_Integer j, n = (lua_Integer)lua_rawlen(L, -1);
        for (j = 1; j <= n; j++) {
          lua_rawgeti(L, -1, j);
          at = put_line(L, p, at, k, kn, special, ri);
        }
        lua_pop(L, 1);
      } else {
        at = put_line(L, p, at, k, kn, special, ri);
      }
    }
  }
  if (bt == LUA_TSTRING) {
    if (!nobody)
      at = put_length(p, at, (unsigned long long)bl);
    if (big && !nobody && !head_only)
      ri->mode = 4;
  } else if (bt == LUA_TFUNCTION) {
    if (ri->clen >= 0 && status != 204) { /* (none on a 204: RFC 9110 8.6) */
      at = put_length(p, at, (unsigned long long)ri->clen);
      ri->mode = 2;
    } else if (!nobody) { /* HEAD: the GET's framing headers too */
      if (!http10) {
        PUTS("Transfer-Encoding: chunked\r\n");
        ri->mode = 1;
      } else {
        ri->keep = 0;
        ri->mode = 3;
      }
    }
    if (nobody || head_only)
      ri->mode = 0;
  } else if (!nobody) {
    PUTS("Content-Length: 0\r\n");
  }
  if (!conn_given) {
    if (!ri->keep)
      PUTS("Connection: close\r\n");
    else if (http10)
      PUTS("Connection: keep-alive\r\n");
  }
  PUTS("\r\n");
  if (bt == LUA_TSTRING && !nobody && !head_only && !big)
    at = put(p, at, bs, bl);
  return at;
}


/* The output's allocation is now 'nb' (NULL: none) with 'cap' bytes of
   output: the head's spans follow it if they are in its room. */
static void out_moved(hparser *hp, char *nb, size_t cap) {
  hp->ob = nb != NULL ? nb + SPAN_ROOM : NULL;
  hp->ocap = cap;
  if (!hp->hbig) {
    hp->h = (hspan *)(void *)nb;
    hp->caph = nb != NULL ? NINLINE : 0;
  }
}


/* Room for 'n' more bytes in the output; 0 if none can be had. */
static int out_reserve(hparser *hp, size_t n) {
  size_t cap;
  char *nb;
  if (hp->ob != NULL && hp->ocap - hp->olen >= n)
    return 1;
  cap = hp->ocap < 1024 ? 1024 : hp->ocap;
  while (cap - hp->olen < n) {
    if (cap > SIZE_MAX / 2)
      return 0;
    cap *= 2;
  }
  nb = (char *)realloc(hp->ob != NULL ? OB_BLOCK(hp) : NULL,
                       SPAN_ROOM + cap);
  if (nb == NULL)
    return 0;
  out_moved(hp, nb, cap);
  return 1;
}


/* The results: keep, pending output, mode, length. */
static int response_results(lua_State *L, hparser *hp, rinfo *ri) {
  static const char *const modes[] = {NULL, "chunked", "length", "eof",
                                      "body"};
  lua_pushboolean(L, ri->keep);
  lua_pushinteger(L, (lua_Integer)hp->olen);
  if (ri->mode == 0)
    return 2;
  lua_pushstring(L, modes[ri->mode]);
  lua_pushinteger(L, ri->clen);
  return 4;
}


/*
** Lay out the response whose status, headers and body are at 'a', a + 1,
** a + 2 (checked: misuse raises and leaves the output as it was) at the
** end of the parser's output; its framing in 'ri'. The status laid out
** is kept as the message's ('answered').
*/
static void lay_out(lua_State *L, hparser *hp, int a, int keep, rinfo *ri) {
  lua_Integer status = lua_tointeger(L, a + A_STATUS);
  int bt = body_type(L, a + A_BODY);
  hlines *hl = (hlines *)lua_touserdata(L, UV_LINES);
  rout o;
  size_t n;
  if (hp->p.type != HTTP_REQUEST || hp->phase == PH_HEAD)
    luaL_error(L, "http: no request head to answer");
  /* a 1xx is interim: the client waits on for the final response, and
     takes the next request's for it */
  if (!lua_isinteger(L, a + A_STATUS) || status < 200 || status > 999)
    luaL_error(L, "green.http: the handler returned status %s (an "
               "integer 200-999 expected)",
               luaL_tolstring(L, a + A_STATUS, NULL));
  if (!lua_isnoneornil(L, a + A_HEADERS) && !lua_istable(L, a + A_HEADERS))
    luaL_error(L, "green.http: the handler's headers must be a table, not "
               "a %s", luaL_typename(L, a + A_HEADERS));
  if (bt != LUA_TSTRING && bt != LUA_TFUNCTION && bt > LUA_TNIL)
    luaL_error(L, "green.http: the handler's body must be a string, a "
               "function or nil, not a %s", luaL_typename(L, a + A_BODY));
  update_date(hl);
  /* an idle connection gave its output back (parser_idle): retake it
     first, rather than count the response and build it again */
  if (hp->ob == NULL && !out_reserve(hp, 1))
    luaL_error(L, "not enough memory");
  o.p = hp->ob + hp->olen;
  o.cap = hp->ocap - hp->olen;
  o.check = 1;
  n = build(L, hp, hl, &o, ri, a, keep);
  if (n > o.cap) { /* counted only: grow the output, then copy */
    if (!out_reserve(hp, n))
      luaL_error(L, "not enough memory");
    o.p = hp->ob + hp->olen;
    o.cap = n;
    o.check = 0;
    if (build(L, hp, hl, &o, ri, a, keep) != n)
      luaL_error(L, "green.http: the headers changed while written");
  }
  hp->olen += n;
  hp->answered = (int)status;
}


/*
** After a response laid out whole on a connection kept, to a request
** that is complete: the stream of socket 'pp' if the next request's head
** is all buffered there (fed to the parser: take_head makes it), else
** NULL (and http_head says what comes: a wait, a partial head, a bad
** one; the parser goes on from what it was fed).
*/
static lstream *next_head(hparser *hp, lsock **pp) {
  lstream *x;
  size_t n = 0;
  if (hp->phase != PH_DONE || hp->olen >= KEEP_OUTPUT || *pp == NULL ||
      ((*pp)->flags & (LSOCK_LISTENING | LSOCK_CLOSED)))
    return NULL;
  x = LSTREAM(*pp);
  if (x->len == 0)
    return NULL;
  next_message(hp);
  if (feed_head(hp, x->buf + x->off, x->len, &n) <= 0)
    return NULL;
  return x; /* (the head is hp->fed bytes) */
}


/*
** http_response(parser, status, headers, body, keep, [sock]): lay out the
** response to the parser's last request head (without a body if it was
** a HEAD; HTTP/1.0's framing if it was 1.0) and its string body at the
** end of the parser's output (see http_output), and say how the body
** goes on:
** returns keep, pending, mode, length where pending is the bytes of
** output now waiting and mode is nil (all in the output), "chunked",
** "length" (the handler's Content-Length, 'length' bytes from a function
** body), "eof" (HTTP/1.0: the connection's end ends the body; keep is
** false then) or "body" (a string body too long to copy: the caller
** sends it after the output). 'headers' maps names to a value or a list
** of values; the handler's Transfer-Encoding is dropped (the writer
** chooses), its Content-Length is used only for a function body, a
** Connection header with "close" makes keep false. The Date line is the
** parser's (remade once a second). Misuse raises and leaves the output
** as it was. One pass when the output has room, else a counting pass,
** then the copy into the output grown to fit.
** With 'sock' (the request's stream socket) and a response laid out whole
** on a connection kept (mode nil) whose request is complete, also the
** next request's head if it is all buffered: keep, pending, nil, nil,
** then http_head's four results (one call per pipelined request instead
** of two).
*/
static int l_http_response(lua_State *L) {
  hparser *hp = check_parser(L, 1);
  rinfo ri;
  lstream *x;
  int top;
  lua_settop(L, A_SOCK);
  lay_out(L, hp, 2, lua_toboolean(L, A_KEEP), &ri);
  if (ri.mode != 0 || !ri.keep || lua_isnil(L, A_SOCK))
    return response_results(L, hp, &ri);
  x = next_head(hp, lgreen_sock_checkmt(L, A_SOCK,
                                        lgreen_sock_state(L)->mt_stream,
                                        LGREEN_SOCKET));
  if (x == NULL)
    return response_results(L, hp, &ri);
  lua_pushvalue(L, 1);
  lua_replace(L, 2); /* the parser at 2, as take_head wants it */
  lua_pushboolean(L, ri.keep);
  lua_pushinteger(L, (lua_Integer)hp->olen);
  lua_pushnil(L);
  lua_pushnil(L);
  top = lua_gettop(L);
  if (take_head(L, x, hp, hp->fed) == 4)
    return 8;
  lua_settop(L, top); /* a bad head: http_head reports it */
  return 4;
}


/*
** {======================================================
** The server's loop for pipelined requests (lua/green/http/server.lua)
** =======================================================
*/

/* http_run's stack. */
#define R_SOCK 1
#define R_PARSER 2 /* (where take_head wants it) */
#define R_HANDLER 3
#define R_CONN 4   /* the connection's state table */
#define R_SRV 5    /* the server's */
#define R_REQ 6    /* the request whose handler runs */
#define R_KEEP 7   /* its keep-alive */
#define R_LOG 8    /* the log hook, or nil */
#define R_RES 9    /* the handler's status, headers, body */
#define R_TOP 11
#define R_NEXT (R_TOP + 7) /* the next request's http_head results */

/* What run_k continues after. */
#define RUN_HANDLER 0
#define RUN_LOG 1


/* Is field K_* 'k' of the table at 'idx' true? (a raw get) [-0, +1, -] */
static int raw_field(lua_State *L, int idx, int k) {
  lua_rawgeti(L, lua_upvalueindex(4), k);
  lua_rawget(L, idx);
  return lua_toboolean(L, -1);
}


/*
** The handler's results are at R_RES: lay out the response. Returns -1
** when the next request is all buffered, has no body and needs nothing
** before its handler (its http_head results at R_NEXT), else pushes what
** the server's loop needs after an http_response (see l_http_run) and
** returns their number.
*/
static int run_respond(lua_State *L, hparser *hp) {
  rinfo ri;
  lstream *x = NULL;
  int keep = lua_toboolean(L, R_KEEP);
  lua_settop(L, R_TOP);
  if (raw_field(L, R_CONN, K_UPGRADED)) { /* a WebSocket has the socket */
    lua_pushvalue(L, R_REQ);
    return 1;
  }
  if (keep && raw_field(L, R_SRV, K_STOPPING))
    keep = 0; /* a stop: its last response */
  lua_settop(L, R_TOP);
  lay_out(L, hp, R_RES, keep, &ri);
  if (ri.mode == 0 && ri.keep)
    x = next_head(hp, (lsock **)lua_touserdata(L, R_SOCK));
  lua_pushvalue(L, R_REQ);
  lua_pushvalue(L, R_RES + A_STATUS);
  response_results(L, hp, &ri);
  lua_settop(L, R_TOP + 6); /* (mode and length nil if not given) */
  if (x == NULL || take_head(L, x, hp, hp->fed) != 4) {
    lua_settop(L, R_TOP + 6); /* no next request (or a bad head: */
    lua_settop(L, R_TOP + 10); /* http_head reports it) */
    lua_pushvalue(L, R_RES + A_BODY);
    return 11;
  }
  if (lua_tointeger(L, R_NEXT + 1) != 0 ||
      lua_type(L, R_NEXT + 3) != LUA_TBOOLEAN) {
    lua_pushvalue(L, R_RES + A_BODY); /* a body, or refused: the loop's */
    return 11;
  }
  return -1;
}


/*
** The loop: after the handler (RUN_HANDLER: its results at R_RES), the
** response; then, if the next request goes on here, the log hook for
** this one (with conn.req false, as the Lua loop calls it), and
** (RUN_LOG) the next request's handler, with conn.req set to it. The
** handler and the log hook may yield: this is their continuation.
*/
static int run_k(lua_State *L, int status, lua_KContext ctx) {
  hparser *hp = *(hparser **)lua_touserdata(L, R_PARSER);
  (void)status;
  for (;;) {
    if (ctx == RUN_HANDLER) {
      int n = run_respond(L, hp);
      if (n >= 0)
        return n;
      if (!lua_isnil(L, R_LOG)) {
        lua_rawgeti(L, lua_upvalueindex(4), K_REQ);
        lua_pushboolean(L, 0);
        lua_rawset(L, R_CONN);
        lua_pushvalue(L, R_LOG);
        lua_pushvalue(L, R_REQ);
        lua_pushvalue(L, R_RES + A_STATUS);
        lua_callk(L, 2, 0, RUN_LOG, run_k);
      }
    }
    /* the next request's handler, here */
    ctx = RUN_HANDLER;
    lua_settop(L, R_NEXT + 3);
    lua_copy(L, R_NEXT, R_REQ);
    lua_copy(L, R_NEXT + 2, R_KEEP);
    lua_rawgeti(L, lua_upvalueindex(4), K_REQ);
    lua_pushvalue(L, R_REQ);
    lua_rawset(L, R_CONN);
    lua_settop(L, R_RES - 1);
    lua_pushvalue(L, R_HANDLER);
    lua_pushvalue(L, R_REQ);
    lua_callk(L, 1, 3, RUN_HANDLER, run_k);
  }
}


/*
** http_run(sock, parser, handler, conn, srv, req, keep, [log]): the
** server's loop (lua/green/http/server.lua) for a request without a body
** on a plain socket: with conn.req = req, call handler(req), lay out its
** response (keep false if srv.stopping), and while the next request is
** all buffered, has no body and nothing to do before its handler, call
** log(req, status) if given (conn.req false meanwhile), set conn.req to
** the next request and go on with it; the handler and the log hook may
** yield. Returns for the last request whose handler ran (its log is the
** caller's): req, status, keep, pending, mode, length, then the next
** request's http_head results (or nils), and the handler's body; or req
** alone if conn.upgraded (a WebSocket took the socket). An error (the
** handler's, a bad response, the log hook's) propagates with conn.req
** the request it belongs to (false for the log hook's).
*/
static int l_http_run(lua_State *L) {
  lsock_state *st = lgreen_sock_state(L);
  lgreen_sock_checkmt(L, R_SOCK, st->mt_stream, LGREEN_SOCKET);
  check_parser_st(L, R_PARSER, st);
  lgreen_checkcallable(L, R_HANDLER);
  luaL_checktype(L, R_CONN, LUA_TTABLE);
  luaL_checktype(L, R_SRV, LUA_TTABLE);
  if (!lua_isnoneornil(L, R_LOG))
    lgreen_checkcallable(L, R_LOG);
  lua_settop(L, R_RES - 1);
  lua_pushvalue(L, R_HANDLER);
  lua_pushvalue(L, R_REQ);
  lua_callk(L, 1, 3, RUN_HANDLER, run_k);
  return run_k(L, LUA_OK, RUN_HANDLER);
}

/* }====================================================== */


/* The output handed on: empty it, and give back a buffer grown past
   KEEP_OUTPUT (a long response) rather than keep it per connection. */
static void output_done(hparser *hp) {
  hp->olen = 0;
  if (hp->ocap > KEEP_OUTPUT) { /* (down to 1 KB: the room for spans may
                                   hold a head's that has begun) */
    char *nb = (char *)realloc(OB_BLOCK(hp), SPAN_ROOM + 1024);
    if (nb != NULL)
      out_moved(hp, nb, 1024);
  }
}

/*
** http_output(parser, [data]): with 'data' (a string), append it to the
** parser's output and return the bytes waiting; without, take the output:
** a string of what waits (nil if nothing), leaving the output empty.
*/
static int l_http_output(lua_State *L) {
  hparser *hp = check_parser(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (!out_reserve(hp, n))
      return luaL_error(L, "not enough memory");
    memcpy(hp->ob + hp->olen, s, n);
    hp->olen += n;
    lua_pushinteger(L, (lua_Integer)hp->olen);
    return 1;
  }
  if (hp->olen == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, hp->ob, hp->olen);
  output_done(hp);
  return 1;
}


/*
** http_flush(sock, parser): send the parser's output on stream socket
** 'sock' as far as that goes without waiting (into the kernel, then the
** socket's write queue up to its bound), straight from the output
** buffer: no Lua string for it. Returns true when all of it went, else
** the rest as a string for the caller's sendall (when the socket's
** writers wait, or the kernel and the queue are full), or nil, err if
** the socket failed. The output is empty after it.
*/
static int l_http_flush(lua_State *L) {
  hparser *hp;
  lstream *x = check_args(L, &hp);
  return flush_out(L, x, hp);
}


/* http_flush's work: 'x' is NULL for a closed socket. */
static int flush_out(lua_State *L, lstream *x, hparser *hp) {
  size_t pos = 0;
  if (hp->olen == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (x == NULL || (x->base.flags & LSOCK_SHUT_WR)) {
    hp->olen = 0;
    return lgreen_sock_fail(L, UV_EOF);
  }
  if (gl_link_empty(&x->base.writers))
    lgreen_stream_write(x, hp->ob, &pos, hp->olen);
  if (x->werr != 0) {
    hp->olen = 0;
    return lgreen_sock_fail(L, x->werr);
  }
  if (pos < hp->olen)
    lua_pushlstring(L, hp->ob + pos, hp->olen - pos);
  else
    lua_pushboolean(L, 1);
  output_done(hp);
  return 1;
}

/* }====================================================== */


/* http_parse_url(url): libhttp-parser's split of an absolute URL into a
   table (scheme, host, port (a number, if given), path, query, fragment,
   userinfo), or nil, "invalid URL". A space or a control byte is
   refused: libhttp-parser's lax mode takes HTAB and FF, and the path
   goes as is into a request line, which they would split. */
static int l_http_parse_url(lua_State *L) {
  static const char *const names[UF_MAX] = {
      "scheme", "host", "port", "path", "query", "fragment", "userinfo"};
  size_t n, j;
  const char *url = luaL_checklstring(L, 1, &n);
  struct http_parser_url u;
  int i;
  for (j = 0; j < n; j++)
    if ((unsigned char)url[j] <= ' ' || url[j] == 127)
      break;
  http_parser_url_init(&u);
  if (n > 65535 || j < n || http_parser_parse_url(url, n, 0, &u) != 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "invalid URL");
    return 2;
  }
  lua_createtable(L, 0, UF_MAX);
  for (i = 0; i < UF_MAX; i++) {
    if (!(u.field_set & (1 << i)))
      continue;
    if (i == UF_PORT)
      lua_pushinteger(L, u.port);
    else
      lua_pushlstring(L, url + u.field_data[i].off, u.field_data[i].len);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}


static const luaL_Reg parser_meta[] = {
    {"__gc", parser_gc},
    {"__close", parser_free},
    {NULL, NULL},
};


static const luaL_Reg funcs[] = {
    {"http_parser", l_http_parser},
    {"http_free", parser_free},
    {"http_head", l_http_head},
    {"http_body", l_http_body},
    {"http_head_tls", l_http_head_tls},
    {"http_body_tls", l_http_body_tls},
    {"http_state", l_http_state},
    {"http_setmaxbody", l_http_setmaxbody},
    {"http_response", l_http_response},
    {"http_run", l_http_run},
    {"http_output", l_http_output},
    {"http_flush", l_http_flush},
    {"http_next", l_http_next},
    {"http_parse_url", l_http_parse_url},
    {"http_request_index", l_http_request_index},
    {NULL, NULL},
};


void lgreen_open_http(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  init_tchars();
  init_headchars();
  /* upvalues: the hub, the socket state, the metatable, the keys, then
     the UV_* ones */
  lgreen_sock_pushstate(L);
  luaL_newmetatable(L, LGREEN_HTTP_PARSER);
  luaL_setfuncs(L, parser_meta, 0);
  ((lsock_state *)lua_touserdata(L, -2))->mt_parser = lua_topointer(L, -1);
  {
    int i;
    lua_createtable(L, (int)(sizeof(msg_keys) / sizeof(msg_keys[0])), 0);
    for (i = 0; msg_keys[i] != NULL; i++) {
      lua_pushstring(L, msg_keys[i]);
      lua_rawseti(L, -2, i + 1);
    }
  }
  lua_pushliteral(L, "method");
  lua_pushliteral(L, "path");
  lua_pushliteral(L, "query");
  lua_pushliteral(L, "version");
  lua_pushliteral(L, "GET");
  lua_pushliteral(L, "1.1");
  lua_newtable(L); /* the raw heads' metatable */
  lua_pushliteral(L, "green.http.rawhead");
  lua_setfield(L, -2, "__name");
  memset(lua_newuserdatauv(L, sizeof(hlines), 0), 0, sizeof(hlines));
  lgreen_register(L, funcs, NUPVALUES - 1);
}
