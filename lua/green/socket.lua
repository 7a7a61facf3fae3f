--- green.socket: a LuaSocket 3 compatible module on green sockets.
--
-- `require("green.socket")` looks like LuaSocket's `socket` (and
-- `socket.core`: they are the same table, as in LuaSocket) to code that
-- was written for LuaSocket: `tcp()` master objects that become clients
-- (`connect`) or servers (`bind`, `listen`), `connect`, `bind`, `udp()`,
-- `select`, `sleep`, `gettime`, `dns.*`, `protect`, `newtry`, `try`,
-- `skip`, `choose`, `sink`, `source`, `sinkt`, `sourcet`. Every blocking
-- call suspends only the calling green thread. `green.patch()` installs
-- this module as `socket` and `socket.core` (lua/green/patch.lua).
--
-- The objects are Lua tables wrapping a green socket (bindings/lsocket.h),
-- with LuaSocket's class names ("tcp{master}", "tcp{client}",
-- "tcp{server}", "udp{unconnected}", "udp{connected}") in `__name`,
-- `tostring` and `getmetatable(s).__index.class`. Results and error
-- strings are LuaSocket's ("closed" for a connection reset by the peer,
-- "host or service not provided, or not known" for a name that does not
-- resolve in connect and bind, "host not found" from `dns.toip`).
--
-- Differences from LuaSocket (see also patch.lua):
-- * `type(sock)` is "table", not "userdata".
-- * `bind()` binds and listens at once (green sockets are created by
--   connect or listen; the object stays "tcp{master}" until `listen()`),
--   so connections queue from bind on, `listen(backlog)` cannot change
--   the backlog afterwards (socket.bind's backlog argument is honoured),
--   and a master that was bound cannot then connect (a client with a
--   chosen local address): that, and `socket.connect`'s locaddr/locport,
--   return nil, "local address binding is not supported".
-- * `dns.*` use green.core's resolver (c-ares on the hub's loop: it
--   never blocks the hub; see green.resolver.setup).
-- * No `socket.unix` / `socket.serial` (green.connect_unix exists in C).
-- * `settimeout(t, "b")` and `settimeout(t, "t")` both limit each call as
--   a whole (the shorter of the two applies).
-- * A connect with timeout 0 returns "timeout" and goes on in the
--   background, as LuaSocket's; calling connect again before it is over
--   answers "timeout" (Linux's LuaSocket: "Operation already in
--   progress") or, with a timeout, waits for it.
-- * Masters have no descriptor until they connect or bind (LuaSocket 3
--   creates one at once for tcp4()/tcp6()): `getfd` is -1 until then.
-- * `setfd` only accepts -1 (detach): a green socket owns its descriptor
--   and its libuv handle, and libuv cannot watch one descriptor from two
--   handles, so taking over another object's descriptor is refused.
-- * select takes green.socket objects (and skips tables without getfd,
--   as LuaSocket does); it has no FD_SETSIZE ceiling on descriptor
--   numbers, but refuses more than `_SETSIZE` sockets in one list.
-- @module green.socket

local core = require "green.core"
local waiters = require "green.waiters"

local error, type, tostring, setmetatable, getmetatable, select, pcall,
      rawequal, ipairs, pairs, tonumber =
  error, type, tostring, setmetatable, getmetatable, select, pcall,
  rawequal, ipairs, pairs, tonumber
local format = string.format
local min, max, floor, mtype = math.min, math.max, math.floor, math.type
local pack, unpack = table.pack, table.unpack

local M = {}

M._VERSION = "LuaSocket 3.0.0"
M.BLOCKSIZE = 2048
M._SETSIZE = 1024
M._DATAGRAMSIZE = 8192
M._SOCKETINVALID = -1

-- LuaSocket's wording of a green socket's error message where it differs
-- ("closed" for a connection reset by the peer, "host or service not
-- provided, or not known" for a name that does not resolve, the C
-- library's messages for the rest): the socket error strings are in C,
-- in one place (bindings/socket.c).
local lserr = core.luasocket_error

--- Numeric LuaSocket results are floats (lua_pushnumber).
local function fl(n)
  if math.type(n) == "integer" then return n + 0.0 end
  return n
end

-- {======================================================================
-- Classes
-- =======================================================================

-- All TCP classes share the methods, as in LuaSocket, and each method
-- checks the class it needs.
local tcp_methods = {}
local udp_methods = {}

local function newclass(name, methods, tcp)
  local index = { class = name }
  for k, v in pairs(methods) do index[k] = v end
  local mt = { __name = name, __index = index, ["tcp{any}"] = tcp }
  mt.__tostring = function(self) return format("%s: %p", name, self) end
  mt.__close = function(self) self:close() end
  return mt
end

local MASTER, CLIENT, SERVER, UDP_UNCONNECTED, UDP_CONNECTED

local function classof(self)
  local mt = getmetatable(self)
  return mt and mt.__name
end

-- Raise LuaSocket's error for an object of the wrong class.
local function check(self, name, ...)
  local c = classof(self)
  if c ~= nil then
    for i = 1, select("#", ...) do
      if select(i, ...) == c then return end
    end
  end
  error(format("bad argument #1 to '%s' (%s expected, got %s)", name,
               (...), c or type(self)), 3)
end

local function istcp(self, name)
  local mt = getmetatable(self)
  if type(self) ~= "table" or not mt or not mt["tcp{any}"] then
    error(format("bad argument #1 to '%s' (tcp{any} expected, got %s)",
                 name, mt and mt.__name or type(self)), 3)
  end
end

-- }======================================================================

-- {======================================================================
-- TCP
-- =======================================================================

-- LuaSocket 3.1's tcp options. true: set and get on the socket (a
-- master keeps them and applies them once it has one); "get": get only;
-- "set": set only; "listen": applied when it listens; false: returns nil,
-- "not supported" (tcp-fastopen-connect must precede connect, which
-- creates green sockets). An unknown name raises, as in LuaSocket.
local OPTIONS = {
  ["keepalive"] = true, ["reuseaddr"] = true, ["reuseport"] = true,
  ["tcp-nodelay"] = true, ["linger"] = true,
  ["tcp-keepidle"] = true, ["tcp-keepcnt"] = true,
  ["tcp-keepintvl"] = true, ["recv-buffer-size"] = true,
  ["send-buffer-size"] = true, ["error"] = "get",
  ["ipv6-v6only"] = "listen",
  ["tcp-defer-accept"] = "set", ["tcp-fastopen"] = "set",
  ["tcp-fastopen-connect"] = false, ["bindtodevice"] = false,
  ["broadcast"] = false, ["dontroute"] = false,
}

local function new_tcp(family)
  return setmetatable({ family = family, opts = {}, tb = -1, tt = -1 },
                      MASTER)
end

-- The limit each green call gets: the shorter of the two, nil for none.
local function limit(self)
  local b, t = self.tb, self.tt
  if b < 0 then b = t elseif t >= 0 then b = min(b, t) end
  if b < 0 then return nil end
  return b
end

-- The wrapped green socket, with LuaSocket's settings applied.
local function adopt(self, s, class)
  self.s = s
  s:settimeout(limit(self))
  s:setlimit(self.rlimit) -- LuaSocket has none: nil unless set
  for name, value in pairs(self.opts) do
    local known = OPTIONS[name]
    if known == true or known == "set" then s:setoption(name, value) end
  end
  return setmetatable(self, class)
end

--- socket.tcp(), socket.tcp4(), socket.tcp6(): a master object.
function M.tcp() return new_tcp(nil) end
function M.tcp4() return new_tcp("inet") end
function M.tcp6() return new_tcp("inet6") end

-- {-------------------------------------------------------------------
-- Connecting in the background. LuaSocket's connect with timeout 0 (the
-- way Copas and other dispatchers connect) returns "timeout" and leaves
-- the kernel connecting; select then reports the socket writable once
-- the attempt is over, and connect() again returns 1 or the failure. Here
-- a helper green thread makes the green.connect call; the object, a
-- tcp{client} from then on (as in LuaSocket), holds the attempt in
-- `self.pend` = { gt = helper, done, s = socket, err, q = waiters of its
-- end, watch = { [q] = q } of selects }, and its other methods wait for
-- the attempt (or answer "timeout" with timeout 0). An error raised in
-- the helper (`pend.raised`) is raised by the call that settles it.
-- --------------------------------------------------------------------

local function start_connect(self, host, port)
  local pend = { q = waiters.new(), watch = {} }
  self.pend = pend
  setmetatable(self, CLIENT)
  pend.gt = core.spawn(function()
    -- protected: an error here (out of memory, an argument green.connect
    -- refuses) must reach the caller, who would otherwise wait for its
    -- timeout (for ever without one) on a helper that died
    local ok, s, err = pcall(core.connect, host, port,
                             { family = self.family })
    pend.gt, pend.done = nil, true
    if self.pend ~= pend then -- closed or abandoned (killed) meanwhile
      if ok and s then s:close() end
      return
    end
    if ok then
      pend.s, pend.err = s, err and lserr(err)
    else
      pend.raised = s == nil and "green.socket: connect failed" or s
    end
    waiters.wake_all(pend.q)
    for q in pairs(pend.watch) do waiters.wake_all(q) end
  end)
end

-- Give up a background connect that is still under way.
local function abandon(self, pend)
  self.pend = nil
  setmetatable(self, MASTER)
  for q in pairs(pend.watch) do waiters.wake_all(q) end
  if pend.gt then pcall(core.kill, pend.gt) end
end

-- Wait (at most the object's timeout) for a background connect: true
-- when it is over, false on timeout.
local function await(self, pend)
  if pend.done then return true end
  local t = limit(self)
  if t == 0 then return false end
  return (waiters.block(pend.q, t, "socket:connect"))
end

-- The object's socket, the background connect (if any) settled first:
-- s, or nil, err ("timeout" while it is still under way).
local function settle(self)
  local s = self.s
  if s or self.closed then return s, "closed" end
  local pend = self.pend
  if not pend then return nil, "closed" end
  if not await(self, pend) then return nil, "timeout" end
  if self.closed then return nil, "closed" end
  self.pend = nil
  if pend.raised ~= nil then -- the helper's error, raised here (a master
    setmetatable(self, MASTER) -- again, as after an abandoned attempt)
    error(pend.raised, 0)
  end
  if not pend.s then return nil, pend.err end
  adopt(self, pend.s, CLIENT)
  return pend.s
end

function tcp_methods.connect(self, host, port)
  istcp(self, "connect")
  if self.closed then return nil, "closed" end
  if self.pend then -- connect() again: the background attempt's outcome
    local s, err = settle(self)
    if not s then return nil, err end
    return 1
  end
  if self.s then
    if classof(self) == "tcp{master}" then -- bound: a chosen local address
      return nil, "local address binding is not supported"
    end
    return nil, "already connected"
  end
  if type(host) ~= "string" then
    error(format("bad argument #1 to 'connect' (string expected, got %s)",
                 type(host)), 2)
  end
  port = tonumber(port)
  if not port then
    error("bad argument #2 to 'connect' (number expected)", 2)
  end
  -- here, not in the helper thread: green.connect raised there, the
  -- helper died, and the caller waited for its timeout (for ever without)
  if not (port >= 0 and port <= 65535 and port % 1 == 0) then
    error("bad argument #2 to 'connect' (port out of range)", 2)
  end
  start_connect(self, host, port)
  if limit(self) == 0 then return nil, "timeout" end
  -- A blocking connect waits for the same helper, so that close() from
  -- another thread ends it with "closed" at once (the kernel's SYN
  -- retries take minutes). If it times out or this thread is killed,
  -- the attempt is abandoned.
  local pend = self.pend
  local _ <close> = setmetatable({}, { __close = function()
    if self.pend == pend and not pend.done then abandon(self, pend) end
  end })
  local s, err = settle(self)
  if not s then return nil, err end
  return 1
end

-- Listen now (see the module comment): bind is where LuaSocket reports
-- address errors. The object stays a master until listen() (`class`).
local function do_listen(self, host, port, backlog, class)
  if host == "*" and self.family == nil then host = "0.0.0.0" end
  local p = tonumber(port)
  if p == nil or p ~= p // 1 then -- nil, NaN, a fraction
    error(format("bad argument #2 to 'bind' (port number expected, got "
                 .. "%s)", p == nil and type(port) or tostring(p)), 3)
  end
  if p < 0 or p > 65535 then -- (green.listen would name itself)
    error("bad argument #2 to 'bind' (port out of range)", 3)
  end
  local s, err = core.listen(host, p, {
    backlog = backlog or 32, family = self.family,
    reuseport = self.opts.reuseport or nil,
    ipv6only = self.opts["ipv6-v6only"] or nil,
  })
  if not s then return nil, lserr(err) end
  adopt(self, s, class)
  return 1
end

function tcp_methods.bind(self, host, port)
  check(self, "bind", "tcp{master}")
  if self.closed then return nil, "closed" end
  return do_listen(self, host, port, nil, MASTER)
end

function tcp_methods.listen(self, backlog)
  check(self, "listen", "tcp{master}", "tcp{server}")
  if self.closed then return nil, "closed" end
  if self.s then -- bound, and listening already
    setmetatable(self, SERVER)
    return 1
  end
  return do_listen(self, "*", 0, tonumber(backlog), SERVER)
end

function tcp_methods.accept(self)
  check(self, "accept", "tcp{server}")
  if self.closed or not self.s then return nil, "closed" end -- setfd(-1)
  local c, err = self.s:accept()
  if not c then return nil, lserr(err) end
  return adopt(setmetatable({ opts = {}, tb = -1, tt = -1,
                             rlimit = self.rlimit }, CLIENT), c, CLIENT)
end

function tcp_methods.receive(self, pattern, prefix)
  check(self, "receive", "tcp{client}")
  -- LuaSocket's readings: a numeric string is a count (lua_isnumber), a
  -- fraction counts its whole part ((size_t) n), a number prefix is its
  -- string (luaL_optlstring).
  if type(pattern) == "string" then pattern = tonumber(pattern) or pattern end
  if mtype(pattern) == "float" and pattern >= 0 and pattern < 2^53 then
    pattern = floor(pattern)
  end
  if type(prefix) == "number" then prefix = tostring(prefix) end
  local s, serr = self.s
  if not s then
    s, serr = settle(self)
    if not s then return nil, serr, prefix or "" end
  end
  local data, err, partial = s:receive(pattern, prefix)
  if data then return data end
  return nil, lserr(err), partial
end

function tcp_methods.send(self, data, i, j)
  check(self, "send", "tcp{client}")
  local s, serr = self.s
  if not s then
    s, serr = settle(self)
    if not s then return nil, serr, fl((tonumber(i) or 1) - 1) end
  end
  local n, err, last = s:send(data, i, j)
  if n then return fl(n) end
  return nil, lserr(err), fl(last or 0)
end

function tcp_methods.close(self)
  istcp(self, "close")
  self.closed = true
  local s, pend = self.s, self.pend
  if s then
    self.s = nil
    s:close()
  end
  if pend then -- a background connect: stop it, or close what it made
    self.pend = nil
    if pend.s then pend.s:close() end
    waiters.wake_all(pend.q)
    for q in pairs(pend.watch) do waiters.wake_all(q) end
    if pend.gt then pcall(core.kill, pend.gt) end
  end
  return 1.0
end

function tcp_methods.shutdown(self, how)
  check(self, "shutdown", "tcp{client}")
  if how ~= nil and how ~= "both" and how ~= "send" and how ~= "receive" then
    error(format("bad argument #2 to 'shutdown' (invalid option '%s')",
                 tostring(how)), 2)
  end
  if self.s then self.s:shutdown(how) end
  return 1.0
end

-- settimeout(t, [mode]) of tcp and udp objects: mode "b" (each
-- operation) or "t" (each call); nil or negative removes that limit. Both
-- limit a call as a whole here. `handle` is the green socket, if any.
local function settimeouts(self, handle, t, mode)
  local n = tonumber(t) -- LuaSocket's luaL_optnumber: "1.5" is 1.5
  if t ~= nil and (n == nil or n ~= n) then
    error(format("bad argument #1 to 'settimeout' (number expected, got "
                 .. "%s)", n ~= n and "NaN" or type(t)), 3)
  end
  t = n or -1
  if t < 0 then t = -1 end
  if mode == nil or mode == "b" or mode == "block" then
    self.tb = t
  elseif mode == "t" or mode == "total" or mode == "r" then
    self.tt = t
  else
    error("bad argument #3 to 'settimeout' (invalid timeout mode)", 3)
  end
  if handle then handle:settimeout(limit(self)) end
  return 1.0
end

--- settimeout(t, [mode]): see settimeouts.
function tcp_methods.settimeout(self, t, mode)
  istcp(self, "settimeout")
  return (settimeouts(self, self.s, t, mode)) -- no tail call: error level
end

function tcp_methods.gettimeout(self)
  istcp(self, "gettimeout")
  return fl(self.tb), fl(self.tt)
end

-- setoption("receive-limit", bytes), a greenlua extension: the receive
-- limit of the green socket (see sock:setlimit); nil, false or math.huge
-- for none, LuaSocket's behaviour and the default. Accepted clients
-- inherit a server's.
local function set_receive_limit(self, value)
  if value == false or value == math.huge then value = nil end
  if value ~= nil and (math.type(value) ~= "integer" or value < 0) then
    error("bad argument #3 to 'setoption' (receive-limit: non-negative "
          .. "integer, false or math.huge expected)", 3)
  end
  self.rlimit = value
  if self.s then self.s:setlimit(value) end
  return 1.0
end

function tcp_methods.setoption(self, name, value)
  istcp(self, "setoption")
  if name == "receive-limit" then return set_receive_limit(self, value) end
  local known = OPTIONS[name]
  if known == nil or known == "get" then
    error(format("bad argument #2 to 'setoption' (unsupported option `%s')",
                 tostring(name)), 2)
  end
  if not known then return nil, "not supported" end
  if self.s and (known == true or known == "set") then
    local ok, err = self.s:setoption(name, value)
    if not ok then return nil, lserr(err) end
  elseif self.s then
    return nil, "not supported" -- listen-time options, after the fact
  end
  self.opts[name] = value
  return 1.0
end

function tcp_methods.getoption(self, name)
  istcp(self, "getoption")
  if name == "receive-limit" then return self.rlimit end -- nil: none
  local known = OPTIONS[name]
  if known == nil or known == "set" then
    error(format("bad argument #2 to 'getoption' (unsupported option `%s')",
                 tostring(name)), 2)
  end
  if self.s and (known == true or known == "get") then
    local v, err = self.s:getoption(name)
    if v == nil and err ~= nil then return nil, lserr(err) end
    if known == "get" and v ~= nil then return lserr(v) end
    return v -- "error": nil when there is none, as in LuaSocket
  end
  if known == "get" then return nil, "getsockopt failed" end -- no socket
  local v = self.opts[name]
  if v == nil then return nil, "getsockopt failed" end
  return v
end

local function sockaddr(self, which)
  local s = self.s
  if not s then return nil, "Bad file descriptor" end
  local host, port, family = s[which](s)
  if not host then
    if port == "closed" and which == "getpeername" then
      return nil, "Transport endpoint is not connected"
    end
    return nil, lserr(port)
  end
  return host, port, family
end

function tcp_methods.getsockname(self)
  istcp(self, "getsockname")
  return sockaddr(self, "getsockname")
end

function tcp_methods.getpeername(self)
  istcp(self, "getpeername")
  if classof(self) == "tcp{server}" then
    return nil, "Transport endpoint is not connected"
  end
  return sockaddr(self, "getpeername")
end

--- "inet4" or "inet6", as LuaSocket 3.1 names them.
function tcp_methods.getfamily(self)
  istcp(self, "getfamily")
  local fam = self.family
  if self.s then fam = select(3, self.s:getsockname()) or fam end
  return fam == "inet6" and "inet6" or "inet4"
end

function tcp_methods.getstats(self)
  check(self, "getstats", "tcp{client}", "tcp{server}", "tcp{master}")
  local r, s, age = 0, 0, 0.0
  if self.s then
    r, s, age = self.s:getstats()
    if not r then r, s, age = 0, 0, 0.0 end
  end
  local off = self.statoff
  if off then r, s, age = r + off[1], s + off[2], age + off[3] end
  return fl(r), fl(s), fl(age)
end

function tcp_methods.setstats(self, r, s, age)
  check(self, "setstats", "tcp{client}", "tcp{server}", "tcp{master}")
  self.statoff = nil
  local cr, cs, cage = self:getstats()
  self.statoff = { (tonumber(r) or cr) - cr, (tonumber(s) or cs) - cs,
                   (tonumber(age) or cage) - cage }
  return 1.0
end

function tcp_methods.dirty(self)
  istcp(self, "dirty")
  return self.s ~= nil and self.s:dirty()
end

function tcp_methods.getfd(self)
  istcp(self, "getfd")
  if self.s then return fl(self.s:getfd()) end
  return -1.0
end

--- setfd(-1) detaches the object from its socket (what LuaSec does after
-- taking a descriptor over); any other value raises.
function tcp_methods.setfd(self, fd)
  istcp(self, "setfd")
  if tonumber(fd) ~= -1 then
    error("green.socket: setfd is not supported (green sockets own their "
          .. "descriptors)", 2)
  end
  self.s = nil
end

-- LuaSocket's aliases.
tcp_methods.setpeername = tcp_methods.connect
tcp_methods.setsockname = tcp_methods.bind

MASTER = newclass("tcp{master}", tcp_methods, true)
CLIENT = newclass("tcp{client}", tcp_methods, true)
SERVER = newclass("tcp{server}", tcp_methods, true)

--- socket.connect(host, port, [locaddr], [locport], [family]).
function M.connect(host, port, locaddr, locport, family)
  if (locaddr ~= nil and locaddr ~= "*") or (locport ~= nil and locport ~= 0)
  then
    return nil, "local address binding is not supported"
  end
  if family ~= nil and family ~= "inet" and family ~= "inet6" then
    error("bad argument #5 to 'connect' (invalid family)", 2)
  end
  local sock = new_tcp(family)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

function M.connect4(host, port, locaddr, locport)
  return M.connect(host, port, locaddr, locport, "inet")
end

function M.connect6(host, port, locaddr, locport)
  return M.connect(host, port, locaddr, locport, "inet6")
end

--- socket.bind(host, port, [backlog=32]): a listening tcp{server}.
function M.bind(host, port, backlog)
  local sock = new_tcp(nil)
  sock:setoption("reuseaddr", true)
  local ok, err = do_listen(sock, host, port, tonumber(backlog), SERVER)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

-- }======================================================================

-- {======================================================================
-- UDP (on green.udp)
-- =======================================================================

local function new_udp(family)
  local u, err = core.udp({ family = family })
  if not u then return nil, lserr(err) end
  return setmetatable({ u = u, family = family, tb = -1, tt = -1 },
                      UDP_UNCONNECTED)
end

--- socket.udp(), udp4(), udp6(): an unconnected UDP object.
function M.udp() return new_udp(nil) end
function M.udp4() return new_udp("inet") end
function M.udp6() return new_udp("inet6") end

-- Call green.udp's method 'name' for the method of the same name (its
-- caller, no tail call: the error level). Its argument errors named the
-- function '?' (called through u[name]) and counted 'u': they are
-- LuaSocket's now (as a C method's: the arguments after self), raised at
-- the caller of the method. Other errors (a kill, a Timeout) go as they
-- came.
local function udpcall(self, name, ...)
  local u = self.u
  if not u then return nil, "closed" end
  local ok, a, b, c = pcall(u[name], u, ...)
  if not ok then
    local n, why
    if type(a) == "string" then
      n, why = a:match("bad argument #(%d+) to '%?' (.*)$")
    end
    if n and tonumber(n) > 1 then
      error(format("bad argument #%d to '%s' %s", n - 1, name, why), 3)
    end
    error(a, 0)
  end
  if a == nil then return nil, lserr(b), c end
  return a, b, c
