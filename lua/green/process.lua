--- green.process: child processes that wait green.
--
-- `spawn` and a Process's `wait`/`kill` are C (bindings/process.c): the
-- pipe ends are green sockets and the waits are the hub's, so a thread
-- waiting for a child, or reading its output, suspends alone. This module
-- adds what is built on them: `Process:communicate`, `run`, `popen` (an
-- `io.popen` look-alike), `execute` (an `os.execute` look-alike; both are
-- what `green.patch()` installs) and re-exports `spawn` and `wait`.
-- Shell strings run as `/bin/sh -c string`, as `io.popen` and
-- `os.execute` run them.
-- @module green.process

local core = require "green.core"
local check = require("green.opts").check

local type, error, select, setmetatable, getmetatable, tostring, tonumber =
  type, error, select, setmetatable, getmetatable, tostring, tonumber
local ipairs, pcall = ipairs, pcall
local concat, unpack, pack = table.concat, table.unpack, table.pack
local format, mtype, tointeger = string.format, math.type, math.tointeger
local spawn_thread, Timeout = core.spawn, core.Timeout
local settle, spawn_run = core.process_settle, core.process_spawn_run
local flush_queue = core.process_drain
local select_sockets = core.select

local M = {}
local Process = core.Process

--- Start a child (see docs/api.md): a Process, or nil, message, errno.
M.spawn = core.process_spawn
--- Wait for any child of this process by pid (spawned or forked).
M.wait = core.process_wait

--- green.process.getpid(): this process's id (os.getpid in Python).
M.getpid = core.getpid

local CHUNK = 65536

