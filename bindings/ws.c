/*
** ws.c: WebSocket framing (RFC 6455) by libwslay over a green stream
** socket, for lua/green/http/ws.lua; the handshake's SHA-1 and base64
** and the client's masking keys from OpenSSL's libcrypto.
**
** A 'green.ws' userdata is a box (box.c) holding a pointer to a malloc'd
** record with a wslay event context: the record lives until the userdata
** is collected (its __close gives back what it holds), or, if Lua frees
** the userdata without running its __gc, until box.c finds it orphaned.
** Reading: wslay's
** recv callback takes bytes straight from the socket's read buffer
** (consuming them), its message callback copies each complete message
** (fragments reassembled by wslay, up to 'max_message_size') into a C
** queue, and a message queued stops the reading until it is taken (so
** the queue holds what one read of wslay's brings, never a flood);
** control frames are wslay's: a ping is answered with a pong, a
** close with a close. Writing: wslay's send callback appends the framed
** (and, for a client, masked) bytes to an output buffer, which the Lua
** layer takes as one string and sends with sendall. So no Lua runs
** inside a wslay callback, and nothing of wslay's blocks.
*/
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "http.h"

#define LGREEN_WS "green.ws"

typedef struct wsmsg {
  struct wsmsg *next;
  int opcode;
  size_t len;
  char data[]; /* the message */
} wsmsg;

typedef struct ws {
  lgreen_owned own;
  wslay_event_context_ptr ctx;
  lstream *x;        /* during a wslay_event_recv: the socket read */
  void *t;           /* or the TLS conn whose plaintext is read */
  wsmsg *head, *tail; /* received messages not taken yet */
  char *out;         /* framed bytes to send */
  size_t nout, capout;
  int failed;        /* out of memory in a callback */
  int server;        /* the server's end (frames unmasked) */
  int bad_close;     /* the peer's close frame was malformed */
  int sent_code;     /* the code of a close written here, not by wslay */
  int close_code;    /* the peer's close code (0: none received) */
  size_t close_len;
  char close_reason[124];
} ws;


/* {====================================================== */
/* wslay callbacks (no Lua) */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf,
                       size_t len, int flags, void *ud) {
  ws *w = (ws *)ud;
  lstream *x = w->x;
  size_t n;
  (void)flags;
  if (w->head != NULL) {
    /* a message waits to be taken: the rest stays in the socket's
       buffer (bounded by its receive limit) until then, so that a peer
       sending faster than messages are taken fills no queue here */
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (w->t != NULL) { /* over TLS: the conn's plaintext buffer */
    size_t have;
    int eof;
    char *b = lgreen_tls_plain(w->t, &have, &eof);
    if (have == 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    n = have < len ? have : len;
    memcpy(buf, b, n);
    lgreen_tls_consume(w->t, n);
    return (ssize_t)n;
  }
  if (x == NULL || x->len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  n = x->len < len ? x->len : len;
  memcpy(buf, x->buf + x->off, n);
  lgreen_stream_consume(x, n);
  return (ssize_t)n;
}


static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *ud) {
  ws *w = (ws *)ud;
  (void)flags;
  if (w->nout + len > w->capout) {
    size_t cap = w->capout ? w->capout : 256;
    char *nb;
    while (cap < w->nout + len)
      cap *= 2;
    nb = (char *)realloc(w->out, cap);
    if (nb == NULL) {
      w->failed = 1;
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
    }
    w->out = nb;
    w->capout = cap;
  }
  memcpy(w->out + w->nout, data, len);
  w->nout += len;
  return (ssize_t)len;
}


static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                      void *ud) {
  (void)ud;
  if (RAND_bytes(buf, (int)len) != 1) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}


/* A close frame's payload is empty, or a 2-byte code and a reason:
   wslay takes a 1-byte one for no code (RFC 6455 5.5.1: a protocol
   error). Its close goes first; wslay's reply is then no more. */
static void
on_frame_start(wslay_event_context_ptr ctx,
               const struct wslay_event_on_frame_recv_start_arg *arg,
               void *ud) {
  ws *w = (ws *)ud;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1 &&
      !w->bad_close) {
    w->bad_close = 1;
    if (wslay_event_queue_close(ctx, WSLAY_CODE_PROTOCOL_ERROR, NULL, 0) !=
        0)
      w->failed = 1;
  }
}


