-- Loaded by busted before the specs (see .busted).
--
-- Nothing here may hang CI: a green_run fails after its deadline with a
-- dump of every live green thread, `eventually` gives up after a bound,
-- and subprocesses run under coreutils' `timeout`.
local green = require "green"
local core = green.core
local gdebug = require "green.debug"

local helper = {}

--- The standard library's own functions, as they were before any spec
-- ran: busted runs every spec file in one process, and a spec that calls
-- green.patch() replaces io.popen and os.execute for the specs after it.
-- A spec about the stock (blocking) functions uses these.
helper.stock = { popen = io.popen, execute = os.execute, open = io.open,
                 lines = io.lines }

--- Seconds a `green_run` may take before it fails: the environment
-- variable GREENLUA_SPEC_DEADLINE, or 60. One call can ask for more (or
-- less) with `green_run({ deadline = seconds }, fn, ...)`.
helper.deadline = tonumber(os.getenv("GREENLUA_SPEC_DEADLINE")) or 60

--- Seconds a subprocess (`helper.sh` and the `*_run` helpers below) may
-- run before `timeout` kills it: GREENLUA_SPEC_SUBPROCESS_TIMEOUT, or 60.
helper.subprocess_timeout =
  tonumber(os.getenv("GREENLUA_SPEC_SUBPROCESS_TIMEOUT")) or 60

-- After the deadline, how long the threads it killed may take to finish
-- before green_run stops waiting for the hub to drain.
local GRACE = 5

-- Kill every live thread but the main thread and those in `keep`; a kill
-- returns once its target is dead.
local function kill_all(keep)
  for _, e in ipairs(core.threads()) do
    if e.id ~= 0 and not keep[e.thread] and not e.thread:dead() then
      pcall(e.thread.kill, e.thread)
    end
  end
end

