/*
** TLS on OpenSSL through memory BIOs: core.tls, what lua/green/tls.lua
** builds green.tls on.
**
** Nothing here touches a descriptor or blocks. A connection ('conn') is
** an SSL object between two memory BIOs: ciphertext read from the green
** socket (by the Lua layer, through the socket's own receive, so every
** wait is the socket's wait on its gl_wait_t) is appended to the input
** BIO with 'feed'; what OpenSSL wants sent collects in the output BIO and
** leaves with 'output' for the socket's send. Decrypted bytes go into the
** conn's own plaintext buffer, from which 'receive' takes LuaSocket's
** patterns: a thread killed or timed out while it waits for more
** ciphertext leaves them there, as a plain socket keeps its read buffer.
**
** Every object that owns an OpenSSL resource is a userdata made before
** the resource, so an allocation error or a luaL_error on any path leaves
** it to the finalizer (no leak). OpenSSL's error queue is per OS thread
** and shared by every connection: it is cleared before each call whose
** errors are read.
*/
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http.h"
#include "lgreen.h"
#include "lsocket.h"

#define TLS_CTX "green.tls.context"
#define TLS_CONN "green.tls.conn"
#define TLS_BIOMETH "green.tls.biometh" /* registry: see biometh_new */


/*
** A context and a connection are boxes (box.c): the userdata holds a
** pointer to the malloc'd record, which lives until the userdata is
** collected ('free' gives back what the record holds, and leaves it
** reading freed), or, if Lua frees the userdata without running its
** __gc, until box.c finds it orphaned.
*/
typedef struct tls_ctx {
  lgreen_owned own;
  SSL_CTX *ctx;
  BIO_METHOD *obio; /* the output BIO's method (user value 1 holds it) */
  unsigned char *alpn; /* wire format (server: what it accepts) */
  size_t alpnlen;
  int server;
} tls_ctx;

typedef struct tls_conn {
  lgreen_owned own;
  SSL *ssl;     /* owns both BIOs */
  BIO *rbio;    /* ciphertext in */
  BIO *wbio;    /* ciphertext out: appends to 'obuf' */
  char *buf;    /* plaintext: bytes [off, off + len) */
  size_t off, len, cap;
  char *obuf;   /* ciphertext not sent yet: bytes [ooff, ooff + olen) */
  size_t ooff, olen, ocap;
  uint64_t osent; /* ciphertext bytes handed to the socket, ever */
  int ieof;     /* the end of the transport was fed to 'rbio' */
  int starved;  /* the last decrypt wanted input and none came since */
  int eof;      /* 1 close_notify seen, 2 the transport ended without */
  int err;      /* a fatal error happened (message in the user value) */
  int done;     /* handshake complete */
} tls_conn;


/* "nil, message" with OpenSSL's queued reason, or 'what'. */
static int ssl_fail(lua_State *L, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  luaL_pushfail(L);
  if (reason != NULL)
    lua_pushfstring(L, "%s: %s", what, reason);
  else
    lua_pushstring(L, what);
  return 2;
}


/*
** {======================================================
** Contexts
** =======================================================
*/

static tls_ctx *checkctx(lua_State *L, int idx) {
  tls_ctx *c = *(tls_ctx **)luaL_checkudata(L, idx, TLS_CTX);
  if (c == NULL || c->ctx == NULL)
    luaL_error(L, "TLS context is freed");
  return c;
}


static void ctx_free(tls_ctx *c) {
  SSL_CTX_free(c->ctx); /* SSL objects hold their own reference */
  c->ctx = NULL;
  free(c->alpn);
  c->alpn = NULL;
  c->alpnlen = 0;
}


/* ctx:free(): give back the OpenSSL context now. */
static int ctx_freeit(lua_State *L) {
  tls_ctx *c = *(tls_ctx **)luaL_checkudata(L, 1, TLS_CTX);
  if (c != NULL)
    ctx_free(c);
  return 0;
}


static int ctx_gc(lua_State *L) {
  tls_ctx **pc = (tls_ctx **)luaL_checkudata(L, 1, TLS_CTX);
  tls_ctx *c = *pc;
  if (c != NULL) {
    *pc = NULL;
    lgreen_disown(&c->own);
    ctx_free(c);
    free(c);
  }
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void ctx_orphan(lgreen_owned *o) {
  tls_ctx *c = GL_CONTAINER(o, tls_ctx, own);
  ctx_free(c);
  free(c);
}

static const lgreen_boxkind ctx_box = {offsetof(tls_ctx, own), ctx_orphan};


static int version_of(const char *name) {
  if (strcmp(name, "tls1.3") == 0 || strcmp(name, "TLSv1.3") == 0)
    return TLS1_3_VERSION;
  if (strcmp(name, "tls1.2") == 0 || strcmp(name, "TLSv1.2") == 0)
    return TLS1_2_VERSION;
  if (strcmp(name, "tls1.1") == 0 || strcmp(name, "TLSv1.1") == 0)
    return TLS1_1_VERSION;
  if (strcmp(name, "tls1") == 0 || strcmp(name, "tls1.0") == 0 ||
      strcmp(name, "TLSv1") == 0)
    return TLS1_VERSION;
  return -1;
}


static int is_pem(const char *s) { return strstr(s, "-----BEGIN ") != NULL; }


/* The certificate chain from PEM text: the leaf, then the rest. */
static int use_chain_pem(SSL_CTX *ctx, const char *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  int ok = 0;
  if (b == NULL)
    return 0;
  x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  if (x != NULL && SSL_CTX_use_certificate(ctx, x) == 1) {
    X509 *ca;
    ok = 1;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
        X509_free(ca);
        ok = 0;
        break;
      }
    }
    if (ok)
      ERR_clear_error(); /* the end of the PEM text */
  }
  X509_free(x);
  BIO_free(b);
  return ok;
}


static int use_key_pem(SSL_CTX *ctx, const char *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k;
  int ok = 0;
  if (b == NULL)
    return 0;
  k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  if (k != NULL)
    ok = SSL_CTX_use_PrivateKey(ctx, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}


/* PEM text given in a string: trust every certificate in it. */
static int load_ca_pem(SSL_CTX *ctx, const char *pem, size_t len) {
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  int n = 0;
  if (b == NULL)
    return 0;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, x) == 1)
      n++;
    X509_free(x);
  }
  BIO_free(b);
  ERR_clear_error();
  return n > 0;
}


/* Server side: pick the first of the client's protocols we accept. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  tls_ctx *c = (tls_ctx *)arg;
  unsigned char *sel;
  (void)ssl;
  if (SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned int)c->alpnlen,
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}


/* Option 'k' of the table at 1 as a string, or NULL (raises if it is
   another type). */
static const char *optstr(lua_State *L, const char *k, size_t *len) {
  const char *s = NULL;
  lua_getfield(L, 1, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad TLS option '%s' (string expected, got %s)", k,
                 luaL_typename(L, -1));
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1); /* the option table keeps the string alive */
  return s;
}


