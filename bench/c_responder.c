/*
** bench/c_responder.c: the floor of bench/http.sh. A raw keep-alive HTTP
** responder written directly on libuv, with the same minimal parsing as
** bench/http_raw.lua: scan the bytes for "\r\n\r\n" (the state carried
** across reads), count the request ends in each read (pipelining) and
** answer each with a fixed 200 response. Nothing else: no headers parsed,
** no request line checked.
**
** Written the way a careful libuv program would be, so the floor is not
** a straw man: one read buffer shared by all connections (libuv reads
** into it, nothing is kept per idle connection; greenlua does the same),
** uv_try_write first, a uv_write request only for what the kernel did not
** take. Socket options left at libuv's defaults, as greenlua leaves
** them (no TCP_NODELAY).
**
**   cc -O2 -o build/c_responder bench/c_responder.c $(pkg-config --cflags --libs libuv)
**   cc -O2 -o build/c_responder bench/c_responder.c \
**     $(pkg-config --cflags --libs libuv) -lhttp_parser
**   build/c_responder [-p] [port]    port 0 (the default): any free port
** Binds 127.0.0.1 only, prints "port N" once listening, serves until
** killed (SIGTERM/SIGINT end the loop).
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <uv.h>

static const char RESP[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
#define RESP_LEN (sizeof(RESP) - 1)

/* Up to this many responses go out in one write (pipelined requests). */
#define BATCH 64
static char batch[BATCH * RESP_LEN];

static char scratch[64 * 1024];

typedef struct conn {
  uv_tcp_t tcp; /* first: callbacks cast the handle back */
  int match;    /* bytes of "\r\n\r\n" matched at the end of the last read */
  size_t reqs;  /* (-p) requests completed in this read */
  http_parser p; /* (-p) */
} conn;

static int parse; /* -p: parse with libhttp-parser */
static http_parser_settings settings;

static int on_message_complete(http_parser *p) {
  ((conn *)p->data)->reqs++;
  return 0;
}

typedef struct wreq {
  uv_write_t req;
  size_t n;
  char data[]; /* the bytes uv_try_write did not take */
} wreq;


static void on_close(uv_handle_t *h) { free(h); }


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(scratch, sizeof(scratch));
}


static void on_write(uv_write_t *req, int status) {
  if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
    uv_close((uv_handle_t *)req->handle, on_close);
  free(req);
}


/* Send 'n' bytes: whatever the kernel takes now, the rest queued. */
static int send_bytes(conn *c, const char *p, size_t n) {
  int r = uv_try_write((uv_stream_t *)&c->tcp, &(uv_buf_t){(char *)p, n}, 1);
  if (r == UV_EAGAIN)
    r = 0;
  if (r < 0)
    return r;
  if ((size_t)r < n) {
    size_t rest = n - (size_t)r;
    wreq *w = (wreq *)malloc(sizeof(*w) + rest);
    uv_buf_t b;
    if (w == NULL)
      return UV_ENOMEM;
    memcpy(w->data, p + r, rest);
    w->n = rest;
    b = uv_buf_init(w->data, (unsigned)rest);
    r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
      free(w);
      return r;
    }
  }
  return 0;
}


static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  conn *c = (conn *)h;
  static const char end[4] = {'\r', '\n', '\r', '\n'};
  size_t reqs = 0;
  int m = c->match;
  ssize_t i;
  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)h))
      uv_close((uv_handle_t *)h, on_close);
    return;
  }
  if (parse) {
    c->reqs = 0;
    if (http_parser_execute(&c->p, &settings, b->base, (size_t)n) !=
            (size_t)n ||
        c->p.http_errno != HPE_OK) {
      if (!uv_is_closing((uv_handle_t *)h))
        uv_close((uv_handle_t *)h, on_close);
      return;
    }
    reqs = c->reqs;
    n = 0; /* (no scan) */
  }
  /* 'm' bytes of "\r\n\r\n" matched so far. On a mismatch the only
     prefix that can still be under way is "\r" (when the byte is one). */
  for (i = 0; i < n; i++) {
    char ch = b->base[i];
    if (ch == end[m]) {
      if (++m == 4) {
        reqs++;
        m = 0;
      }
    } else {
      m = ch == '\r';
    }
  }
  c->match = m;
  while (reqs > 0) {
    size_t k = reqs < BATCH ? reqs : BATCH;
    if (send_bytes(c, batch, k * RESP_LEN) < 0) {
      if (!uv_is_closing((uv_handle_t *)h))
        uv_close((uv_handle_t *)h, on_close);
      return;
    }
    reqs -= k;
  }
}


static void on_connection(uv_stream_t *server, int status) {
  conn *c;
  if (status < 0)
    return;
  c = (conn *)calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  uv_tcp_init(server->loop, &c->tcp);
  http_parser_init(&c->p, HTTP_REQUEST);
  c->p.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}


static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uv_stop(h->loop);
}


int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  uv_signal_t sterm, sint;
  struct sockaddr_in addr;
  struct sockaddr_storage got;
  int len = sizeof(got), port, r, i;

  if (argc > 1 && strcmp(argv[1], "-p") == 0) {
    parse = 1;
    argc--;
    argv++;
  }
  port = argc > 1 ? atoi(argv[1]) : 0;
  http_parser_settings_init(&settings);
  settings.on_message_complete = on_message_complete;

  for (i = 0; i < BATCH; i++)
    memcpy(batch + i * RESP_LEN, RESP, RESP_LEN);
  signal(SIGPIPE, SIG_IGN);
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &server);
  if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0)) < 0 ||
      (r = uv_listen((uv_stream_t *)&server, 1024, on_connection)) < 0) {
    fprintf(stderr, "c_responder: %s\n", uv_strerror(r));
    return 1;
  }
  uv_tcp_getsockname(&server, (struct sockaddr *)&got, &len);
  printf("port %d\n", ntohs(((struct sockaddr_in *)&got)->sin_port));
  fflush(stdout);
  uv_signal_init(loop, &sterm);
  uv_signal_start(&sterm, on_signal, SIGTERM);
  uv_signal_init(loop, &sint);
  uv_signal_start(&sint, on_signal, SIGINT);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