static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  ws *w = (ws *)ud;
  wsmsg *m;
  (void)ctx;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    size_t n = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
    if (w->bad_close)
      return; /* closed with 1002 (on_frame_start) */
    w->close_code = arg->status_code ? arg->status_code : 1005;
    if (n > sizeof(w->close_reason))
      n = sizeof(w->close_reason);
    if (n > 0)
      memcpy(w->close_reason, arg->msg + 2, n);
    w->close_len = n;
    return;
  }
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
    return; /* ping (wslay queued the pong), pong */
  m = (wsmsg *)malloc(sizeof(*m) + arg->msg_length);
  if (m == NULL) {
    w->failed = 1;
    return;
  }
  m->next = NULL;
  m->opcode = arg->opcode;
  m->len = arg->msg_length;
  memcpy(m->data, arg->msg, arg->msg_length);
  if (w->tail)
    w->tail->next = m;
  else
    w->head = m;
  w->tail = m;
}


static const struct wslay_event_callbacks callbacks = {
    on_recv, on_send, on_genmask, on_frame_start, NULL, NULL, on_msg};

/* }====================================================== */


static ws *check_ws(lua_State *L, int idx) {
  ws *w = *(ws **)luaL_checkudata(L, idx, LGREEN_WS);
  if (w == NULL || w->ctx == NULL)
    luaL_error(L, "green.ws: the WebSocket is gone");
  return w;
}


/* Give back what 'w' holds; the record stays. */
static void ws_release(ws *w) {
  while (w->head) {
    wsmsg *m = w->head;
    w->head = m->next;
    free(m);
  }
  w->tail = NULL;
  free(w->out);
  w->out = NULL;
  w->nout = w->capout = 0;
  if (w->ctx) {
    wslay_event_context_free(w->ctx);
    w->ctx = NULL;
  }
}


static int ws_close(lua_State *L) {
  ws *w = *(ws **)luaL_checkudata(L, 1, LGREEN_WS);
  if (w != NULL)
    ws_release(w);
  return 0;
}


static int ws_gc(lua_State *L) {
  ws **pw = (ws **)luaL_checkudata(L, 1, LGREEN_WS);
  ws *w = *pw;
  if (w != NULL) {
    *pw = NULL;
    lgreen_disown(&w->own);
    ws_release(w);
    free(w);
  }
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void ws_orphan(lgreen_owned *o) {
  ws *w = GL_CONTAINER(o, ws, own);
  ws_release(w);
  free(w);
}

static const lgreen_boxkind ws_box = {offsetof(ws, own), ws_orphan};


/* ws_new(server, max_message_size): a framing context for one end. */
static int l_ws_new(lua_State *L) {
  int server = lua_toboolean(L, 1);
  lua_Number max = luaL_checknumber(L, 2);
  void **box = lgreen_newbox(L, lgreen_hub(L), 0, &ws_box);
  ws *w;
  int r;
  luaL_setmetatable(L, LGREEN_WS);
  if ((w = (ws *)calloc(1, sizeof(*w))) == NULL)
    return luaL_error(L, "not enough memory");
  *box = w;
  lgreen_own(lgreen_hub(L), &w->own, &ws_box);
  w->server = server;
  r = server ? wslay_event_context_server_init(&w->ctx, &callbacks, w)
             : wslay_event_context_client_init(&w->ctx, &callbacks, w);
  if (r != 0)
    return luaL_error(L, "not enough memory");
  if (max > 0 && max < 1.8e19)
    wslay_event_config_set_max_recv_msg_length(w->ctx, (uint64_t)max);
  return 1;
}


/* Push the framed output as a string and empty it. [-0, +1, m] */
static void push_out(lua_State *L, ws *w) {
  lua_pushlstring(L, w->out, w->nout);
  w->nout = 0;
}


/* Frame what wslay has queued; 0, or -1 if it failed. */
static int frame(ws *w) {
  if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0)
    return -1;
  return w->failed ? -1 : 0;
}


