--- green.ssl: LuaSec's `ssl` module, green. green.patch() installs it as
-- `package.loaded.ssl`, so code written for LuaSec (`ssl.wrap`,
-- `conn:dohandshake()`, Debian's `ssl.https.request`) runs on green.tls
-- unmodified. What is covered, and what is not, is listed in docs/api.md
-- ("LuaSec under green.patch").
--
-- One difference on purpose: with `verify = "peer"` and a name given by
-- `conn:sni(name)`, the certificate must also match that name (LuaSec
-- checks only the chain; without sni() green.ssl does the same).
local tls = require "green.tls"

local M = {
  _VERSION = "1.2.0 (green.ssl)",
  _COPYRIGHT = "green.ssl over green.tls; API after LuaSec (PUC-Rio)",
}

local UNSUPPORTED = { password = true, dhparam = true, curve = true,
                      curveslist = true, depth = true, verifyext = true,
                      dane = true }

-- LuaSec's protocol names -> green.tls's min/max.
local PROTOCOLS = {
  any = {}, tlsv1 = { "tls1", "tls1" }, tlsv1_1 = { "tls1.1", "tls1.1" },
  tlsv1_2 = { "tls1.2", "tls1.2" }, tlsv1_3 = { "tls1.3", "tls1.3" },
}

local function has(list, name)
  if type(list) == "string" then return list == name end
  if type(list) ~= "table" then return false end
  for _, v in ipairs(list) do if v == name then return true end end
  return false
end

local Context = {}
Context.__index = Context
Context.__name = "SSL context" -- LuaSec's

--- ssl.newcontext(cfg): a context, or nil, err.
function M.newcontext(cfg)
  if type(cfg) ~= "table" then
    error("bad argument #1 to 'newcontext' (table expected, got "
          .. type(cfg) .. ")", 2)
  end
  for k in pairs(cfg) do
    if UNSUPPORTED[k] then
      error("ssl.newcontext: '" .. k .. "' is not supported by green.ssl", 2)
    end
  end
  local mode = cfg.mode or "client"
  if mode ~= "client" and mode ~= "server" then
    return nil, "invalid mode"
  end
  local proto = PROTOCOLS[cfg.protocol or "any"]
  if not proto then return nil, "invalid protocol (" .. cfg.protocol .. ")" end
  local o = { mode = mode, min_protocol = proto[1], max_protocol = proto[2],
              cafile = cfg.cafile, capath = cfg.capath,
              certificate = cfg.certificate, key = cfg.key,
              ciphers = cfg.ciphers }
  if o.min_protocol == nil then
    o.min_protocol = "tls1.2"
    if not has(cfg.options, "no_tlsv1_2") and not has(cfg.options, "no_tlsv1")
    then o.min_protocol = "tls1.2" end
    if has(cfg.options, "no_tlsv1_2") then o.min_protocol = "tls1.3" end
  end
  local verify = has(cfg.verify, "peer")
  o.verify = verify
  if cfg.alpn ~= nil then
    local a = cfg.alpn
    if type(a) == "string" then a = { a } end
    if type(a) == "function" then
      error("ssl.newcontext: an 'alpn' function is not supported by "
            .. "green.ssl", 2)
    end
    o.alpn = a
  end
  -- the context is made per connection (the SNI name is known then);
  -- check the configuration now, as LuaSec does
  local check, err = tls.context(o)
  if not check then return nil, err end
  return setmetatable({ opts = o, ctx = check, mode = mode }, Context)
end

-- {=== connections

local Conn = {}
local methods = {}
Conn.__index = methods
Conn.__name = "SSL connection" -- LuaSec's
Conn.__tostring = function(c) return ("SSL connection: %p"):format(c) end
Conn.__close = function(c) c:close() end

-- The green.tls socket, made at first use (after sni()). Without a
-- name, LuaSec checks the chain only: server_name = false.
local function tsock(self)
  local t = self.t
  if t then return t end
  local o = {}
  for k, v in pairs(self.ctx.opts) do o[k] = v end
  if o.mode == "client" then o.server_name = self.name or false end
  local err
  t, err = tls.wrap(self.sock, o)
  if not t then return nil, err end
  t:settimeout(self.timeout)
  self.t = t
  return t
end

local function fail(self, err)
  if self.closed then return nil, "closed" end
  return nil, err
end

function methods:dohandshake()
  local t, err = tsock(self)
  if not t then return fail(self, err) end
  local ok
  ok, err = t:handshake()
  if ok then return true end
  self.verror = err
  return nil, err
end

function methods:receive(pattern, prefix)
  if self.closed then return nil, "closed", prefix end
  local t, err = tsock(self)
  if not t then return nil, err end
  return t:receive(pattern, prefix)
end

function methods:send(data, i, j)
  if self.closed then return nil, "closed", 0 end
  local t, err = tsock(self)
  if not t then return nil, err, 0 end
  return t:send(data, i, j)
end

function methods:close()
  if self.closed then return 1 end
  self.closed = true
  if self.t then return self.t:close() end
  return self.sock:close()
end

function methods:settimeout(t, _)
  if t ~= nil and t < 0 then t = nil end
  self.timeout = t
  if self.t then self.t:settimeout(t) end
  return 1
end

function methods:sni(name)
  if type(name) ~= "string" then
    error("ssl.sni: a host name (string) expected (tables of contexts are "
          .. "not supported by green.ssl)", 2)
  end
  if self.t then error("sni() after the handshake started", 2) end
  self.name = name
end

function methods:getsniname()
  local i = self.t and self.t:info()
  return i and i.server_name
end

function methods:getalpn()
  return self.t and self.t:getalpn()
end

function methods.want() return "nothing" end

function methods:getpeerverification()
  if self.verror then
    return false, { [0] = { self.verror } }
  end
  if self.t and self.t:info() then return true end
  return false, { [0] = { "no handshake" } }
end

-- LuaSec's info([field]): protocol, cipher, bits, ...
function methods:info(field)
  local i = self.t and self.t:info()
  if not i then return nil end
  local r = { protocol = i.protocol, cipher = i.cipher, bits = i.bits,
              algbits = i.bits, compression = "none" }
  if field then return r[field] end
  return r
end

-- {=== certificates (a LuaSec-like object over green.tls's table)

local Cert = {}
Cert.__index = Cert
Cert.__name = "SSL certificate"

local function name_list(s)
  local out = {}
  for part in (s or ""):gmatch("[^,]+") do
    local k, v = part:match("^%s*([^=]+)=(.*)$")
    if k then out[#out + 1] = { name = k, short_name = k, value = v } end
  end
  return out
end

function Cert:subject() return name_list(self.c.subject) end
function Cert:issuer() return name_list(self.c.issuer) end
function Cert:notbefore() return self.c.not_before end
function Cert:notafter() return self.c.not_after end
function Cert:serial() return self.c.serial end
function Cert:validat(t)
  local function epoch(iso)
    local y, mo, d, h, mi, s = iso:match("(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
    return os.time { year = y, month = mo, day = d, hour = h, min = mi,
                     sec = s, isdst = false }
  end
  t = t or os.time()
  return t >= epoch(self.c.not_before) and t <= epoch(self.c.not_after)
end
function Cert:digest(alg)
  if alg ~= nil and alg ~= "sha256" then
    error("green.ssl: only sha256 digests are supported", 2)
  end
  return (self.c.fingerprint:gsub(":", ""):lower())
end
-- LuaSec's extensions(): { ["2.5.29.17"] = { dNSName = {...},
-- iPAddress = {...} } }
function Cert:extensions()
  local san = { dNSName = {}, iPAddress = {}, rfc822Name = {} }
  for _, e in ipairs(self.c.san) do
    local kind, v = e:match("^(%w+):(.*)$")
    local key = kind == "DNS" and "dNSName" or kind == "IP" and "iPAddress"
                or "rfc822Name"
    san[key][#san[key] + 1] = v
  end
  return { ["2.5.29.17"] = san }
end

function methods:getpeercertificate(n)
  if n ~= nil and n ~= 1 then return nil end -- the chain is not kept
  local c = self.t and self.t:getpeercertificate()
  return c and setmetatable({ c = c }, Cert)
end

-- }===

for _, name in ipairs { "getpeername", "getsockname", "getfd", "getstats",
                        "dirty", "setoption", "getoption" } do
  methods[name] = function(self, ...)
    local t = self.t or self.sock
    return t[name](t, ...)
  end
end

-- }===

-- The green socket under a LuaSocket-style object (green.socket's) or a
-- green socket itself; the object is emptied, as LuaSec takes the
-- descriptor from it.
local function take(sock)
  if type(sock) == "table" and type(rawget(sock, "s")) == "userdata" then
    local s = sock.s
    sock.s = nil
    return s
  end
  if type(sock) == "userdata" and sock.recv then return sock end
  error("bad argument #1 to 'wrap' (a connected green socket expected)", 3)
end

--- ssl.wrap(sock, cfg): an SSL connection over `sock` (cfg: a table as
-- newcontext's, or a context). No I/O until dohandshake, receive or send.
function M.wrap(sock, cfg)
  local ctx = cfg
  if getmetatable(cfg) ~= Context then
    local err
    ctx, err = M.newcontext(cfg)
    if not ctx then return nil, err end
  end
  local s = take(sock)
  local timeout = s:gettimeout()
  if timeout and timeout < 0 then timeout = nil end
  return setmetatable({ sock = s, ctx = ctx, timeout = timeout }, Conn)
end

return M