/*
** core.tls.context{server=, verify=, cafile=, capath=, ca=,
** certificate=, key=, alpn=, min_protocol=, max_protocol=, ciphers=}:
** a context, or nil, message. The Lua layer has checked the types of
** the booleans and the alpn list.
*/
static int ctx_new(lua_State *L) {
  tls_ctx *c;
  const char *s, *cafile, *capath, *cert, *key;
  size_t len, certlen = 0, keylen = 0;
  int server, verify, v;
  void **box;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  box = lgreen_newbox(L, lgreen_hub(L), 1, &ctx_box);
  luaL_setmetatable(L, TLS_CTX);
  if ((c = (tls_ctx *)calloc(1, sizeof(*c))) == NULL)
    return luaL_error(L, "not enough memory");
  *box = c;
  lgreen_own(lgreen_hub(L), &c->own, &ctx_box);
  lua_getfield(L, LUA_REGISTRYINDEX, TLS_BIOMETH);
  c->obio = *(BIO_METHOD **)lua_touserdata(L, -1);
  lua_setiuservalue(L, -2, 1);
  lua_getfield(L, 1, "server");
  server = lua_toboolean(L, -1);
  lua_getfield(L, 1, "verify");
  verify = lua_toboolean(L, -1);
  lua_pop(L, 2);
  c->server = server;
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (c->ctx == NULL)
    return ssl_fail(L, "cannot make a TLS context");
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_NO_COMPRESSION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* The output BIO takes every record whole: never a partial write. */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
  s = optstr(L, "min_protocol", &len);
  v = version_of(s != NULL ? s : "tls1.2");
  if (v < 0)
    return luaL_error(L, "bad TLS option 'min_protocol' (unknown "
                         "protocol '%s')", s);
  SSL_CTX_set_min_proto_version(c->ctx, v);
  s = optstr(L, "max_protocol", &len);
  if (s != NULL) {
    v = version_of(s);
    if (v < 0)
      return luaL_error(L, "bad TLS option 'max_protocol' (unknown "
                           "protocol '%s')", s);
    SSL_CTX_set_max_proto_version(c->ctx, v);
  }
  s = optstr(L, "ciphers", &len);
  if (s != NULL && SSL_CTX_set_cipher_list(c->ctx, s) != 1)
    return ssl_fail(L, "bad cipher list");
  /* Trust: a CA file or directory, PEM text, or the system's store. */
  cafile = optstr(L, "cafile", &len);
  capath = optstr(L, "capath", &len);
  s = optstr(L, "ca", &len);
  if (s != NULL && !load_ca_pem(c->ctx, s, len))
    return ssl_fail(L, "no certificate in 'ca'");
  if (cafile != NULL || capath != NULL) {
    if (SSL_CTX_load_verify_locations(c->ctx, cafile, capath) != 1)
      return ssl_fail(L, lua_pushfstring(L, "cannot load CA from %s",
                                         cafile ? cafile : capath));
  } else if (s == NULL && verify && !server) {
    if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
      return ssl_fail(L, "cannot load the system's CA store");
  }
  if (verify)
    SSL_CTX_set_verify(c->ctx,
                       SSL_VERIFY_PEER |
                           (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
  else
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
  /* Our certificate and key: files, or PEM text. */
  cert = optstr(L, "certificate", &certlen);
  key = optstr(L, "key", &keylen);
  if (cert != NULL) {
    int ok = is_pem(cert)
                 ? use_chain_pem(c->ctx, cert, certlen)
                 : SSL_CTX_use_certificate_chain_file(c->ctx, cert) == 1;
    if (!ok)
      return ssl_fail(L, is_pem(cert) ? "cannot load the certificate"
                                      : lua_pushfstring(L, "cannot load "
                                                        "the certificate %s",
                                                        cert));
    if (key == NULL)
      key = cert, keylen = certlen; /* both in one file */
    ok = is_pem(key) ? use_key_pem(c->ctx, key, keylen)
                     : SSL_CTX_use_PrivateKey_file(c->ctx, key,
                                                   SSL_FILETYPE_PEM) == 1;
    if (!ok)
      return ssl_fail(L, is_pem(key) ? "cannot load the key"
                                     : lua_pushfstring(L, "cannot load the "
                                                       "key %s", key));
    if (SSL_CTX_check_private_key(c->ctx) != 1)
      return ssl_fail(L, "the key does not match the certificate");
  } else if (key != NULL) {
    return luaL_error(L, "bad TLS option 'key' (no 'certificate')");
  }
  /* ALPN: the list in wire format (the Lua layer checked the names). */
  s = optstr(L, "alpn", &len);
  if (s != NULL && len > 0) {
    c->alpn = (unsigned char *)malloc(len);
    if (c->alpn == NULL)
      return luaL_error(L, "not enough memory");
    memcpy(c->alpn, s, len);
    c->alpnlen = len;
    if (server)
      SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, c);
    else if (SSL_CTX_set_alpn_protos(c->ctx, c->alpn, (unsigned)len) != 0)
      return ssl_fail(L, "bad ALPN list");
  }
  if (server) {
    static const unsigned char sid[] = "greenlua";
    SSL_CTX_set_session_id_context(c->ctx, sid, sizeof(sid) - 1);
  }
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Connections
** =======================================================
*/

/*
** The output BIO: OpenSSL's records are appended to the conn's 'obuf',
** from which the socket functions below hand them to the socket (or
** 'output' to the Lua layer). It always takes everything (or fails:
** no memory), never retries.
*/
#define OBUF_KEEP 4096 /* an emptied output buffer up to this is kept */



/* Room for 'n' more bytes of output; 0, or -1 (no memory). */
static int oreserve(tls_conn *t, size_t n) {
  if (t->ooff + t->olen + n <= t->ocap)
    return 0;
  if (t->ooff > 0) {
    memmove(t->obuf, t->obuf + t->ooff, t->olen);
    t->ooff = 0;
  }
  if (t->olen + n > t->ocap) {
    size_t cap = t->ocap ? t->ocap : 1024;
    char *nb;
    while (cap < t->olen + n)
      cap *= 2;
    nb = (char *)realloc(t->obuf, cap);
    if (nb == NULL)
      return -1;
    t->obuf = nb;
    t->ocap = cap;
  }
  return 0;
}


/* 'n' bytes of output are gone (sent, or taken by 'output'). */
static void odrop(tls_conn *t, size_t n) {
  t->osent += n;
  t->olen -= n;
  t->ooff += n;
  if (t->olen == 0)
    t->ooff = 0;
}


/* At the end of a call: an empty output buffer bigger than OBUF_KEEP is
   given back (a bulk send keeps its buffer from chunk to chunk). */
static void otrim(tls_conn *t) {
  if (t->olen == 0 && t->ocap > OBUF_KEEP) {
    free(t->obuf);
    t->obuf = NULL;
    t->ocap = 0;
  }
}


static int obio_write(BIO *b, const char *data, int n) {
  tls_conn *t = (tls_conn *)BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t == NULL || n < 0 || oreserve(t, (size_t)n) < 0)
    return -1;
  memcpy(t->obuf + t->ooff + t->olen, data, (size_t)n);
  t->olen += (size_t)n;
  return n;
}


static long obio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tls_conn *t = (tls_conn *)BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
  case BIO_CTRL_WPENDING:
    return t != NULL ? (long)t->olen : 0;
  default:
    return 0;
  }
}


