-- http_proxy.lua: a small reverse proxy, green.http's server and client
-- together. Each request is forwarded to the backend over the client's
-- keep-alive pool (at most 4 connections to it, however many clients
-- come), and the backend's answer streamed back.
--   ./build/greenlua examples/http_proxy.lua [port] [backend]
--     port     8081 (0: any free); backend http://127.0.0.1:8080
local green = require "green"

local backend = arg[2] or "http://127.0.0.1:8080"
local client = green.http.Client { max_per_host = 4, idle_timeout = 30 }
-- Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded.
local HOP = { connection = true, ["keep-alive"] = true, te = true,
              ["transfer-encoding"] = true, upgrade = true, trailer = true,
              ["proxy-connection"] = true, ["content-length"] = true }

local server = assert(green.listen("127.0.0.1", tonumber(arg[1] or 8081)))
local host, port = server:getsockname()
print(("proxying %s:%d to %s"):format(host, port, backend))
io.stdout:flush()

local function copy(headers)
  local out = {}
  for k, v in pairs(headers) do
    if not HOP[k] then out[k] = v end
  end
  return out
end

green.http.serve(server, function(req)
  if req.path == "/proxy-stop" then server:close() return 204 end
  local headers = copy(req.headers)
  headers["X-Forwarded-For"] = req.remote_addr:match("^(.*):%d+$")
  local resp, err = client:request {
    method = req.method,
    url = backend .. req.path .. (req.query and ("?" .. req.query) or ""),
    headers = headers,
    body = req:body(),
    timeout = 30,
    redirects = 0,
    stream = true,
  }
  if not resp then
    return 502, { ["Content-Type"] = "text/plain" }, "bad gateway: " .. err
  end
  local body = req.method ~= "HEAD" and resp:body_reader() or nil
  return resp.status, copy(resp.headers), body and function()
    local piece, perr = body(resp)
    if perr then error("backend: " .. perr) end
    return piece
  end or nil
end)
client:close()
