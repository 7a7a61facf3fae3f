/*
** Native stacks by copying: see cstack.h for the model.
**
** The picture (the stack grows down):
**
**   base  +-----------------+  the top of the entering frame (its CFA)
**         | gl_hub_resume   |
**         | fn ... lua code |  the segment: copied out when parking,
**         | gl_cs_park      |  back to the same addresses to continue
**   lo    +-----------------+
**         | run_below pad   |  alloca: the copies run below every region
**         | finish_*        |  they touch, then _longjmp up
**
** A continuer deeper than 'base' has frames below it, which the segment
** and the code continued in it (running below 'lo') overwrite: its stack
** from its own stack pointer up to 'base' goes to 'cs->save' first and
** comes back before the jump to the continuer. 'cs->save' is grown to a
** segment's size when it parks, so a continuer above the segment's bottom
** never allocates; a deeper one may (UV_ENOMEM, nothing done).
*/
#include <alloca.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cstack.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#define FAKE_STACK() (__asan_get_current_fake_stack() != NULL)
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define FAKE_STACK() 0
#endif

#define NOINLINE __attribute__((noinline, noclone))

/* Below the stack pointer of a frame that parks: x86-64's red zone. */
#define REDZONE 128

struct gl_cseg {
  char *lo;     /* the segment is [lo, base) */
  char *base;
  size_t size;  /* base - lo */
  jmp_buf jb;   /* the park point */
  char data[];  /* the bytes */
};


void gl_cs_init(gl_cstack_t *cs) {
  memset(cs, 0, sizeof(*cs));
  cs->limit = GL_CS_LIMIT;
}


void gl_cs_close(gl_cstack_t *cs) {
  free(cs->save);
  cs->save = NULL;
  cs->save_cap = 0;
}


size_t gl_cs_size(const gl_cseg_t *seg) {
  return seg->size;
}


void gl_cs_drop(gl_cstack_t *cs, gl_cseg_t *seg) {
  cs->nparked--;
  cs->bytes -= seg->size;
  free(seg);
}


#if GL_CS_SUPPORTED

static inline char *cur_sp(void) {
  char *sp;
  __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
  return sp;
}


/* memcpy without the sanitizer's checks: stacks hold ASan's redzones. */
static inline void rawcopy(void *dst, const void *src, size_t n) {
  __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}


/*
** Call fn(cs, arg), which never returns, on stack below 'below': the
** copies it makes may then overwrite anything above.
*/
static NOINLINE void run_below(char *below,
                               void (*fn)(gl_cstack_t *, void *),
                               gl_cstack_t *cs, void *arg) {
  char *sp = cur_sp();
  size_t n = sp > below ? (size_t)(sp - below) + 256 : 16;
  volatile char *pad = alloca(n);
  pad[0] = 0;
  fn(cs, arg);
  __asm__ volatile("" : : "r"(pad) : "memory");
  abort(); /* not reached */
}


/* Put the continuer's bytes back (none when it ran above the segment). */
static void restore_continuer(gl_cstack_t *cs) {
  if (cs->save_len > 0) {
    rawcopy(cs->save_lo, cs->save, cs->save_len);
    UNPOISON(cs->save_lo, cs->save_len);
    cs->save_len = 0;
  }
  cs->continued = 0;
}


/* The lowest address the way back to the continuer writes. */
static char *continuer_lo(gl_cstack_t *cs, char *lo) {
  return cs->continued && cs->save_len > 0 && cs->save_lo < lo ? cs->save_lo
                                                               : lo;
}


static void finish_return(gl_cstack_t *cs, void *arg) {
  (void)arg;
  restore_continuer(cs);
  _longjmp(cs->ret, 1);
}


void gl_cs_return(gl_cstack_t *cs, int r) {
  /* A continued segment ended: back to the continuer, whose bytes may
     lie where the caller's frame is. */
  cs->result = r;
  run_below(continuer_lo(cs, cur_sp() - REDZONE), finish_return, cs, NULL);
  abort(); /* not reached */
}


/* The call of 'gl_cs_call': its frame is the base. */
static NOINLINE int call_inner(gl_cstack_t *cs, int (*fn)(void *),
                               void *arg) {
  int r;
  gl_cs_enter(cs, GL_CS_BASE());
  r = fn(arg);
  gl_cs_leave(cs, r);
  return r;
}


