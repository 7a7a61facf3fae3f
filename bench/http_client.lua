--- bench/http_client.lua: the green.http client's requests/s against a
-- local nginx serving a small static file, keep-alive, against curl's
-- floors measured in the same run, rounds interleaved: a C keep-alive
-- client on libuv (bench/c_http_client.c) and curl's own keep-alive
-- loop;
-- then the same with 10 requests in flight.
--
--   lua5.4 bench/http_client.lua [-v] [requests=20000] [rounds=3]
--   ./build/greenlua bench/http_client.lua client URL N CONC  (the client)
--
-- The driver (plain lua5.4, no green) starts nginx (one worker, a temp
-- config on a free 127.0.0.1 port, a 13-byte file, keep-alive without
-- a request limit) pinned to core 0, then on core 1 runs, per round:
--   green  `greenlua bench/http_client.lua client URL N 1`: one green
--          thread, N x client:get(URL) on one kept-alive connection
--          (checked: status 200 and the body);
--   curl   `curl -s -K cfg` with N `url`/`output = /dev/null` pairs in
--          the config: curl's transfer loop reusing one connection;
-- and with concurrency 10: 10 green threads sharing one Client
-- (max_per_host = 10, so 10 connections) against `curl -Z
-- --parallel-max 10` (10 transfers at once on up to 10 connections).
-- Each run's requests/s is N over its wall time; its CPU per request is
-- the client process's utime + stime (the waited-for child's, read
-- from the shell that ran it). The best round of each side is compared.

local N_DEFAULT = 20000

if arg[1] == "client" then
  local green = require "green"
  local url, n, conc = arg[2], math.tointeger(tonumber(arg[3])),
    math.tointeger(tonumber(arg[4])) or 1
  local client = green.http.Client { max_per_host = conc }
  local expect = "Hello, world!"
  local done, failed = 0, nil
  local t0 = green.now()
  local threads = {}
  for i = 1, conc do
    local share = n // conc + (i <= n % conc and 1 or 0)
    threads[i] = green.spawn(function()
      for _ = 1, share do
        local r, err = client:get(url)
        if not r or r.status ~= 200 or r.body ~= expect then
          failed = failed or tostring(err or (r and r.status))
          return
        end
        done = done + 1
      end
    end)
  end
  for _, gt in ipairs(threads) do gt:wait() end
  local dt = green.now() - t0
  client:close()
  if failed then
    io.stderr:write("http_client.lua: request failed: ", failed, "\n")
    os.exit(1)
  end
  io.stdout:write(("done %d %.6f\n"):format(done, dt))
  return
end

local verbose = false
if arg[1] == "-v" then
  verbose = true
  table.remove(arg, 1)
end
local N = math.tointeger(tonumber(arg[1])) or N_DEFAULT
local rounds = math.tointeger(tonumber(arg[2])) or 3

for _, tool in ipairs { "curl", "taskset", "cc", "pkg-config" } do
  if not os.execute("command -v " .. tool .. " >/dev/null") then
    io.stderr:write("http_client.lua: ", tool, " not found\n")
    os.exit(2)
  end
end
local NGINX = "/usr/sbin/nginx"
if not os.execute("test -x " .. NGINX) then
  io.stderr:write("http_client.lua: nginx not found\n")
  os.exit(2)
end
if not io.open("build/greenlua") then
  os.execute("cmake -S . -B build >/dev/null && cmake --build build >/dev/null")
end

assert(os.execute("cc -O2 -Wall -o build/c_http_client bench/c_http_client.c "
                  .. "$(pkg-config --cflags --libs libuv)"))

