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

local W = dofile("bench/wrkbench.lua")
local h = W.new("https_server.lua", { "wrk", "taskset", "openssl", "nginx",
                                      "python3" })
local tmp = h.tmp

-- One wrk run: microseconds of server CPU per request (and user only).
local function measure(srv, d)
  return h:measure(srv, d, "https://127.0.0.1:" .. srv.port .. "/")
end

local ok, err = pcall(function()
  local cert, key = tmp .. "/cert.pem", tmp .. "/key.pem"
  W.sh("openssl req -batch -nodes -newkey ec -pkeyopt ec_paramgen_curve:"
     .. "prime256v1 -x509 -days 2 -subj /CN=localhost -keyout " .. key
     .. " -out " .. cert .. " 2>/dev/null")
  local g = h:start("green", "./build/greenlua bench/https_server.lua "
                    .. "serve " .. cert .. " " .. key)
  local n = h:nginx("ssl", ("ssl_certificate %s; ssl_certificate_key %s;")
                             :format(cert, key))
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
  local best = W.best
  local med = W.spread(res.green, res.nginx)
  local gb, nb = best(res.green, "us"), best(res.nginx, "us")
  local ratio = gb / nb
  print(("https_server: greenlua %.2f us/req, nginx %.2f us/req, ratio %.2f "
         .. "(target <= 1.3) %s"):format(gb, nb, ratio,
                                         ratio <= 1.3 and "MET" or "MISSED"))
  print(("  best of %d rounds of %s s; median ratio %.2f; user time "
         .. "alone: greenlua %.2f, nginx %.2f us/req"):format(
    rounds, dur, med, best(res.green, "user"), best(res.nginx, "user")))
end)
h:cleanup()
if not ok then error(err, 0) end