-- The dump of the live threads, leaving out green_run's own helpers and
-- the main thread (busted's frames, waiting for green_run's thread).
local function dump(skip)
  local list = {}
  for _, e in ipairs(core.threads()) do
    if e.id ~= 0 and not skip[e.thread] then list[#list + 1] = e end
  end
  return gdebug.format(list)
end

--- Run `fn(...)` as a green thread and return its results once it and
-- every thread it left behind are done. A failed assertion or an error
-- inside `fn`, or in any green thread that nobody waited for, is raised
-- here, so busted reports it on the right `it`. The hub must be empty
-- afterwards: a leftover thread or timer fails the test.
--
-- `green_run({ deadline = seconds }, fn, ...)` sets this call's deadline
-- (default `helper.deadline`). Once it passes, every green thread is
-- killed and the `it` fails with a dump of the live threads (state, what
-- each waits in, traceback). The deadline is a libuv timer, so it fires
-- even while the hub would block in the poller for good, and it does not
-- keep an otherwise idle hub running. That timer fires only when the hub
-- polls, so a count hook on the threads fn runs (they inherit it) checks
-- the deadline too: a thread that keeps the hub busy past it (a loop that
-- never blocks, or only yields) fails with the deadline error.
function _G.green_run(opts, ...)
  local fn, args
  if type(opts) == "table" and getmetatable(opts) == nil then
    fn, args = ..., table.pack(select(2, ...))
  else
    fn, args, opts = opts, table.pack(...), {}
  end
  local deadline = opts.deadline or helper.deadline
  local errors = {}
  local old = green.on_error(function(gt, err, tb)
    errors[#errors + 1] = { gt = tostring(gt), err = err, tb = tb }
  end)

  local mine = {} -- green_run's own threads, left out of dumps
  local outcome, expired, report
  local function expire(note)
    if not expired then
      expired = true
      report = (note or "") .. dump(mine)
    end
  end
  local limit = green.now() + deadline
  local function hook()
    if green.now() > limit then
      expire(tostring(green.getcurrent()) .. " kept the hub busy.\n")
      error(string.format("green_run: the deadline of %g s passed while "
                          .. "this thread kept the hub busy", deadline), 2)
    end
  end
  -- Threads inherit the hook of the thread that creates them: set it on
  -- the main thread only while spawning. A hook already there (coverage)
  -- is left alone.
  local hooked = debug.gethook() == nil
  if hooked then core.inherited_hook(hook, 100000) end
  local run = green.spawn(function()
    local gt = green.spawn(fn, table.unpack(args, 1, args.n))
    core.observe(gt)
    outcome = table.pack(pcall(gt.wait, gt))
    -- Until the threads fn left behind are done (or blocked for good).
    -- After a failure they are killed instead: they may wait for fn.
    if outcome[1] then core.run() end
  end)
  run.name = "green_run"
  mine[run] = true
  local watchdog = green.spawn(function()
    core.sleep_unref(deadline)
    expire()
    kill_all(mine)
    core.sleep_unref(GRACE) -- for `run` to drain the hub
    run:kill()
  end)
  watchdog.name = "green_run deadline"
  mine[watchdog] = true
  if hooked then core.inherited_hook() end

  -- Fails only if the hub ran out of work with `run` still blocked.
  local ok, deadlock = pcall(run.wait, run)
  local leftover
  if core.stats().threads > 1 then -- more than the watchdog
    -- blocked for good (or past the deadline): say where, then clean up
    if not expired then leftover = dump(mine) end
    kill_all(mine)
  end
  pcall(run.kill, run)
  pcall(watchdog.kill, watchdog)
  green.on_error(old)

  if expired then
    error(string.format("green_run: the deadline of %g s passed; every "
                        .. "green thread was killed. At the deadline:\n%s",
                        deadline, report), 0)
  end
  if not ok then error(tostring(deadlock) .. "\n" .. leftover, 0) end
  if not outcome[1] then error(outcome[2], 0) end
  if leftover then
    error("hub not empty after green_run: threads left blocked:\n"
          .. leftover, 0)
  end
  if #errors > 0 then
    local e = errors[1]
    error(string.format("unobserved error in %s: %s\n%s", e.gt,
                        tostring(e.err), e.tb or ""), 0)
  end
  local s = core.stats()
  if s.threads ~= 0 or s.timers ~= 0 or s.ready ~= 0 then
    error(string.format("hub not empty after green_run: %d threads, "
                        .. "%d timers, %d ready", s.threads, s.timers,
                        s.ready), 0)
  end
  return table.unpack(outcome, 2, outcome.n)
end

--- Wait until `cond()` returns a true value, and return that value. For
-- conditions no event announces: polls, yielding to the hub between tries
-- (1 ms, backing off to 10 ms), and fails after `timeout` seconds
-- (default 30: a bound, not a timing assumption). `what` names the
-- condition in the failure (a function: called then, for the details).
-- Works from a green thread or the main thread.
function helper.eventually(cond, timeout, what)
  if timeout ~= nil and type(timeout) ~= "number" then
    timeout, what = nil, timeout
  end
  local limit = green.now() + (timeout or 30)
  local pause = 0.001
  while true do
    local v = cond()
    if v then return v end
    if green.now() > limit then
      if type(what) == "function" then what = what() end -- the details
      error("eventually: never happened within " .. (timeout or 30)
            .. " s: " .. (what or "condition"), 2)
    end
    green.sleep(pause)
    if pause < 0.01 then pause = pause * 2 end
  end
end

--- True once green thread `gt` is suspended (in `what`, if given): the
-- way to know another thread has reached its blocking call.
function helper.suspended(gt, what)
  local st, w = gt:status()
  return st == "suspended" and (what == nil or w == what)
end

--- Wait until `gt` is suspended (in `what`, if given).
function helper.until_suspended(gt, what)
  helper.eventually(function() return helper.suspended(gt, what) end,
                    tostring(gt) .. " suspended in " .. (what or "a wait"))
end

--- A listener whose accept queue is full: the kernel drops further SYNs,
-- so a connect to it hangs (on loopback, with no network needed).
-- Returns its port and a function that closes what it holds.
function helper.unresponsive_listener()
  local srv = assert(green.listen("127.0.0.1", 0, { backlog = 1 }))
  local _, port = srv:getsockname()
  local held = {}
  for _ = 1, 8 do
    local c = green.connect("127.0.0.1", port, { timeout = 0.2 })
    if not c then break end
    held[#held + 1] = c
  end
  return port, function()
    for _, c in ipairs(held) do c:close() end
    srv:close()
  end
end

--- Run `fn(...)` with `io.stderr` replaced by a buffer, so that reports
-- a spec causes on purpose (green's default error reporter writes to
-- io.stderr) are asserted instead of printed. Returns the text written,
-- then fn's results; re-raises fn's error after restoring io.stderr.
function helper.capture_stderr(fn, ...)
  local buf, real = {}, io.stderr
  local sink = {}
  function sink.write(self, ...)
    for i = 1, select("#", ...) do
      buf[#buf + 1] = tostring((select(i, ...)))
    end
    return self
  end
  function sink.flush(self) return self end
  io.stderr = sink -- luacheck: ignore 122
  local r = table.pack(pcall(fn, ...))
  io.stderr = real -- luacheck: ignore 122
  if not r[1] then error(r[2], 0) end
  return table.concat(buf), table.unpack(r, 2, r.n)
end

--- A connected TCP pair over 127.0.0.1: client side, server side. With
-- `limit`, the listener's receive limit (the server side inherits it).
-- Call from a green thread or the main thread.
function helper.pair(limit)
  local srv = assert(green.listen("127.0.0.1", 0))
  if limit then srv:setlimit(limit) end
  local _, port = srv:getsockname()
  local c = assert(green.connect("127.0.0.1", port))
  local s = assert(srv:accept())
  srv:close()
  return c, s
end

--- green.http.serve(handler, opts) in a thread on a free 127.0.0.1
-- port: the port, `stop` (closes the listener and waits for serve to
-- return: its results) and the thread. From a green thread.
function helper.http_serve(handler, opts)
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local gt = green.spawn(green.http.serve, srv, handler, opts)
  return port, function()
    srv:close()
    return gt:wait()
  end, gt
end

--- The bytes of buffers a green.http server connection holds once it has
-- parked idle, waiting for its next request: `conn` is a handler's
-- req.conn (http_state's fifth result, after a bounded wait for the park).
function helper.idle_parser_bytes(conn)
  helper.eventually(function()
    return conn.idle and helper.suspended(conn.thread)
  end, "the connection parked idle")
  local _, _, _, _, held = green.core.http_state(conn.parser)
  return held
end

--- A response of 200 read from client socket `c` (its head, then the body
-- by its Content-Length): the body.
function helper.http_ok_body(c)
  local line, err = c:receive()
  if line ~= "HTTP/1.1 200 OK" then
    error(("a 200 expected, got %s"):format(tostring(line or err)), 2)
  end
  local len
  repeat
    local l = assert(c:receive())
    len = tonumber(l:match("^Content%-Length: (%d+)")) or len
  until l == ""
  return assert(c:receive(len))
end

--- A green.http handler's answer naming the request's X- headers:
-- "path x-a=1,x-b=2" (sorted), all but `skip`'s.
function helper.x_headers_answer(req, skip)
  local names = {}
  for k, v in pairs(req.headers) do
    if k:match("^x%-") and k ~= skip then names[#names + 1] = k .. "=" .. v end
  end
  table.sort(names)
  return 200, {}, req.path .. " " .. table.concat(names, ",")
end

--- `data` sent on a new connection to 127.0.0.1:`port` (a raw client of
-- a test server): all it answers until it closes the connection, and
-- the error that ended the read ("closed", "timeout" after `timeout`
-- seconds, default 10). From a green thread.
function helper.raw_exchange(port, data, timeout)
  local c = assert(green.connect("127.0.0.1", port))
  c:settimeout(timeout or 10)
  assert(c:send(data))
  local got, err, partial = c:receive("*a")
  c:close()
  return got or partial, err
end

--- A raw test server (a peer that may misbehave) on a free port of
-- `host` (default 127.0.0.1): `script(c, n, st)` runs in a thread of its
-- own for each connection accepted (n: 1 for the first, ...; the socket's
-- timeout 20 s), and the socket is closed when it returns or fails.
-- Returns the port and `st`: `n` (connections accepted so far),
-- `stop()` (closes the listener, kills the scripts still running, waits
-- for them). From a green thread.
function helper.raw_server(script, host)
  local srv = assert(green.listen(host or "127.0.0.1", 0))
  local _, port = srv:getsockname()
  local st = { n = 0, threads = {} }
  local acceptor = green.spawn(function()
    while true do
      local c = srv:accept()
      if not c then return end
      st.n = st.n + 1
      st.threads[#st.threads + 1] = green.spawn(function(k)
        c:settimeout(20)
        local ok, err = pcall(script, c, k, st)
        c:close()
        if not ok then error(err, 0) end
      end, st.n)
    end
  end)
  function st.stop()
    srv:close()
    acceptor:wait()
    for _, gt in ipairs(st.threads) do
      if not gt:dead() then gt:kill() end
      gt:wait()
    end
  end
  return port, st
end

--- Path of the built greenlua executable.
local build = os.getenv("GREENLUA_BUILD") or "./build"
helper.greenlua = build .. "/greenlua"

--- `s` quoted for the shell (single quotes).
function helper.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local quote = helper.quote

--- The contents of file `path`, or nil if it cannot be read.
function helper.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local slurp = helper.slurp

--- Is command `name` on the PATH?
function helper.has_tool(name)
  return os.execute("command -v " .. name .. " >/dev/null 2>&1") == true
end

--- Run shell command `cmd` in the background, so the hub goes on
-- (serving what the command talks to), without the sanitizer's preload
-- (the tools are not sanitized) and under `timeout` (`limit` seconds,
-- default 60). Returns a function that waits for it (a bounded wait) and
-- returns its stdout, stderr and exit code.
function helper.bg(cmd, limit)
  limit = limit or 60
  local base = os.tmpname()
  os.execute(("(env -u LD_PRELOAD timeout -k 5 %d sh -c %s >%s.out "
              .. "2>%s.err </dev/null; echo $? >%s.rc) >/dev/null 2>&1 &")
             :format(limit, quote(cmd), base, base, base))
  return function()
    local rc = helper.eventually(function()
      local s = slurp(base .. ".rc")
      return s and s:match("%d+")
    end, limit + 15, cmd)
    local out, err = slurp(base .. ".out"), slurp(base .. ".err")
    for _, x in ipairs { "", ".out", ".err", ".rc" } do os.remove(base .. x) end
    return out, err, tonumber(rc)
  end
end

--- Run a shell command; return its stdout, stderr and exit code. It runs
-- under coreutils' `timeout`: after `limit` seconds (default
-- `helper.subprocess_timeout`) it is killed, the code is 124 and stderr
-- says so, so a hung subprocess fails its spec instead of hanging CI.
function helper.sh(cmd, limit)
  limit = limit or helper.subprocess_timeout
  local out, errf = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(string.format(
    "timeout -k 5 %g sh -c %s </dev/null >%s 2>%s", limit, quote(cmd),
    out, errf))
  local o, e = assert(slurp(out)), assert(slurp(errf))
  os.remove(out)
  os.remove(errf)
  -- LeakSanitizer's note in a process forked (green.fork) while other OS
  -- threads (the watchdog, the thread pool) ran: its registry still lists
  -- the parent's threads, which do not exist in the child. A note about
  -- the sanitizer, not a message of greenlua's; real leaks still report.
  e = e:gsub("==%d+==Running thread %d+ was not suspended%. "
             .. "False leaks are possible%.\n", "")
  code = ok and 0 or code
  if code == 124 then
    e = e .. string.format("\n[helper.sh: killed after %g s: %s]\n", limit,
                           cmd)
  end
  return o, e, code
end

--- Run a Lua snippet under `greenlua` (in a subprocess).
function helper.greenlua_run(src, args, limit)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  local out, err, code = helper.sh(helper.greenlua .. " " .. p .. " "
                                   .. (args or ""), limit)
  os.remove(p)
  return out, err, code
end

--- Run a Lua snippet under stock lua5.4 with the build tree on the path.
function helper.lua54_run(src, limit)
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  local out, err, code = helper.sh(
    "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' "
    .. "LUA_CPATH='" .. build .. "/?.so;;' "
    .. "lua5.4 " .. p, limit)
  os.remove(p)
  return out, err, code
end

--- Debian's nginx, for the specs that talk to a real server: a master
-- and one worker on a free 127.0.0.1 port, with a temp prefix holding
-- its configuration, pid, logs, temp paths and document root. `opts`:
-- `files` ({ [name] = contents }: the root's files), `ssl`
-- ({ certificate = path, key = path }: listen with TLS), `server` (more
-- directives for the server block; `$/` in it is the prefix). Returns
-- the port, `stop` and the prefix once it accepts connections. `stop()`
-- (idempotent) ends nginx and its worker,
-- waits for them and removes the prefix: hand it to busted's `finally`
-- so it runs however the spec ends. A start that fails stops what it
-- started and raises, with nginx's error log. Without nginx installed:
-- nil and the reason (for `pending`). Call from the main thread or a
-- green thread.
function helper.nginx(opts)
  local bin = "/usr/sbin/nginx"
  if not os.execute("test -x " .. bin) then
    return nil, "nginx is not installed"
  end
  opts = opts or {}
  local out = helper.sh("mktemp -d /tmp/greenlua-nginx.XXXXXX")
  local dir = assert(out:match("^(/tmp/greenlua%-nginx%.[%w]+)\n"),
                     "mktemp failed")
  local stopped = false
  local function stop()
    if stopped then return end
    stopped = true
    -- daemonized, the master leads its own session and process group
    -- (the worker in it): TERM the group, poll (bounded) until nothing in
    -- the session but zombies is left (whoever reaps orphans may be
    -- slow), then KILL what is left. Without the sanitizer's preload:
    -- ps hangs under it.
    helper.sh(("unset LD_PRELOAD; pid=$(cat %s/nginx.pid 2>/dev/null) && {"
               .. " kill -TERM -$pid 2>/dev/null; i=0;"
               .. " while ps -o stat= -s $pid | grep -qv '^Z'"
               .. " && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done;"
               .. " kill -KILL -$pid 2>/dev/null; }; rm -rf %s")
              :format(quote(dir), quote(dir)))
  end
  local ok, port = pcall(function()
    -- nginx's worker may run as another user: let it read the root
    assert(os.execute("mkdir " .. quote(dir .. "/www") .. " && chmod 755 "
                      .. quote(dir) .. " " .. quote(dir .. "/www")))
    for name, contents in pairs(opts.files or {}) do
      assert(not name:find("/", 1, true), "a file name without '/'")
      local f = assert(io.open(dir .. "/www/" .. name, "wb"))
      f:write(contents)
      f:close()
      assert(os.execute("chmod 644 " .. quote(dir .. "/www/" .. name)))
    end
    local probe = assert(green.listen("127.0.0.1", 0)) -- a free port
    local _, free = probe:getsockname()
    probe:close()
    local ssl = opts.ssl and ("ssl_certificate %s;\n    ssl_certificate_key "
      .. "%s;"):format(opts.ssl.certificate, opts.ssl.key) or ""
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write((table.concat({
      "daemon on;",
      "pid $/nginx.pid;",
      "error_log $/error.log;",
      "events { worker_connections 64; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path $/tmp_body;",
      "  proxy_temp_path $/tmp_proxy;",
      "  fastcgi_temp_path $/tmp_fastcgi;",
      "  uwsgi_temp_path $/tmp_uwsgi;",
      "  scgi_temp_path $/tmp_scgi;",
      "  server {",
      "    listen 127.0.0.1:" .. free .. (opts.ssl and " ssl;" or ";"),
      "    " .. ssl,
      "    root $/www;",
      "    " .. (opts.server or ""),
      "  }",
      "}", "" }, "\n"):gsub("%$/", function() return dir .. "/" end)))
    f:close()
    local _, err, code = helper.sh(("env -u LD_PRELOAD %s -c %s/nginx.conf "
      .. "-p %s/ -e %s/error.log"):format(bin, quote(dir), quote(dir),
                                          quote(dir)))
    assert(code == 0, "nginx did not start: " .. err)
    helper.eventually(function()
      local c = green.connect("127.0.0.1", free)
      if c then c:close() end
      return c ~= nil
    end, 20, "nginx accepting on port " .. free)
    return free
  end)
  if not ok then
    local log = slurp(dir .. "/error.log") or ""
    stop()
    error(tostring(port) .. "\nnginx's error log:\n" .. log, 2)
  end
  return port, stop, dir
end

package.loaded["helper"] = helper
return helper