end

function udp_methods.setsockname(self, host, port)
  check(self, "setsockname", "udp{unconnected}")
  local ok, err = udpcall(self, "setsockname", host, port)
  return ok, err
end

function udp_methods.setpeername(self, host, port)
  check(self, "setpeername", "udp{unconnected}", "udp{connected}")
  local ok, err = udpcall(self, "setpeername", host, port)
  if not ok then return nil, err end
  setmetatable(self, host == "*" and UDP_UNCONNECTED or UDP_CONNECTED)
  return 1.0
end

function udp_methods.send(self, data)
  check(self, "send", "udp{connected}")
  local n, err = udpcall(self, "send", data)
  if not n then return nil, err end
  return fl(n)
end

function udp_methods.receive(self, size)
  check(self, "receive", "udp{connected}", "udp{unconnected}")
  local data, err = udpcall(self, "receive", size)
  if data then return data end -- one result, as LuaSocket
  return nil, err
end

function udp_methods.sendto(self, data, ip, port)
  check(self, "sendto", "udp{unconnected}")
  local n, err = udpcall(self, "sendto", data, ip, port)
  if not n then return nil, err end
  return fl(n)
end

function udp_methods.receivefrom(self, size)
  check(self, "receivefrom", "udp{unconnected}")
  local data, ip, port = udpcall(self, "receivefrom", size)
  return data, ip, port
