--- bench/https_server.lua: green.http's HTTPS hello world (a
-- green.listen{tls=...} listener) under wrk, server CPU per request,
-- against nginx with ssl serving the same response with the same
-- certificate (one process: master_process off), measured in the same
-- run, rounds interleaved (nginx, green, nginx, green, ...), keep-alive
-- (wrk's 50 connections each do one handshake, then requests), without
-- pipelining.
--
--   lua5.4 bench/https_server.lua [-v] [seconds=5] [rounds=3]
--   ./build/greenlua bench/https_server.lua serve CERT KEY   (the server)
--
-- Server CPU is utime + stime from /proc/PID/stat around each run,
-- divided by the requests wrk completed; each side's best round is
-- compared, the median of the per-round ratios printed too. The handler:
--   return 200, { ["Content-Type"] = "text/plain" }, "Hello, world!"

if arg[1] == "serve" then
  local green = require "green"
  local server = assert(green.listen("127.0.0.1", 0, { backlog = 1024,
    tls = { certificate = arg[2], key = arg[3] } }))
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

for _, tool in ipairs { "wrk", "taskset", "openssl", "nginx", "python3" } do
  if not os.execute("command -v " .. tool .. " >/dev/null") then
    io.stderr:write("https_server.lua: ", tool, " not found\n")
    os.exit(2)
  end
end
if not io.open("build/greenlua") then
  sh("cmake -S . -B build >/dev/null && cmake --build build >/dev/null")
end

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

-- One wrk run: microseconds of server CPU per request (and user only).
local function measure(srv, d)
  local t0, u0 = ticks(srv.pid)
  local cmd = ("taskset -c 1 wrk -t1 -c50 -d%ss https://127.0.0.1:%s/ 2>&1")
    :format(d, srv.port)
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

local ok, err = pcall(function()
  local cert, key = tmp .. "/cert.pem", tmp .. "/key.pem"
  sh("openssl req -batch -nodes -newkey ec -pkeyopt ec_paramgen_curve:"
     .. "prime256v1 -x509 -days 2 -subj /CN=localhost -keyout " .. key
     .. " -out " .. cert .. " 2>/dev/null")
  -- a free port for nginx (bound, noted, released)
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
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / { default_type text/plain; return 200 "Hello, world!"; }
  }
}
]]):format(tmp, tmp, tmp, tmp, tmp, tmp, tmp, nport, cert, key))
  f:close()
  local g = start("green", "./build/greenlua bench/https_server.lua serve "
                  .. cert .. " " .. key)
  local n = start("nginx", ("sh -c 'echo port %d; exec nginx -c "
    .. "%s/nginx.conf -p %s -e %s/error.log'"):format(nport, tmp, tmp, tmp))
  local servers = { n, g }
  local res = {}
  for _, srv in ipairs(servers) do
    measure(srv, 1) -- warm up
    res[srv.name] = {}
  end
  for r = 1, rounds do
    for _, srv in ipairs(servers) do
      local us, user, cnt = measure(srv, dur)
      table.insert(res[srv.name], { us = us, user = user })
      if verbose then
        print(("round %d %-5s %.2f us/req (user %.2f)  %d requests")
          :format(r, srv.name, us, user, cnt))
      end
    end
  end
  local function best(list, k)
    local b = math.huge
    for _, x in ipairs(list) do b = math.min(b, x[k]) end
    return b
  end
  local ratios = {}
  for i = 1, rounds do
    ratios[i] = res.green[i].us / res.nginx[i].us
  end
  table.sort(ratios)
  local med = rounds % 2 == 1 and ratios[(rounds + 1) // 2]
    or (ratios[rounds // 2] + ratios[rounds // 2 + 1]) / 2
  local gb, nb = best(res.green, "us"), best(res.nginx, "us")
  local ratio = gb / nb
  print(("https_server: greenlua %.2f us/req, nginx %.2f us/req, ratio %.2f "
         .. "(target <= 1.3) %s"):format(gb, nb, ratio,
                                         ratio <= 1.3 and "MET" or "MISSED"))
  print(("  best of %d rounds of %s s; median ratio %.2f; user time "
         .. "alone: greenlua %.2f, nginx %.2f us/req"):format(
    rounds, dur, med, best(res.green, "user"), best(res.nginx, "user")))
end)
cleanup()
if not ok then error(err, 0) end
