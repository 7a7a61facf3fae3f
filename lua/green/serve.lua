--- `green.serve` and `green.StopServe`: the accept loop over green
-- sockets. The sockets themselves are C (bindings/lsocket.h lists the
-- files) and reach users as `green.connect` and `green.listen`;
-- the LuaSocket-compatible module is lua/green/socket.lua.
-- @module green.serve

local core = require "green.core"
local prefork = require "green.prefork"
local check = require("green.opts").check
local callable_arg = require("green.opts").callable_arg

local spawn, spawn_closing, getcurrent, suspend, wake, sleep =
  core.spawn, core.spawn_closing, core.getcurrent, core.suspend, core.wake,
  core.sleep
local observe = core.observe
local error, type, pcall, setmetatable, pairs =
  error, type, pcall, setmetatable, pairs
local min = math.min

local M = {}

--- Raise this from a `serve` handler to end the accept loop:
-- `error(green.StopServe)`. It is not reported as an error.
M.StopServe = setmetatable({}, {
  __name = "green.StopServe",
  __tostring = function() return "StopServe" end,
})
local StopServe = M.StopServe

-- EMFILE and other accept failures: wait this long, doubling up to the
-- maximum, rather than spinning on a listening socket that stays ready.
local BACKOFF_MIN, BACKOFF_MAX = 0.01, 1.0

-- At a graceful stop, the most connections taken from the listening
-- socket after the accept loop ended (what libuv holds, and what the
-- kernel has queued for this process right then).
local DRAIN_MAX = 64

-- Serve `server` until StopServe, a closed server, or `control.stop`;
-- see M.serve. `control` (prefork workers) gets a `stop(grace)` that
-- stops accepting, lets the handlers running finish for up to `grace`
-- seconds, kills the rest, and makes this return true.
local function serve_loop(server, handler, concurrency, control)
  local caller = getcurrent()
  local running = 0
  local handlers = {} -- thread -> true while it runs a handler
  local acceptor
  local stopping = false
  local drained     -- woken when the last handler ends while stopping
  local outcome -- nil while serving; then { ok, err }

  local function finish(...)
    if not outcome then
      outcome = table.pack(...)
      wake(caller)
    end
  end

  -- Runs in a handler's thread when it leaves its function in any way
  -- (return, error, kill, even a kill before it started): frees the slot
  -- and closes the client. spawn_closing keeps it and the client in the
  -- thread's first frame: no Lua frame, table or closure per connection
  -- (an idle connection's memory, bench/idle.lua).
  local function close_slot(client, err)
    running = running - 1
    handlers[getcurrent()] = nil
    client:close()
    if err == StopServe then
      observe(getcurrent()) -- ending serve is not an error to report
      finish(true)
    end
    if stopping and running == 0 and drained then wake(drained, true) end
    wake(acceptor) -- if it waits for room; false (harmless) otherwise
  end

  local function handle(client, addr)
    running = running + 1
    handlers[spawn_closing(close_slot, client, handler, client, addr)] = true
  end

  acceptor = spawn(function()
    local ok, err = pcall(function()
      local backoff = BACKOFF_MIN
      while not outcome do
        while running >= concurrency do
          if not suspend("green.serve (at the concurrency limit)") then
            return
          end
        end
        local client, addr = server:accept()
        if client then
          backoff = BACKOFF_MIN
          handle(client, addr)
        elseif addr == "closed" then
          finish(nil, "closed")
        elseif addr ~= "timeout" then
          sleep(backoff)
          backoff = min(backoff * 2, BACKOFF_MAX)
        end
      end
    end)
    if not ok and not stopping then finish(false, err) end
  end)
  acceptor.name = "green.serve accept loop"

  if control then
    function control.stop(grace)
      if stopping or outcome then return end
      stopping = true
      acceptor:kill() -- its accept takes nothing: nothing is lost
      -- What this process took from the kernel is served here.
      server:settimeout(0)
      for _ = 1, DRAIN_MAX do
        local client, addr = server:accept()
        if not client then break end
        handle(client, addr)
      end
      server:close() -- this process's copy: the others go on accepting
      if control.on_stop then -- e.g. green.http closes idle keep-alives
        local ok, err = pcall(control.on_stop)
        if not ok then
          io.stderr:write("green.serve: on_stop failed: ", tostring(err), "\n")
        end
      end
      if running > 0 then
        drained = getcurrent()
        local timer = spawn(function()
          sleep(grace)
          wake(drained, false)
        end)
        suspend("green.serve (draining)")
        drained = nil
        timer:kill()
        for t in pairs(handlers) do t:kill() end
      end
      finish(true)
    end
    if control.stopping then spawn(control.stop, control.grace or 0) end
  end

  local ok, err = suspend("green.serve")
  if not ok then -- the caller was killed or timed out
    acceptor:kill()
    error(err, 0)
  end
  if not acceptor:dead() then acceptor:kill() end
  if outcome[1] == false then error(outcome[2], 0) end
  if outcome[1] == nil then return nil, outcome[2] end
  return true
end

--- Accept connections on `server` and run `handler(client, addr)` for each
-- in its own green thread, at most `concurrency` at once: while that many
-- handlers run, no connection is accepted (the kernel's backlog holds
-- them). The client is closed when its handler ends. An error in a handler
-- is reported like any thread's error and does not stop the server;
-- `error(green.StopServe)` in a handler ends `serve`, which returns
-- (handlers still running keep running). Returns nil, "closed" if the
-- server socket is closed.
--
-- The third argument is `concurrency` or an options table: `concurrency`
-- (default 1000), and for prefork serving `workers` (see
-- lua/green/prefork.lua and docs/api.md), `graceful_timeout`,
-- `worker_timeout`, `on_worker_start`, `on_worker_exit`, `on_stop`.
-- @param server a listening socket (`green.listen`)
-- @tparam function handler called as `handler(client, addr)`
-- @param[opt=1000] opts most handlers running at once, or options
local OPTIONS = { concurrency = true, workers = true, graceful_timeout = true,
                  worker_timeout = true, on_worker_start = true,
                  on_worker_exit = true, on_stop = true }

function M.serve(server, handler, opts)
  local state = core.sockstate(server)
  if state ~= "listening" and state ~= "closed"
     and not (type(server) == "table" and type(server.accept) == "function")
  then -- green.socket's server objects are tables with accept
    error(("bad argument #1 to 'serve' (listening socket expected, got %s)")
          :format(state and state .. " socket" or type(server)), 2)
  end
  callable_arg(handler, 2, "serve", 2)
  local concurrency = opts
  if type(opts) == "table" then
    concurrency = check(opts, OPTIONS, 3, "serve", 2).concurrency
  end
  concurrency = concurrency or 1000
  if math.type(concurrency) ~= "integer" or concurrency < 1 then
    error("bad argument #3 to 'serve' (positive integer expected)", 2)
  end
  -- The prefork options are checked without `workers` too: a bad one
  -- raises rather than being ignored.
  local o = type(opts) == "table" and prefork.options(opts, 2)
  if o and opts.workers ~= nil then
    return prefork.master(o, function(control)
      return serve_loop(server, handler, concurrency, control)
    end)
  end
  local ok, err = serve_loop(server, handler, concurrency)
  if ok == nil then return nil, err end
end

return M
