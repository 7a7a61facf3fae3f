--- green.tls: TLS over green sockets (OpenSSL through memory BIOs).
--
-- OpenSSL (bindings/tls.c) never touches a descriptor and never blocks.
-- Over a green stream socket (the common case, `fast`), core.tls's
-- send, flush, fill and input move the ciphertext between the socket's
-- buffers and the connection in C and wait in the socket's own queues,
-- so every wait is a green socket's wait (a kill or a Timeout interrupts
-- it as it interrupts a plain receive). Over anything else with `recv`
-- and `send`, this module moves it with those methods (`feed`,
-- `output`). Decrypted bytes stay in the C connection's buffer until a
-- receive takes them, so a thread killed or timed out mid-read loses
-- none of them; ciphertext not yet handed to the socket stays in the
-- connection (or, over another socket, in `wbuf`) and goes first on the
-- next send, so a killed writer does not cut a record in half.
--
-- See docs/api.md "TLS" and docs/internals.md "TLS".
local core = require "green.core"
local semaphore = require "green.semaphore"
local gopts = require "green.opts"

local ctls = core.tls
local csend, cflush, cfill, cinput, creading = ctls.send, ctls.flush,
  ctls.fill, ctls.input, ctls.reading
local now = core.now
local type, tostring, error, pcall = type, tostring, error, pcall
local setmetatable, pairs, ipairs = setmetatable, pairs, ipairs
local concat, min = table.concat, math.min

local M = { openssl = ctls.version }

local RECV_CHUNK = 64 * 1024  -- ciphertext read per socket receive
local WRITE_CHUNK = 64 * 1024 -- plaintext encrypted per flush

-- {=== contexts

local Context = {}
Context.__index = Context
Context.__name = "green.tls.Context"
function Context.__tostring(c)
  return ("green.tls.Context (%s)"):format(c.server and "server" or "client")
end

local OPTS = gopts.tls

-- The TLS options `opts` (argument `arg` of `fname`, or its field `tls`
-- with `arg` and `prefix` "tls.") checked, raising at the caller's caller.
local function checkopts(opts, fname, arg, prefix)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("bad argument to '%s' (options table expected, got %s)")
          :format(fname, type(opts)), 3)
  end
  gopts.check(opts, OPTS, arg, fname, 3, prefix)
  for k, v in pairs(opts) do
    local want = OPTS[k]
    if type(want) == "table" then
      if not want[type(v)] or v == true then
        error(("%s: bad TLS option '%s' (string or false expected, got %s)")
              :format(fname, k, tostring(v)), 3)
      end
    elseif type(v) ~= want then
      error(("%s: bad TLS option '%s' (%s expected, got %s)")
            :format(fname, k, want, type(v)), 3)
    end
  end
  local ht = opts.handshake_timeout
  if ht ~= nil and ht ~= ht then
    error(("%s: bad TLS option 'handshake_timeout' (number of seconds "
           .. "expected, got NaN)"):format(fname), 3)
  end
  if opts.mode ~= nil and opts.mode ~= "client" and opts.mode ~= "server" then
    error(("%s: bad TLS option 'mode' ('client' or 'server' expected, got "
           .. "'%s')"):format(fname, opts.mode), 3)
  end
  if opts.context ~= nil and getmetatable(opts.context) ~= Context then
    error(("%s: bad TLS option 'context' (a green.tls.context expected)")
          :format(fname), 3)
  end
  return opts
end

