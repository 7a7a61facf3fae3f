-- http_hello.lua: the smallest green.http server.
--   ./build/greenlua examples/http_hello.lua [port]   (8080; 0: any free)
--   curl http://127.0.0.1:8080/
local green = require "green"

local server = assert(green.listen("127.0.0.1", tonumber(arg[1] or 8080)))
print(("listening on %s:%d"):format(server:getsockname()))
io.stdout:flush()

green.http.serve(server, function(req)
  if req.path == "/stop" then server:close() end -- ends serve, gracefully
  return 200, { ["Content-Type"] = "text/plain" },
    "Hello, " .. (req.query or "world") .. "!\n"
end)
