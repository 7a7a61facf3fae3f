--- bench/http_server.lua: green.http hello world under wrk, server CPU
-- per request against bench/c_responder.c (the raw C libuv responder,
-- the same floor as bench/http.sh), measured in the same run, rounds
-- interleaved (C, green.http, C, green.http, ...), without and with
-- pipelining. Debian's nginx (one process: master_process off, access
-- log off, keep-alive, `return 200 "Hello, world!"`) is measured in the
-- same rounds as a reference: what a real C HTTP server, with a real
-- parser, costs against the scanning floor.
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

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("failed: " .. cmd) end
end

local function readfile(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

for _, tool in ipairs { "wrk", "taskset", "cc", "pkg-config", "nginx",
                        "python3" } do
  if not os.execute("command -v " .. tool .. " >/dev/null") then
    io.stderr:write("http_server.lua: ", tool, " not found\n")
    os.exit(2)
  end
end
if not io.open("build/greenlua") then
  sh("cmake -S . -B build >/dev/null && cmake --build build >/dev/null")
end
sh("cc -O2 -Wall -o build/c_responder bench/c_responder.c "
   .. "$(pkg-config --cflags --libs libuv)")

local tmp = io.popen("mktemp -d"):read("l")
local pids = {}
local function cleanup()
  for _, p in ipairs(pids) do os.execute("kill " .. p .. " 2>/dev/null") end
  os.execute("rm -rf " .. tmp)
end

-- Start a server on core 0 and wait for its "port N" line.
local function start(name, cmd)
  local out = tmp .. "/" .. name .. ".out"
  local pid = io.popen(("taskset -c 0 %s >%s 2>%s.err & echo $!")
                       :format(cmd, out, out)):read("l")
  pids[#pids + 1] = pid
  for _ = 1, 200 do
    local s = readfile(out)
    local port = s and s:match("port (%d+)")
    if port then return { pid = pid, port = port, name = name } end
    os.execute("sleep 0.05")
  end
  cleanup()
  error(name .. " did not start: " .. (readfile(out .. ".err") or ""))
end

local hz = tonumber(io.popen("getconf CLK_TCK"):read("l"))

local function ticks(pid)
  local s = readfile("/proc/" .. pid .. "/stat"):gsub("^.*%) ", "")
  local f = {}
  for w in s:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(f[12]) + tonumber(f[13]), tonumber(f[12])
end

local pipeline = tmp .. "/pipeline.lua"
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
  local t0, u0 = ticks(srv.pid)
  local cmd = ("taskset -c 1 wrk -t1 -c50 -d%ss %s http://127.0.0.1:%s/ 2>&1")
    :format(d, piped and ("-s " .. pipeline) or "", srv.port)
  local out = io.popen(cmd):read("a")
  local t1, u1 = ticks(srv.pid)
  local n = tonumber(out:match("(%d+) requests in"))
  if not n or n == 0 then
    cleanup()
    error("no requests completed against " .. srv.name .. ":\n" .. out)
  end
  if out:find("Non%-2xx") or out:find("Socket errors") then
    io.stderr:write("wrk reported errors against ", srv.name, ":\n", out)
  end
  return (t1 - t0) / hz * 1e6 / n, (u1 - u0) / hz * 1e6 / n, n
end

-- nginx's configuration: one process, on a free loopback port (bound,
-- noted, released).
local function nginx_conf()
  local nport = tonumber(io.popen("python3 -c 'import socket; s = "
    .. "socket.socket(); s.bind((\"127.0.0.1\", 0)); "
    .. "print(s.getsockname()[1])'"):read("l"))
  local f = assert(io.open(tmp .. "/nginx.conf", "w"))
  f:write(([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  keepalive_requests 100000000;
  keepalive_timeout 60;
  server {
    listen 127.0.0.1:%d;
    location / { default_type text/plain; return 200 "Hello, world!"; }
  }
}
]]):format(tmp, tmp, tmp, tmp, tmp, tmp, tmp, nport))
  f:close()
  return nport
end

local ok, err = pcall(function()
  local c = start("c", "build/c_responder 0")
  local g = start("green", "./build/greenlua bench/http_server.lua serve 0")
  local nport = nginx_conf()
  local ng = start("nginx", ("sh -c 'echo port %d; exec nginx -c "
    .. "%s/nginx.conf -p %s -e %s/error.log'"):format(nport, tmp, tmp, tmp))
  local servers = { c, g, ng }
  local base = os.getenv("GREENLUA_BASE")
  if base and base ~= "" then
    servers[4] = start("base", ("sh -c 'cd %s && exec ./build/greenlua "
                                .. "bench/http_server.lua serve 0'")
                               :format(base))
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
    local function best(list, k)
      local b = math.huge
      for _, x in ipairs(list) do b = math.min(b, x[k]) end
      return b
    end
    -- the per-round ratios of a server to the C responder: median,
    -- lowest, highest
    local function spread(name)
      local ratios = {}
      for i = 1, rounds do
        ratios[i] = res[name][i].us / res.c[i].us
      end
      table.sort(ratios)
      local med = rounds % 2 == 1 and ratios[(rounds + 1) // 2]
        or (ratios[rounds // 2] + ratios[rounds // 2 + 1]) / 2
      return med, ratios[1], ratios[rounds]
    end
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
    local nb = best(res.nginx, "us")
    med, lo, hi = spread("nginx")
    print(("  nginx (reference): %.2f us/req, ratio %.2f; per-round median "
           .. "%.2f (%.2f-%.2f); user %.2f us/req")
      :format(nb, nb / cb, med, lo, hi, best(res.nginx, "user")))
    if res.base then
      local bb = best(res.base, "us")
      med, lo, hi = spread("base")
      print(("  base (%s): %.2f us/req, ratio %.2f; per-round median %.2f "
             .. "(%.2f-%.2f); user %.2f us/req")
        :format(base, bb, bb / cb, med, lo, hi, best(res.base, "user")))
    end
  end
end)
cleanup()
if not ok then error(err, 0) end
