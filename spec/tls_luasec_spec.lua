-- LuaSec code unmodified under green.patch(): Debian's ssl.https (over
-- Debian's socket.http) and ssl.wrap/dohandshake/receive/send against a
-- green TLS server in the same process and openssl s_server. Each case
-- runs in its own lua5.4 (patch() changes package.loaded for good).
local h = require "helper"
local S = require "tls_support"

local dir

setup(function() dir = S.certs() end)
teardown(function() S.cleanup(dir) end)

-- Run `src` in lua5.4 with DIR set to the certificates' directory.
local function run(src)
  local out, err, code = h.lua54_run("local DIR = '" .. dir .. "'\n" .. src)
  assert.are.equal(0, code, "stdout:\n" .. out .. "\nstderr:\n" .. err)
  return out
end

-- A green TLS HTTP server in the same process: the client's waits must be
-- green for it to answer at all.
local SERVER = [[
local green = require "green"
green.patch()
local function http_server()
  local srv = assert(green.listen("127.0.0.1", 0, { tls = {
    certificate = DIR .. "/leaf.pem", key = DIR .. "/leaf.key" } }))
  local _, port = srv:getsockname()
  local th = green.spawn(green.serve, srv, function(c)
    c:settimeout(10)
    local line = c:receive()
    local n = 0
    repeat
      local l = c:receive()
      local len = l and l:lower():match("^content%-length:%s*(%d+)")
      if len then n = tonumber(len) end
    until not l or l == ""
    local body = n > 0 and c:receive(n) or ""
    local reply = "you sent " .. line .. " [" .. body .. "]"
    c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #reply
           .. "\r\nConnection: close\r\n\r\n" .. reply)
    c:close()
  end)
  return port, function() th:kill(); srv:close() end
end
]]

describe("LuaSec under green.patch()", function()
  it("ssl.https.request (string and table forms) is green", function()
    local out = run(SERVER .. [[
green.run(function()
  local https = require "ssl.https"
  assert(require("ssl") == require("green.ssl"))
  local port, stop = http_server()
  -- a ticker proves the hub runs while the request waits
  local ticks = 0
  local ticker = green.spawn(function()
    while true do ticks = ticks + 1; green.sleep(0.001) end
  end)
  local url = "https://localhost:" .. port .. "/x"
  local body, code = https.request(url)
  print(code, body)
  body, code = https.request(url, "a=1")
  print(code, body)
  local parts = {}
  local ok, code2 = https.request {
    url = url, sink = require("ltn12").sink.table(parts),
    verify = "peer", cafile = DIR .. "/ca.pem",
  }
  print(ok, code2, table.concat(parts))
  -- verification against the wrong CA fails
  local r, err = https.request {
    url = url, verify = "peer", cafile = DIR .. "/self.pem",
    sink = require("ltn12").sink.table({}),
  }
  print(r, err)
  ticker:kill()
  print(ticks > 0)
  stop()
end)
]])
    assert.are.equal(table.concat({
      "200\tyou sent GET /x HTTP/1.1 []",
      "200\tyou sent POST /x HTTP/1.1 [a=1]",
      "1\t200\tyou sent GET /x HTTP/1.1 []",
      "nil\tcertificate verify failed: unable to get local issuer "
        .. "certificate",
      "true", "" }, "\n"), out)
  end)

  it("ssl.wrap, sni, dohandshake, send/receive, getpeercertificate,"
     .. " info, close against openssl s_server", function()
    local out = run([[
local green = require "green"
green.patch()
local socket = require "socket"
local ssl = require "ssl"
green.run(function()
  local l = green.listen("127.0.0.1", 0); local _, port = l:getsockname()
  l:close()
  local proc = assert(green.process.spawn { "openssl", "s_server",
    "-accept", "127.0.0.1:" .. port, "-cert", DIR .. "/leaf.pem",
    "-key", DIR .. "/leaf.key", "-quiet", stdin = "pipe", stdout = "pipe",
    stderr = "null", env = { LD_PRELOAD = false } })
  local sock
  for _ = 1, 1000 do
    sock = socket.tcp()
    if sock:connect("127.0.0.1", port) then break end
    sock:close(); sock = nil
    green.sleep(0.02)
  end
  assert(sock, "s_server did not start")
  sock:settimeout(10)
  local conn = assert(ssl.wrap(sock, { mode = "client", protocol = "any",
    verify = "peer", cafile = DIR .. "/ca.pem", options = "all" }))
  conn:sni("localhost")
  assert(conn:dohandshake())
  print(conn:getsniname(), conn:info("protocol") ~= nil,
        conn:getpeerverification())
  local cert = conn:getpeercertificate()
  print(cert:subject()[1].value, cert:issuer()[1].value,
        cert:extensions()["2.5.29.17"].dNSName[1], #cert:digest(),
        cert:validat())
  print(conn:send("to s_server\n"))
  local got = ""
  while not got:find("to s_server\n", 1, true) do
    got = got .. proc.stdout:recv()
  end
  proc.stdin:send("to lua\n")
  print(conn:receive("*l"))
  print(conn:close())
  proc:kill("KILL"); proc:wait()
  -- a server name the certificate does not have: refused
  local wctx = assert(ssl.newcontext { mode = "client", verify = "peer",
                                       cafile = DIR .. "/ca.pem" })
  print(wctx ~= nil, ssl.newcontext { mode = "nope" })
  print(pcall(ssl.newcontext, { mode = "client", password = "x" }))
end)
]])
    assert.are.equal(table.concat({
      "localhost\ttrue\ttrue",
      "localhost\tgreenlua-test-CA\tlocalhost\t64\ttrue",
      "12", "to lua", "1",
      "true\tnil\tinvalid mode",
      "false\tssl.newcontext: 'password' is not supported by green.ssl",
      "" }, "\n"),
      (out:gsub("\tfalse\t[^\n]*ssl.newcontext", "\tfalse\tssl.newcontext")))
  end)
end)
