/*
** Native stacks by copying (greenlet's technique), for green threads that
** block inside a C-call boundary.
**
** Every call that may park runs through 'gl_cs_call', on the caller's own
** stack: the common path costs a _setjmp and nothing else. Code running
** inside it, at any depth, may 'gl_cs_park': the stack between the park
** point and the base of the call (the segment) is copied to the heap and
** control returns from 'gl_cs_call' with GL_CS_PARKED. 'gl_cs_continue'
** later copies the segment back to the same addresses -- after saving
** whatever of the continuer's own stack lies there -- and jumps into it:
** 'gl_cs_park' returns 0 and the code goes on where it was. When that code
** parks again, or when the function of the original 'gl_cs_call' returns,
** the continuer's bytes are put back and 'gl_cs_continue' returns
** GL_CS_PARKED or the function's value.
**
** The copies run on stack below both regions (alloca), so nothing copies
** over its own frame; every jump is a _longjmp up the stack. Under
** AddressSanitizer the copies bypass its checks (the stack holds its
** redzones) and the restored region is unpoisoned; ASan's fake stacks
** (detect_stack_use_after_return) keep locals off the stack, so parking
** is refused while they are on.
**
** Pointers into a segment stay valid while it is parked as long as nobody
** dereferences them: the memory at those addresses belongs to whoever
** runs meanwhile. Lua keeps none outside the coroutine's own state.
**
** x86-64 Linux only ('GL_CS_SUPPORTED'); elsewhere 'gl_cs_park' returns
** UV_ENOTSUP and 'gl_cs_call' is a plain call. Lua-free.
*/
#ifndef GL_CSTACK_H
#define GL_CSTACK_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__linux__)
#define GL_CS_SUPPORTED 1
#else
#define GL_CS_SUPPORTED 0
#endif

#define GL_CS_PARKED (-1) /* gl_cs_call/gl_cs_continue: the call parked */

/* The default limit of a segment's size: deeper stacks do not park. */
#define GL_CS_LIMIT (256 * 1024)

typedef struct gl_cseg gl_cseg_t; /* a parked segment (heap) */

typedef struct gl_cstack {
  jmp_buf ret;     /* where a park, or a continued call's end, lands */
  char *base;      /* the running call's base (its frame's top), or NULL */
  int continued;   /* the running call is a continued segment */
  int result;      /* what 'gl_cs_continue' returns */
  char *save_lo;   /* the continuer's bytes under the segment: */
  size_t save_len; /* [save_lo, save_lo + save_len), kept in 'save' */
  char *save;
  size_t save_cap; /* >= the size of every parked segment */
  size_t limit;    /* the largest segment that may park (bytes) */
  size_t nparked;  /* segments parked now */
  size_t bytes;    /* their sizes, summed */
  uint64_t parks;  /* parks and continues so far */
  uint64_t continues;
} gl_cstack_t;

void gl_cs_init(gl_cstack_t *cs);
void gl_cs_close(gl_cstack_t *cs); /* frees the buffer (not segments) */

/*
** Call fn(arg), whose value must be >= 0. Returns it, or GL_CS_PARKED
** when code inside parked. Called while a call runs, a plain call.
*/
int gl_cs_call(gl_cstack_t *cs, int (*fn)(void *), void *arg);

/*
** From inside a 'gl_cs_call': park, storing the segment in '*slot'.
** Returns 0 once continued; UV_ENOTSUP outside a call (or unsupported
** here), UV_E2BIG over the limit, UV_ENOMEM: not parked, nothing changed.
*/
int gl_cs_park(gl_cstack_t *cs, gl_cseg_t **slot);

/* Can a park succeed from here (as far as can be known before trying)? */
int gl_cs_can_park(const gl_cstack_t *cs);

/*
** Continue a parked segment (it is freed). Returns the value of the
** function of the 'gl_cs_call' it belongs to once that returns, or
** GL_CS_PARKED if it parked again. UV_EBUSY while a call runs, UV_ENOMEM
** (a continuer far below the segment's base found no memory to save its
** own stack): not continued, nothing changed.
*/
int gl_cs_continue(gl_cstack_t *cs, gl_cseg_t *seg);

/* Free a parked segment that will never continue. */
void gl_cs_drop(gl_cstack_t *cs, gl_cseg_t *seg);

size_t gl_cs_size(const gl_cseg_t *seg); /* bytes of stack it holds */

#endif
