/*
** bench/c_queue_work.c: the floor of bench/tpool.lua. Round trips through
** libuv's own thread pool, one at a time: uv_queue_work with a work
** function that does nothing, the next one queued from the after-work
** callback on the loop's thread. The same shape as a tpool.execute round
** trip (hand a job to a pool thread, wake the loop when it is done), with
** nothing of greenlua's: no Lua state on either side, no copying.
**
**   cc -O2 -o build/c_queue_work bench/c_queue_work.c $(pkg-config --cflags --libs libuv)
**   build/c_queue_work [round trips]     prints round trips per second
*/
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

static long left;
static volatile long sink;


static void work(uv_work_t *req) {
  sink += (long)(size_t)req->data; /* something the compiler keeps */
}


static void after(uv_work_t *req, int status) {
  (void)status;
  if (--left > 0)
    uv_queue_work(req->loop, req, work, after);
}


static double run(uv_loop_t *loop, long n) {
  uv_work_t req;
  uint64_t t0 = uv_hrtime();
  req.data = (void *)1;
  left = n;
  uv_queue_work(loop, &req, work, after);
  uv_run(loop, UV_RUN_DEFAULT);
  return (double)(uv_hrtime() - t0) / 1e9;
}


int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  uv_loop_t *loop = uv_default_loop();
  run(loop, n / 10 + 1); /* the pool's threads start: not timed */
  printf("%.0f\n", (double)n / run(loop, n));
  return 0;
}
