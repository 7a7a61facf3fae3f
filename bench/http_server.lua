--- bench/http_server.lua: green.http hello world under wrk, server CPU
-- per request against bench/c_responder.c (the raw C libuv responder,
-- the same floor as bench/http.sh), measured in the same run, rounds
-- interleaved (C, green.http, C, green.http, ...), without and with
-- pipelining. Debian's nginx (one process: master_process off, access
-- log off, keep-alive, `return 200 "Hello, world!"`) is measured in the
-- same rounds as a reference: what a real C HTTP server, with a real
-- parser, costs against the scanning floor; and so is OpenResty's
-- lua-nginx-module (Debian's libnginx-mod-http-lua, when installed), the
-- mark issue 12 names: the same nginx answering from content_by_lua_block.
-- And the C responder with the same parsing (`c_responder -p`: each
-- request parsed by libhttp-parser, the parser green.http uses): what a
-- server costs beyond its parser.
--
--   lua5.4 bench/http_server.lua [-v] [seconds=5] [rounds=3] [depth=16]
--   ./build/greenlua bench/http_server.lua serve [port]   (the server)
--
-- With GREENLUA_BASE=<dir> (another checkout, built in <dir>/build), its
-- server is measured in the same rounds too ("base"): before/after
-- figures of a change from one run.
--
-- The driver (plain lua5.4, no green) builds c_responder, starts both
-- servers pinned to core 0 and runs `taskset -c 1 wrk -t1 -c50`
-- against each; server CPU is utime + stime from /proc/PID/stat around
-- each run, divided by the requests wrk completed. Pipelined runs use a
-- wrk script that sends `depth` requests per write. Each side's best
-- round is compared; the median and range of the per-round ratios (each
-- round's server against that round's C responder) are printed too.
-- The handler is what a user would write:
--   return 200, { ["Content-Type"] = "text/plain" }, "Hello, world!"
-- (green.http adds a Date header; the C responder sends none.)

if arg[1] == "serve" then
  local green = require "green"
  local server = assert(green.listen("127.0.0.1",
                                     math.tointeger(tonumber(arg[2])) or 0,
                                     { backlog = 1024 }))
  local _, p = server:getsockname()
  io.stdout:write("port ", p, "\n")
  io.stdout:flush()
  local headers = { ["Content-Type"] = "text/plain" }
  green.http.serve(server, function()
    return 200, headers, "Hello, world!"
  end, { concurrency = 10000 })
  return
end

local verbose = false
if arg[1] == "-v" then
  verbose = true
  table.remove(arg, 1)
end
local dur = tonumber(arg[1]) or 5
local rounds = math.tointeger(tonumber(arg[2])) or 3
local depth = math.tointeger(tonumber(arg[3])) or 16

local W = dofile("bench/wrkbench.lua")
local h = W.new("http_server.lua", { "wrk", "taskset", "cc", "pkg-config",
                                     "nginx", "python3" })
W.sh("cc -O2 -Wall -o build/c_responder bench/c_responder.c "
     .. "$(pkg-config --cflags --libs libuv) -lhttp_parser")

local pipeline = h.tmp .. "/pipeline.lua"
do
  local f = assert(io.open(pipeline, "w"))
  f:write(([[
init = function()
  local r = {}
  for i = 1, %d do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
]]):format(depth))
  f:close()
end

-- One wrk run: microseconds of server CPU per request (and user only).
local function measure(srv, d, piped)
  return h:measure(srv, d, "http://127.0.0.1:" .. srv.port .. "/",
                   piped and pipeline or nil)
end

local ok, err = pcall(function()
  local c = h:start("c", "build/c_responder 0")
  local g = h:start("green",
                    "./build/greenlua bench/http_server.lua serve 0")
  -- the same responder parsing with libhttp-parser, as green.http does
  local cp = h:start("cparse", "build/c_responder -p 0")
  local servers = { c, g, cp, h:nginx() }
  servers[#servers + 1] = h:openresty() -- if its module is installed
  local base = os.getenv("GREENLUA_BASE")
  if base and base ~= "" then
    servers[#servers + 1] = h:start("base",
      ("sh -c 'cd %s && exec ./build/greenlua bench/http_server.lua serve "
       .. "0'"):format(base))
  end
  for _, piped in ipairs { false, true } do
    local res = {}
    for _, srv in ipairs(servers) do
      measure(srv, 1, piped) -- warm up
      res[srv.name] = {}
    end
    for r = 1, rounds do
      for _, srv in ipairs(servers) do
        local us, user, n = measure(srv, dur, piped)
        table.insert(res[srv.name], { us = us, user = user })
        if verbose then
          print(("round %d %-5s %s %.2f us/req (user %.2f)  %d requests")
            :format(r, srv.name, piped and "pipelined" or "", us, user, n))
        end
      end
    end
    local best = W.best
    -- the per-round ratios of a server to the C responder
    local function spread(name) return W.spread(res[name], res.c) end
    local gb, cb = best(res.green, "us"), best(res.c, "us")
    local ratio = gb / cb
    print(("http_server%s: greenlua %.2f us/req, C %.2f us/req, ratio %.2f "
           .. "(target <= 1.5) %s"):format(
      piped and (" pipelined x" .. depth) or "", gb, cb, ratio,
      ratio <= 1.5 and "MET" or "MISSED"))
    local med, lo, hi = spread("green")
    print(("  best of %d rounds of %s s; per-round ratio median %.2f "
           .. "(%.2f-%.2f); user time alone: greenlua %.2f, C %.2f us/req")
      :format(rounds, dur, med, lo, hi, best(res.green, "user"),
              best(res.c, "user")))
    local pb = best(res.cparse, "us")
    med, lo, hi = spread("cparse")
    print(("  C with libhttp-parser (same parsing): %.2f us/req, ratio %.2f; "
           .. "per-round median %.2f (%.2f-%.2f); user %.2f us/req; "
           .. "greenlua/it %.2f")
      :format(pb, pb / cb, med, lo, hi, best(res.cparse, "user"), gb / pb))
    local nb = best(res.nginx, "us")
    med, lo, hi = spread("nginx")
    print(("  nginx (reference): %.2f us/req, ratio %.2f; per-round median "
           .. "%.2f (%.2f-%.2f); user %.2f us/req")
      :format(nb, nb / cb, med, lo, hi, best(res.nginx, "user")))
    if res.openresty then
      local ob = best(res.openresty, "us")
      med, lo, hi = spread("openresty")
      print(("  OpenResty content_by_lua (reference): %.2f us/req, ratio "
             .. "%.2f; per-round median %.2f (%.2f-%.2f); user %.2f us/req; "
             .. "greenlua/OpenResty %.2f")
        :format(ob, ob / cb, med, lo, hi, best(res.openresty, "user"),
                gb / ob))
    end
    if res.base then
      local bb = best(res.base, "us")
      med, lo, hi = spread("base")
      print(("  base (%s): %.2f us/req, ratio %.2f; per-round median %.2f "
             .. "(%.2f-%.2f); user %.2f us/req")
        :format(base, bb, bb / cb, med, lo, hi, best(res.base, "user")))
    end
  end
end)
h:cleanup()
if not ok then error(err, 0) end