-- The ALPN list in wire format: each name preceded by its length.
local function alpn_wire(list, fname)
  local parts = {}
  for i, name in ipairs(list) do
    if type(name) ~= "string" or #name == 0 or #name > 255 then
      error(("%s: bad TLS option 'alpn' (entry %d: a protocol name of 1 to "
             .. "255 bytes expected)"):format(fname, i), 4)
    end
    parts[#parts + 1] = string.char(#name) .. name
  end
  return concat(parts)
end

local function make_context(opts, fname)
  local server = opts.mode == "server"
  local verify = opts.verify
  if verify == nil then verify = not server end
  local c = {
    server = server, verify = verify,
    cafile = opts.cafile, capath = opts.capath, ca = opts.ca,
    certificate = opts.certificate, key = opts.key,
    min_protocol = opts.min_protocol, max_protocol = opts.max_protocol,
    ciphers = opts.ciphers,
    alpn = opts.alpn and alpn_wire(opts.alpn, fname),
  }
  if server and not opts.certificate then
    error(fname .. ": a TLS server needs 'certificate' (and 'key')", 3)
  end
  local ctx, err = ctls.context(c)
  if not ctx then return nil, err end
  return setmetatable({ ctx = ctx, server = server, verify = verify },
                      Context)
end

-- Client contexts made from options alone are shared (loading the
-- system's CA store takes milliseconds): weak, keyed by the options.
local cache = setmetatable({}, { __mode = "v" })
local KEYS = { "mode", "verify", "cafile", "capath", "ca", "certificate",
               "key", "min_protocol", "max_protocol", "ciphers" }

local function context_for(opts, fname)
  if opts.context then return opts.context end
  local key = {}
  for i, k in ipairs(KEYS) do key[i] = tostring(opts[k]) end
  key[#key + 1] = opts.alpn and concat(opts.alpn, "\0") or ""
  key = concat(key, "\1")
  local c = cache[key]
  if c then return c end
  local err
  c, err = make_context(opts, fname)
  if not c then return nil, err end
  cache[key] = c
  return c
end

--- green.tls.context(opts): a context to share between connections.
function M.context(opts)
  return make_context(checkopts(opts, "green.tls.context", 1),
                      "green.tls.context")
end

-- }===

-- {=== the TLS socket

local TLS = {}
TLS.__index = TLS
TLS.__name = "green.tls.socket"

local function deadline(timeout)
  if timeout == nil or timeout < 0 then return nil end
  return now() + timeout
end

-- Give the underlying socket what is left of the call's time.
local function settime(sock, due)
  if due == nil then
    sock:settimeout(nil)
  else
    local left = due - now()
    sock:settimeout(left > 0 and left or 0)
  end
end

local function nsent(sock)
  if not sock.getstats then return nil end
  local _, sent = sock:getstats()
  return sent
end

local function lock(self, name)
  local l = self[name]
  if not l then
    l = semaphore.Semaphore(1)
    self[name] = l
  end
  return l
end

-- Send the ciphertext waiting: what a failed or killed flush left
-- (wbuf from wpos), then what OpenSSL produced since. One flusher at a
-- time (the flush lock); 'nowait' (a reader passing by) leaves the output
-- to the thread flushing. Returns true, or nil, err.
local function flush(self, due, nowait)
  if self.fast then
    if nowait then return true end -- fill sends as it reads
    if not self.conn then return nil, "closed" end
    return cflush(self.sock, self.conn, due)
  end
  local wl = lock(self, "wlock")
  if not wl:acquire(false) then
    if nowait then return true end
    local left = due and due - now()
    if left and left <= 0 then return nil, "timeout" end
    if not wl:acquire(true, left) then return nil, "timeout" end
  end
  local sock, conn = self.sock, self.conn
  while true do
    local out, pos = self.wbuf, self.wpos
    if not out then
      out = conn and conn:output()
      pos = 0
      if not out then break end
    end
    settime(sock, due)
    local before = nsent(sock)
    local ok, last, err, partial = pcall(sock.send, sock, out, pos + 1)
    if not ok then -- killed: keep what the socket did not take
      local after = nsent(sock)
      local p = (before and after) and pos + (after - before) or #out
      if p < #out then self.wbuf, self.wpos = out, p
      else self.wbuf = nil end
      wl:release()
      error(last, 0)
    end
    if last then
      self.wbuf = nil
    else
      partial = partial or pos
      if partial < #out then self.wbuf, self.wpos = out, partial
      else self.wbuf = nil end
      wl:release()
      return nil, err
    end
  end
  wl:release()
  return true
end

local function recv_raw(self, due)
  local sock = self.sock
  settime(sock, due)
  return sock:recv(RECV_CHUNK)
end

-- The handshake's own deadline: the call's, or the socket's handshake
-- timeout counted from the first attempt, whichever comes first.
local function hs_due(self, due)
  local ht = self.hs_timeout
  if ht == nil then return due end
  self.hs_started = self.hs_started or now()
  local d = self.hs_started + ht
  if due == nil or d < due then return d end
  return due
end

local function run_handshake(self, due)
  local conn = self.conn
  while true do
    local r, err = conn:handshake()
    local fok, ferr = flush(self, due) -- the alert too, on failure
    if r == true then
      if not fok then return nil, ferr end
      self.ready = true
      return true
    end
    if r == nil then
      self.hserr = err
      return nil, err
    end
    if not fok then return nil, ferr end
    local chunk, rerr
    if self.fast then
      chunk, rerr = cinput(self.sock, conn, due)
    else
      chunk, rerr = recv_raw(self, due)
      if chunk then conn:feed(chunk) end
    end
    if not chunk then
      if rerr == "closed" then
        self.hserr = "closed"
        return nil, "closed"
      end
      return nil, rerr -- "timeout": a later call takes it up again
    end
  end
end

-- Run the handshake once, in the first thread that needs it; the others
-- wait for its outcome.
local function handshake(self, due)
  if self.ready then return true end
  if self.hserr then return nil, self.hserr end
  if not self.conn then return nil, "closed" end
  due = hs_due(self, due)
  local hl = lock(self, "hlock")
  if not hl:acquire(false) then
    local left = due and due - now()
    if left and left <= 0 then return nil, "timeout" end
    if not hl:acquire(true, left) then return nil, "timeout" end
  end
  if self.ready or self.hserr or not self.conn then
    hl:release()
    return handshake(self, due)
  end
  local ok, r, err = pcall(run_handshake, self, due)
  hl:release()
  if not ok then error(r, 0) end
  return r, err
end

local function cat(prefix, s)
  if prefix then return prefix .. (s or "") end
  return s
end

-- pattern -> mode, count (as the plain socket reads them)
local function parse(pattern, prefix)
  if type(pattern) == "number" then
    local n = math.tointeger(pattern)
    if not n then error("bad argument #1 to 'receive' (number has no "
                        .. "integer representation)", 3) end
    if n < 0 then error("bad argument #1 to 'receive' (negative byte count)",
                        3) end
    if prefix then n = n > #prefix and n - #prefix or 0 end
    return "n", n
  end
  local p = pattern or "*l"
  if type(p) ~= "string" then
    error("bad argument #1 to 'receive' (invalid receive pattern)", 3)
  end
  if p:sub(1, 1) == "*" then p = p:sub(2) end
  if p == "l" then return "l", 0 end
  if p == "a" then return "a", 0 end
  error("bad argument #1 to 'receive' (invalid receive pattern)", 3)
end

-- A failed read as a plain socket's: recv's nil, err; receive's nil,
-- err, prefix .. partial.
local function failed(mode, err, prefix, partial)
  if mode == "s" then return nil, err end
  return nil, err, cat(prefix, partial or "")
end

local function read(self, mode, count, prefix)
  if not self.conn then return failed(mode, "closed", prefix) end
  local due = deadline(self.timeout)
  if not self.ready then
    local ok, err = handshake(self, due)
    if not ok then return failed(mode, err, prefix) end
  end
  local conn = self.conn
  if self.fast then
    local sock, limit, ferr = self.sock, self.limit, nil
    creading(sock) -- another thread waits in a fill: refused
    while true do
      if conn ~= self.conn then -- closed meanwhile
        return failed(mode, "closed", prefix)
      end
      local data, err, partial = conn:receive(mode, count, nil, limit)
      if data then return cat(prefix, data) end
      if data == nil then return failed(mode, err, prefix, partial) end
      if ferr then -- the stream goes on, but the fill failed: the partial
        local _, e, p = conn:receive(mode, count, ferr, limit)
        return failed(mode, e, prefix, p)
      end
      local ok
      ok, ferr = cfill(sock, conn, due)
      if ok then ferr = nil end
    end
  end
  while true do
    if not conn or conn ~= self.conn then -- closed meanwhile
      return failed(mode, "closed", prefix)
    end
    local data, err, partial = conn:receive(mode, count, nil, self.limit)
    if data then return cat(prefix, data) end
    if data == nil then return failed(mode, err, prefix, partial) end
    -- what reading produced (a key update's answer) goes out
    if self.wbuf or conn:outlen() > 0 then flush(self, due, true) end
    local chunk, rerr = recv_raw(self, due)
    if chunk then
      if conn == self.conn then conn:feed(chunk) end
    elseif rerr == "closed" then
      if conn == self.conn then conn:feed_eof() end
    else
      if conn ~= self.conn then return failed(mode, "closed", prefix) end
      local _, e, p = conn:receive(mode, count, rerr, self.limit)
      return failed(mode, e, prefix, p)
    end
  end
end

--- tls:receive([pattern], [prefix]): LuaSocket's patterns, as a plain
-- green socket's receive.
function TLS:receive(pattern, prefix)
  if prefix ~= nil and type(prefix) ~= "string" then
    error("bad argument #2 to 'receive' (string expected, got "
          .. type(prefix) .. ")", 2)
  end
  local mode, count = parse(pattern, prefix)
  if mode == "n" and count == 0 then return prefix or "" end
  return read(self, mode, count, prefix)
end

--- tls:recv([max]): 1 to max bytes (65536), or nil, err.
function TLS:recv(max)
  if max == nil then max = 65536 end
  if math.type(max) ~= "integer" or max <= 0 then
    error("bad argument #1 to 'recv' (positive size expected)", 2)
  end
  return read(self, "s", max, nil)
end

local function write(self, data, i, j, all)
  if not self.conn then return nil, "closed", i - 1 end
  local due = deadline(self.timeout)
  if not self.ready then
    local ok, err = handshake(self, due)
    if not ok then return nil, err, i - 1 end
  end
  -- what an earlier, interrupted send left goes first
  if self.wbuf then
    local ok, err = flush(self, due)
    if not ok then return nil, err, i - 1 end
  end
  if self.fast then
    if not self.conn then return nil, "closed", i - 1 end
    return csend(self.sock, self.conn, data, i, j, all, due)
  end
  local pos = i - 1
  while pos < j do
    local conn = self.conn
    if not conn then return nil, "closed", pos end
    local n = min(j - pos, WRITE_CHUNK)
    local ok, err = conn:write(data, pos + 1, pos + n)
    if not ok then return nil, err, pos end
    pos = pos + n
    ok, err = flush(self, due)
    if not ok then return nil, err, pos end -- encrypted: it goes next
  end
  if all then return true end
  return j
end

--- tls:send(data, [i], [j]): as a plain socket's send.
function TLS:send(data, i, j)
  if type(data) ~= "string" then
    if type(data) ~= "number" then
      error("bad argument #1 to 'send' (string expected, got " .. type(data)
            .. ")", 2)
    end
    data = tostring(data)
  end
  local len = #data
  i = i or 1
  j = j or -1
  if i < 0 then i = len + i + 1 end
  if i < 1 then i = 1 end
  if j < 0 then j = len + j + 1 end
  if j > len then j = len end
  if j < i - 1 then j = i - 1 end
  return write(self, data, i, j, false)
end

--- tls:sendall(data): true, or nil, err, last byte sent.
function TLS:sendall(data)
  if type(data) ~= "string" then
    if type(data) ~= "number" then
      error("bad argument #1 to 'sendall' (string expected, got "
            .. type(data) .. ")", 2)
    end
    data = tostring(data)
  end
  return write(self, data, 1, #data, true)
end

-- Decrypt more of the stream into the conn's plaintext buffer (reading
-- ciphertext from the socket when none waits). true, or nil, err.
local function fill(self, due)
  if not self.conn then return nil, "closed" end
  if not self.ready then
    local ok, err = handshake(self, due)
    if not ok then return nil, err end
  end
  if self.fast then
    if not self.conn then return nil, "closed" end
    return cfill(self.sock, self.conn, due)
  end
  while true do
    local conn = self.conn
    if not conn then return nil, "closed" end
    local r, err = conn:pull() -- err: the output's length when false
    if r then return true end
    if r == nil then return nil, err end
    if self.wbuf or err > 0 then flush(self, due, true) end
    local chunk, rerr = recv_raw(self, due)
    if conn ~= self.conn then return nil, "closed" end
    if chunk then
      conn:feed(chunk)
    elseif rerr == "closed" then
      conn:feed_eof()
    else
      return nil, rerr
    end
  end
end

--- tls:fill([timeout]): decrypt more of the stream into the TLS socket's
-- plaintext buffer (what green.http's parser reads in place), waiting
-- for ciphertext if none is buffered. true, or nil, err.
function TLS:fill(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error("bad argument #1 to 'fill' (number expected, got "
          .. (timeout ~= timeout and "NaN" or type(timeout)) .. ")", 2)
  end
  if timeout == nil then timeout = self.timeout end
  return fill(self, deadline(timeout))
end

--- tls:handshake([timeout]): run the handshake now.
function TLS:handshake(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error("bad argument #1 to 'handshake' (number expected, got "
          .. (timeout ~= timeout and "NaN" or type(timeout)) .. ")", 2)
  end
  if timeout == nil then timeout = self.timeout end
  return handshake(self, deadline(timeout))
end

function TLS:settimeout(t)
  if t ~= nil and (type(t) ~= "number" or t ~= t) then
    error("bad argument #1 to 'settimeout' (number expected, got "
          .. (t ~= t and "NaN" or type(t)) .. ")", 2)
  end
  if t ~= nil and t < 0 then t = nil end
  self.timeout = t
  return 1
end

function TLS:gettimeout()
  return self.timeout
end

--- tls:close(): close_notify (queued without waiting), then the socket.
function TLS:close()
  local conn, sock = self.conn, self.sock
  if not conn then return 1 end
  self.conn = nil
  if self.ready and self.fast then
    conn:close_notify()
    -- handed over without waiting (kernel or write queue, which the
    -- socket's close flushes), past any writer waiting in the queue
    cflush(sock, conn, 0)
  elseif self.ready then
    conn:close_notify()
    local out = conn:output()
    local pending = self.wbuf and self.wbuf:sub(self.wpos + 1)
    if pending or out then -- queued; the socket's close flushes it
      pcall(function()
        sock:settimeout(0)
        sock:send((pending or "") .. (out or ""))
      end)
    end
  end
  self.wbuf = nil
  conn:free()
  return sock:close()
end

TLS.__close = TLS.close

--- tls:shutdown([how]): "send" sends close_notify, then ends the send
-- direction; "receive" as the plain socket; "both" both.
function TLS:shutdown(how)
  how = how or "both"
  if how ~= "both" and how ~= "send" and how ~= "receive" then
    error("bad argument #1 to 'shutdown' (invalid shutdown method)", 2)
  end
  if not self.conn then return nil, "closed" end
  if how ~= "receive" and self.ready then
    self.conn:close_notify()
    local ok, err = flush(self, deadline(self.timeout))
    if not ok then return nil, err end
  end
  return self.sock:shutdown(how)
end

function TLS:getpeername() return self.sock:getpeername() end
function TLS:getsockname() return self.sock:getsockname() end
function TLS:getfd() return self.sock:getfd() end
function TLS:getstats() return self.sock:getstats() end
function TLS:setoption(...) return self.sock:setoption(...) end
function TLS:getoption(...) return self.sock:getoption(...) end

--- tls:dirty(): true if a receive may return without waiting.
function TLS:dirty()
  local conn = self.conn
  if not conn then return false end
  local n, more = conn:buffered()
  return n > 0 or more or self.sock:dirty()
end

--- tls:setlimit([bytes]), tls:getlimit(): the receive limit, as a
-- plain socket's (it starts as the socket's).
function TLS:setlimit(n)
  if n == math.huge then n = nil end
  if n ~= nil and (math.type(n) ~= "integer" or n < 0) then
    error("bad argument #1 to 'setlimit' (non-negative integer expected)", 2)
  end
  self.limit = n
  return 1
end

function TLS:getlimit() return self.limit end

--- tls:getsocket(): the green socket underneath.
function TLS:getsocket() return self.sock end

function TLS:getpeercertificate()
  if not self.conn then return nil end
  return self.conn:peercert()
end

function TLS:getalpn()
  if not self.conn then return nil end
  return self.conn:alpn()
end

function TLS:info()
  if not self.conn then return nil end
  return self.conn:info()
end

function TLS:__tostring()
  return ("green.tls (%s, %s, %s)"):format(
    self.server and "server" or "client",
    self.conn and self.conn:state() or "closed", tostring(self.sock))
end

-- }===

--- green.tls.wrap(sock, opts): a TLS socket over green socket `sock`.
-- No I/O: the handshake runs at the first receive or send, or
-- tls:handshake().
function M.wrap(sock, opts)
  local fname = "green.tls.wrap"
  local st = type(sock)
  if (st ~= "userdata" and st ~= "table") or sock.recv == nil
     or sock.send == nil then
    error(("bad argument #1 to '%s' (green socket expected, got %s)")
          :format(fname, st), 2)
  end
  opts = checkopts(opts, fname, 2)
  local ctx, err = context_for(opts, fname)
  if not ctx then return nil, err end
  local server = ctx.server
  if opts.mode ~= nil and (opts.mode == "server") ~= server then
    error(fname .. ": 'mode' disagrees with the context's", 2)
  end
  local name, check = opts.server_name, ctx.verify and not server
  if name == false then -- no SNI, the chain checked without a name
    name, check = nil, false
  elseif name == nil and not server then
    name = sock.getpeername and sock:getpeername() or nil
    if type(name) ~= "string" then name = nil end
    if check and name == nil then
      error(fname .. ": verification needs 'server_name' (or verify = "
            .. "false)", 2)
    end
  end
  local conn
  conn, err = ctx.ctx:conn(name, check)
  if not conn then return nil, err end
  local timeout = sock.gettimeout and sock:gettimeout() or nil
  if timeout ~= nil and timeout < 0 then timeout = nil end
  local mt = getmetatable(sock)
  local fast = st == "userdata" and type(mt) == "table"
    and mt.__name == "green.socket"
  -- TLS writes records: with Nagle's algorithm a small one waits behind
  -- one not yet acknowledged (a server's session tickets, the previous
  -- response's last record) for the peer's delayed ACK, 40 ms. As nginx
  -- and Go, no Nagle under TLS (a Unix socket refuses it: no matter).
  if fast then sock:setoption("tcp-nodelay", true) end
  return setmetatable({
    sock = sock, conn = conn, server = server, ctxref = ctx,
    fast = fast,
    timeout = timeout, hs_timeout = opts.handshake_timeout,
    limit = sock.getlimit and sock:getlimit() or nil,
  }, TLS)
end

--- green.tls.connect(host, port, [opts]): green.connect, then the
-- handshake (opts.tls: the TLS options, or true for the defaults).
function M.connect(host, port, opts)
  if type(opts) == "table" then
    gopts.check(opts, gopts.connect, 3, "connect", 2)
  end
  local topts = opts and opts.tls
  if topts == true then topts = {} end
  topts = checkopts(topts, "green.connect", 3, "tls.")
  local copts = {}
  for k, v in pairs(opts or {}) do
    if k ~= "tls" then copts[k] = v end
  end
  local sock, err = core.connect(host, port, copts)
  if not sock then return nil, err end
  local o = {}
  for k, v in pairs(topts) do o[k] = v end
  if o.server_name == nil and type(host) == "string" then
    o.server_name = host
  end
  local ok, t, werr = pcall(M.wrap, sock, o)
  if not ok then sock:close(); error(t, 2) end
  if not t then sock:close(); return nil, werr end
  local hok, herr = t:handshake(copts.timeout)
  if not hok then
    t:close()
    return nil, herr
  end
  return t
end

-- {=== listeners

local Listener = {}
Listener.__index = Listener
Listener.__name = "green.tls.listener"

--- listener:accept(): a TLS socket (handshake not run yet: it runs in
-- the thread that first reads or writes it), and the peer.
function Listener:accept()
  local c, a, b = self.sock:accept()
  if not c then return nil, a end
  local t = setmetatable({
    sock = c, server = true, ctxref = self.ctx, fast = true,
    hs_timeout = self.hs_timeout, limit = c:getlimit(),
  }, TLS)
  local conn, err = self.ctx.ctx:conn()
  if not conn then c:close(); return nil, err end
  t.conn = conn
  return t, a, b
end

function Listener:close() return self.sock:close() end
function Listener:getsockname() return self.sock:getsockname() end
function Listener:getfd() return self.sock:getfd() end
function Listener:settimeout(...) return self.sock:settimeout(...) end
function Listener:gettimeout() return self.sock:gettimeout() end
function Listener:getsocket() return self.sock end
function Listener:__tostring()
  return "green.tls listener (" .. tostring(self.sock) .. ")"
end
Listener.__close = Listener.close

local HANDSHAKE_TIMEOUT = 10 -- seconds, an accepted connection's default

--- green.tls.listen(host, port, opts): green.listen with opts.tls.
function M.listen(host, port, opts)
  if type(opts) == "table" then
    gopts.check(opts, gopts.listen, 3, "listen", 2)
  end
  local topts = checkopts(opts and opts.tls, "green.listen", 3, "tls.")
  local o = { mode = "server" }
  for k, v in pairs(topts) do o[k] = v end
  o.mode = "server"
  local ctx = topts.context
  if not ctx then
    local err
    ctx, err = make_context(checkopts(o, "green.listen", 3, "tls."),
                            "green.listen")
    if not ctx then return nil, err end
  end
  local lopts = {}
  for k, v in pairs(opts) do
    if k ~= "tls" then lopts[k] = v end
  end
  local sock, err = core.listen(host, port, lopts)
  if not sock then return nil, err end
  -- no Nagle (see wrap): Linux's accepted sockets inherit it from here
  sock:setoption("tcp-nodelay", true)
  local ht = topts.handshake_timeout
  if ht == nil then ht = HANDSHAKE_TIMEOUT end
  return setmetatable({ sock = sock, ctx = ctx, hs_timeout = ht }, Listener)
end

-- }===

return M
