/*
** Signals: what signal.c gives the rest of green.core (process.c's kill
** and its SIGCHLD watcher). Private to bindings/.
**
** Every uv_signal_t of green.core starts and stops through these, so that
** the process's signal dispositions survive them: libuv installs its own
** handler when the first watcher of a signal starts and resets the
** signal to SIG_DFL when the last one stops, which would turn greenlua's
** Ctrl-C handler off for good, or make SIGPIPE (ignored since sockets
** opened) kill the process. The disposition in force before the first
** watcher is put back after the last.
*/
#ifndef LSIGNAL_H
#define LSIGNAL_H

#include "lgreen.h"

/* [-0, +0, v] The signal at 'idx': a number (0 only if 'allow0', for
   kill's existence check), or a name such as "TERM" or "SIGTERM" (any
   case). Raises for anything else. */
int lgreen_signum(lua_State *L, int idx, int allow0);

/* "TERM" for SIGTERM, or NULL for a signal without a name. */
const char *lgreen_signame(int signum);

/* uv_signal_start/uv_signal_stop, keeping the disposition (see above).
   Start returns 0 or a UV_E* code; stop does nothing if 'h' is stopped. */
int lgreen_signal_start(uv_signal_t *h, uv_signal_cb cb, int signum);
void lgreen_signal_stop(uv_signal_t *h);

#endif