static int obio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}


static int obio_destroy(BIO *b) {
  BIO_set_data(b, NULL);
  return 1;
}


/* The method, one per Lua state, in a userdata (its holder) that every
   context refers to (and every connection to its context), so no BIO
   outlives it; at lua_close the holder, made first, is finalized last.
   Nothing global: green.core may be unloaded with its state. */
static int biometh_gc(lua_State *L) {
  BIO_METHOD **pm = (BIO_METHOD **)lua_touserdata(L, 1);
  BIO_meth_free(*pm);
  *pm = NULL;
  return 0;
}


static void biometh_new(lua_State *L) {
  BIO_METHOD **pm = (BIO_METHOD **)lua_newuserdatauv(L, sizeof(*pm), 0);
  BIO_METHOD *m;
  *pm = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, biometh_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                   "green.tls output");
  if (m == NULL)
    luaL_error(L, "green.tls: cannot make the output BIO method");
  *pm = m;
  if (BIO_meth_set_write(m, obio_write) != 1 ||
      BIO_meth_set_ctrl(m, obio_ctrl) != 1 ||
      BIO_meth_set_create(m, obio_create) != 1 ||
      BIO_meth_set_destroy(m, obio_destroy) != 1)
    luaL_error(L, "green.tls: cannot make the output BIO method");
  lua_setfield(L, LUA_REGISTRYINDEX, TLS_BIOMETH);
}


static tls_conn *checkconn(lua_State *L) {
  tls_conn *t = *(tls_conn **)luaL_checkudata(L, 1, TLS_CONN);
  if (t == NULL || t->ssl == NULL)
    luaL_error(L, "TLS connection is freed");
  return t;
}


static void conn_free(tls_conn *t) {
  SSL_free(t->ssl); /* and its BIOs */
  t->ssl = NULL;
  t->rbio = t->wbio = NULL;
  free(t->buf);
  t->buf = NULL;
  t->off = t->len = t->cap = 0;
  free(t->obuf);
  t->obuf = NULL;
  t->ooff = t->olen = t->ocap = 0;
}


static int conn_gc(lua_State *L) {
  tls_conn **pt = (tls_conn **)luaL_checkudata(L, 1, TLS_CONN);
  tls_conn *t = *pt;
  if (t != NULL) {
    *pt = NULL;
    lgreen_disown(&t->own);
    conn_free(t);
    free(t);
  }
  return 0;
}


/* conn:free(): give everything back now (close); the record stays (it
   reads freed) until the userdata is collected. */
static int conn_freeit(lua_State *L) {
  tls_conn *t = *(tls_conn **)luaL_checkudata(L, 1, TLS_CONN);
  if (t != NULL)
    conn_free(t);
  return 0;
}


/* Its userdata is gone and its __gc never ran (box.c). */
static void conn_orphan(lgreen_owned *o) {
  tls_conn *t = GL_CONTAINER(o, tls_conn, own);
  conn_free(t);
  free(t);
}

static const lgreen_boxkind conn_box = {offsetof(tls_conn, own),
                                        conn_orphan};


/*
** ctx:conn([server_name], [check_host]): a connection in the context's
** mode. A client sends 'server_name' as SNI (not an IP literal) and, if
** 'check_host', verifies the certificate against it (name or address).
*/
static int conn_new(lua_State *L) {
  tls_ctx *c = checkctx(L, 1);
  size_t namelen = 0;
  const char *name = luaL_optlstring(L, 2, NULL, &namelen);
  int check = lua_toboolean(L, 3);
  void **box;
  tls_conn *t;
  unsigned char ip[16];
  int isip;
  /* OpenSSL reads the name up to its first zero byte: a name a caller
     checked whole ("evil.example\0.corp.example") would be sent and
     verified as another ("evil.example"). No host has such a name. */
  if (name != NULL && strlen(name) != namelen)
    return ssl_fail(L, "bad server name (it contains a zero byte)");
  box = lgreen_newbox(L, lgreen_hub(L), 2, &conn_box);
  luaL_setmetatable(L, TLS_CONN);
  if ((t = (tls_conn *)calloc(1, sizeof(*t))) == NULL)
    return luaL_error(L, "not enough memory");
  *box = t;
  lgreen_own(lgreen_hub(L), &t->own, &conn_box);
  lua_pushvalue(L, 1); /* the context outlives us (ALPN's data) */
  lua_setiuservalue(L, -2, 1);
  ERR_clear_error();
  t->ssl = SSL_new(c->ctx);
  if (t->ssl == NULL)
    return ssl_fail(L, "cannot make a TLS connection");
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(c->obio);
  if (t->wbio != NULL)
    BIO_set_data(t->wbio, t); /* the record: it never moves */
  if (t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    t->rbio = t->wbio = NULL;
    return ssl_fail(L, "cannot make a TLS connection");
  }
  BIO_set_mem_eof_return(t->rbio, -1); /* empty: retry, not EOF */
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  if (c->server) {
    SSL_set_accept_state(t->ssl);
    return 1;
  }
  SSL_set_connect_state(t->ssl);
  if (name == NULL)
    return 1;
  isip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
  if (!isip && SSL_set_tlsext_host_name(t->ssl, name) != 1)
    return ssl_fail(L, "bad server name");
  if (check) {
    X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if ((isip ? X509_VERIFY_PARAM_set1_ip_asc(p, name)
              : X509_VERIFY_PARAM_set1_host(p, name, 0)) != 1)
      return ssl_fail(L, "bad server name");
  }
  return 1;
}


/* conn:feed(ciphertext): what the socket received. */
static int conn_feed(lua_State *L) {
  tls_conn *t = checkconn(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  while (len > 0) { /* BIO_write takes an int: 1 GiB at a time */
    int n = len > (1u << 30) ? (1 << 30) : (int)len;
    if (BIO_write(t->rbio, s, n) != n)
      return luaL_error(L, "not enough memory");
    s += n;
    len -= (size_t)n;
  }
  t->starved = 0;
  return 0;
}


/* conn:feed_eof(): the transport ended: reads past what was fed fail. */
static int conn_feed_eof(lua_State *L) {
  tls_conn *t = checkconn(L);
  BIO_set_mem_eof_return(t->rbio, 0);
  t->ieof = 1;
  t->starved = 0;
  return 0;
}


/* conn:output(): the ciphertext waiting to be sent (drained), or nil. */
static int conn_output(lua_State *L) {
  tls_conn *t = checkconn(L);
  if (t->olen == 0)
    return 0;
  lua_pushlstring(L, t->obuf + t->ooff, t->olen); /* may raise: kept */
  odrop(t, t->olen);
  otrim(t);
  return 1;
}


/* The message of a failed call with SSL_get_error 'e', pushed. */
static const char *push_error(lua_State *L, tls_conn *t, int e) {
  unsigned long code = ERR_peek_last_error();
  long vr = SSL_get_verify_result(t->ssl);
  if (e == SSL_ERROR_ZERO_RETURN)
    return lua_pushliteral(L, "closed");
  if (ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK)
    return lua_pushfstring(L, "certificate verify failed: %s",
                           X509_verify_cert_error_string(vr));
  if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
      (code == 0 && e == SSL_ERROR_SYSCALL))
    return lua_pushliteral(L, "closed");
  if (code != 0 && ERR_reason_error_string(code) != NULL)
    return lua_pushstring(L, ERR_reason_error_string(code));
  return lua_pushfstring(L, "TLS error %d", e);
}


