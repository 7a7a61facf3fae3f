-- green.http against request and response splitting, and against
-- smuggling: what a caller, a handler or a peer gives that would put
-- bytes of its choice into the framing of a message (a request line, a
-- header line, a body's length) is refused with a clear error and never
-- sent. Complements spec/http_attack_spec.lua and
-- spec/http_client_attack_spec.lua (which do not repeat here).
local green = require "green"
local h = require "helper"

-- A peer that records all it is sent on each connection (until the
-- other end closes, or 5 s): the base URL and `st` (st.got[n]: the
-- bytes of connection n; st.n; st.stop()).
local function recorder()
  local got = {}
  local port, st = h.raw_server(function(c, n)
    c:settimeout(5)
    local d, _, partial = c:receive("*a")
    got[n] = d or partial
  end)
  st.got = got
  return "http://127.0.0.1:" .. port, st
end

describe("green.http client against splitting its own request", function()
  it("refuses a method that is not a token, sends nothing", function()
    green_run(function()
      local base, st = recorder()
      local client = green.http.Client()
      for _, m in ipairs { "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET",
                           "G ET", "GET\r\n", "GET\0", "", "GE(T", 5,
                           true, {} } do
        local ok, err = pcall(client.request, client,
                              { method = m, url = base .. "/" })
        assert.is_false(ok, tostring(m))
        assert.matches("^bad argument #2 to 'request' %(method: token "
                       .. "expected", err)
      end
      -- a token goes as it is (uppercased)
      local r, err = client:request { method = "purge", url = base .. "/",
                                      timeout = 0.2 }
      assert.is_nil(r)
      assert.are.equal("timeout", err)
      client:close()
      h.eventually(function() return st.got[1] end, 10, "the request")
      assert.are.equal(1, st.n)
      assert.matches("^PURGE / HTTP/1%.1\r\n", st.got[1])
      st.stop()
    end)
  end)

  it("refuses a URL with a space or a control byte, and a redirect to one",
     function()
    green_run(function()
      local base, st = recorder()
      for _, tail in ipairs { "/a\tb", "/a\fb", "/a\vb", "/a b", "/a\0b",
                              "/a\127b", "/?q=a\tb", "/\r\nX-Inj: 1",
                              "/a\tHTTP/1.1" } do
        local r, err = green.http.get(base .. tail)
        assert.is_nil(r, tail)
        assert.matches("^invalid URL: ", err)
        r, err = green.http.websocket(base:gsub("^http", "ws") .. tail)
        assert.is_nil(r, tail)
        assert.matches("^invalid URL: ", err)
      end
      assert.are.equal(0, st.n)
      st.stop()
      -- a Location with an HTAB (a header value may hold one)
      local port, rst = h.raw_server(function(c)
        repeat local l = c:receive("*l") until l == "" or not l
        c:send("HTTP/1.1 302 Found\r\nLocation: /a\tHTTP/1.1\r\n"
               .. "Content-Length: 0\r\n\r\n")
        c:receive("*a")
      end)
      local client = green.http.Client()
      local r, err = client:get("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.matches("^invalid URL: ", err)
      assert.are.equal(1, rst.n)
      client:close()
      rst.stop()
    end)
  end)
end)