local function writefile(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

local tmp = io.popen("mktemp -d"):read("l")
local function cleanup()
  os.execute(("kill $(cat %s/nginx.pid 2>/dev/null) 2>/dev/null; "
              .. "sleep 0.2; rm -rf %s"):format(tmp, tmp))
end

-- A free port: ask the kernel for one (python3's bind to port 0).
local function free_port()
  local p = io.popen("python3 -c 'import socket; s = socket.socket(); "
                     .. "s.bind((\"127.0.0.1\", 0)); "
                     .. "print(s.getsockname()[1])'")
  local port = p:read("l")
  p:close()
  return assert(math.tointeger(tonumber(port)), "no free port")
end

local hz = tonumber(io.popen("getconf CLK_TCK"):read("l"))

-- Run `cmd` on core 1 under a shell that then prints its waited-for
-- children's CPU ticks; returns the output, the wall time (s) and the
-- CPU seconds.
local function run(cmd)
  local p = io.popen(("sh -c 'd0=$(date +%%s.%%N); taskset -c 1 %s; "
                      .. "d1=$(date +%%s.%%N); echo wall $d0 $d1; "
                      .. "cat /proc/$$/stat' 2>&1"):format(cmd))
  local out = p:read("a")
  p:close()
  local d0, d1 = out:match("wall (%S+) (%S+)")
  local stat = out:match("\n([^\n]*)\n?$"):gsub("^.*%) ", "")
  local f = {}
  for w in stat:gmatch("%S+") do f[#f + 1] = w end
  -- fields 16 and 17 of stat (cutime, cstime), counted after "pid (comm)"
  local cpu = (tonumber(f[14]) + tonumber(f[15])) / hz
  return out, tonumber(d1) - tonumber(d0), cpu
end

local ok, err = pcall(function()
  local port = free_port()
  os.execute("mkdir -p " .. tmp .. "/www")
  writefile(tmp .. "/www/hello.txt", "Hello, world!")
  writefile(tmp .. "/nginx.conf", ([[
daemon on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  server {
    listen 127.0.0.1:%d;
    root %s/www;
  }
}
]]):format(tmp, tmp, tmp, tmp, tmp, tmp, tmp, port, tmp))
  assert(os.execute(("taskset -c 0 %s -c %s/nginx.conf -p %s -e %s/error.log"
                     .. " 2>/dev/null"):format(NGINX, tmp, tmp, tmp)),
         "nginx did not start")
  local url = ("http://127.0.0.1:%d/hello.txt"):format(port)
  for _ = 1, 100 do
    if os.execute("curl -sf -o /dev/null " .. url) then break end
    os.execute("sleep 0.05")
  end
  local cfg = tmp .. "/curl.cfg"
  do
    local lines = {}
    for i = 1, N do
      lines[i] = ('url = "%s"\noutput = "/dev/null"\n'):format(url)
    end
    writefile(cfg, table.concat(lines))
  end
  local sides = {
    { name = "green", cmd = function(conc)
      return ("./build/greenlua bench/http_client.lua client %s %d %d")
        :format(url, N, conc)
    end, check = function(out)
      local n = math.tointeger(tonumber(out:match("done (%d+)")))
      if n ~= N then error("green client: " .. out) end
    end },
    { name = "c", cmd = function(conc)
      return ("build/c_http_client %d /hello.txt %d %d"):format(port, N, conc)
    end, check = function(out)
      local n = math.tointeger(tonumber(out:match("done (%d+)")))
      if n ~= N then error("C client: " .. out) end
    end },
    { name = "curl", cmd = function(conc)
      return ("curl -sS --fail -K %s %s"):format(cfg,
        conc > 1 and ("-Z --parallel-max " .. conc) or "")
    end, check = function(out)
      if out:find("curl: %(") then error(out) end
    end },
  }
  for _, conc in ipairs { 1, 10 } do
    local res = { green = {}, c = {}, curl = {} }
    for r = 1, rounds do
      for _, side in ipairs(sides) do
        local out, wall, cpu = run(side.cmd(conc))
        side.check(out)
        table.insert(res[side.name], { rps = N / wall, cpu = cpu / N * 1e6 })
        if verbose then
          print(("round %d %-5s conc %2d: %8.0f req/s, %.2f us CPU/req")
            :format(r, side.name, conc, N / wall, cpu / N * 1e6))
        end
      end
    end
    local function best(list, k, better)
      local b = list[1][k]
      for _, x in ipairs(list) do
        if better(x[k], b) then b = x[k] end
      end
      return b
    end
    local function more(a, b) return a > b end
    local function less(a, b) return a < b end
    local g, c = best(res.green, "rps", more), best(res.c, "rps", more)
    local u = best(res.curl, "rps", more)
    local gc, cc = best(res.green, "cpu", less), best(res.c, "cpu", less)
    local uc = best(res.curl, "cpu", less)
    print(("http_client conc %d: greenlua %.0f req/s, C libuv client %.0f "
           .. "req/s, ratio %.2f (report); curl %.0f req/s, ratio %.2f")
      :format(conc, g, c, g / c, u, g / u))
    print(("  client CPU per request: greenlua %.1f us, C %.1f us (ratio "
           .. "%.2f), curl %.1f us; best of %d rounds of %d requests")
      :format(gc, cc, gc / cc, uc, rounds, N))
  end
end)
cleanup()
if not ok then error(err, 0) end