/* Record a fatal error: later calls return it again. */
static int fatal(lua_State *L, int ci, tls_conn *t, int e) {
  push_error(L, t, e);
  ERR_clear_error();
  t->err = 1;
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, ci, 2);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}


static int push_fatal(lua_State *L, int ci) {
  luaL_pushfail(L);
  lua_getiuservalue(L, ci, 2);
  return 2;
}


/*
** conn:handshake(): true once complete, false if it needs more input
** (first send the output), or nil, message.
*/
static int conn_handshake(lua_State *L) {
  tls_conn *t = checkconn(L);
  int r, e;
  if (t->err)
    return push_fatal(L, 1);
  if (t->done) {
    lua_pushboolean(L, 1);
    return 1;
  }
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = 1;
    lua_pushboolean(L, 1);
    return 1;
  }
  e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) /* close_notify during the handshake */
    e = SSL_ERROR_SYSCALL;
  return fatal(L, 1, t, e);
}


/*
** conn:write(data, i, j): encrypt data:sub(i, j) into the output (a
** memory BIO takes it all). Returns true, or nil, message.
*/
static int conn_write(lua_State *L) {
  tls_conn *t = checkconn(L);
  size_t len, i, j;
  const char *s = luaL_checklstring(L, 2, &len);
  i = (size_t)luaL_checkinteger(L, 3);
  j = (size_t)luaL_checkinteger(L, 4);
  luaL_argcheck(L, i >= 1 && j <= len && i <= j + 1, 3, "bad range");
  if (t->err)
    return push_fatal(L, 1);
  while (i <= j) {
    size_t n = j - i + 1;
    int r;
    if (n > INT32_MAX)
      n = INT32_MAX;
    ERR_clear_error();
    r = SSL_write(t->ssl, s + i - 1, (int)n);
    if (r <= 0)
      return fatal(L, 1, t, SSL_get_error(t->ssl, r));
    i += (size_t)r;
  }
  lua_pushboolean(L, 1);
  return 1;
}


/* conn:close_notify(): queue our close_notify (once). */
static int conn_close_notify(lua_State *L) {
  tls_conn *t = checkconn(L);
  if (t->done && !t->err && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
  }
  return 0;
}


static void read_end(lua_State *L, int ci, tls_conn *t, int e);

/* Decrypt everything the input holds into the plaintext buffer (no more
   than was fed). Returns the SSL_get_error of the read that ended it
   (WANT_READ: more input needed); any other is recorded in the
   connection (at stack index 'ci') at once (read_end), even when the
   same call decrypted bytes before it: a fatal error must not be read
   again later, when OpenSSL no longer says what it was. */
static int decrypt(lua_State *L, int ci, tls_conn *t) {
  for (;;) {
    int r, e;
    size_t room;
    if (t->off > 0 && t->off + t->len == t->cap) { /* compact */
      memmove(t->buf, t->buf + t->off, t->len);
      t->off = 0;
    }
    room = t->cap - t->off - t->len;
    if (room < 16384) {
      size_t cap = t->cap < 32768 ? 32768 : t->cap * 2;
      char *nb = (char *)realloc(t->buf, cap);
      if (nb == NULL)
        return luaL_error(L, "not enough memory");
      t->buf = nb;
      t->cap = cap;
      room = t->cap - t->off - t->len;
    }
    ERR_clear_error();
    r = SSL_read(t->ssl, t->buf + t->off + t->len,
                 (int)(room > INT32_MAX ? INT32_MAX : room));
    if (r <= 0) {
      e = SSL_get_error(t->ssl, r);
      t->starved = e == SSL_ERROR_WANT_READ;
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        read_end(L, ci, t, e);
      return e;
    }
    t->len += (size_t)r;
  }
}


/* Push 'n' buffered bytes (CRs dropped for a line), consume 'skip'. */
static void take(lua_State *L, tls_conn *t, size_t n, size_t skip,
                 int line) {
  char *p = t->buf + t->off;
  if (n == 0) {
    lua_pushliteral(L, "");
  } else {
    if (line && memchr(p, '\r', n) != NULL) {
      size_t i, m = 0;
      for (i = 0; i < n; i++)
        if (p[i] != '\r')
          p[m++] = p[i];
      n = m;
    }
    lua_pushlstring(L, p, n); /* a finalizer it runs may free 't' */
  }
  if (t->ssl == NULL)
    return; /* freed meanwhile: its buffer is gone */
  t->off += skip;
  t->len -= skip;
  if (t->len == 0)
    t->off = 0;
}


/* What a receive can do with the buffer now (as stream.c's plan_read):
   R_DATA complete, R_LONG fail with "too long" (past the receive limit
   'limit', SIZE_MAX for none), R_WAIT more is needed. Sets the bytes to
   return and to consume. */
enum { R_WAIT, R_DATA, R_LONG };

static int plan(tls_conn *t, int mode, size_t count, size_t limit, size_t *n,
                size_t *skip) {
  const char *p = t->buf + t->off;
  if (mode == 'l') {
    const char *nl = t->len > 0 ? memchr(p, '\n', t->len) : NULL;
    if (nl != NULL && (size_t)(nl - p) <= limit) {
      *n = (size_t)(nl - p);
      *skip = *n + 1;
      return R_DATA;
    }
  } else if (mode == 'n') {
    if (count > limit) { /* refused at once, taking nothing */
      *n = *skip = 0;
      return R_LONG;
    }
    if (t->len >= count) {
      *n = *skip = count;
      return R_DATA;
    }
    return R_WAIT;
  } else if (mode == 's') {
    if (t->len == 0)
      return R_WAIT;
    *n = *skip = t->len < count ? t->len : count;
    return R_DATA;
  } /* 'a': only the end completes it */
  if (t->len > limit) { /* a line or "a" past the limit */
    *n = *skip = limit;
    return R_LONG;
  }
  return R_WAIT;
}


/* Decryption stopped with 'e', neither data nor a want: record the end
   of the stream ('t->eof' 1 after close_notify, 2 without) or the fatal
   error (t->err, its message in the user value of the connection at
   stack index 'ci'). Pushes nothing. */
static void read_end(lua_State *L, int ci, tls_conn *t, int e) {
  unsigned long code;
  if (e == SSL_ERROR_ZERO_RETURN) {
    t->eof = 1;
    return;
  }
  code = ERR_peek_last_error();
  if ((code == 0 && e == SSL_ERROR_SYSCALL) ||
      ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    t->eof = 2;
    ERR_clear_error();
    return;
  }
  fatal(L, ci, t, e);
  lua_pop(L, 2);
}


