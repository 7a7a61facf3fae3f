-- crawler.lua: fetch many URLs at once with GreenPool:imap, results in
-- input order (eventlet's classic webcrawler example).
--   ./build/greenlua examples/crawler.lua [pages] [concurrency]
-- A small HTTP server in the same script serves /page/N on a free
-- 127.0.0.1 port, each page after a random delay (a slow site). The pages
-- finish in whatever order their delays allow; imap still hands them back
-- in the order they were asked for, and the total time is close to the
-- slowest batch, not the sum of all the delays.
local green = require "green"

local PAGES = tonumber(arg[1]) or 20
local CONCURRENCY = tonumber(arg[2]) or 10
math.randomseed(42) -- the same delays every run

-- {== The slow site ===================================================
local delays = {} -- milliseconds per page
for n = 1, PAGES do delays[n] = math.random(10, 100) end

local server = assert(green.listen("127.0.0.1", 0))
server:setlimit(8192) -- request and header lines
local _, port = server:getsockname()
local finished = {} -- page numbers in the order the server answered them
local site = green.spawn(green.serve, server, function(client)
  local request = assert(client:receive())
  repeat local h = client:receive() until h == "" or not h -- the headers
  local n = tonumber(request:match("^GET /page/(%d+) HTTP/1%.[01]$"))
  local status, body = "404 Not Found", "no such page\n"
  if n and delays[n] then
    green.sleep(delays[n] / 1000)
    status = "200 OK"
    body = string.format("page %d, %d ms", n, delays[n])
    finished[#finished + 1] = n
  end
  client:send(string.format("HTTP/1.0 %s\r\nContent-Length: %d\r\n\r\n%s",
                            status, #body, body))
end)
-- }====================================================================

-- A minimal HTTP GET: status code and body.
local function fetch(url)
  local host, p, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
  local conn = assert(green.connect(host, tonumber(p)))
  assert(conn:send("GET " .. path .. " HTTP/1.0\r\nHost: " .. host
                   .. "\r\n\r\n"))
  local code = tonumber(assert(conn:receive()):match("^HTTP/1%.%d (%d+)"))
  local length = 0
  for h in function() return assert(conn:receive()) end do
    if h == "" then break end
    length = tonumber(h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")) or length
  end
  local body = assert(conn:receive(length))
  conn:close()
  return url, code, body
end

local urls = {}
for n = 1, PAGES do
  urls[n] = string.format("http://127.0.0.1:%d/page/%d", port, n)
end

local t0 = green.now()
local pool = green.GreenPool(CONCURRENCY) -- at most this many fetches at once
for url, code, body in pool:imap(fetch, urls) do
  print(string.format("%s -> %d %s", url:match("/page/%d+$"), code, body))
end
local elapsed = green.now() - t0

local sum = 0
for _, d in ipairs(delays) do sum = sum + d / 1000 end
print("the server finished them in this order: "
      .. table.concat(finished, " "))
print(string.format("%d pages, %d at a time: %.2f s in all, %.2f s of "
                    .. "delays in sum (%.1fx overlap)", PAGES, CONCURRENCY,
                    elapsed, sum, sum / elapsed))

server:close() -- ends serve()
site:wait()
