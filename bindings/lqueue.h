/*
** The queues' shared record and their storage (qstore.c), for queue.c.
*/
#ifndef LQUEUE_H
#define LQUEUE_H

#include "lwaitq.h"

/* Storage disciplines. */
enum { S_FIFO, S_LIFO, S_HEAP };

#define UV_ITEMS 1 /* user value: the storage table (nil while empty) */
#define UV_LT 2    /* user value: PriorityQueue's 'lt', or nil */

typedef struct queue {
  lgreen_wq getters;
  lgreen_wq putters;
  lgreen_wq joiners;
  lua_Integer maxsize;    /* -1: no limit */
  lua_Integer unfinished; /* items put and not marked with task_done */
  lua_Integer seq;        /* heap: sequence number of the next put */
  lua_Integer backseq;    /* heap: of the next item given back (< 0) */
  int storage;            /* S_* */
  int head;               /* ring: slot - 1 of the first item */
  int n;                  /* items stored */
  int cap;                /* items (heap entries) the table holds */
  unsigned gen;           /* bumped by every change of the storage */
} queue;

/* 'qi' is the queue's stack index. 'store' and 'take' may run Lua code
   (a heap comparison) and raise; 'reserve' allocates. */
void lgreen_q_reserve(lua_State *L, queue *q, int qi); /* [-0, +0, m] */
void lgreen_q_store(lua_State *L, queue *q, int qi, int vi,
                    int front);                       /* [-0, +0, e] */
void lgreen_q_take(lua_State *L, queue *q, int qi);   /* [-0, +1, e] */
void lgreen_q_store_root(lua_State *L, queue *q, int qi, int vi); /* -0+0 */

#endif
