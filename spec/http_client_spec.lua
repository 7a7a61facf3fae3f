-- green.http's client (issue 12): request/get/post and Client against the
-- greenlua server and against nginx (started here on a free loopback
-- port: a static file, and a chunked response through sub_filter).
local green = require "green"
local h = require "helper"

local function start(handler, opts)
  local port, stop = h.http_serve(handler, opts)
  return "http://127.0.0.1:" .. port, stop
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("green.http client", function()
  it("gets and posts, reusing one keep-alive connection", function()
    green_run(function()
      local conns = {}
      local base, stop = start(function(req)
        conns[req.remote_addr] = true
        return 200, { ["X-Method"] = req.method },
          req.method .. " " .. req.path .. " " .. req:body()
      end)
      local client = green.http.Client()
      for i = 1, 3 do
        local r = assert(client:get(base .. "/g" .. i))
        assert.are.equal(200, r.status)
        assert.are.equal("OK", r.reason)
        assert.are.equal("GET /g" .. i .. " ", r.body)
        assert.are.equal("GET", r.headers["X-Method"])
      end
      local r = assert(client:post(base .. "/p", "data",
                                   { ["Content-Type"] = "text/plain" }))
      assert.are.equal("POST /p data", r.body)
      r = assert(client:request { method = "put", url = base .. "/u",
                                  body = "x" })
      assert.are.equal("PUT /u x", r.body)
      assert.are.equal(1, count(conns))
      -- the module-level functions share a default client
      assert.are.equal("GET /m ", assert(green.http.get(base .. "/m")).body)
      client:close()
      stop()
    end)
  end)

  it("bounds the connections per host with max_per_host", function()
    green_run(function()
      local conns, inside, most = {}, 0, 0
      local both = green.Event() -- two handlers at once, however slow
      local base, stop = start(function(req)
        conns[req.remote_addr] = true
        inside = inside + 1
        most = math.max(most, inside)
        if inside == 2 and not both:ready() then both:send() end
        -- the first requests wait for each other: a bounded wait, which
        -- fails if the client never has two going (not a sleep whose
        -- overlap a slow machine could miss)
        both:wait(20)
        assert(both:ready(), "never two requests at once")
        inside = inside - 1
        return 200, nil, "ok"
      end)
      local client = green.http.Client { max_per_host = 2 }
      local pile = green.GreenPile()
      for _ = 1, 8 do pile:spawn(client.get, client, base .. "/") end
      for r in pile do assert.are.equal("ok", r.body) end
      assert.are.equal(2, most)
      assert.are.equal(2, count(conns))
      client:close()
      stop()
    end)
  end)

  it("sends chunked bodies and reads chunked and streamed ones", function()
    green_run(function()
      local base, stop = start(function(req)
        if req.path == "/echo" then return 200, nil, req:body() end
        local i = 0
        return 200, nil, function()
          i = i + 1
          if i <= 4 then return ("piece%d|"):format(i) end
        end
      end)
      local parts = { "a", "bb", "ccc" }
      local i = 0
      local r = assert(green.http.request {
        method = "POST", url = base .. "/echo",
        body = function() i = i + 1 return parts[i] end })
      assert.are.equal("abbccc", r.body)
      r = assert(green.http.get(base .. "/chunked"))
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.are.equal("piece1|piece2|piece3|piece4|", r.body)
      r = assert(green.http.request { url = base .. "/s", stream = true })
      assert.is_nil(r.body)
      local got = {}
      for piece in r:body_reader() do got[#got + 1] = piece end
      assert.are.equal("piece1|piece2|piece3|piece4|", table.concat(got))
      stop()
    end)
  end)

  it("gives a streamed response's connection back when a <close> "
     .. "variable holding it goes out of scope", function()
    green_run(function()
      local base, stop = start(function()
        local i = 0
        return 200, nil, function() -- endless: only a close ends it
          i = i + 1
          return ("piece%d|"):format(i)
        end
      end)
      local client = green.http.Client { max_per_host = 2 }
      for round = 1, 3 do
        do
          local r <close> = assert(client:request {
            url = base .. "/" .. round, stream = true, timeout = 10 })
          assert.matches("^piece1|", r:body_reader()(r))
        end
        -- the slot is free again at once (the one connection): without
        -- the close, this request would wait for a collection
        local r <close> = assert(client:request {
          url = base .. "/again", stream = true, timeout = 0.5 })
        assert.are.equal(200, r.status)
      end
      client:close()
      stop()
    end)
  end)

  it("follows redirects up to the limit", function()
    green_run(function()
      local base_url
      local base, stop = start(function(req)
        local n = tonumber(req.path:match("^/r(%d+)$"))
        if n and n > 0 then
          return 302, { Location = "/r" .. (n - 1) }, ""
        elseif req.path == "/see" then
          return 303, { Location = base_url .. "/r0" }, ""
        end
        return 200, nil, req.method .. " " .. req.path .. " " .. req:body()
      end)
      base_url = base
      local r = assert(green.http.get(base .. "/r3"))
      assert.are.equal("GET /r0 ", r.body)
      r = assert(green.http.request { url = base .. "/r3", redirects = 2 })
      assert.are.equal(302, r.status)
      assert.are.equal("/r0", r.headers.location)
      r = assert(green.http.post(base .. "/see", "gone"))
      assert.are.equal("GET /r0 ", r.body) -- 303: GET, no body
      stop()
    end)
  end)

  it("times out, limits bodies, and refuses bad URLs and schemes", function()
    green_run(function()
      local release = green.Event()
      local base, stop = start(function(req)
        if req.path == "/slow" then release:wait() end
        return 200, nil, ("z"):rep(1000)
      end)
      assert.are.same({ nil, "timeout" },
        { green.http.request { url = base .. "/slow", timeout = 0.1 } })
      release:send()
      assert.are.same({ nil, "too large" },
        { green.http.request { url = base .. "/", max_body_size = 999 } })
      assert.are.equal(1000, #assert(green.http.request {
        url = base .. "/", max_body_size = 1000 }).body)
      assert.are.same({ nil, "unsupported URL scheme: ftp" },
        { green.http.get("ftp://127.0.0.1/") })
      -- https:// to a plain HTTP server: the handshake fails, clearly
      local r, e = green.http.get((base:gsub("^http:", "https:")) .. "/")
      assert.is_nil(r)
      assert.matches("^https://127%.0%.0%.1:%d+: .", e)
      assert.are.equal(nil, (green.http.get("not a url")))
      assert.are.same({ nil, "connection refused" },
        { green.http.get("http://127.0.0.1:1/") })
      assert.has_error(function() green.http.request { bogus = 1 } end,
        "bad argument #1 to 'request' (unknown option 'bogus')")
      assert.has_error(function() green.http.Client { max_per_host = 0 } end)
      stop()
    end)
  end)

  it("opens a new connection when a kept one was closed by the server",
     function()
    green_run(function()
      local conns = {}
      local base, stop = start(function(req)
        conns[req.remote_addr] = true
        return 200, nil, "ok"
      end, { keepalive_timeout = 0.05 })
      local client = green.http.Client()
      assert.are.equal("ok", assert(client:get(base .. "/")).body)
      h.eventually(function() -- the server closed the idle connection
        local p = next(client.pools)
        local conn = client.pools[p].idle[1]
        return conn and conn.sock:dirty() == false
          and green.select({ conn.sock }, nil, 0)[1] ~= nil
      end)
      assert.are.equal("ok", assert(client:get(base .. "/")).body)
      assert.are.equal(2, count(conns))
      client:close()
      stop()
    end)
  end)

  it("spec/helper's nginx: stop ends it and removes its prefix; a start"
     .. " that fails says why", function()
    local port, stop, prefix = h.nginx { files = { ["a.txt"] = "a" } }
    if not port then return pending(stop) end
    finally(stop)
    local pid = assert(tonumber(h.slurp(prefix .. "/nginx.pid")))
    green_run(function()
      local r = assert(green.http.get("http://127.0.0.1:" .. port
                                      .. "/a.txt"))
      assert.are.equal("a", r.body)
    end)
    stop()
    stop() -- again: nothing
    assert.is_nil(h.slurp(prefix .. "/nginx.conf"))
    -- gone, or a zombie its reaper has not reaped yet
    assert.are.equal("", (h.sh("unset LD_PRELOAD; ps -o stat= -p " .. pid
                                   .. " | grep -v '^Z'")))
    local ok, err = pcall(h.nginx, { server = "no_such_directive on;" })
    assert.is_false(ok)
    assert.matches("nginx did not start", err)
    assert.matches("unknown directive \"no_such_directive\"", err)
  end)

  it("talks to nginx: a static file and a chunked response", function()
    local content = ("static line\n"):rep(2000)
    local port, stop = h.nginx {
      files = { ["file.txt"] = content },
      server = [[
    location = /chunked {
      default_type text/plain;
      sub_filter_types *;
      sub_filter 'static' 'dynamic';
      sub_filter_once off;
      try_files /file.txt =404;
    }]] }
    if not port then return pending(stop) end
    finally(stop)
    green_run(function()
      local base = "http://127.0.0.1:" .. port
      local client = green.http.Client()
      local r = assert(client:get(base .. "/file.txt"))
      assert.are.equal(200, r.status)
      assert.are.equal(tostring(#content), r.headers["content-length"])
      assert.are.equal(content, r.body)
      r = assert(client:get(base .. "/chunked"))
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.are.equal(content:gsub("static", "dynamic"), r.body)
      r = assert(client:get(base .. "/missing"))
      assert.are.equal(404, r.status)
      r = assert(client:request { method = "HEAD",
                                  url = base .. "/file.txt" })
      assert.are.equal("", r.body)
      assert.are.equal(1, count(client.pools)) -- all on one pool
      client:close()
    end)
  end)
end)