/*
** conn:receive(mode, count, [giveup], [limit]): mode "l" (a line), "a"
** (to the end), "n" (count bytes), "s" (1 to count bytes). With 'limit'
** (bytes; nil none), a line or "a" that would gather more fails with
** nil, "too long", the first 'limit' bytes, and a count above it with
** nil, "too long", "", as a plain socket's does. Returns the data; or
** false if it needs more input (first send the output); or nil, err,
** partial (the partial consumed) at the end of the stream, on an error,
** or when 'giveup' is the error to end with ("timeout"). An "a" receive
** at the end with nothing left fails with "closed", as LuaSocket's
** recvall (and a plain socket's receive) does. An unclean end (no
** close_notify) completes no "a" receive: that could be truncation.
*/
static int conn_receive(lua_State *L) {
  tls_conn *t = checkconn(L);
  const char *m = luaL_checkstring(L, 2);
  size_t count = (size_t)luaL_optinteger(L, 3, 0);
  const char *giveup = luaL_optstring(L, 4, NULL);
  size_t limit = lua_isnoneornil(L, 5) ? SIZE_MAX
                                       : (size_t)luaL_checkinteger(L, 5);
  int mode = m[0], e, r;
  size_t n = 0, skip = 0;
  r = plan(t, mode, count, limit, &n, &skip);
  if (r == R_WAIT && !t->eof && !t->err && giveup == NULL) {
    e = decrypt(L, 1, t); /* an end it met is recorded */
    r = plan(t, mode, count, limit, &n, &skip);
    if (r == R_WAIT &&
        (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  if (r == R_DATA) {
    take(L, t, n, skip, mode == 'l');
    return 1;
  }
  if (r == R_LONG) {
    luaL_pushfail(L);
    lua_pushliteral(L, "too long");
    take(L, t, n, skip, mode == 'l');
    return 3;
  }
  if (mode == 'a' && t->eof == 1 && t->len > 0 && giveup == NULL) {
    take(L, t, t->len, t->len, 0); /* nothing left is "closed" (recvall) */
    return 1;
  }
  luaL_pushfail(L);
  if (giveup != NULL)
    lua_pushstring(L, giveup);
  else if (t->err)
    lua_getiuservalue(L, 1, 2);
  else
    lua_pushliteral(L, "closed");
  if (mode == 's')
    return 2;
  take(L, t, t->len, t->len, mode == 'l');
  return 3;
}


/* conn:pull(): decrypt what the input holds into the plaintext buffer
   (green.http reads from it in place). Returns true if bytes were
   added, false and the output's length if more input is needed (first
   send the output), or nil,
   err: "closed" at the end of the stream (clean or not), or the fatal
   error. */
static int conn_pull(lua_State *L) {
  tls_conn *t = checkconn(L);
  size_t before = t->len;
  if (!t->eof && !t->err) {
    int e = decrypt(L, 1, t); /* an end it met is recorded */
    if (t->len > before) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      lua_pushboolean(L, 0);
      lua_pushinteger(L, (lua_Integer)t->olen);
      return 2;
    }
  }
  if (t->err)
    return push_fatal(L, 1);
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  return 2;
}


/*
** {======================================================
** Over a green stream socket, from C
** =======================================================
*/

/*
** What green.tls does over a green stream socket (lua/green/tls.lua
** falls back to 'feed' and 'output' with the socket's own methods over
** anything else): 'send' encrypts into the output buffer and hands it
** to the socket as stream.c's send does (uv_try_write, then the write
** queue), 'flush' sends the output, 'fill' decrypts more of the stream
** and 'input' takes ciphertext for the handshake, each moving the
** ciphertext between the socket's read buffer and the connection with
** no Lua string in between and waiting, when it must, in the socket's
** own queues (as "socket:receive", "socket:send"). Everything received
** stays in the connection or the socket's buffer and everything
** encrypted in the output buffer until the socket has it, so a kill or
** a timeout in any wait loses nothing. Each call's state is on its
** stack; a wait is left before anything that can raise.
*/

#define TLS_CHUNK (64 * 1024) /* plaintext encrypted per step of a send */


/* Deadline 'idx' (core.now() seconds, or nil) as gl_now() nanoseconds,
   0 for none. One that has passed means: do not wait. */
static uint64_t due_at(lua_State *L, int idx) {
  lua_Number d;
  if (lua_isnoneornil(L, idx))
    return 0;
  d = lgreen_notnan(L, luaL_checknumber(L, idx), "deadline");
  if (d <= 0)
    return 1;
  return d >= 1e9 ? (uint64_t)1e18 : (uint64_t)(d * 1e9);
}


static int due_passed(uint64_t due) {
  return due != 0 && due <= gl_now();
}


/* The socket at 1 (NULL once closed) and the conn at 2 (its 'ssl' NULL
   once freed). */
static lsock *sock_arg(lua_State *L, tls_conn **pt) {
  lsock **pp = lgreen_sock_checkstream(L);
  *pt = *(tls_conn **)luaL_checkudata(L, 2, TLS_CONN);
  if (*pt == NULL)
    luaL_error(L, "TLS connection is freed");
  if (*pp != NULL && ((*pp)->flags & LSOCK_LISTENING))
    luaL_error(L, "TLS over a listening socket");
  return *pp;
}


/* Hand the output to the socket as far as it takes it now. Returns 0 or
   the socket's write error. */
static int opush(tls_conn *t, lstream *x) {
  if (x->base.flags & LSOCK_SHUT_WR)
    return UV_EOF;
  if (t->olen > 0 && x->werr == 0) {
    size_t pos = t->ooff;
    lgreen_stream_write(x, t->obuf, &pos, t->ooff + t->olen);
    odrop(t, pos - t->ooff);
  }
  return x->werr;
}


/* Encrypt 'n' bytes into the output: 0, or SSL_get_error's code. */
static int encrypt(tls_conn *t, const char *p, size_t n) {
  while (n > 0) {
    int r;
    ERR_clear_error();
    r = SSL_write(t->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r <= 0)
      return SSL_get_error(t->ssl, r);
    p += r;
    n -= (size_t)r;
  }
  return 0;
}


/* A reader of the socket leaves its queue: as stream.c's. */
static void tls_leave(gl_wait_t *w) {
  lsock *s = (lsock *)w->data;
  if (s != NULL && s->readers.next == &w->link)
    LSTREAM(s)->mode = 0;
  lgreen_sock_leave(w);
}


/* {------ send, flush */

/* Stack: [sock, conn, data, i, j, all, due, pos, target]: plaintext
   bytes [pos, j) are still to encrypt; output up to 'target' (counted in
   'osent') is still to hand over. send: the last index, sendall: true;
   or nil, err, the last index encrypted (its output goes next). */
static int send_done(lua_State *L, int waited, const char *err,
                     size_t pos) {
  tls_conn *t = *(tls_conn **)lua_touserdata(L, 2);
  if (t->ssl != NULL)
    otrim(t);
  if (waited)
    lgreen_sock_leave(lgreen_sock_self(L));
  if (err == NULL) {
    if (lua_toboolean(L, 6))
      lua_pushboolean(L, 1);
    else
      lua_pushinteger(L, (lua_Integer)pos);
    return 1;
  }
  luaL_pushfail(L);
  lua_pushstring(L, err);
  lua_pushinteger(L, (lua_Integer)pos);
  return 3;
}


static int send_k(lua_State *L, int status, lua_KContext ctx);


static int send_go(lua_State *L, uint64_t due, int waited) {
  size_t len;
  const char *data = lua_tolstring(L, 3, &len);
  size_t j = (size_t)lua_tointeger(L, 5);
  size_t pos = (size_t)lua_tointeger(L, 8);
  uint64_t target = (uint64_t)lua_tointeger(L, 9);
  int polled = 0;
  for (;;) {
    lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, 1));
    tls_conn *t = *(tls_conn **)lua_touserdata(L, 2);
    int err;
    if (s == NULL || t->ssl == NULL)
      return send_done(L, waited, "closed", pos);
    err = opush(t, LSTREAM(s));
    /* Other writers wait (one of them maybe mid-send): this send
       encrypts nothing before it heads the queue (it is woken there), so
       each send's records go out whole, as a plain socket's writers
       queue. */
    if (t->osent >= target && (waited || gl_link_empty(&s->writers))) {
      /* this step's output is out */
      size_t n;
      int e;
      if (pos >= j) {
        if (!waited)
          s->streak++; /* as stream.c's send */
        return send_done(L, waited, NULL, pos);
      }
      if (t->err) {
        if (waited)
          lgreen_sock_leave(lgreen_sock_self(L));
        push_fatal(L, 2);
        lua_pushinteger(L, (lua_Integer)pos);
        return 3;
      }
      n = j - pos < TLS_CHUNK ? j - pos : TLS_CHUNK;
      /* room for the records at once (no growing by doubling), if it
         can be had: else the BIO grows it or fails the write */
      (void)oreserve(t, n + n / 64 + 512);
      e = encrypt(t, data + pos, n);
      if (e != 0) {
        if (waited)
          lgreen_sock_leave(lgreen_sock_self(L));
        fatal(L, 2, t, e);
        lua_pushinteger(L, (lua_Integer)pos);
        return 3;
      }
      pos += n;
      target = t->osent + t->olen;
      continue;
    }
    if (err != 0)
      return send_done(L, waited, lgreen_sock_strerror(err), pos);
    if (due_passed(due)) {
      if (!polled && lgreen_stream_queued(s) > 0) {
        polled = 1; /* as stream.c's send with timeout 0 */
        lgreen_sock_poll(s);
        continue;
      }
      return send_done(L, waited, "timeout", pos);
    }
    lua_pushinteger(L, (lua_Integer)pos);
    lua_replace(L, 8);
    lua_pushinteger(L, (lua_Integer)target);
    lua_replace(L, 9);
    return lgreen_sock_wait(L, s, &s->writers,
                            lua_toboolean(L, 6) ? "socket:sendall"
                                                : "socket:send",
                            lgreen_sock_leave, due, send_k,
                            (lua_KContext)due);
  }
}


