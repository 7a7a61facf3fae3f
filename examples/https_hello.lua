-- https_hello.lua: a green.http server over TLS, and the green client
-- fetching from it, verified.
--   ./build/greenlua examples/https_hello.lua [port] [cert.pem key.pem]
--     (port 8443; 0: any free). Without a certificate one is made for
--     localhost and 127.0.0.1 with `openssl` (self-signed, in a temp dir).
--   curl --cacert <the certificate it prints> https://localhost:8443/
-- /stop ends the server (gracefully).
local green = require "green"

local cert, key = arg[2], arg[3]
local tmp
if not cert then
  tmp = assert(io.popen("mktemp -d")):read("l")
  cert, key = tmp .. "/cert.pem", tmp .. "/key.pem"
  assert(os.execute("openssl req -batch -nodes -newkey ec -pkeyopt "
    .. "ec_paramgen_curve:prime256v1 -x509 -days 1 -subj /CN=localhost "
    .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " .. key
    .. " -out " .. cert .. " 2>/dev/null"), "openssl failed")
end

local server = assert(green.listen("127.0.0.1", tonumber(arg[1] or 8443),
  { tls = { certificate = cert, key = key } }))
local _, port = server:getsockname()
print(("listening on https://127.0.0.1:%d (certificate: %s)"):format(port,
                                                                     cert))
io.stdout:flush()

-- The client side, once the server runs: two requests on one pooled,
-- verified connection (SNI and the checked name are the URL's host).
green.spawn(function()
  local client = green.http.Client { tls = { cafile = cert } }
  for _, who in ipairs { "world", "TLS" } do
    local r, err = client:get(("https://localhost:%d/?%s"):format(port, who))
    print(r and ("client got %d: %s"):format(r.status, r.body:gsub("\n$", ""))
          or ("client failed: " .. err))
  end
  client:close()
  io.stdout:flush()
end)

green.http.serve(server, function(req)
  if req.path == "/stop" then server:close() end -- ends serve, gracefully
  return 200, { ["Content-Type"] = "text/plain" },
    "Hello, " .. (req.query or "world") .. "!\n"
end)
if tmp then os.execute("rm -rf " .. tmp) end
