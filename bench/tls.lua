--- bench/tls.lua: green.tls serving, against `openssl s_server` as the C
-- floor, with the same C clients, measured in the same run, rounds
-- interleaved (best round of each side):
--
-- * handshakes/s: `openssl s_time -new` (a full handshake per
--   connection, no resumption) for a few seconds against a green TLS
--   listener (each connection accepted, handshaken, closed) and against
--   `openssl s_server`; target >= 0.5x.
-- * bulk: `curl --cacert ... -o /dev/null` fetching a 64 MB file over
--   HTTPS from a green TLS server (the file read once, sent with
--   sendall) and from `openssl s_server -WWW` (reads and SSL_writes the
--   file); MB/s of wall time; target >= 0.5x. For reference, the same
--   fetch over plain HTTP from a green socket server.
--
-- The certificate is an EC P-256 one made in a temp dir.
-- Usage: greenlua bench/tls.lua [seconds per s_time run] [rounds] [MB]
local green = require "green"
local process = green.process

local SECS = tonumber(arg and arg[1]) or 3
local ROUNDS = math.tointeger(tonumber(arg and arg[2])) or 3
local MB = math.tointeger(tonumber(arg and arg[3])) or 64
local now = green.now
local ENV = { LD_PRELOAD = false }

local function sh(cmd)
  local ok, out, err = process.run(cmd, { env = ENV })
  if not ok then
    local c = type(cmd) == "table" and table.concat(cmd, " ") or cmd
    error(c .. "\n" .. tostring(out) .. tostring(err))
  end
  return out
end

local function free_port()
  local l = assert(green.listen("127.0.0.1", 0))
  local _, port = l:getsockname()
  l:close()
  return port
end

local function wait_up(port, proc)
  for _ = 1, 1000 do
    local s = green.connect("127.0.0.1", port)
    if s then s:close(); return end
    assert(not proc or proc:wait(0) == nil, "peer exited")
    green.sleep(0.01)
  end
  error("nothing listens on " .. port)
end

local function s_time(port)
  local out = sh { "openssl", "s_time", "-connect", "127.0.0.1:" .. port,
                   "-new", "-time", tostring(SECS) }
  local n, secs = out:match("(%d+) connections in ([%d.]+)s")
  assert(n, "s_time said:\n" .. out)
  return tonumber(n) / tonumber(secs)
end

local function curl(url, cafile)
  local t0 = now()
  local argv = { "curl", "-sS", "-o", "/dev/null", url }
  if cafile then
    table.insert(argv, 2, "--cacert")
    table.insert(argv, 3, cafile)
  end
  sh(argv)
  return MB / (now() - t0)
end

green.run(function()
  local dir = sh("mktemp -d /tmp/greenlua-tlsbench.XXXXXX"):gsub("%s+$", "")
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  sh { "openssl", "req", "-batch", "-nodes", "-x509", "-days", "2",
       "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
       "-keyout", key, "-out", cert }
  local big = dir .. "/big"
  sh { "dd", "if=/dev/urandom", "of=" .. big, "bs=1048576",
       "count=" .. MB, "status=none" }
  local f = assert(io.open(big, "rb"))
  local blob = f:read("a")
  f:close()

  -- the green TLS server: s_time connections (handshake, then close) and
  -- GETs of the file
  local srv = assert(green.listen("127.0.0.1", 0, { tls = {
    certificate = cert, key = key } }))
  local _, gport = srv:getsockname()
  local function handler(c)
    c:settimeout(30)
    local line = c:receive()
    if line and line:match("^GET ") then
      repeat local l = c:receive() until not l or l == ""
      c:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #blob
             .. "\r\nConnection: close\r\n\r\n")
      c:sendall(blob)
    end
    c:close()
  end
  local gserver = green.spawn(green.serve, srv, handler)
  -- plain HTTP, for reference
  local psrv = assert(green.listen("127.0.0.1", 0))
  local _, pport = psrv:getsockname()
  local pserver = green.spawn(green.serve, psrv, handler)
  -- the floor
  local oport = free_port()
  local oss = assert(process.spawn { "openssl", "s_server", "-accept",
    "127.0.0.1:" .. oport, "-cert", cert, "-key", key, "-WWW", "-quiet",
    cwd = dir, stdin = "pipe", stdout = "null", stderr = "null", env = ENV })
  wait_up(oport, oss)

  local best = { hg = 0, ho = 0, bg = 0, bo = 0, bp = 0 }
  for r = 1, ROUNDS do
    local hg, ho = s_time(gport), s_time(oport)
    local bg = curl("https://localhost:" .. gport .. "/big", cert)
    local bo = curl("https://localhost:" .. oport .. "/big", cert)
    local bp = curl("http://127.0.0.1:" .. pport .. "/big")
    print(("round %d: handshakes/s green %.0f s_server %.0f; MB/s green "
           .. "%.0f s_server %.0f plain green %.0f"):format(r, hg, ho, bg,
                                                            bo, bp))
    best.hg, best.ho = math.max(best.hg, hg), math.max(best.ho, ho)
    best.bg, best.bo = math.max(best.bg, bg), math.max(best.bo, bo)
    best.bp = math.max(best.bp, bp)
  end
  local function line(name, g, o, target)
    local ratio = g / o
    print(("%s: greenlua %.0f, floor %.0f, ratio %.2f (target %.1f) %s")
          :format(name, g, o, ratio, target,
                  ratio >= target and "MET" or "MISSED"))
  end
  line("tls handshakes/s (s_time -new)", best.hg, best.ho, 0.5)
  line("tls bulk MB/s (curl, 64 MB)", best.bg, best.bo, 0.5)
  print(("tls bulk vs plain green sockets: %.0f vs %.0f MB/s (%.2fx)")
        :format(best.bg, best.bp, best.bg / best.bp))
  oss:kill("KILL"); oss:wait()
  oss.stdin:close()
  gserver:kill(); pserver:kill()
  srv:close(); psrv:close()
  sh { "rm", "-rf", dir }
end)