static int send_k(lua_State *L, int status, lua_KContext ctx) {
  int outcome = lgreen_waited(L, lgreen_sock_self(L), lgreen_sock_leave);
  (void)status;
  if (outcome == GL_W_TIMEOUT)
    return send_done(L, 1, "timeout", (size_t)lua_tointeger(L, 8));
  return send_go(L, (uint64_t)ctx, 1);
}


/*
** tls.send(sock, conn, data, i, j, all, [due]): encrypt data:sub(i, j)
** (1 <= i <= j + 1 <= #data + 1) and send it, after whatever output
** waits; 'due' the deadline (core.now() seconds). As a socket's send
** (all: sendall), except that a failure's index is the last byte
** encrypted: its records go out before anything sent later.
*/
static int l_send(lua_State *L) {
  tls_conn *t;
  lsock *s = sock_arg(L, &t);
  size_t len, i, j;
  uint64_t due;
  luaL_checklstring(L, 3, &len);
  i = (size_t)luaL_checkinteger(L, 4);
  j = (size_t)luaL_checkinteger(L, 5);
  luaL_argcheck(L, i >= 1 && j <= len && i <= j + 1, 4, "bad range");
  due = due_at(L, 7);
  lua_settop(L, 7);
  if (s != NULL && lgreen_sock_unfair(L, s))
    return lgreen_sock_yield(L, l_send);
  lua_pushinteger(L, (lua_Integer)(i - 1));
  lua_pushinteger(L, 0); /* nothing of ours to hand over yet */
  return send_go(L, due, 0);
}


/* Stack: [sock, conn, due, target]. */
static int flush_k(lua_State *L, int status, lua_KContext ctx);

static int flush_go(lua_State *L, uint64_t due, int waited) {
  uint64_t target = (uint64_t)lua_tointeger(L, 4);
  int polled = 0;
  for (;;) {
    lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, 1));
    tls_conn *t = *(tls_conn **)lua_touserdata(L, 2);
    int err;
    if (s == NULL || t->ssl == NULL) {
      if (waited)
        lgreen_sock_leave(lgreen_sock_self(L));
      return lgreen_sock_fail(L, UV_EOF);
    }
    err = opush(t, LSTREAM(s));
    if (t->osent >= target || err != 0 || due_passed(due)) {
      if (t->osent < target && err == 0 && !polled &&
          lgreen_stream_queued(s) > 0) {
        polled = 1;
        lgreen_sock_poll(s);
        continue;
      }
      if (waited)
        lgreen_sock_leave(lgreen_sock_self(L));
      otrim(t);
      if (t->osent >= target) {
        lua_pushboolean(L, 1);
        return 1;
      }
      return lgreen_sock_fail(L, err != 0 ? err : UV_ETIMEDOUT);
    }
    return lgreen_sock_wait(L, s, &s->writers, "socket:send",
                            lgreen_sock_leave, due, flush_k,
                            (lua_KContext)due);
  }
}


static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  int outcome = lgreen_waited(L, lgreen_sock_self(L), lgreen_sock_leave);
  (void)status;
  if (outcome == GL_W_TIMEOUT) {
    lgreen_sock_leave(lgreen_sock_self(L));
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  }
  return flush_go(L, (uint64_t)ctx, 1);
}


/* tls.flush(sock, conn, [due]): send the output waiting (the handshake's,
   close_notify). true, or nil, err. */
static int l_flush(lua_State *L) {
  tls_conn *t;
  lsock *s = sock_arg(L, &t);
  uint64_t due = due_at(L, 3);
  lua_settop(L, 3);
  if (s == NULL || t->ssl == NULL)
    return lgreen_sock_fail(L, UV_EOF);
  lua_pushinteger(L, (lua_Integer)(t->osent + t->olen));
  return flush_go(L, due, 0);
}

/* }------ */


/* {------ fill, input */

static int closed(lua_State *L) {
  luaL_pushfail(L);
  lua_pushliteral(L, "closed");
  return 2;
}


