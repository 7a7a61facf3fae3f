-- A TLS client fetching over HTTPS from a local `openssl s_server -www`
-- (no internet needed): a throwaway certificate authority is made with
-- `openssl`, s_server runs as a green.process child, and green.connect
-- with `tls` verifies the server against that CA by name. Two fetches run
-- at once on green threads while a heartbeat keeps ticking.
--
-- Run: greenlua examples/tls_client.lua
local green = require "green"
local process = green.process

local function run(argv)
  local ok, out, err = process.run(argv, { env = { LD_PRELOAD = false } })
  assert(ok, table.concat(argv, " ") .. "\n" .. tostring(out) .. tostring(err))
  return out
end

green.run(function()
  local dir = run({ "mktemp", "-d", "/tmp/tls-example.XXXXXX" })
  dir = dir:gsub("%s+$", "")
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  run { "openssl", "req", "-batch", "-nodes", "-x509", "-days", "1",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        "-keyout", key, "-out", cert }

  -- a free port for s_server
  local probe = assert(green.listen("127.0.0.1", 0))
  local _, port = probe:getsockname()
  probe:close()
  local server = assert(process.spawn { "openssl", "s_server", "-www",
    "-accept", "127.0.0.1:" .. port, "-cert", cert, "-key", key,
    "-alpn", "http/1.1", stdin = "pipe", stdout = "null", stderr = "null",
    env = { LD_PRELOAD = false } })

  local function fetch(id)
    local conn, err
    for _ = 1, 500 do -- until s_server listens
      conn, err = green.connect("localhost", port, { tls = {
        cafile = cert, alpn = { "http/1.1" } }, timeout = 10 })
      if conn or err ~= "connection refused" then break end
      green.sleep(0.02)
    end
    assert(conn, err)
    conn:settimeout(10)
    conn:send("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    local status = conn:receive("*l")
    local page = conn:receive("*a") or ""
    local info = conn:info()
    local cert_seen = conn:getpeercertificate()
    conn:close()
    return ("fetch %d: %s; %s via %s; server %s; %s"):format(id, status,
      info.protocol, info.alpn, cert_seen.subject,
      page:find("Ciphers supported", 1, true) and "status page received"
                                               or "no page")
  end

  local beats = 0
  local heart = green.spawn(function()
    while true do beats = beats + 1; green.sleep(0.005) end
  end)
  local a, b = green.spawn(fetch, 1), green.spawn(fetch, 2)
  print(a:wait())
  print(b:wait())
  heart:kill()
  print("heartbeat kept beating:", beats > 0)

  -- tls = true: the system's CAs, which do not know ours: refused before
  -- any data is sent
  local _, err = green.connect("localhost", port, { tls = true })
  print("with the system's CAs instead:", err)

  server:kill("KILL")
  server:wait()
  server.stdin:close()
  run { "rm", "-rf", dir }
end)
