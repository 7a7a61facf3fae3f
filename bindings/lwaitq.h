/*
** The toolkit's wait queues (waitq.c): what the C halves of green.Event,
** the semaphores and the queues (and, through a queue, pools.Pool) share.
**
** A thread blocked in one of them waits in its own record 't->w' (no
** allocation per wait), queued in an 'lgreen_wq' of the object. The
** wait's 'data' is the lua_State that made the call: its frame keeps the
** object at slot 1 for as long as the wait lasts (which anchors the object
** and lets 'cancel' find it) and, for a put, the item at slot 2. A waker
** hands a value over by pushing it onto that state, above the frame the
** waiting call left ('lgreen_wq_give'), as core.wake does: the
** continuation finds it on its own stack. A waiter interrupted after it
** was handed something (woken, then killed before it ran) sees status
** GL_W_OK with GL_F_PENDING set, and gives it on before raising.
*/
#ifndef LWAITQ_H
#define LWAITQ_H

#include "lgreen.h"

/* Waits of one kind on one object (an Event's waiters, a Queue's
   getters), with their number. */
typedef struct lgreen_wq {
  gl_waitq_t q;
  lua_Integer n; /* waits queued */
} lgreen_wq;

/* The state a toolkit wait 'w' was made from (its frame: object at 1). */
#define lgreen_wq_state(w) ((lua_State *)(w)->data)

/* The object of toolkit wait 'w' (slot 1 of its frame). */
#define lgreen_wq_object(w) lua_touserdata(lgreen_wq_state(w), 1)

/* Was wait 'w' handed something and then interrupted before it ran? */
#define lgreen_wq_handed_back(w)                                           \
  ((w)->status == GL_W_OK && ((w)->thread->flags & GL_F_PENDING))

void lgreen_wq_init(lgreen_wq *wq);
int lgreen_wq_opttimeout(lua_State *L, int arg, lua_Number *s);
int lgreen_wq_wait(lua_State *L, gl_thread_t *t, lgreen_wq *wq,
                   const char *what, gl_wait_cb cancel, const lua_Number *s,
                   lua_KFunction k, int final);
gl_wait_t *lgreen_wq_wake(lgreen_wq *wq); /* the longest wait, ended */
void lgreen_wq_give(lua_State *L, gl_wait_t *w, int idx); /* [-0, +0, -] */
void lgreen_wq_take(lua_State *L, gl_wait_t *w, int slot); /* [-0, +1, -] */
void *lgreen_wq_check(lua_State *L, int idx, const char *tname);

/* Classes and registration (each type's lgreen_open_*). */
int lgreen_wq_module(lua_State *L, gl_hub_t *hub); /* [-0, +2, m] */
void lgreen_wq_class(lua_State *L, int mod, const char *tname,
                     const luaL_Reg *l, const char *field);
void lgreen_wq_setfuncs(lua_State *L, int mod, const luaL_Reg *l);
void lgreen_wq_register(lua_State *L, int core, const char *name, int mod);

#endif