static int pump_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: [sock, conn, due, input]. Not in the socket's readers here. */
static int pump_go(lua_State *L, uint64_t due, int waited) {
  int input = lua_toboolean(L, 4), polled = 0;
  for (;;) {
    lsock *s = lgreen_sock_get((lsock **)lua_touserdata(L, 1));
    tls_conn *t = *(tls_conn **)lua_touserdata(L, 2);
    lstream *x;
    if (s == NULL || t->ssl == NULL)
      return closed(L);
    x = LSTREAM(s);
    if (!input) {
      size_t before = t->len;
      if (!t->err && !t->eof && !t->starved)
        (void)decrypt(L, 2, t); /* an end it met is recorded */
      if (t->len > before) {
        if (!waited)
          s->streak++;
        lua_pushboolean(L, 1);
        return 1;
      }
      if (t->err)
        return push_fatal(L, 2);
      if (t->eof)
        return closed(L);
      /* what reading produced (the alert refusing a renegotiation) goes
         now, without waiting: failures are a writer's to report */
      if (t->olen > 0)
        (void)opush(t, x);
      if (t->ieof) /* cannot happen: the end makes SSL_read fail */
        return closed(L);
    }
    if (!gl_link_empty(&s->readers)) {
      (void)lgreen_sock_first(L, s, &s->readers, "read"); /* raises */
    } else if (x->len > 0) { /* ciphertext: into the connection */
      /* 64 KB at a time: a socket buffer emptied is freed, and one that
         piled up is big (mmap'd), so it is left to serve the next few */
      int n = (int)(x->len < TLS_CHUNK ? x->len : TLS_CHUNK);
      if (BIO_write(t->rbio, x->buf + x->off, n) != n)
        return luaL_error(L, "not enough memory");
      t->starved = 0;
      lgreen_stream_consume(x, (size_t)n);
      lgreen_stream_watched(s); /* room to read ahead again */
      if (input) {
        if (!waited)
          s->streak++;
        lua_pushboolean(L, 1);
        return 1;
      }
      continue;
    } else if (x->rerr != 0) {
      if (x->rerr != UV_EOF)
        return lgreen_sock_fail(L, x->rerr);
      BIO_set_mem_eof_return(t->rbio, 0);
      t->ieof = 1;
      t->starved = 0;
      if (input)
        return closed(L);
      continue;
    }
    if (due_passed(due)) {
      if (!polled) { /* timeout 0: what the kernel has now */
        polled = 1;
        lgreen_sock_poll(s);
        continue;
      }
      return lgreen_sock_fail(L, UV_ETIMEDOUT);
    }
    if (gl_link_empty(&s->readers)) { /* wake when anything is there */
      x->mode = LSTREAM_MODE_COUNT;
      x->count = 1;
    }
    return lgreen_sock_wait(L, s, &s->readers, "socket:receive", tls_leave,
                            due, pump_k, (lua_KContext)due);
  }
}


static int pump_k(lua_State *L, int status, lua_KContext ctx) {
  int outcome = lgreen_waited(L, lgreen_sock_self(L), tls_leave);
  (void)status;
  tls_leave(lgreen_sock_self(L)); /* before anything that may raise */
  if (outcome == GL_W_TIMEOUT)
    return lgreen_sock_fail(L, UV_ETIMEDOUT);
  return pump_go(L, (uint64_t)ctx, 1);
}


static int pump(lua_State *L, int input, lua_CFunction again) {
  tls_conn *t;
  lsock *s = sock_arg(L, &t);
  uint64_t due = due_at(L, 3);
  lua_settop(L, 3);
  if (s != NULL && lgreen_sock_unfair(L, s))
    return lgreen_sock_yield(L, again);
  lua_pushboolean(L, input);
  return pump_go(L, due, 0);
}


/*
** tls.fill(sock, conn, [due]): decrypt more of the stream into the
** plaintext buffer, waiting for ciphertext if none is there (and sending
** what reading produced). true; or nil, err: "closed" at the end of the
** stream (clean or not; the connection says which) or when the socket
** was closed, the fatal error, "timeout", or the socket's read error.
*/
static int l_fill(lua_State *L) {
  return pump(L, 0, l_fill);
}


/* tls.input(sock, conn, [due]): move the ciphertext the socket has
   (waiting for some) into the connection, for the handshake. true, or
   nil, err ("closed" at the end of the stream: fed as such). */
static int l_input(lua_State *L) {
  return pump(L, 1, l_input);
}


/* tls.reading(sock): a receive's check before it takes plaintext already
   decrypted: eventlet's "Second simultaneous read" error if another
   thread waits to read 'sock' (it would take bytes that thread waits
   on), as a plain socket's receive raises. */
static int l_reading(lua_State *L) {
  lsock **pp = lgreen_sock_checkstream(L);
  if (*pp != NULL)
    (void)lgreen_sock_first(L, *pp, &(*pp)->readers, "read");
  return 0;
}

/* }------ */

/* }====================================================== */


/* What green.http's parser reads in place (bindings/http.h). */
void *lgreen_tls_checkconn(lua_State *L, int idx) {
  tls_conn *t = *(tls_conn **)luaL_checkudata(L, idx, TLS_CONN);
  if (t == NULL || t->ssl == NULL)
    luaL_error(L, "TLS connection is freed");
  return t;
}


char *lgreen_tls_plain(void *conn, size_t *len, int *eof) {
  tls_conn *t = (tls_conn *)conn;
  *len = t->len;
  *eof = t->err ? 2 : t->eof;
  return t->buf == NULL ? NULL : t->buf + t->off;
}


void lgreen_tls_consume(void *conn, size_t n) {
  tls_conn *t = (tls_conn *)conn;
  if (n > t->len)
    n = t->len;
  t->off += n;
  t->len -= n;
  if (t->len == 0)
    t->off = 0;
}


/* conn:buffered(): decrypted bytes waiting, and whether the input holds
   ciphertext not yet decrypted. */
static int conn_buffered(lua_State *L) {
  tls_conn *t = checkconn(L);
  lua_pushinteger(L, (lua_Integer)(t->len + (size_t)SSL_pending(t->ssl)));
  lua_pushboolean(L, BIO_ctrl_pending(t->rbio) > 0);
  return 2;
}


/* conn:outlen(): ciphertext bytes waiting to be sent. */
static int conn_outlen(lua_State *L) {
  tls_conn *t = checkconn(L);
  lua_pushinteger(L, (lua_Integer)t->olen);
  return 1;
}


/* conn:state(): "handshake", "open", "closed" (close_notify seen),
   "truncated" (the transport ended without) or "failed". */
static int conn_state(lua_State *L) {
  tls_conn *t = checkconn(L);
  lua_pushstring(L, t->err ? "failed"
                    : t->eof == 1 ? "closed"
                    : t->eof == 2 ? "truncated"
                    : t->done ? "open" : "handshake");
  return 1;
}


/* conn:alpn(): the protocol negotiated, or nil. */
static int conn_alpn(lua_State *L) {
  tls_conn *t = checkconn(L);
  const unsigned char *p;
  unsigned int n;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  if (n == 0)
    return 0;
  lua_pushlstring(L, (const char *)p, n);
  return 1;
}


/* conn:info(): {protocol=, cipher=, bits=, server_name=, alpn=,
   resumed=}, or nil before the handshake. */
