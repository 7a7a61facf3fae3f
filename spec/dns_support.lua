-- A name server for the resolver specs (spec/resolver_spec.lua,
-- spec/dns_attack_spec.lua), run in green threads on 127.0.0.1: it parses
-- each query and answers what a script says.
local green = require "green"

local pack, unpack = string.pack, string.unpack

local D = {}

-- id, lower-case name, qtype, and the question section as sent.
function D.parse(q)
  if #q < 12 then return nil end
  local id = unpack(">I2", q)
  local pos, labels = 13, {}
  while true do
    local n = q:byte(pos)
    if n == nil then return nil end
    if n == 0 then break end
    labels[#labels + 1] = q:sub(pos + 1, pos + n)
    pos = pos + n + 1
  end
  if #q < pos + 4 then return nil end
  local qtype = unpack(">I2", q, pos + 1)
  return id, table.concat(labels, "."):lower(), qtype, q:sub(13, pos + 4)
end

local Server = { __name = "name server for the specs" }
Server.__index = Server

-- Serve DNS over TCP on `listener` with `script` (as for UDP; a list
-- with `raw = true` is sent as it is, not length-prefixed, and with
-- `close = true` the connection closes after it), one thread per
-- connection; the threads go in `threads`.
local function serve_tcp(self, listener, script)
  return green.spawn(function()
    while true do
      local c = listener:accept()
      if not c then return end
      self.conns[#self.conns + 1] = c
      self.threads[#self.threads + 1] = green.spawn(function()
        while true do
          local len = c:receive(2)
          local raw = len and c:receive((unpack(">I2", len)))
          if not raw then return c:close() end
          local id, name, qtype, question = D.parse(raw)
          if id then
            self.tcp_queries = self.tcp_queries + 1
            local q = { id = id, name = name, qtype = qtype,
                        question = question, raw = raw }
            local out = script(q) or {}
            for _, p in ipairs(out) do
              c:send(out.raw and p or pack(">s2", p))
            end
            if out.close then return c:close() end
          end
        end
      end)
    end
  end)
end

--- A name server on 127.0.0.1 (in a green thread). For each query,
-- `script(q, ip, port, server)` (q: {id, name, qtype, question, raw})
-- returns the packets to send back (a list of strings; nil: say
-- nothing). With
-- `tcp_script`, it also listens for TCP on the same port (c-ares asks
-- there after a truncated answer). `.queries` counts the UDP queries,
-- `.tcp_queries` the TCP ones; `.addr` is "127.0.0.1:port".
-- A UDP socket on a free port of 127.0.0.1, and with `tcp` a listener on
-- the same port number: the port the kernel picked for UDP may be taken
-- for TCP (another test's connection), so a few are tried.
local function bind(tcp)
  local err
  for _ = 1, 50 do
    local u = assert(green.udp())
    assert(u:setsockname("127.0.0.1", 0))
    local _, port = u:getsockname()
    if not tcp then return u, port end
    local listener
    listener, err = green.listen("127.0.0.1", port)
    if listener then return u, port, listener end
    u:close()
  end
  error("no port free for both UDP and TCP: " .. tostring(err), 3)
end

function D.server(script, tcp_script)
  local u, port, listener = bind(tcp_script ~= nil)
  local self = setmetatable({ u = u, queries = 0, tcp_queries = 0,
                              conns = {}, threads = {},
                              addr = "127.0.0.1:" .. port }, Server)
  if tcp_script then
    self.listener = listener
    self.threads[1] = serve_tcp(self, listener, tcp_script)
  end
  self.thread = green.spawn(function()
    while true do
      local raw, ip, from = u:receivefrom()
      if not raw then return end -- closed
      local id, name, qtype, question = D.parse(raw)
      if id then
        self.queries = self.queries + 1
        local q = { id = id, name = name, qtype = qtype,
                    question = question, raw = raw }
        for _, p in ipairs(script(q, ip, from, self) or {}) do
          u:sendto(p, ip, from)
        end
      end
    end
  end)
  return self
end

function Server:close()
  self.u:close()
  self.thread:wait()
  if self.listener then self.listener:close() end
  for _, c in ipairs(self.conns) do c:close() end
  for _, t in ipairs(self.threads) do t:wait() end
end
Server.__close = Server.close

return D
