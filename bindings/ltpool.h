/*
** green.tpool (bindings/tpool.c): the thread pool with its own Lua states,
** and the copying of values between two Lua states (bindings/tpcopy.c).
**
** A value crosses from one state to another as bytes: the writer runs in
** the state that has the values, the reader in the state that gets them,
** so neither touches the other state (they run on different OS threads).
** What crosses: nil, booleans, numbers (integers stay integers), strings
** and tables of those, nested, with shared references and cycles kept.
** Metatables are not copied. Functions, userdata and threads are refused
** with an error that names where the value was ("argument #2, field
** 'x.y'").
*/
#ifndef LTPOOL_H
#define LTPOOL_H

#include <stddef.h>

#include "lgreen.h"

/* A growable byte buffer (malloc'd; never raises by itself). */
typedef struct tp_buf {
  char *p;
  size_t n;   /* bytes used */
  size_t cap; /* bytes allocated */
} tp_buf;

/* Tables nested deeper than this are refused (the copy recurses). */
#define TPC_MAXDEPTH 1000

void tpc_buf_free(tp_buf *b);
int tpc_buf_add(tp_buf *b, const void *s, size_t len); /* 0 or -1 (ENOMEM) */

/*
** [-0, +0, v] Replace the contents of 'b' by the 'n' values of 'L' from
** stack index 'first'. Value i (from 0) is called "<what> #<base + i>"
** in errors (what "argument", base 2: "argument #2"); with 'what' alone
** and 'n' 1 ("the error value"), no number. Raises "cannot copy a
** function (argument #2, field 'x')" for a value that cannot cross, and
** on memory errors; 'b' may then hold part of a copy.
*/
void tpc_write(lua_State *L, tp_buf *b, int first, int n, const char *what,
               int base);

/* [-0, +0, -] 'b' := the single string 's' (for a message made in C);
   0, or -1 if out of memory. */
int tpc_write_string(tp_buf *b, const char *s, size_t len);

/* [-0, +n, m] Push the values written in 'p' (of 'len' bytes); returns
   their number. */
int tpc_read(lua_State *L, const char *p, size_t len);

/*
** After fork(), in the child: forget the parent's worker threads (they do
** not exist here). Their Lua states are left allocated and never closed:
** their finalizers would act on the parent's resources (a database
** connection closed here would checkpoint the parent's journal). Tasks
** they were running fail in their callers; finished and queued tasks are
** kept, and new workers start on first use. Call it on the hub's thread,
** after uv_loop_fork: green.fork does (a reset registered with
** lgreen_on_fork), and so does spec/c/test-tpool-fork.c.
*/
void lgreen_tpool_forget(lua_State *L);

#endif