static int conn_info(lua_State *L) {
  tls_conn *t = checkconn(L);
  const SSL_CIPHER *c;
  const char *sn;
  int bits = 0;
  if (!t->done)
    return 0;
  c = SSL_get_current_cipher(t->ssl);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, SSL_get_version(t->ssl));
  lua_setfield(L, -2, "protocol");
  if (c != NULL) {
    lua_pushstring(L, SSL_CIPHER_get_name(c));
    lua_setfield(L, -2, "cipher");
    SSL_CIPHER_get_bits(c, &bits);
    lua_pushinteger(L, bits);
    lua_setfield(L, -2, "bits");
  }
  sn = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (sn != NULL) {
    lua_pushstring(L, sn);
    lua_setfield(L, -2, "server_name");
  }
  if (conn_alpn(L) == 1)
    lua_setfield(L, -2, "alpn");
  lua_pushboolean(L, SSL_session_reused(t->ssl));
  lua_setfield(L, -2, "resumed");
  return 1;
}


/* Push the one-line form of an X509 name ("CN=x, O=y"). */
static void push_name(lua_State *L, const X509_NAME *name) {
  char text[2048]; /* copied out first: nothing held while Lua allocates */
  int n = 0;
  BIO *b = BIO_new(BIO_s_mem());
  if (b != NULL) {
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    n = BIO_read(b, text, sizeof(text));
    BIO_free(b);
  }
  lua_pushlstring(L, text, n > 0 ? (size_t)n : 0);
}


static void push_time(lua_State *L, const ASN1_TIME *tm) {
  struct tm out;
  char buf[32];
  if (ASN1_TIME_to_tm(tm, &out) != 1) {
    lua_pushnil(L);
    return;
  }
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &out);
  lua_pushstring(L, buf);
}


/* One subject alternative name as "DNS:x", "IP:a.b.c.d", "email:x" into
   'out' (NUL-terminated, possibly empty). */
static void san_text(const GENERAL_NAME *g, char *out, size_t size) {
  const unsigned char *d;
  int dl;
  out[0] = '\0';
  if (g->type == GEN_DNS || g->type == GEN_EMAIL) {
    const ASN1_IA5STRING *a = g->type == GEN_DNS ? g->d.dNSName
                                                 : g->d.rfc822Name;
    d = ASN1_STRING_get0_data(a);
    dl = ASN1_STRING_length(a);
    snprintf(out, size, "%s:%.*s", g->type == GEN_DNS ? "DNS" : "email",
             dl, (const char *)d);
  } else if (g->type == GEN_IPADD) {
    char ip[INET6_ADDRSTRLEN] = "";
    d = ASN1_STRING_get0_data(g->d.iPAddress);
    dl = ASN1_STRING_length(g->d.iPAddress);
    if (dl == 4)
      inet_ntop(AF_INET, d, ip, sizeof(ip));
    else if (dl == 16)
      inet_ntop(AF_INET6, d, ip, sizeof(ip));
    snprintf(out, size, "IP:%s", ip);
  }
}

#define SAN_MAX 256 /* bytes per name kept */

/*
** conn:peercert(): {subject=, issuer=, san={"DNS:x", "IP:y", ...},
** not_before=, not_after= (ISO 8601, UTC), fingerprint= (SHA-256, hex
** pairs), serial= (hex)}, or nil. The certificate is borrowed from the
** SSL (no reference taken); the SAN list is copied into a scratch
** userdata, allocated before the list is decoded, so that no Lua
** allocation happens while OpenSSL memory is held.
*/
static int conn_peercert(lua_State *L) {
  tls_conn *t = checkconn(L);
  X509 *x = SSL_get0_peer_certificate(t->ssl);
  GENERAL_NAMES *sans;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0, i;
  char hex[EVP_MAX_MD_SIZE * 3 + 1];
  char *scratch;
  int k, n = 0;
  if (x == NULL)
    return 0;
  lua_createtable(L, 0, 8);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "not_after");
  if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen > 0) {
    for (i = 0; i < mdlen; i++)
      snprintf(hex + 3 * i, 4, "%02X:", md[i]);
    hex[3 * mdlen - 1] = '\0';
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "fingerprint");
  }
  {
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
    char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
    char buf[128] = "";
    if (h != NULL)
      snprintf(buf, sizeof(buf), "%s", h);
    OPENSSL_free(h);
    BN_free(bn);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "serial");
  }
  sans = (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                           NULL);
  if (sans != NULL) {
    n = sk_GENERAL_NAME_num(sans);
    GENERAL_NAMES_free(sans);
  }
  scratch = (char *)lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * SAN_MAX,
                                      0);
  if (n > 0) {
    sans = (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                             NULL);
    for (k = 0; k < n; k++)
      if (sans != NULL && k < sk_GENERAL_NAME_num(sans))
        san_text(sk_GENERAL_NAME_value(sans, k), scratch + k * SAN_MAX,
                 SAN_MAX);
      else
        scratch[k * SAN_MAX] = '\0';
    GENERAL_NAMES_free(sans);
  }
  lua_createtable(L, n, 0);
  for (k = 0, i = 0; k < n; k++) {
    if (scratch[k * SAN_MAX] == '\0')
      continue;
    lua_pushstring(L, scratch + k * SAN_MAX);
    lua_rawseti(L, -2, (lua_Integer)++i);
  }
  lua_setfield(L, -3, "san");
  lua_pop(L, 1); /* the scratch */
  return 1;
}


static const luaL_Reg ctx_meta[] = {
    {"__gc", ctx_gc}, {"conn", conn_new}, {"free", ctx_freeit}, {NULL, NULL}};

static const luaL_Reg conn_meta[] = {{"__gc", conn_gc},
                                     {"free", conn_freeit},
                                     {"feed", conn_feed},
                                     {"feed_eof", conn_feed_eof},
                                     {"output", conn_output},
                                     {"handshake", conn_handshake},
                                     {"write", conn_write},
                                     {"close_notify", conn_close_notify},
                                     {"receive", conn_receive},
                                     {"buffered", conn_buffered},
                                     {"pull", conn_pull},
                                     {"outlen", conn_outlen},
                                     {"state", conn_state},
                                     {"alpn", conn_alpn},
                                     {"info", conn_info},
                                     {"peercert", conn_peercert},
                                     {NULL, NULL}};

static const luaL_Reg tls_funcs[] = {{"context", ctx_new}, {NULL, NULL}};

/* With the hub and the socket state as upvalues. */
static const luaL_Reg tls_sock_funcs[] = {{"send", l_send},
                                          {"flush", l_flush},
                                          {"fill", l_fill},
                                          {"input", l_input},
                                          {"reading", l_reading},
                                          {NULL, NULL}};


static void newmeta(lua_State *L, const char *name, const luaL_Reg *m) {
  luaL_newmetatable(L, name);
  lgreen_register(L, m, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}


/* core.tls = {context = ..., version = "OpenSSL 3.0.x ..."}. */
void lgreen_open_tls(lua_State *L, gl_hub_t *hub) {
  int core = lua_gettop(L);
  (void)hub;
  newmeta(L, TLS_CTX, ctx_meta);
  newmeta(L, TLS_CONN, conn_meta);
  biometh_new(L);
  lua_newtable(L);
  lgreen_register(L, tls_funcs, 0);
  lgreen_sock_register(L, tls_sock_funcs);
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "version");
  lua_setfield(L, core, "tls");
}
