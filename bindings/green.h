/*
** green.h: the C API of green.core for a program that hosts it (the
** greenlua executable, runtime/main.c). Everything else goes through Lua:
** require "green".
*/
#ifndef GREEN_H
#define GREEN_H

#include <lua.h>

/* A state's hub, for 'green_interrupt' (opaque). */
typedef struct lgreen_state green_hub;

/* Open green.core in 'L' (what require "green.core" runs). */
int luaopen_green_core(lua_State *L);

/*
** Prepare the hub of 'L' (green.core open) for 'green_interrupt' and
** return it; NULL if green.core is not open in 'L' or the hub cannot be
** woken (no file descriptor left).
*/
green_hub *green_interruptible(lua_State *L);

/*
** Async-signal-safe (call it from a SIGINT handler): interrupt the thread
** named by green.core.interrupt_target (the executable's main chunk) with
** "interrupted!", as lua5.4's Ctrl-C does: in its Lua code if it is
** running, else at its blocking call; once it has ended, the host's main
** thread's blocking call (it stops waiting for the other threads).
** Returns 1, doing nothing, while an earlier interrupt is not delivered
** yet (the hub is stuck), or once one was delivered, until
** green.core.interrupt_target names the target again (greenlua's prompt
** does at each line): the host should end the process then, as lua5.4
** does on a second Ctrl-C. Else 0.
*/
int green_interrupt(green_hub *hub);

/*
** Async-signal-safe (call it from a SIGQUIT handler): print a dump of
** every green thread (green.debug.dump) on stderr as soon as the hub is
** between two resumes, or the thread running reaches its next Lua
** instruction (or returns from its C function); nothing else changes.
*/
void green_dump(green_hub *hub);

#endif
