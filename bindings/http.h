/*
** http.h: what bindings/http.c shares with bindings/ws.c: waiting for
** more bytes in a stream socket's read buffer, in the socket's readers
** queue (socket.c's protocol, as stream.c's receive waits).
*/
#ifndef LGREEN_HTTP_H
#define LGREEN_HTTP_H

#include "lsocket.h"

/* A waiter of 'lgreen_http_wait' leaves its socket's readers (done or
   given up); its cancel function. */
void lgreen_http_leave(gl_wait_t *w);

/* Wait until more than 'have' bytes are buffered in 'x' (or an error, the
   end of the stream, or deadline 'due', 0 for none), then continue with
   'k' (context: 'due'). Nothing may allocate between the caller's checks
   of 'x' and this. */
int lgreen_http_wait(lua_State *L, lstream *x, size_t have, uint64_t due,
                     const char *what, lua_KFunction k);

/* A TLS connection's plaintext buffer (bindings/tls.c), which the parser
   reads in place as it reads a stream socket's: the conn userdata at
   'idx' (raises if it is not one, or freed); its buffered bytes ('*eof':
   0 more may come, 1 the peer's close_notify ended the stream, 2 it ended
   without one or failed); drop 'n' of them. */
void *lgreen_tls_checkconn(lua_State *L, int idx);
char *lgreen_tls_plain(void *conn, size_t *len, int *eof);
void lgreen_tls_consume(void *conn, size_t n);

#endif