int NOINLINE gl_cs_call(gl_cstack_t *cs, int (*fn)(void *), void *arg) {
  jmp_buf land;
  jmp_buf *outer = cs->land;
  int r;
  if (cs->base != NULL)
    return fn(arg);
  cs->land = &land;
  if (_setjmp(land) != 0) {
    cs->land = outer;
    return GL_CS_PARKED;
  }
  r = call_inner(cs, fn, arg);
  cs->land = outer;
  return r;
}


int gl_cs_can_park(const gl_cstack_t *cs) {
  return cs->base != NULL && (cs->continued || cs->land != NULL) &&
         !FAKE_STACK();
}


static void finish_park(gl_cstack_t *cs, void *arg) {
  gl_cseg_t *seg = arg;
  rawcopy(seg->data, seg->lo, seg->size);
  cs->base = NULL;
  cs->result = GL_CS_PARKED;
  if (cs->continued) {
    restore_continuer(cs);
    _longjmp(cs->ret, 1);
  }
  _longjmp(*cs->land, 1);
}


int NOINLINE gl_cs_park(gl_cstack_t *cs, gl_cseg_t **slot) {
  char *lo = cur_sp() - REDZONE;
  gl_cseg_t *seg;
  size_t size;
  if (!gl_cs_can_park(cs))
    return UV_ENOTSUP;
  size = (size_t)(cs->base - lo);
  if (size > cs->limit)
    return UV_E2BIG;
  seg = malloc(sizeof(*seg) + size);
  if (seg == NULL)
    return UV_ENOMEM;
  if (cs->save_cap < size) { /* continuing from as deep seldom allocates */
    char *p = realloc(cs->save, size);
    if (p == NULL) {
      free(seg);
      return UV_ENOMEM;
    }
    cs->save = p;
    cs->save_cap = size;
  }
  seg->lo = lo;
  seg->base = cs->base;
  seg->size = size;
  if (_setjmp(seg->jb) != 0)
    return 0; /* continued: gl_cs_continue freed 'seg' */
  *slot = seg;
  cs->nparked++;
  cs->bytes += size;
  cs->parks++;
  run_below(continuer_lo(cs, lo), finish_park, cs, seg);
  return 0; /* not reached */
}


static void finish_continue(gl_cstack_t *cs, void *arg) {
  gl_cseg_t *seg = arg;
  jmp_buf jb;
  if (cs->save_len > 0)
    rawcopy(cs->save, cs->save_lo, cs->save_len);
  rawcopy(seg->lo, seg->data, seg->size);
  UNPOISON(seg->lo, seg->size);
  cs->base = seg->base;
  cs->continued = 1;
  memcpy(jb, seg->jb, sizeof(jb));
  gl_cs_drop(cs, seg);
  _longjmp(jb, 1);
}


int NOINLINE gl_cs_continue(gl_cstack_t *cs, gl_cseg_t *seg) {
  char *lo;
  size_t need;
  if (cs->base != NULL)
    return UV_EBUSY;
  /* The continued code may use any stack below its base: save all of the
     continuer's that lies there (nothing when it runs above the base). */
  lo = cur_sp() - REDZONE;
  need = seg->base > lo ? (size_t)(seg->base - lo) + 512 : 0;
  if (need > cs->save_cap) {
    char *p = realloc(cs->save, need);
    if (p == NULL)
      return UV_ENOMEM;
    cs->save = p;
    cs->save_cap = need;
  }
  cs->continues++;
  if (_setjmp(cs->ret) != 0)
    return cs->result;
  lo = cur_sp() - REDZONE;
  cs->save_lo = lo;
  cs->save_len = seg->base > lo ? (size_t)(seg->base - lo) : 0;
  run_below(lo < seg->lo ? lo : seg->lo, finish_continue, cs, seg);
  return 0; /* not reached */
}

#else /* !GL_CS_SUPPORTED */

void gl_cs_return(gl_cstack_t *cs, int r) {
  (void)cs;
  (void)r;
  abort(); /* nothing is ever continued */
}


int gl_cs_call(gl_cstack_t *cs, int (*fn)(void *), void *arg) {
  (void)cs;
  return fn(arg);
}


int gl_cs_can_park(const gl_cstack_t *cs) {
  (void)cs;
  return 0;
}


int gl_cs_park(gl_cstack_t *cs, gl_cseg_t **slot) {
  (void)cs;
  (void)slot;
  return UV_ENOTSUP;
}


int gl_cs_continue(gl_cstack_t *cs, gl_cseg_t *seg) {
  (void)cs;
  (void)seg;
  return UV_ENOTSUP;
}

#endif