/* Append a close frame with 'code' (no reason) to the output; 0, or -1
   out of memory. */
static int put_close(ws *w, int code) {
  uint8_t f[8];
  size_t n = 0;
  f[n++] = 0x80 | WSLAY_CONNECTION_CLOSE;
  f[n++] = (uint8_t)((w->server ? 0 : 0x80) | 2);
  if (!w->server) { /* masked, as a client's frames are */
    uint8_t *key = f + n;
    if (RAND_bytes(key, 4) != 1)
      return -1;
    n += 4;
    f[n] = (uint8_t)((code >> 8) ^ key[0]);
    f[n + 1] = (uint8_t)((code & 0xff) ^ key[1]);
  } else {
    f[n] = (uint8_t)(code >> 8);
    f[n + 1] = (uint8_t)(code & 0xff);
  }
  n += 2;
  return on_send(w->ctx, f, n, 0, w) < 0 ? -1 : 0;
}


/*
** Run wslay over the buffered bytes (the socket's, or the TLS conn's).
** A frame wslay's framing layer refuses (a control frame over 125 bytes
** or fragmented, a 64-bit length with its high bit set) makes it queue a
** close without a status code and fail: that close is dropped for one
** with 1002, as RFC 6455 7.4.1 asks.
*/
static void run_recv(ws *w) {
  int sent = wslay_event_get_close_sent(w->ctx);
  int r = wslay_event_recv(w->ctx);
  if (r == 0)
    return;
  if (r == WSLAY_ERR_CALLBACK_FAILURE && !w->failed && !sent) {
    size_t keep = w->nout;
    frame(w); /* wslay's close without a code, dropped */
    w->nout = keep;
    if (!w->failed && put_close(w, WSLAY_CODE_PROTOCOL_ERROR) == 0) {
      w->sent_code = WSLAY_CODE_PROTOCOL_ERROR;
      return;
    }
  }
  w->failed = 1;
}


static int receive_k(lua_State *L, int status, lua_KContext ctx);
static int receive_result(lua_State *L, ws *w);


/*
** Stack: [sock, ws, timeout]. One step of ws_receive: run wslay over the
** buffered bytes; return output to send first, then a message, then the
** end; or wait for bytes.
*/
static int receive_step(lua_State *L, lstream *x, ws *w, int queued,
                        uint64_t due) {
  int r = 0;
  if (x == NULL || (x->base.flags & LSOCK_CLOSED)) {
    r = -1;
  } else {
    if (w->head == NULL && x->len > 0 &&
        wslay_event_get_read_enabled(w->ctx)) {
      w->x = x;
      run_recv(w);
      w->x = NULL;
    }
    frame(w);
  }
  if (r == 0 && w->nout == 0 && !w->head && !w->failed &&
      wslay_event_get_read_enabled(w->ctx) && x->rerr == 0)
    return lgreen_http_wait(L, x, x->len, due, "websocket:receive",
                            receive_k);
  if (queued)
    lgreen_http_leave(lgreen_sock_self(L)); /* before pushing */
  if (x != NULL && !(x->base.flags & LSOCK_CLOSED))
    lgreen_stream_watched(&x->base);
  return receive_result(L, w);
}


/* What ws_receive returns once it does not wait: output to send first,
   then a message, then the end. */
