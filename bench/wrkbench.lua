--- bench/wrkbench.lua: what bench/http_server.lua and
-- bench/https_server.lua share: servers started on core 0 (each prints
-- "port N"), wrk on core 1, server CPU per request from /proc/PID/stat,
-- nginx's configuration, the per-round statistics. Plain lua5.4 (the
-- drivers run without green), from the repository's root.
--
--   local W = dofile("bench/wrkbench.lua")
--   local h = W.new("http_server.lua", { "wrk", "nginx", ... })
--   local srv = h:start("name", "command printing port N")
--   local us, user, n = h:measure(srv, seconds, url, [wrk script])
--   h:cleanup()

local W = {}

function W.sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("failed: " .. cmd) end
end

function W.readfile(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local hz

-- utime + stime of 'pid' in clock ticks, and utime alone.
local function ticks(pid)
  local s = W.readfile("/proc/" .. pid .. "/stat"):gsub("^.*%) ", "")
  local f = {}
  for w in s:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(f[12]) + tonumber(f[13]), tonumber(f[12])
end

local H = {}
H.__index = H

--- A harness for driver 'name': checks that 'tools' are installed (exits
-- 2 naming the missing one), builds greenlua if needed, makes a
-- temporary directory.
function W.new(name, tools)
  for _, tool in ipairs(tools) do
    if not os.execute("command -v " .. tool .. " >/dev/null") then
      io.stderr:write(name, ": ", tool, " not found\n")
      os.exit(2)
    end
  end
  if not io.open("build/greenlua") then
    W.sh("cmake -S . -B build >/dev/null && cmake --build build >/dev/null")
  end
  hz = hz or tonumber(io.popen("getconf CLK_TCK"):read("l"))
  return setmetatable({ tmp = io.popen("mktemp -d"):read("l"), pids = {} },
                      H)
end

function H:cleanup()
  for _, p in ipairs(self.pids) do
    os.execute("kill " .. p .. " 2>/dev/null")
  end
  os.execute("rm -rf " .. self.tmp)
end

--- Start a server on core 0 and wait for its "port N" line.
function H:start(name, cmd)
  local out = self.tmp .. "/" .. name .. ".out"
  local pid = io.popen(("taskset -c 0 %s >%s 2>%s.err & echo $!")
                       :format(cmd, out, out)):read("l")
  self.pids[#self.pids + 1] = pid
  for _ = 1, 200 do
    local s = W.readfile(out)
    local port = s and s:match("port (%d+)")
    if port then return { pid = pid, port = port, name = name } end
    os.execute("sleep 0.05")
  end
  self:cleanup()
  error(name .. " did not start: " .. (W.readfile(out .. ".err") or ""))
end

--- One wrk run of 'd' seconds against 'url' (with wrk script 'script'):
-- microseconds of server CPU per request, of user time alone, requests.
function H:measure(srv, d, url, script)
  local t0, u0 = ticks(srv.pid)
  local cmd = ("taskset -c 1 wrk -t1 -c50 -d%ss %s %s 2>&1")
    :format(d, script and ("-s " .. script) or "", url)
  local out = io.popen(cmd):read("a")
  local t1, u1 = ticks(srv.pid)
  local n = tonumber(out:match("(%d+) requests in"))
  if not n or n == 0 then
    self:cleanup()
    error("no requests completed against " .. srv.name .. ":\n" .. out)
  end
  if out:find("Non%-2xx") or out:find("Socket errors") then
    io.stderr:write("wrk reported errors against ", srv.name, ":\n", out)
  end
  return (t1 - t0) / hz * 1e6 / n, (u1 - u0) / hz * 1e6 / n, n
end

--- Start Debian's nginx (one process, access log off, keep-alive)
-- answering 200 "Hello, world!" on a free loopback port (bound, noted,
-- released); 'listen' is what follows the port in its listen directive
-- ("ssl"), 'extra' more server directives. 'o' (optional): 'name' (the
-- server's name in the results, "nginx"), 'main' (directives before
-- the others: load_module), 'content' (the location's content directive,
-- else nginx's own `return 200 "Hello, world!"`).
function H:nginx(listen, extra, o)
  o = o or {}
  local tmp, name = self.tmp, o.name or "nginx"
  local nport = tonumber(io.popen("python3 -c 'import socket; s = "
    .. "socket.socket(); s.bind((\"127.0.0.1\", 0)); "
    .. "print(s.getsockname()[1])'"):read("l"))
  local conf = ("%s/%s.conf"):format(tmp, name)
  local f = assert(io.open(conf, "w"))
  f:write(([[
%s
daemon off;
master_process off;
worker_processes 1;
pid %s/%s.pid;
error_log %s/%s-error.log;
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
    listen 127.0.0.1:%d %s;
    %s
    location / { default_type text/plain; %s }
  }
}
]]):format(o.main or "", tmp, name, tmp, name, tmp, tmp, tmp, tmp, tmp,
           nport, listen or "", extra or "",
           o.content or 'return 200 "Hello, world!";'))
  f:close()
  return self:start(name, ("sh -c 'echo port %d; exec nginx -c "
    .. "%s -p %s -e %s/%s-error.log'"):format(nport, conf, tmp, tmp, name))
end

--- OpenResty's lua-nginx-module as Debian ships it (libnginx-mod-http-lua)
-- in the same nginx: the hello world a user of OpenResty writes, in
-- content_by_lua_block (with the length set, as green.http sends it, so
-- that the response is not chunked). Nil when the module is not installed.
function H:openresty(listen, extra)
  local mods = "/usr/lib/nginx/modules/"
  if not W.readfile(mods .. "ngx_http_lua_module.so") then return nil end
  return self:nginx(listen, extra, {
    name = "openresty",
    main = ("load_module %sndk_http_module.so;\n"
            .. "load_module %sngx_http_lua_module.so;"):format(mods, mods),
    content = 'content_by_lua_block { ngx.header["Content-Length"] = 13; '
              .. 'ngx.print("Hello, world!") }',
  })
end

--- The smallest of field 'k' over a list of rounds.
function W.best(list, k)
  local b = math.huge
  for _, x in ipairs(list) do b = math.min(b, x[k]) end
  return b
end

--- The per-round ratios of rounds 'a' to rounds 'b' (field us): median,
-- lowest, highest.
function W.spread(a, b)
  local ratios = {}
  for i = 1, #a do ratios[i] = a[i].us / b[i].us end
  table.sort(ratios)
  local n = #ratios
  local med = n % 2 == 1 and ratios[(n + 1) // 2]
    or (ratios[n // 2] + ratios[n // 2 + 1]) / 2
  return med, ratios[1], ratios[n]
end

return W