end

for _, name in ipairs { "getsockname", "getpeername", "setoption",
                        "getoption", "dirty" } do
  udp_methods[name] = function(self, ...)
    local a, b, c = udpcall(self, name, ...)
    return a, b, c
  end
end

function udp_methods.close(self)
  if self.u then
    self.u:close()
    self.u = nil
  end
  return 1.0
end

function udp_methods.getfd(self)
  if self.u then return fl(self.u:getfd()) end
  return -1.0
end

function udp_methods.setfd(self, fd)
  if tonumber(fd) ~= -1 then
    error("green.socket: setfd is not supported (green sockets own their "
          .. "descriptors)", 2)
  end
  self.u = nil
end

function udp_methods.getfamily(self)
  return self.family == "inet6" and "inet6" or "inet4"
end

function udp_methods.settimeout(self, t, mode)
  return (settimeouts(self, self.u, t, mode)) -- no tail call: error level
end
function udp_methods.gettimeout(self)
  return fl(self.tb), fl(self.tt)
end

UDP_UNCONNECTED = newclass("udp{unconnected}", udp_methods)
UDP_CONNECTED = newclass("udp{connected}", udp_methods)

-- }======================================================================

-- {======================================================================
-- select, sleep, gettime
-- =======================================================================

local function inner(x)
  if type(x) == "table" then
    local mt = getmetatable(x)
    if mt == CLIENT or mt == SERVER or mt == MASTER then
      local pend = x.pend
      if pend then return pend.s end -- connected in the background
      return x.s
    end
    if mt == UDP_CONNECTED or mt == UDP_UNCONNECTED then return x.u end
  end
  return x
end

-- Add `x` to the result list `out` (LuaSocket's list and index).
local function add(out, x)
  if out[x] == nil then
    local n = #out + 1
    out[n] = x
    out[x] = n
  end
end

-- The green sockets of list `t` (argument `argn`) for green.select, with
-- `back[socket] = object`; background connects are set apart: `ready`
-- gets those that are over (writable; readable too if they failed) and
-- `pends` those still under way.
local function map(t, argn, back, write, ready, pends)
  local out = {}
  if t == nil then return out end
  if type(t) ~= "table" then
    error(format("bad argument #%d to 'select' (table expected, got %s)",
                 argn, type(t)), 3)
  end
  local n = 0
  for _, x in ipairs(t) do
    n = n + 1
    if n > M._SETSIZE then
      error(format("bad argument #%d to 'select' (too many sockets)",
                   argn), 3)
    end
    local pend = type(x) == "table" and x.pend
    if pend and not pend.done then
      pends[#pends + 1] = pend
    elseif pend and not pend.s then -- failed: connect() will say why
      add(ready, x)
    else
      local s = inner(x)
      if type(s) == "table" and s.getfd == nil then
        s = nil -- LuaSocket skips what has no descriptor
      end
      if s ~= nil and back[s] == nil then
        back[s] = x
        out[#out + 1] = s
        if pend and write then add(ready, x) end
      end
    end
  end
  return out
end

local function unmap(list, back, extra)
  local out = {}
  for _, s in ipairs(list or {}) do add(out, back[s] or s) end
  for _, x in ipairs(extra) do add(out, x) end
  return out
end

-- green.select over `r` and `w` that also ends when one of the background
-- connects `pends` does: a helper thread makes the select call, and
-- whichever ends first wakes the caller. Returns the select's results, or
-- nothing if a connect ended first.
local function select_or_connect(r, w, timeout, pends)
  local q = waiters.new()
  local res
  local helper = core.spawn(function()
    res = pack(pcall(core.select, r, w, timeout))
    waiters.wake_all(q)
  end)
  for _, pend in ipairs(pends) do pend.watch[q] = q end
  local ok, err = pcall(waiters.block, q, nil, "green.select")
  for _, pend in ipairs(pends) do pend.watch[q] = nil end
  local got = res -- before the kill, which would set res
  if not got then pcall(core.kill, helper) end
  if not ok then error(err, 0) end
  if got then
    if not got[1] then error(got[2], 0) end
    return unpack(got, 2, got.n)
  end
end

--- socket.select(recvt, sendt, [timeout]): readable, writable, err
-- ("timeout" when nothing became ready), as LuaSocket: each result lists
-- the objects and maps each object to its index. Objects without a
-- socket (closed, or masters never connected) are skipped, as LuaSocket
-- skips invalid descriptors; more than socket._SETSIZE in one list
-- raises, as in LuaSocket. Buffered data counts as readable; a
-- background connect (timeout 0) that is over counts as writable.
function M.select(recvt, sendt, timeout)
  if timeout ~= nil then -- as luaL_optnumber: "1.5" is a number, "x" not
    local t = tonumber(timeout)
    if t == nil then -- (it was no limit: select("x") waited for ever)
      error(format("bad argument #3 to 'select' (number expected, got %s)",
                   type(timeout)), 2)
    end
    timeout = t
  end
  if timeout and timeout < 0 then timeout = nil end
  local due = timeout and core.now() + timeout
  while true do
    local back, rx, wx, pends = {}, {}, {}, {}
    local rl = map(recvt, 1, back, false, rx, pends)
    local wl = map(sendt, 2, back, true, wx, pends)
    local left = due and max(due - core.now(), 0)
    if #rx + #wx > 0 then left = 0 end
    local r, w, err
    if #pends > 0 and left ~= 0 then
      r, w, err = select_or_connect(rl, wl, left, pends)
    else
      r, w, err = core.select(rl, wl, left)
    end
    if r or #rx + #wx > 0 or left == 0 then
      local rs, ws = unmap(r, back, rx), unmap(w, back, wx)
      if #rs + #ws > 0 then return rs, ws end
      return rs, ws, err or "timeout"
    end
    -- a background connect ended first: look again
  end
end

--- socket.sleep(seconds): green.
function M.sleep(t)
  local n = tonumber(t) -- as luaL_checknumber: "0.5" is a number
  if n == nil then
    error(format("bad argument #1 to 'sleep' (number expected, got %s)",
                 t == nil and "no value" or type(t)), 2)
  end
  if n < 0 then n = 0 end
  core.sleep(n)
end

--- socket.gettime(): wall-clock seconds since the epoch, to the
-- microsecond (gettimeofday, as LuaSocket).
M.gettime = core.gettime

-- }======================================================================

-- {======================================================================
-- DNS
-- =======================================================================

local dns = {}
M.dns = dns

-- { {family = "inet"|"inet6", addr = ip}, ... } or nil, err ("host not
-- found"), through the green resolver; a literal address is itself (in
-- its usual form), without the resolver.
local function resolve(host, family)
  return core.getaddrinfo(host, { family = family })
end

--- dns.getaddrinfo(host): { {family = "inet"|"inet6", addr = ip}, ... }.
function dns.getaddrinfo(host)
  if type(host) ~= "string" then
    error("bad argument #1 to 'getaddrinfo' (string expected)", 2)
  end
  local list, err = resolve(host, nil)
  if not list then return nil, lserr(err) end
  return list
end

-- The names of an IP address, through the green resolver.
local function reverse(ip)
  local name, err = core.getnameinfo(ip)
  if not name then return nil, err end
  return { name }
end

--- dns.toip(host): the first IPv4 address, and
-- { name = host, alias = {}, ip = { ... } }; or nil, "host not found".
function dns.toip(host)
  if type(host) ~= "string" then
    error("bad argument #1 to 'toip' (string expected)", 2)
  end
  local list, err = resolve(host, "inet")
  if not list then return nil, err end
  local ips = {}
  for i, a in ipairs(list) do ips[i] = a.addr end
  return ips[1], { name = host, alias = {}, ip = ips }
end

--- dns.tohostname(addr): the canonical name, and the resolved table.
function dns.tohostname(addr)
  if type(addr) ~= "string" then
    error("bad argument #1 to 'tohostname' (string expected)", 2)
  end
  local ip, err = dns.toip(addr) -- IPv4, as LuaSocket: a literal is itself
  if not ip then return nil, err end
  local names = reverse(ip)
  if not names or not names[1] then return nil, "host not found" end
  local alias = {}
  for i = 2, #names do alias[#alias + 1] = names[i] end
  return names[1], { name = names[1], alias = alias, ip = { ip } }
end

--- dns.getnameinfo(host, [port]): { names }, service.
function dns.getnameinfo(host, port)
  local names
  if host ~= nil then
    local list, err = resolve(host, nil)
    if not list then return nil, lserr(err) end
    local ip = list[1].addr
    names = reverse(ip)
    if not names then names = { ip } end
  end
  local service
  if port ~= nil then
    local services = { [80] = "http", [443] = "https", [21] = "ftp",
                       [22] = "ssh", [25] = "smtp", [53] = "domain" }
    service = services[tonumber(port)] or tostring(port)
  end
  return names, service
end

--- dns.gethostname(): this machine's name.
function dns.gethostname()
  return core.gethostname()
end

-- }======================================================================

-- {======================================================================
-- Exceptions: newtry, protect, try, skip
-- =======================================================================

-- The metatable that marks errors raised by a try() (LuaSocket's).
local TRY = { __name = "socket.try error",
              __tostring = function(e) return tostring(e[1]) end }

--- socket.newtry([finalizer]): a try function that returns its arguments
-- when the first is true, and otherwise calls `finalizer()` and raises
-- the second argument wrapped so that `protect` can catch it.
function M.newtry(finalizer)
  return function(...)
    if (...) then return ... end
    if finalizer then pcall(finalizer) end
    local err = select(2, ...)
    error(setmetatable({ err }, TRY), 0)
  end
end

local function unwrap(ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "table" and rawequal(getmetatable(err), TRY) then
    return nil, err[1]
  end
  error(err, 0)
end

--- socket.protect(fn): a function that calls `fn` and turns errors raised
-- by try() into nil, err; other errors propagate.
function M.protect(fn)
  return function(...)
    return unwrap(pcall(fn, ...))
  end
end

M.try = M.newtry()

--- socket.skip(d, ...): the arguments after the first d.
function M.skip(d, ...)
  return select(d + 1, ...)
end

--- socket.choose(table): LuaSocket's dispatcher for sink and source.
function M.choose(t)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = t[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3) end
    return f(opt1, opt2)
  end
end

-- }======================================================================

-- {======================================================================
-- LTN12 sinks and sources (as LuaSocket's socket.lua defines them)
-- =======================================================================

local sourcet, sinkt = {}, {}
M.sourcet, M.sinkt = sourcet, sinkt

local function fdmethods(sock)
  return {
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }
end

sinkt["close-when-done"] = function(sock)
  return setmetatable(fdmethods(sock), {
    __call = function(_, chunk)
      if not chunk then
        sock:close()
        return 1
      end
      return sock:send(chunk)
    end,
  })
end

sinkt["keep-open"] = function(sock)
  return setmetatable(fdmethods(sock), {
    __call = function(_, chunk)
      if chunk then return sock:send(chunk) end
      return 1
    end,
  })
end

sinkt["default"] = sinkt["keep-open"]
M.sink = M.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return setmetatable(fdmethods(sock), {
    __call = function()
      if length <= 0 then return nil end
      local chunk, err = sock:receive(min(M.BLOCKSIZE, length))
      if err then return nil, err end
      length = length - #chunk
      return chunk
    end,
  })
end

sourcet["until-closed"] = function(sock)
  local done
  return setmetatable(fdmethods(sock), {
    __call = function()
      if done then return nil end
      local chunk, err, partial = sock:receive(M.BLOCKSIZE)
      if not err then return chunk end
      if err == "closed" then
        sock:close()
        done = 1
        return partial
      end
      return nil, err
    end,
  })
end

sourcet["default"] = sourcet["until-closed"]
M.source = M.choose(sourcet)

-- }======================================================================

--- LuaSocket's __unload (nothing to release here).
function M.__unload() end

return M