static int receive_result(lua_State *L, ws *w) {
  if (w->nout > 0) { /* pongs, close replies: before anything else */
    lua_pushboolean(L, 0);
    push_out(L, w);
    return 2;
  }
  if (w->head) {
    wsmsg *m = w->head;
    w->head = m->next;
    if (w->head == NULL)
      w->tail = NULL;
    /* pushed before freed: a memory error leaves it queued */
    lua_pushlstring(L, m->data, m->len);
    lua_pushstring(L, m->opcode == WSLAY_TEXT_FRAME ? "text" : "binary");
    free(m);
    return 2;
  }
  {
    int code = w->close_code;
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    if (code == 0) /* the peer did not close it: it was failed here
                      (1002, 1007, 1009, ...) or the stream ended (1006) */
      code = w->sent_code ? w->sent_code
             : wslay_event_get_close_sent(w->ctx)
                 ? wslay_event_get_status_code_sent(w->ctx)
                 : 1006;
    lua_pushinteger(L, code);
    lua_pushlstring(L, w->close_reason, w->close_len);
    return 4;
  }
}


static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  lsock *s;
  int outcome = lgreen_sock_resumed(L, lgreen_http_leave, &s);
  (void)status;
  if (outcome == LSOCK_W_CLOSED) {
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    lua_pushinteger(L, 1006);
    lua_pushliteral(L, "");
    return 4;
  }
  if (outcome == GL_W_TIMEOUT) {
    lgreen_http_leave(lgreen_sock_self(L));
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return receive_step(L, LSTREAM(s), *(ws **)lua_touserdata(L, 2), 1,
                      (uint64_t)ctx);
}


/***
** ws_receive(sock, ws, [timeout]): the next message: data, "text" or
** "binary"; or false, bytes: framed output (a pong, a close reply) the
** caller must send first, then call again; or nil, "closed", code,
** reason; or nil, "timeout".
*/
static int l_ws_receive(lua_State *L) {
  lsock **pp = lgreen_sock_checkstream(L);
  ws *w = check_ws(L, 2);
  double timeout = -1;
  lstream *x = *pp == NULL ? NULL : LSTREAM(*pp);
  if (!lua_isnoneornil(L, 3))
    timeout = lgreen_notnan(L, luaL_checknumber(L, 3), "timeout");
  lua_settop(L, 3);
  if (x != NULL) {
    lgreen_sock_first(L, &x->base, &x->base.readers, "read");
    if (lgreen_sock_unfair(L, &x->base))
      return lgreen_sock_yield(L, l_ws_receive);
    x->base.streak++;
  }
  return receive_step(L, x, w, 0, lgreen_sock_deadline(timeout));
}


/***
** ws_receive_tls(conn, ws): as ws_receive over TLS connection 'conn''s
** plaintext buffer, with no wait: true if more bytes must be buffered
** first (lua/green/http/ws.lua fills it through the TLS socket).
*/
static int l_ws_receive_tls(lua_State *L) {
  void *t = lgreen_tls_checkconn(L, 1);
  ws *w = check_ws(L, 2);
  size_t len;
  int eof;
  (void)lgreen_tls_plain(t, &len, &eof);
  if (w->head == NULL && len > 0 &&
      wslay_event_get_read_enabled(w->ctx)) {
    w->t = t;
    run_recv(w);
    w->t = NULL;
  }
  frame(w);
  if (w->nout == 0 && !w->head && !w->failed &&
      wslay_event_get_read_enabled(w->ctx) && !eof) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return receive_result(L, w);
}


/* ws_send(ws, kind, data): frame a message ("text", "binary", "ping",
   "pong"); returns the bytes to send. */
