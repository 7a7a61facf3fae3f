-- WebSocket (issue 12): req:upgrade_websocket and green.http.websocket,
-- framing by libwslay; against each other and against Python's
-- websockets (python3-websockets).
local green = require "green"
local h = require "helper"
local quote = h.quote
local bg = h.bg




-- An echo server; `seen` collects how each session ended.
local function echo_server(opts)
  local srv = assert(green.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local ended = green.Queue()
  local gt = green.spawn(green.http.serve, srv, function(req)
    local ws, err = req:upgrade_websocket({ "chat", "other" }, opts)
    if not ws then return 426, nil, err end
    while true do
      local m, kind, code, reason = ws:receive()
      if not m then
        ended:put({ kind, code, reason })
        return
      end
      if m == "close-me" then
        ws:close(4000, "asked")
        ended:put({ "closed by server" })
        return
      end
      assert(ws:send(m:upper(), kind))
    end
  end)
  return port, ended, function()
    srv:close()
    gt:wait()
  end
end

describe("WebSocket", function()
  it("echoes text and binary, negotiates a subprotocol, closes cleanly",
     function()
    green_run(function()
      local port, ended, stop = echo_server()
      local ws = assert(green.http.websocket(
        "ws://127.0.0.1:" .. port .. "/echo", { protocols = { "chat" } }))
      assert.are.equal("chat", ws.protocol)
      -- no Nagle: a small frame goes out at once (ws.sock is private)
      assert.is_true(ws.sock:getoption("tcp-nodelay"))
      assert(ws:send("hello"))
      assert.are.same({ "HELLO", "text" }, { ws:receive() })
      local big = ("\0\1\2ab"):rep(40000)
      assert(ws:send(big, "binary"))
      assert.are.same({ big:upper(), "binary" }, { ws:receive() })
      assert(ws:ping("are you there"))
      assert(ws:send("after"))
      assert.are.same({ "AFTER", "text" }, { ws:receive() })
      assert.is_true(ws:close(1000, "done"))
      assert.are.same({ "closed", 1000, "done" }, ended:get())
      assert.are.same({ nil, "closed" }, { ws:send("x") })
      stop()
    end)
  end)

  it("reports the server's close code and reason to the client", function()
    green_run(function()
      local port, ended, stop = echo_server()
      local ws = assert(green.http.websocket("ws://127.0.0.1:" .. port))
      assert(ws:send("close-me"))
      assert.are.same({ nil, "closed", 4000, "asked" }, { ws:receive() })
      assert.are.same({ "closed by server" }, ended:get())
      stop()
    end)
  end)

  it("closes with 1009 a message beyond max_message_size", function()
    green_run(function()
      local port, ended, stop = echo_server { max_message_size = 1000 }
      local ws = assert(green.http.websocket("ws://127.0.0.1:" .. port))
      assert(ws:send(("a"):rep(1000)))
      assert.are.equal(1000, #ws:receive())
      assert(ws:send(("a"):rep(1001)))
      local m, err, code = ws:receive()
      assert.is_nil(m)
      assert.are.equal("closed", err)
      assert.are.equal(1009, code)
      assert.are.equal(1009, ended:get()[2])
      stop()
    end)
  end)

  it("refuses requests that are not upgrades; times out; sees a drop",
     function()
    green_run(function()
      local port, ended, stop = echo_server()
      local r = assert(green.http.get("http://127.0.0.1:" .. port .. "/"))
      assert.are.equal(426, r.status)
      assert.are.equal("not a WebSocket upgrade request", r.body)
      -- wss:// to a plain server: its handshake fails, clearly
      local w, werr = green.http.websocket("wss://127.0.0.1:" .. port)
      assert.is_nil(w)
      assert.matches("^wss://127%.0%.0%.1:%d+: .", werr)
      assert.are.same({ nil, "unsupported URL scheme: ftp" },
        { green.http.websocket("ftp://127.0.0.1:" .. port) })
      local ws = assert(green.http.websocket("ws://127.0.0.1:" .. port))
      ws:settimeout(0.05)
      assert.are.same({ nil, "timeout" }, { ws:receive() })
      ws.sock:close() -- the client vanishes without a close frame
      assert.are.equal(1006, ended:get()[2])
      stop()
    end)
  end)

  it("serves Python's websockets: echo, fragments, ping, close code",
     function()
    if not os.execute("env -u LD_PRELOAD /usr/bin/python3 -c "
                      .. "'import websockets' >/dev/null 2>&1") then
      pending("python3-websockets is not installed")
      return
    end
    green_run(function()
      local port, ended, stop = echo_server()
      local py = ([[
import asyncio, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%d/",
                                  subprotocols=["other"]) as ws:
        print(ws.subprotocol)
        await ws.send("hi")
        print(await ws.recv())
        await ws.send(["frag1-", "frag2-", "frag3"])
        print(await ws.recv())
        await ws.send(b"\x00\xffbin")
        print(repr(await ws.recv()))
        pong = await ws.ping(b"x")
        await asyncio.wait_for(pong, 10)
        print("pong")
        await ws.close(code=4001, reason="py done")
asyncio.run(main())
]]):format(port)
      local out, err, rc = bg("/usr/bin/python3 -c " .. quote(py))()
      assert.are.equal(0, rc, err)
      assert.are.equal(
        "other\nHI\nFRAG1-FRAG2-FRAG3\nb'\\x00\\xffBIN'\npong\n", out)
      assert.are.same({ "closed", 4001, "py done" }, ended:get())
      stop()
    end)
  end)
end)
