/*
** c_http_client.c: the C floor of bench/http_client.lua. A keep-alive
** HTTP/1.1 client on libuv: CONC connections to 127.0.0.1:PORT, each
** sending "GET PATH" and waiting for the whole response before the next
** one (no pipelining), N requests in all. A response is its head (up to
** "\r\n\r\n") and Content-Length bytes of body; each must be a 200.
**
**   c_http_client PORT PATH N CONC   -> prints "done N SECONDS"
*/
#define _GNU_SOURCE /* strcasestr */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  char in[65536];
  size_t have;
} conn;

static char request[512];
static size_t request_len;
static long total, started, finished;

static void send_next(conn *c);


static void die(const char *what, int err) {
  fprintf(stderr, "c_http_client: %s: %s\n", what, uv_strerror(err));
  exit(1);
}


static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  conn *c = (conn *)h->data;
  (void)size;
  buf->base = c->in + c->have;
  buf->len = sizeof(c->in) - c->have;
}


/* A complete response at the start of c->in: its length, or 0. */
static size_t complete(conn *c) {
  const char *end, *cl;
  size_t head, body = 0;
  c->in[c->have < sizeof(c->in) ? c->have : sizeof(c->in) - 1] = '\0';
  end = strstr(c->in, "\r\n\r\n");
  if (end == NULL)
    return 0;
  head = (size_t)(end - c->in) + 4;
  if (strncmp(c->in, "HTTP/1.1 200", 12) != 0) {
    fprintf(stderr, "c_http_client: not a 200: %.40s\n", c->in);
    exit(1);
  }
  cl = strcasestr(c->in, "\r\nContent-Length:");
  if (cl != NULL && cl < end)
    body = (size_t)strtoul(cl + 17, NULL, 10);
  return c->have >= head + body ? head + body : 0;
}


static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = (conn *)s->data;
  size_t len;
  (void)buf;
  if (n < 0)
    die("read", (int)n);
  c->have += (size_t)n;
  if (c->have >= sizeof(c->in))
    die("read", UV_ENOBUFS);
  len = complete(c);
  if (len == 0)
    return;
  memmove(c->in, c->in + len, c->have - len);
  c->have -= len;
  finished++;
  if (started < total)
    send_next(c);
  else
    uv_close((uv_handle_t *)&c->tcp, NULL);
}


static void on_write(uv_write_t *w, int status) {
  (void)w;
  if (status < 0)
    die("write", status);
}


static void send_next(conn *c) {
  uv_buf_t b = uv_buf_init(request, (unsigned)request_len);
  int r;
  started++;
  r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)request_len)
    return;
  if (r > 0) {
    b.base += r;
    b.len -= (size_t)r;
  } else if (r != UV_EAGAIN) {
    die("write", r);
  }
  r = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r < 0)
    die("write", r);
}


static void on_connect(uv_connect_t *req, int status) {
  conn *c = (conn *)req->data;
  int r;
  if (status < 0)
    die("connect", status);
  r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r < 0)
    die("read", r);
  if (started < total)
    send_next(c);
  else
    uv_close((uv_handle_t *)&c->tcp, NULL);
}


int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  int port, nconn, i;
  conn *conns;
  uint64_t t0;
  if (argc != 5) {
    fprintf(stderr, "usage: c_http_client PORT PATH N CONC\n");
    return 2;
  }
  port = atoi(argv[1]);
  total = atol(argv[3]);
  nconn = atoi(argv[4]);
  if (nconn < 1 || total < 1)
    return 2;
  request_len = (size_t)snprintf(request, sizeof(request),
                                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                 "\r\n", argv[2], port);
  uv_ip4_addr("127.0.0.1", port, &addr);
  conns = (conn *)calloc((size_t)nconn, sizeof(conn));
  if (conns == NULL)
    return 1;
  uv_update_time(loop);
  t0 = uv_hrtime();
  for (i = 0; i < nconn; i++) {
    conn *c = &conns[i];
    uv_tcp_init(loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr,
                       on_connect) < 0)
      die("connect", UV_ECONNREFUSED);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  if (finished != total) {
    fprintf(stderr, "c_http_client: %ld of %ld\n", finished, total);
    return 1;
  }
  printf("done %ld %.6f\n", finished, (double)(uv_hrtime() - t0) / 1e9);
  free(conns);
  return 0;
}