-- {=== communicate

-- Read `sock` to its end into `buf`, a table of chunks (so whatever came
-- in is there if the thread is killed).
local function drain(sock, buf)
  while true do
    local data = sock:recv(CHUNK)
    if not data then return end
    buf[#buf + 1] = data
  end
end

-- Read both `a` and `b` to their ends, into `abuf` and `bbuf`, as
-- their data comes (a child that fills one pipe while we wait on the
-- other would wait forever): one thread, one wait on both.
local function drain_both(a, abuf, b, bbuf)
  local socks, bufs = { a, b }, { [a] = abuf, [b] = bbuf }
  local open = 2
  while open > 0 do
    local ready = select_sockets(socks)
    for i = 1, #ready do
      local s = ready[i]
      local data = s:recv(CHUNK)
      if data then
        local buf = bufs[s]
        buf[#buf + 1] = data
      else
        for j = 1, open do
          if socks[j] == s then
            socks[j] = socks[open]
            socks[open] = nil
            open = open - 1
            break
          end
        end
      end
    end
  end
end

-- Write `input` to the child's stdin, then close it: the child sees the
-- end of its input. All of it is written before the close (flush_queue): a
-- closed socket's queued bytes linger only while they make progress, and
-- a child that reads late would lose them. A child that exits without
-- reading it all makes the write fail ("closed": EPIPE); the rest is
-- dropped, as Python's communicate drops it.
local function feed(sock, input)
  if input and #input > 0 and sock:sendall(input) then flush_queue(sock) end
  sock:close()
end

-- The pipes' own limits (settimeout) are the caller's, for its own reads
-- and writes: communicate goes to the end (its `timeout` is the limit),
-- and a recv that timed out ended the output there (what came after was
-- lost) and a sendall that did ended the input. Off while it runs;
-- `restore` puts them back.
local function untimed(p)
  local saved = {}
  for i, s in ipairs { p.stdin or false, p.stdout or false,
                       p.stderr or false } do
    if s then
      saved[i] = s:gettimeout()
      s:settimeout(nil)
    end
  end
  return saved
end

local function restore(p, saved)
  local socks = { p.stdin, p.stdout, p.stderr }
  for i = 1, 3 do
    if saved[i] then socks[i]:settimeout(saved[i]) end
  end
end

local function close_pipes(p)
  local a, b, c = p.stdin, p.stdout, p.stderr
  if a then a:close() end
  if b then b:close() end
  if c then c:close() end
end

--- Write `input` (if any) to the child's stdin and close it, read its
-- stdout and stderr to their ends at the same time (so a child that
-- writes more than a pipe holds cannot block on the parent), then wait
-- for it. Returns stdout, stderr (nil for a stream that is not a pipe),
-- how ("exit" or "signal"), code. After `timeout` seconds the child is
-- killed (SIGKILL) and reaped, and it returns what came so far, what
-- came so far, "timeout". A kill or Timeout of the caller stops the
-- reading and writing and propagates; the child is left to the caller
-- (a `<close>` Process kills it).
-- @tparam[opt] string input
-- @tparam[opt] number timeout seconds
function Process.communicate(self, input, timeout)
  if input ~= nil and type(input) ~= "string" then
    error("bad argument #1 to 'communicate' (string expected, got "
          .. type(input) .. ")", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error("bad argument #2 to 'communicate' (number of seconds expected)",
          2)
  end
  local stdin, stdout, stderr = self.stdin, self.stdout, self.stderr
  if input and #input > 0 and not stdin then
    error("communicate: input given, but the child's stdin is not a pipe "
          .. "(spawn it with stdin = \"pipe\")", 2)
  end
  local out, err = stdout and {} or nil, stderr and {} or nil
  local helpers = {}
  local saved = untimed(self)
  local t = timeout and Timeout(timeout)
  local ok, how, code = pcall(function()
    if stdin then
      local gt = spawn_thread(feed, stdin, input)
      gt.name = "communicate: stdin"
      helpers[#helpers + 1] = gt
    end
    if stdout and stderr then
      drain_both(stdout, out, stderr, err)
    elseif stderr then
      drain(stderr, err)
    elseif stdout then
      drain(stdout, out)
    end
    for _, gt in ipairs(helpers) do gt:wait() end
    if (stdout or stderr) and not stdin then settle(self) end
    return self:wait()
  end)
  if t then t:cancel() end
  for _, gt in ipairs(helpers) do
    if not gt:dead() then pcall(gt.kill, gt) end
  end
  restore(self, saved)
  if not ok then
    if how ~= t or t == nil then error(how, 0) end -- a kill, an error
    self:kill("KILL")
    self:wait()
    how, code = "timeout", nil
  end
  close_pipes(self)
  return out and concat(out), err and concat(err), how, code
end

-- }===

-- {=== run

local RUN_OPTIONS = { cwd = true, env = true, stdin = true, stdout = true,
                      stderr = true, input = true, timeout = true }

-- The argv of shell string `cmd` (`/bin/sh -c cmd`); a zero byte in it
-- raises in the terms of `fname`'s caller (spawn's error named its
-- "argument 3", at a line of this file).
local function shell(cmd, fname, level)
  cmd = tostring(cmd)
  if cmd:find("\0", 1, true) then
    error(format("bad argument #1 to '%s' (command contains a zero byte)",
                 fname), level + 1)
  end
  return { "/bin/sh", "-c", cmd }
end

-- The argv of `cmd`: a shell string, or a table whose array part is the
-- program and its arguments (a copy: spawn converts numbers in place).
local function argv_of(cmd, fname)
  if type(cmd) == "string" then return (shell(cmd, fname, 3)) end
  if type(cmd) ~= "table" then
    error(format("bad argument #1 to '%s' (string or table expected, got %s)",
                 fname, type(cmd)), 3)
  end
  return { unpack(cmd, 1, #cmd) }
end

--- Run a command to its end and collect its output: `cmd` is a shell
-- string (`/bin/sh -c cmd`) or an argv table. Returns ok (true if it
-- exited with 0, else false), stdout, stderr, how, code; or nil, message,
-- errno if it could not start. opts: `input` (a string for its stdin),
-- `timeout` (seconds; then it is killed and how is "timeout"), `cwd`,
-- `env`, and `stdin`/`stdout`/`stderr` as for spawn (defaults: stdin
-- "pipe" with input, else "inherit"; stdout and stderr "pipe").
-- @param cmd string or table
-- @tparam[opt] table opts
function M.run(cmd, opts)
  local argv = argv_of(cmd, "run")
  if opts == nil then
    opts = {}
  elseif type(opts) ~= "table" then
    error("bad argument #2 to 'run' (table expected, got " .. type(opts)
          .. ")", 2)
  end
  check(opts, RUN_OPTIONS, 2, "run", 2)
  -- input and timeout are communicate's, checked here: raised there, the
  -- error named communicate's arguments, at a line of this file, once
  -- the command had been started (and killed)
  local input, timeout = opts.input, opts.timeout
  if input ~= nil and type(input) ~= "string" then
    error("green.process.run: input must be a string (got " .. type(input)
          .. ")", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error("green.process.run: timeout must be a number of seconds", 2)
  end
  if input and #input > 0 and opts.stdin ~= nil and opts.stdin ~= "pipe"
  then
    error("green.process.run: input given, but stdin is '"
          .. tostring(opts.stdin) .. "' (input needs a pipe: leave stdin "
          .. "out or make it \"pipe\")", 2)
  end
  argv.cwd, argv.env = opts.cwd, opts.env
  argv.stdin = opts.stdin or (input and "pipe" or "inherit")
  argv.stdout = opts.stdout or "pipe"
  argv.stderr = opts.stderr or "pipe"
  local p, msg, errno = spawn_run(argv) -- spawn, reaped when waited for
  if not p then return nil, msg, errno end
  local proc <close> = p -- a kill or error: the child is killed
  local out, err, how, code = proc:communicate(input, timeout)
  return how == "exit" and code == 0, out, err, how, code
end

-- }===

-- {=== popen: io.popen's file, over a pipe socket

local File = { __name = "green.process.File" }
File.__index = File

local function checkfile(f, fname)
  if getmetatable(f) ~= File then
    error(format("bad argument #1 to '%s' (green.process.File expected)",
                 fname), 3)
  end
  if f.closed then error("attempt to use a closed file", 3) end
  return f
end

-- Read more into the buffer; false at the end of the output.
local function fill(f)
  if f.eof then return false end
  local data, err = f.sock:recv(CHUNK)
  if not data then
    f.eof = true
    if err ~= "closed" then f.err = err end
    return false
  end
  if f.pos > #f.buf then
    f.buf = data
  else
    f.buf = f.buf:sub(f.pos) .. data
  end
  f.pos = 1
  return true
end

local function read_line(f, keep)
  local scanned = 0 -- bytes after pos known to hold no "\n"
  while true do
    local nl = f.buf:find("\n", f.pos + scanned, true)
    if nl then
      local line = f.buf:sub(f.pos, keep and nl or nl - 1)
      f.pos = nl + 1
      return line
    end
    scanned = #f.buf - f.pos + 1
    if not fill(f) then
      if f.pos > #f.buf then return nil end
      local rest = f.buf:sub(f.pos)
      f.pos = #f.buf + 1
      return rest
    end
  end
end

local function read_all(f)
  local parts = { f.buf:sub(f.pos) }
  f.buf, f.pos = "", 1
  while not f.eof do
    local data, err = f.sock:recv(CHUNK)
    if not data then
      f.eof = true
      if err ~= "closed" then f.err = err end
    else
      parts[#parts + 1] = data
    end
  end
  return concat(parts)
end

local function read_count(f, n)
  while #f.buf - f.pos + 1 < n and fill(f) do end
  local avail = #f.buf - f.pos + 1
  if n == 0 then -- "" unless at the end (Lua's test_eof)
    if avail > 0 or fill(f) then return "" end
    return nil
  end
  if avail == 0 then return nil end
  local take = avail < n and avail or n
  local s = f.buf:sub(f.pos, f.pos + take - 1)
  f.pos = f.pos + take
  return s
end

-- The next byte, without taking it; nil at the end.
local function peek(f)
  if f.pos > #f.buf and not fill(f) then return nil end
  return f.buf:sub(f.pos, f.pos)
end

-- "n": a numeral, read as liolib's l_getn reads one (at most 200 bytes,
-- one byte of look-ahead that stays unread); nil if it is not one.
local function read_number(f)
  local parts = {}
  local c = peek(f)
  while c and c:find("^%s") do
    f.pos = f.pos + 1
    c = peek(f)
  end
  local function test2(set)
    local ch = peek(f)
    if ch and (ch == set:sub(1, 1) or ch == set:sub(2, 2)) and #parts < 200
    then
      parts[#parts + 1] = ch
      f.pos = f.pos + 1
      return true
    end
    return false
  end
  local function digits(hex)
    local n = 0
    while true do
      local ch = peek(f)
      if ch and ch:find(hex and "^%x" or "^%d") and #parts < 200 then
        parts[#parts + 1] = ch
        f.pos = f.pos + 1
        n = n + 1
      else
        return n
      end
    end
  end
  test2("-+")
  local count, hex = 0, false
  if test2("00") then
    if test2("xX") then hex = true else count = 1 end
  end
  count = count + digits(hex)
  if test2("..") then count = count + digits(hex) end
  if count > 0 and test2(hex and "pP" or "eE") then
    test2("-+")
    digits(false)
  end
  return tonumber(concat(parts))
end

local function read1(f, fmt, i)
  if type(fmt) == "number" then
    local n = tointeger(fmt) -- math.huge has none either
    if not n then
      error("bad argument #" .. i .. " to 'read' (number has no integer "
            .. "representation)", 3)
    end
    if n < 0 then -- read_count would step back over what it took
      error("bad argument #" .. i .. " to 'read' (count is negative)", 3)
    end
    return read_count(f, n)
  end
  if type(fmt) ~= "string" then
    error("bad argument #" .. i .. " to 'read' (invalid format)", 3)
  end
  local c = fmt:match("^%*?(.)")
  if c == "l" then return read_line(f, false)
  elseif c == "L" then return read_line(f, true)
  elseif c == "a" then return read_all(f)
  elseif c == "n" then return read_number(f)
  end
  error("bad argument #" .. i .. " to 'read' (invalid format)", 3)
end

--- f:read(...): as a Lua file's read ("l", "L", "n", "a", counts);
-- the formats fail ("Bad file descriptor") on a file opened for writing.
function File.read(f, ...)
  checkfile(f, "read")
  if f.mode ~= "r" then return nil, "Bad file descriptor", 9 end
  local n = select("#", ...)
  if n == 0 then return read_line(f, false) end
  local r = {}
  for i = 1, n do
    local v = read1(f, (select(i, ...)), i)
    r[i] = v
    if v == nil then
      if f.err then return nil, f.err end
      return unpack(r, 1, i)
    end
  end
  return unpack(r, 1, n)
end

--- f:lines(...): an iterator of f:read(...) (default "l"); unlike
-- io.lines it does not close the file at the end.
function File.lines(f, ...)
  checkfile(f, "lines")
  local fmts = pack(...)
  if fmts.n > 250 then error("too many arguments", 2) end
  return function()
    if f.closed then error("file is already closed", 2) end
    local r = pack(f:read(unpack(fmts, 1, fmts.n)))
    if r[1] == nil and r.n > 1 and r[2] ~= nil then error(r[2], 2) end
    return unpack(r, 1, r.n)
  end
end

--- f:write(...): strings and numbers, as a Lua file's write; returns f,
-- or nil, "Broken pipe", 32 once the command no longer reads.
function File.write(f, ...)
  checkfile(f, "write")
  if f.mode ~= "w" then return nil, "Bad file descriptor", 9 end
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local s
    if type(v) == "string" then
      s = v
    elseif mtype(v) == "integer" then
      s = format("%d", v)
    elseif type(v) == "number" then
      s = format("%.14g", v)
    else
      error("bad argument #" .. i .. " to 'write' (string expected, got "
            .. type(v) .. ")", 2)
    end
    local ok, err = f.sock:sendall(s)
    if not ok then
      if err == "closed" then return nil, "Broken pipe", 32 end
      return nil, err
    end
  end
  return f
end

--- f:close(): close the pipe (once what was written is, as pclose
-- flushes) and wait for the command; os.execute's results: true,
-- "exit", 0, or nil, "exit"|"signal", code.
function File.close(f)
  checkfile(f, "close")
  f.closed = true
  if f.mode == "w" then
    local ok, e = pcall(flush_queue, f.sock)
    if not ok then -- a kill, a Timeout: the pipe is closed all the same
      f.sock:close()
      error(e, 0)
    end
  end
  f.sock:close()
  local how, code = f.proc:wait()
  if how == "exit" and code == 0 then return true, "exit", 0 end
  return nil, how, code
end

--- f:flush(): writes are not buffered; returns f.
function File.flush(f)
  return checkfile(f, "flush")
end

--- f:setvbuf(mode): accepted for compatibility (writes are not
-- buffered); returns true.
function File.setvbuf(f)
  checkfile(f, "setvbuf")
  return true
end

--- f:seek(): a pipe cannot seek: nil, "Illegal seek", 29.
function File.seek(f)
  checkfile(f, "seek")
  return nil, "Illegal seek", 29
end

--- `<close>`: close and wait where the caller can block; elsewhere (an
-- error or kill unwinding) close the pipe only: the command is reaped
-- by the hub when it ends.
function File.__close(f)
  if f.closed then return end
  if core.cansuspend() then
    f:close()
  else
    f.closed = true
    f.sock:close()
  end
end

function File.__tostring(f)
  if f.closed then return "file (closed)" end
  return format("file (%p)", f)
end

--- Run shell command `cmd` with a pipe to its stdout (mode "r", the
-- default) or from its stdin ("w"), as io.popen does; returns a file-like
-- object, or nil, message, errno if /bin/sh cannot start.
function M.popen(cmd, mode)
  if type(cmd) ~= "string" and type(cmd) ~= "number" then
    error("bad argument #1 to 'popen' (string expected, got " .. type(cmd)
          .. ")", 2)
  end
  mode = mode or "r"
  if mode ~= "r" and mode ~= "w" then
    error("bad argument #2 to 'popen' (invalid mode)", 2)
  end
  local argv = shell(cmd, "popen", 2)
  argv.stdin = mode == "w" and "pipe" or "inherit"
  argv.stdout = mode == "r" and "pipe" or "inherit"
  local p, msg, errno = M.spawn(argv)
  if not p then return nil, msg, errno end
  return setmetatable({ proc = p, sock = mode == "r" and p.stdout or p.stdin,
                        mode = mode, buf = "", pos = 1, eof = false,
                        closed = false }, File)
end

-- }===

-- While a command of execute runs, SIGINT and SIGQUIT do nothing here, as
-- system(3) ignores them in its caller: a Ctrl-C at the terminal reaches
-- the whole process group, and it is the command's to handle (an editor,
-- a pager); execute returns its outcome. Handles that do nothing, taken
-- by the first execute running and cancelled by the last: the signals
-- are caught, not ignored, so the command gets them at their defaults;
-- one this process ignores already (a background job of sh) is left
-- alone, and the command inherits it ignored, as from system(3).
-- A child of green.fork inherits the count while the parent's handles are
-- cancelled there (signal.c) and its executes gone: the count is this
-- process's ('quietpid').
local quiet, nquiet, quietpid = {}, 0, nil

local function nothing() end

local function hush()
  local pid = core.getpid()
  if nquiet > 0 and quietpid ~= pid then quiet, nquiet = {}, 0 end
  if nquiet == 0 then
    quietpid = pid
    local signal = require "green.signal"
    for _, sig in ipairs { "INT", "QUIT" } do
      if not core.signal_ignored(sig) then
        local ok, h = pcall(signal, sig, nothing)
        if not ok then
          for i = 1, #quiet do quiet[i]:cancel() end
          quiet = {}
          error(h, 0)
        end
        quiet[#quiet + 1] = h
      end
    end
  end
  nquiet = nquiet + 1
end

local function unhush()
  nquiet = nquiet - 1
  if nquiet == 0 then
    for i = 1, #quiet do quiet[i]:cancel() end
    quiet = {}
  end
end

--- os.execute, green: run `cmd` with `/bin/sh -c`, sharing this process's
-- stdin, stdout and stderr, and wait for it. true, "exit", 0, or nil,
-- "exit"|"signal", code; without `cmd`, true (a shell is available). A
-- kill of the caller kills the command. SIGINT and SIGQUIT do nothing here
-- while it runs (system(3)'s rule).
function M.execute(cmd)
  if cmd == nil then return true end
  if type(cmd) ~= "string" and type(cmd) ~= "number" then
    error("bad argument #1 to 'execute' (string expected, got "
          .. type(cmd) .. ")", 2)
  end
  local argv = shell(cmd, "execute", 2)
  -- before the command starts, as system(3) does: it may signal this
  -- process at once (a SIGQUIT at its default killed the caller when the
  -- command ran before the handles were taken)
  hush()
  local started, p = pcall(spawn_run, argv)
  if not (started and p) then
    unhush()
    if not started then error(p, 0) end
    return nil, "exit", 127 -- as system() when sh fails
  end
  local proc <close> = p
  local ok, how, code = pcall(proc.wait, proc)
  unhush()
  if not ok then error(how, 0) end -- a kill: <close> kills the command
  if how == "exit" and code == 0 then return true, "exit", 0 end
  return nil, how, code
end

return M
