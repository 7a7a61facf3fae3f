-- Support for the TLS specs (spec/tls*_spec.lua): test certificates made
-- at run time with Debian's `openssl`, and real peers (`openssl s_server`,
-- `openssl s_client`, python3's ssl) run as green.process children on a
-- free 127.0.0.1 port.
local green = require "green"
local h = require "helper"

local S = {}

--- The peers' environment: not the sanitizer this process may run under
-- (LD_PRELOAD of libasan would report the peers' own leaks).
S.env = { LD_PRELOAD = false }

local function sh(cmd)
  local out, err, code = h.sh("unset LD_PRELOAD; " .. cmd)
  if code ~= 0 then
    error("command failed: " .. cmd .. "\n" .. out .. err)
  end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end
S.read = read

--- A temp dir with: ca.pem/ca.key (a CA), leaf.pem/leaf.key (localhost,
-- 127.0.0.1 and ::1, signed by the CA), expired.pem/.key (same names,
-- expired), wrong.pem/.key (names only other.example), self.pem/.key
-- (self-signed localhost), client.pem/.key (a client certificate signed
-- by the CA). Returns the directory; S.cleanup(dir) removes it.
function S.certs()
  local dir = assert(io.popen("mktemp -d /tmp/greenlua-tls.XXXXXX")):read("l")
  local function p(name) return dir .. "/" .. name end
  local q = "openssl req -batch -nodes -newkey ec -pkeyopt "
    .. "ec_paramgen_curve:prime256v1 "
  sh(q .. "-x509 -days 30 -subj /CN=greenlua-test-CA -keyout " .. p("ca.key")
     .. " -out " .. p("ca.pem") .. " -addext basicConstraints=critical,CA:TRUE"
     .. " -addext keyUsage=critical,keyCertSign,cRLSign")
  local function leaf(name, cn, san, days, extra)
    write(p(name .. ".ext"), "subjectAltName=" .. san
          .. "\nbasicConstraints=CA:FALSE\n" .. (extra or ""))
    sh(q .. "-subj /CN=" .. cn .. " -keyout " .. p(name .. ".key") .. " -out "
       .. p(name .. ".csr"))
    sh("openssl x509 -req -in " .. p(name .. ".csr") .. " -CA " .. p("ca.pem")
       .. " -CAkey " .. p("ca.key") .. " -CAcreateserial -out "
       .. p(name .. ".pem") .. " " .. days .. " -extfile " .. p(name .. ".ext"))
  end
  local names = "DNS:localhost,IP:127.0.0.1,IP:::1"
  leaf("leaf", "localhost", names, "-days 30")
  -- expired: valid from 20 days ago for 10 days (x509 -req has no
  -- -not_before in OpenSSL 3.0: sign with a CA-side faked clock instead)
  write(p("expired.ext"), "subjectAltName=" .. names
        .. "\nbasicConstraints=CA:FALSE\n")
  sh(q .. "-subj /CN=localhost -keyout " .. p("expired.key") .. " -out "
     .. p("expired.csr"))
  -- `openssl ca` signs with explicit dates
  sh("mkdir -p " .. p("cadb") .. " && : > " .. p("cadb/index.txt")
     .. " && echo 01 > " .. p("cadb/serial"))
  write(p("ca.cnf"), table.concat({
    "[ca]", "default_ca = d", "[d]", "dir = " .. p("cadb"),
    "database = $dir/index.txt", "serial = $dir/serial",
    "new_certs_dir = $dir", "default_md = sha256", "policy = pol",
    "copy_extensions = none", "unique_subject = no",
    "[pol]", "commonName = supplied", "" }, "\n"))
  sh("openssl ca -batch -config " .. p("ca.cnf") .. " -cert " .. p("ca.pem")
     .. " -keyfile " .. p("ca.key") .. " -in " .. p("expired.csr") .. " -out "
     .. p("expired.pem") .. " -startdate 20200101000000Z -enddate "
     .. "20200201000000Z -extfile " .. p("expired.ext") .. " -notext")
  leaf("wrong", "other.example", "DNS:other.example", "-days 30")
  leaf("client", "greenlua-client", "DNS:client.example", "-days 30",
       "extendedKeyUsage=clientAuth\n")
  sh(q .. "-x509 -days 30 -subj /CN=localhost -keyout " .. p("self.key")
     .. " -out " .. p("self.pem") .. " -addext subjectAltName=" .. names)
  return dir
end

function S.cleanup(dir)
  if dir and dir:match("^/tmp/greenlua%-tls%.") then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

--- A free 127.0.0.1 port (bound then released: the peer binds it next).
function S.free_port()
  local l = assert(green.listen("127.0.0.1", 0))
  local _, port = l:getsockname()
  l:close()
  return port
end

--- Connect to 127.0.0.1:port until it accepts (a child starting up), at
-- most `secs` seconds. Returns the socket.
function S.connect_when_up(port, secs, proc)
  local due = green.now() + (secs or 20)
  while true do
    local s = green.connect("127.0.0.1", port)
    if s then return s end
    if proc and proc:wait(0) ~= nil then
      error("the peer exited before listening")
    end
    assert(green.now() < due, "peer did not listen on port " .. port)
    green.sleep(0.02)
  end
end

--- Spawn argv with stdin/stdout piped and stderr merged into stdout.
function S.spawn(argv)
  argv.stdin = argv.stdin or "pipe"
  argv.stdout = argv.stdout or "pipe"
  argv.stderr = argv.stderr or "stdout"
  argv.env = argv.env or S.env
  return assert(green.process.spawn(argv))
end

--- Read the child's stdout until `pattern` shows up (or it ends, or
-- `secs` pass). Returns everything read.
function S.read_until(proc, pattern, secs)
  local buf = {}
  local due = green.now() + (secs or 20)
  while true do
    local all = table.concat(buf)
    if all:find(pattern) then return all end
    local left = due - green.now()
    if left <= 0 then return all end
    proc.stdout:settimeout(left)
    local chunk = proc.stdout:recv(4096)
    if not chunk then return table.concat(buf) end
    buf[#buf + 1] = chunk
  end
end

--- A connected pair of green TLS sockets over 127.0.0.1 with the
-- handshake done: client (verifying against dir's CA), server (leaf).
-- `copts`/`sopts` add TLS options to either side.
function S.pair(dir, copts, sopts)
  local so = { certificate = dir .. "/leaf.pem", key = dir .. "/leaf.key" }
  for k, v in pairs(sopts or {}) do so[k] = v end
  local srv = assert(green.listen("127.0.0.1", 0, { tls = so }))
  local _, port = srv:getsockname()
  local co = { cafile = dir .. "/ca.pem", server_name = "localhost" }
  for k, v in pairs(copts or {}) do co[k] = v end
  local accepted
  local acceptor = green.spawn(function()
    accepted = assert(srv:accept())
    assert(accepted:handshake())
  end)
  local c = assert(green.connect("127.0.0.1", port, { tls = co }))
  acceptor:wait()
  srv:close()
  return c, accepted
end

--- The same pair with the client over a proxy table (green.tls's Lua
-- path, moving ciphertext with the socket's methods, not core.tls's C
-- one); the server over the green socket. `calls` (optional) counts the
-- client socket's method calls by name.
function S.proxy_pair(dir, calls)
  local rc, rs = h.pair()
  local proxy = setmetatable({}, { __index = function(_, k)
    local v = rc[k]
    if type(v) ~= "function" then return v end
    return function(_, ...)
      if calls then calls[k] = (calls[k] or 0) + 1 end
      return v(rc, ...)
    end
  end })
  local c = assert(green.tls.wrap(proxy, {
    cafile = dir .. "/ca.pem", server_name = "localhost" }))
  local s = assert(green.tls.wrap(rs, { mode = "server",
    certificate = dir .. "/leaf.pem", key = dir .. "/leaf.key" }))
  local hs = green.spawn(function() return s:handshake() end)
  assert(c:handshake())
  assert(hs:wait())
  return c, s
end

return S
