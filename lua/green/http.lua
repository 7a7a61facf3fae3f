--- green.http: an HTTP/1.1 server and client and WebSocket, on
-- libhttp-parser (bindings/http.c) and libwslay (bindings/ws.c). This
-- facade loads its parts on first use, so `require "green"` stays cheap:
-- lua/green/http/server.lua, client.lua, ws.lua (and common.lua).
-- @module green.http

local M = {}

--- green.http.serve(server, handler, [opts]): serve HTTP on a listening
-- socket until it is closed (or a handler raises green.StopServe).
function M.serve(...)
  return require("green.http.server").serve(...)
end

--- green.http.request(opts) → resp, or nil, err.
function M.request(...)
  return require("green.http.client").request(...)
end

--- green.http.get(url, [headers]) → resp, or nil, err.
function M.get(...)
  return require("green.http.client").get(...)
end

--- green.http.post(url, body, [headers]) → resp, or nil, err.
function M.post(...)
  return require("green.http.client").post(...)
end

--- green.http.Client([opts]) → a client with its own connection pool.
function M.Client(...)
  return require("green.http.client").Client(...)
end

--- green.http.websocket(url, [opts]) → ws, or nil, err.
function M.websocket(...)
  return require("green.http.ws").connect(...)
end

return M