static int l_ws_send(lua_State *L) {
  static const char *const kinds[] = {"text", "binary", "ping", "pong",
                                      NULL};
  static const uint8_t ops[] = {WSLAY_TEXT_FRAME, WSLAY_BINARY_FRAME,
                                WSLAY_PING, WSLAY_PONG};
  ws *w = check_ws(L, 1);
  int kind = luaL_checkoption(L, 2, NULL, kinds);
  size_t n;
  const char *data = luaL_checklstring(L, 3, &n);
  struct wslay_event_msg msg;
  if (kind >= 2 && n > 125)
    return luaL_argerror(L, 3, "a control frame carries 125 bytes at most");
  msg.opcode = ops[kind];
  msg.msg = (const uint8_t *)data;
  msg.msg_length = n;
  if (wslay_event_queue_msg(w->ctx, &msg) != 0 || frame(w) != 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  push_out(L, w);
  return 1;
}


/* ws_close(ws, code, reason): frame a close; the bytes to send ("" if
   one was sent already). */
static int l_ws_close(lua_State *L) {
  ws *w = check_ws(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t n;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  /* 1000-1014 as IANA registers them (1004-1006 and 1015 are never
     sent), 3000-4999: 1016-2999 are reserved, a peer fails on them */
  luaL_argcheck(L, (code >= 1000 && code <= 1014 && code != 1004 &&
                    code != 1005 && code != 1006) ||
                       (code >= 3000 && code <= 4999),
                2, "invalid close code");
  luaL_argcheck(L, n <= 123, 3, "a close reason is 123 bytes at most");
  if (!wslay_event_get_close_sent(w->ctx)) {
    if (wslay_event_queue_close(w->ctx, (uint16_t)code,
                                (const uint8_t *)reason, n) != 0)
      w->failed = 1;
    frame(w);
  }
  push_out(L, w);
  return 1;
}


/* ws_state(ws): close received?, close sent? */
static int l_ws_state(lua_State *L) {
  ws *w = check_ws(L, 1);
  lua_pushboolean(L, wslay_event_get_close_received(w->ctx));
  lua_pushboolean(L, wslay_event_get_close_sent(w->ctx));
  return 2;
}


/* ws_accept_key(key): base64(SHA-1(key .. the RFC's GUID)). */
static int l_ws_accept_key(lua_State *L) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  unsigned char md[SHA_DIGEST_LENGTH];
  unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha1(), NULL) == 1 &&
           EVP_DigestUpdate(c, key, n) == 1 &&
           EVP_DigestUpdate(c, guid, sizeof(guid) - 1) == 1 &&
           EVP_DigestFinal_ex(c, md, NULL) == 1;
  EVP_MD_CTX_free(c);
  if (!ok)
    return luaL_error(L, "green.ws: SHA-1 failed");
  EVP_EncodeBlock(b64, md, SHA_DIGEST_LENGTH);
  lua_pushstring(L, (const char *)b64);
  return 1;
}


/* ws_key(): a fresh Sec-WebSocket-Key (base64 of 16 random bytes). */
static int l_ws_key(lua_State *L) {
  unsigned char raw[16], b64[25];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return luaL_error(L, "green.ws: no random bytes");
  EVP_EncodeBlock(b64, raw, sizeof(raw));
  lua_pushstring(L, (const char *)b64);
  return 1;
}


static const luaL_Reg ws_meta[] = {
    {"__gc", ws_gc},
    {"__close", ws_close},
    {NULL, NULL},
};


static const luaL_Reg funcs[] = {
    {"ws_new", l_ws_new},           {"ws_receive", l_ws_receive},
    {"ws_send", l_ws_send},         {"ws_close", l_ws_close},
    {"ws_state", l_ws_state},       {"ws_accept_key", l_ws_accept_key},
    {"ws_key", l_ws_key},           {"ws_receive_tls", l_ws_receive_tls},
    {NULL, NULL},
};


void lgreen_open_ws(lua_State *L, gl_hub_t *hub) {
  (void)hub;
  luaL_newmetatable(L, LGREEN_WS);
  luaL_setfuncs(L, ws_meta, 0);
  lua_pop(L, 1);
  lgreen_sock_register(L, funcs);
}
