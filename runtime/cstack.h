/*
** Native stacks by copying (greenlet's technique), for green threads that
** block inside a C-call boundary.
**
** A call that may park runs between 'gl_cs_enter' and 'gl_cs_leave' in
** one frame, on the caller's own stack; an outer frame holds a landing
** (a jmp_buf in 'cs->land', set once for many calls). The common path
** costs a store and a test. Code running inside the call, at any depth,
** may 'gl_cs_park': the stack between the park point and the base of the
** call (the top of the entering frame: the segment) is copied to the heap
** and control goes to the landing. 'gl_cs_continue' later copies the
** segment back to the same addresses -- after saving whatever of the
** continuer's own stack lies below the base -- and jumps into it:
** 'gl_cs_park' returns 0 and the code goes on where it was. When that
** code parks again, or when the call reaches 'gl_cs_leave', the
** continuer's bytes are put back and 'gl_cs_continue' returns
** GL_CS_PARKED or the value given to 'gl_cs_leave'.
**
** The copies run on stack below every region they write (alloca), so
** nothing copies over its own frame; every jump is a _longjmp up the
** stack. Under AddressSanitizer the copies bypass its checks (the stack
** holds its redzones) and the restored region is unpoisoned; ASan's fake
** stacks (detect_stack_use_after_return) keep locals off the stack, so
** parking is refused while they are on.
**
** Pointers into a segment stay valid while it is parked as long as nobody
** dereferences them: the memory at those addresses belongs to whoever
** runs meanwhile. Lua keeps none outside the coroutine's own state.
**
** x86-64 Linux only ('GL_CS_SUPPORTED'); elsewhere 'gl_cs_park' returns
** UV_ENOTSUP. Lua-free.
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
  jmp_buf ret;     /* where a continued call's park or end lands */
  jmp_buf *land;   /* where a first park lands (an outer frame's), or NULL */
  char *base;      /* the running call's base (its frame's top), or NULL */
  int continued;   /* the running call is a continued segment */
  int result;      /* what 'gl_cs_continue' returns */
  char *save_lo;   /* the continuer's bytes under the base: */
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
** Start a call that may park, whose base is the top of the calling frame
** (GL_CS_BASE() there: it gives the function a frame pointer). A park
** before 'gl_cs_leave' lands on '*cs->land' (with 'cs->result' =
** GL_CS_PARKED), which an outer frame set up with _setjmp.
*/
#define GL_CS_BASE() ((char *)__builtin_frame_address(0) + 2 * sizeof(void *))
static inline void gl_cs_enter(gl_cstack_t *cs, char *base) {
  cs->base = base;
}

/*
** End the call with value 'r' (>= 0). In a continued segment, never
** returns: the continuer's 'gl_cs_continue' returns 'r'.
*/
void gl_cs_return(gl_cstack_t *cs, int r) __attribute__((noreturn));
static inline void gl_cs_leave(gl_cstack_t *cs, int r) {
  cs->base = NULL;
  if (cs->continued)
    gl_cs_return(cs, r);
}

/*
** Call fn(arg) (its value must be >= 0) as a call that may park, with
** its own landing: returns fn's value, or GL_CS_PARKED. Nested in a
** running call, a plain call.
*/
int gl_cs_call(gl_cstack_t *cs, int (*fn)(void *), void *arg);

/*
** From inside a call: park, storing the segment in '*slot'. Returns 0
** once continued; UV_ENOTSUP outside a call, without a landing or not
** supported here, UV_E2BIG over the limit, UV_ENOMEM: not parked,
** nothing changed.
*/
int gl_cs_park(gl_cstack_t *cs, gl_cseg_t **slot);

/* Can a park succeed from here (as far as can be known before trying)? */
int gl_cs_can_park(const gl_cstack_t *cs);

/*
** Continue a parked segment (it is freed). Returns the value its call
** gives 'gl_cs_leave', or GL_CS_PARKED if it parked again. UV_EBUSY while
** a call runs, UV_ENOMEM (a continuer far below the segment's base found
** no memory to save its own stack): not continued, nothing changed.
*/
int gl_cs_continue(gl_cstack_t *cs, gl_cseg_t *seg);

/* Free a parked segment that will never continue. */
void gl_cs_drop(gl_cstack_t *cs, gl_cseg_t *seg);

size_t gl_cs_size(const gl_cseg_t *seg); /* bytes of stack it holds */

#endif
