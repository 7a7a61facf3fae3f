-- green.http's WebSocket against hostile peers, both ways: raw green
-- sockets on 127.0.0.1 that send frames RFC 6455 forbids to the server's
-- req:upgrade_websocket() and to the client's green.http.websocket(),
-- stall or reset mid-frame, flood pings, or botch the handshake. Each case
-- checks what the peer is told (the close code RFC 6455 asks for) and what
-- the WebSocket's user sees; and that killing the threads that use a
-- WebSocket leaves it usable or cleanly closed.
local green = require "green"
local h = require "helper"

local pack, unpack, byte, char = string.pack, string.unpack, string.byte,
  string.char

-- {=== frames

-- `data` masked with the 4 bytes of `key`.
local function xor(data, key)
  local k = { byte(key, 1, 4) }
  local out = {}
  for i = 1, #data, 4096 do
    local piece = { byte(data, i, math.min(i + 4095, #data)) }
    for j = 1, #piece do
      piece[j] = piece[j] ~ k[(i + j - 2) % 4 + 1]
    end
    out[#out + 1] = char(table.unpack(piece))
  end
  return table.concat(out)
end

-- A frame: `o.fin` (default true), `o.rsv` (the three bits, 0-7),
-- `o.mask` (a 4-byte key; true for a fixed one), `o.len` (the length
-- field to send instead of the payload's: 126+ forms too), `o.len64`
-- (force the 8-byte form).
local function frame(opcode, payload, o)
  o = o or {}
  local b1 = (o.fin == false and 0 or 0x80) | ((o.rsv or 0) << 4) | opcode
  local mask = o.mask == true and "\1\2\3\4" or o.mask
  local m = mask and 0x80 or 0
  local n = o.len or #payload
  local hd
  if o.len64 or n > 65535 or n < 0 then
    hd = pack(">BBi8", b1, m | 127, n) -- n < 0: the high bit set
  elseif n > 125 then
    hd = pack(">BBI2", b1, m | 126, n)
  else
    hd = pack(">BB", b1, m | n)
  end
  if mask then return hd .. mask .. xor(payload, mask) end
  return hd .. payload
end

-- A client's frame (masked).
local function cframe(opcode, payload, o)
  o = o or {}
  if o.mask == nil then o.mask = true end
  return frame(opcode, payload, o)
end

local function close_payload(code, reason)
  return pack(">I2", code) .. (reason or "")
end

-- Read one frame from `c`: opcode, payload (unmasked), fin, masked; or
-- nil, err.
local function read_frame(c)
  local hd, err = c:receive(2)
  if not hd then return nil, err end
  local b1, b2 = byte(hd, 1, 2)
  local n = b2 & 0x7f
  if n == 126 then
    n = unpack(">I2", assert(c:receive(2)))
  elseif n == 127 then
    n = unpack(">I8", assert(c:receive(8)))
  end
  local key = (b2 & 0x80) ~= 0 and assert(c:receive(4))
  local payload = n > 0 and assert(c:receive(n)) or ""
  if key then payload = xor(payload, key) end
  return b1 & 0x0f, payload, (b1 & 0x80) ~= 0, key and true or false
end

-- Read one frame: its opcode and payload.
local function op_payload(c)
  local op, payload = read_frame(c)
  return op, payload
end

-- Read frames until a close: its code (nil if none) and reason, and the
-- other frames before it (opcode .. ":" .. payload).
local function read_close(c)
  local before = {}
  while true do
    local op, payload = read_frame(c)
    if not op then return nil, nil, before, payload end
    if op == 8 then
      if #payload >= 2 then
        return unpack(">I2", payload), payload:sub(3), before
      end
      return false, "", before
    end
    before[#before + 1] = op .. ":" .. payload
  end
end

-- True once `c` reads the end of the stream (and nothing before it).
local function at_end(c)
  local data, err = c:receive(1)
  return data == nil and err == "closed"
end

-- }===

-- {=== the server's side: green.http.serve with an upgrading handler, a
-- raw client

local KEY = "dGhlIHNhbXBsZSBub25jZQ==" -- RFC 6455's example

-- A WebSocket server: each session's `script(ws, req)` (default: echo
-- until the end) runs in its handler; `ended` gets how each receive loop
-- ended ({ err, code, reason }) or what the upgrade returned.
local function ws_server(opts, script)
  local ended = green.Queue()
  local port, stop = h.http_serve(function(req)
    local ws, err = req:upgrade_websocket(opts and opts.protocols, opts)
    if not ws then
      ended:put({ "refused", err })
      return 400, nil, err
    end
    if script then return script(ws, req, ended) end
    while true do
      local m, kind, code, reason = ws:receive()
      if not m then
        ended:put({ kind, code, reason })
        return
      end
      assert(ws:send(m, kind))
    end
  end)
  return port, ended, stop
end

-- A raw client's handshake on a new connection to `port`: the socket and
-- the response's head (status line and headers).
local function raw_upgrade(port, extra, request_line)
  local c = assert(green.connect("127.0.0.1", port))
  c:settimeout(20)
  c:setlimit(nil) -- frames of any size
  assert(c:send((request_line or "GET /ws HTTP/1.1") .. "\r\n"
    .. "Host: 127.0.0.1\r\n"
    .. (extra or ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: " .. KEY .. "\r\n"
        .. "Sec-WebSocket-Version: 13\r\n")) .. "\r\n"))
  local status = c:receive("*l")
  local hs = {}
  while true do
    local l = c:receive("*l")
    if not l or l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    hs[k:lower()] = v
  end
  return c, status, hs
end

-- }===

describe("WebSocket server against hostile clients", function()
  it("closes with 1002 on frames RFC 6455 forbids", function()
    green_run(function()
      local port, ended, stop = ws_server()
      local cases = {
        { "opcode 3", cframe(3, "x") },
        { "opcode 0xB", cframe(0xB, "x") },
        { "rsv1", cframe(1, "x", { rsv = 4 }) },
        { "rsv3", cframe(2, "x", { rsv = 1 }) },
        { "unmasked", frame(1, "hello") },
        { "continuation first", cframe(0, "x") },
        { "text inside a fragmented message",
          cframe(1, "a", { fin = false }) .. cframe(1, "b") },
        { "ping over 125 bytes", cframe(9, ("p"):rep(126)) },
        { "close over 125 bytes",
          cframe(8, close_payload(1000, ("r"):rep(124))) },
        { "fragmented ping", cframe(9, "a", { fin = false }) },
        { "64-bit length with the high bit",
          cframe(2, "", { len = 1 << 63 | 5 }) },
        { "close with a 1-byte payload", cframe(8, "\3") },
        { "close code 999", cframe(8, close_payload(999)) },
        { "close code 1005", cframe(8, close_payload(1005)) },
        { "close code 1006", cframe(8, close_payload(1006)) },
        { "close code 2000", cframe(8, close_payload(2000)) },
        { "close code 5000", cframe(8, close_payload(5000)) },
      }
      local wrong = {}
      for _, case in ipairs(cases) do
        local c, status = raw_upgrade(port)
        assert.are.equal("HTTP/1.1 101 Switching Protocols", status)
        c:send(case[2])
        local code, _, before = read_close(c)
        local e = ended:get()
        if code ~= 1002 or e[2] ~= 1002 or #before > 0 then
          wrong[#wrong + 1] = ("%s: sent %s, reported %s %s"):format(
            case[1], tostring(code), tostring(e[1]), tostring(e[2]))
        end
        -- then the server closes the connection
        assert.is_true(at_end(c))
        c:close()
      end
      assert.are.same({}, wrong)
      stop()
    end)
  end)

  it("closes with 1007 on invalid UTF-8 in text and close reasons",
     function()
    green_run(function()
      local port, ended, stop = ws_server()
      local cases = {
        { "text", cframe(1, "ok \xff") },
        { "overlong", cframe(1, "\xc0\xaf") },
        { "surrogate", cframe(1, "\xed\xa0\x80") },
        { "truncated at the end", cframe(1, "abc\xe2\x82") },
        { "across fragments", cframe(1, "abc\xe2", { fin = false })
          .. cframe(0, "\x28\xa1") },
        { "close reason", cframe(8, close_payload(1000, "bye \xff")) },
      }
      local wrong = {}
      for _, case in ipairs(cases) do
        local c = raw_upgrade(port)
        c:send(case[2])
        local code, _, before = read_close(c)
        local e = ended:get()
        if code ~= 1007 or e[2] ~= 1007 or #before > 0 then
          wrong[#wrong + 1] = ("%s: sent %s, reported %s %s"):format(
            case[1], tostring(code), tostring(e[1]), tostring(e[2]))
        end
        assert.is_true(at_end(c))
        c:close()
      end
      assert.are.same({}, wrong)
      -- valid UTF-8 split across fragments (and a ping between them)
      local c = raw_upgrade(port)
      c:send(cframe(1, "caf\xc3", { fin = false }) .. cframe(9, "p")
             .. cframe(0, "\xa9 \xf0\x9f", { fin = false })
             .. cframe(0, "\x98\x80"))
      assert.are.same({ 10, "p" }, { op_payload(c) })
      assert.are.same({ 1, "caf\xc3\xa9 \xf0\x9f\x98\x80" },
                      { op_payload(c) })
      c:send(cframe(8, close_payload(1000, "done")))
      assert.are.same({ 1000, "done", {} }, { read_close(c) })
      assert.are.same({ "closed", 1000, "done" }, ended:get())
      c:close()
      stop()
    end)
  end)

  it("closes with 1009 a fragmented message beyond max_message_size",
     function()
    green_run(function()
      local port, ended, stop = ws_server { max_message_size = 1000 }
      local c = raw_upgrade(port)
      for i = 1, 9 do
        c:send(cframe(i == 1 and 2 or 0, ("f"):rep(100), { fin = false }))
      end
      c:send(cframe(0, ("f"):rep(100))) -- exactly 1000: fine
      local op, m = read_frame(c)
      assert.are.equal(2, op, op == 8 and unpack(">I2", m) or nil)
      assert.are.equal(1000, #m)
      -- fragments past the limit (in one write: the server reads them
      -- whole, and closes with none of them unread)
      local t = {}
      for i = 1, 11 do
        t[i] = cframe(i == 1 and 2 or 0, ("g"):rep(100), { fin = false })
      end
      c:send(table.concat(t))
      local code = read_close(c)
      assert.are.equal(1009, code)
      assert.are.same({ "closed", 1009 }, { ended:get()[1], 1009 })
      c:close()
      -- a single frame that says it is too long: refused from its header
      c = raw_upgrade(port)
      -- (wslay looks at a frame once a byte of its payload is in)
      c:send(cframe(2, "x", { len = 1001 }))
      assert.are.equal(1009, (read_close(c)))
      assert.are.equal(1009, ended:get()[2])
      c:close()
      stop()
    end)
  end)

  it("times out a message that never ends, even under a ping flood",
     function()
    green_run(function()
      local port, ended, stop = ws_server({ timeout = 0.2 }, function(ws, _,
                                                                     q)
        q:put({ ws:receive() })
        -- still usable: the rest of the message comes later
        q:put({ ws:receive() })
        ws:close()
      end)
      local c = raw_upgrade(port)
      c:send(cframe(1, "begin ", { fin = false }))
      -- pings until the receive gives up (bounded), pongs read aside
      local pongs = 0
      local reader = green.spawn(function()
        while true do
          local op, payload = read_frame(c)
          if op ~= 10 then return op, payload end
          pongs = pongs + 1
        end
      end)
      local result
      for _ = 1, 200000 do
        result = ended:get(false)
        if result then break end
        c:send(cframe(9, "ping") .. cframe(0, "", { fin = false }))
        green.sleep(0)
      end
      assert.are.same({ nil, "timeout" }, result)
      assert(pongs > 0)
      c:send(cframe(0, "end"))
      assert.are.same({ "begin end", "text" }, ended:get())
      assert.are.equal(8, reader:wait())
      c:close()
      stop()
    end)
  end)

  it("answers a ping flood in the middle of a message, loses nothing",
     function()
    green_run(function()
      local port, _, stop = ws_server()
      local c = raw_upgrade(port)
      local n = 3000
      local msgs = {}
      local reader = green.spawn(function()
        local pongs = 0
        while true do
          local op, payload = read_frame(c)
          if op == 10 then
            assert.are.equal("ping" .. pongs, payload)
            pongs = pongs + 1
          elseif op == 8 or not op then
            return pongs, msgs, payload
          else
            msgs[#msgs + 1] = payload
          end
        end
      end)
      c:send(cframe(1, "m1-", { fin = false }))
      for i = 0, n - 1 do
        c:send(cframe(9, "ping" .. i))
        if i % 1000 == 0 then
          c:send(cframe(0, tostring(i), { fin = false }))
        end
      end
      c:send(cframe(0, "-end") .. cframe(1, "m2"))
      h.eventually(function() return #msgs == 2 end)
      c:send(cframe(8, close_payload(1000)))
      local pongs, _, last = reader:wait()
      assert.are.equal(close_payload(1000), last)
      assert.are.equal(n, pongs)
      assert.are.same({ "m1-010002000-end", "m2" }, msgs)
      c:close()
      stop()
    end)
  end)

  it("takes bytes for one message at a time from a flood", function()
    green_run(function()
      local n = 40000
      local all = {}
      for i = 1, n do all[i] = cframe(2, "m") end
      all = table.concat(all) -- 280 KB of 1-byte messages
      local port, ended, stop = ws_server({}, function(ws, _, q)
        -- each receive takes the bytes of one message (and what wslay
        -- reads ahead, 4 KB at most), never the whole buffer into a queue
        -- of its own
        local function consumed()
          local received, _, _, _, buffered = ws.sock:getstats()
          return received - buffered
        end
        local before = consumed() -- the upgrade's head
        local worst = 0
        for i = 1, n do
          assert(ws:receive() == "m")
          local over = consumed() - before - 7 * i
          if over > worst then worst = over end
        end
        q:put(worst)
        q:put({ ws:receive() })
      end)
      local c = raw_upgrade(port)
      c:send(all)
      local worst = ended:get()
      assert(worst <= 4096 + 7, worst)
      c:send(cframe(8, close_payload(1000)))
      assert.are.same({ nil, "closed", 1000, "" }, ended:get())
      assert.are.same({ 1000, "", {} }, { read_close(c) })
      c:close()
      stop()
    end)
  end)

  it("survives a client stalling mid-frame, and one resetting", function()
    green_run(function()
      local port, ended, stop = ws_server({ timeout = 0.1 }, function(ws,
                                                                     _, q)
        q:put({ ws:receive() }) -- the header and part: timeout
        q:put({ ws:receive() }) -- the rest came: the message
        q:put({ ws:receive() })
      end)
      local c = raw_upgrade(port)
      local f = cframe(1, "stalled message")
      c:send(f:sub(1, 9))
      assert.are.same({ nil, "timeout" }, ended:get())
      c:send(f:sub(10))
      assert.are.same({ "stalled message", "text" }, ended:get())
      -- then a reset in the middle of the next frame
      c:send(cframe(2, ("r"):rep(1000)):sub(1, 500))
      c:setoption("linger", { on = true, timeout = 0 })
      c:close()
      local e = ended:get()
      assert.are.same({ nil, "closed", 1006 }, { e[1], e[2], e[3] })
      stop()
    end)
  end)

  it("refuses bad handshakes: the handler answers them", function()
    green_run(function()
      local port, ended, stop = ws_server()
      -- (raw_upgrade sends the Host: a second one is the server's 400)
      local base = "Upgrade: websocket\r\nConnection: Upgrade"
        .. "\r\nSec-WebSocket-Version: 13\r\n"
      local cases = {
        { "no key", base },
        { "short key", base .. "Sec-WebSocket-Key: c2hvcnQ=\r\n" },
        { "not base64", base .. "Sec-WebSocket-Key: "
          .. ("!"):rep(22) .. "==\r\n" },
        { "two keys", base .. "Sec-WebSocket-Key: " .. KEY .. "\r\n"
          .. "Sec-WebSocket-Key: " .. KEY .. "\r\n" },
        { "no Upgrade", "Connection: Upgrade\r\nSec-WebSocket-Version: 13"
          .. "\r\nSec-WebSocket-Key: " .. KEY .. "\r\n" },
        { "Upgrade: h2c", "Upgrade: h2c\r\nConnection: Upgrade\r\n"
          .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " .. KEY
          .. "\r\n" },
        { "no Connection: upgrade", "Upgrade: websocket\r\nConnection: "
          .. "keep-alive\r\nSec-WebSocket-Version: 13\r\n"
          .. "Sec-WebSocket-Key: " .. KEY .. "\r\n" },
        { "version 8", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          .. "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " .. KEY
          .. "\r\n" },
        { "no version", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          .. "Sec-WebSocket-Key: " .. KEY .. "\r\n" },
        { "POST", nil, "POST /ws HTTP/1.1" },
        { "HTTP/1.0", nil, "GET /ws HTTP/1.0" },
        -- a body, which would be read as frames after the switch ("close":
        -- the server must not read a next request on this connection,
        -- whose parser takes an upgrade's body for none)
        { "a body", "Upgrade: websocket\r\nConnection: Upgrade, close\r\n"
          .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " .. KEY
          .. "\r\nContent-Length: 8\r\n" },
      }
      for _, case in ipairs(cases) do
        local c, status = raw_upgrade(port, case[2], case[3])
        if case[1] == "a body" then c:send(cframe(1, "hi")) end
        assert.matches("^HTTP/1%.[01] 400 ", status, nil, false, case[1])
        assert.are.equal("refused", ended:get()[1], case[1])
        c:close()
      end
      stop()
    end)
  end)

  -- The options were checked after the handshake: a bad one raised once
  -- the 101 had gone out (the client upgraded, the handler's 400 then
  -- read as frames), and a NaN max_message_size was taken as no limit.
  it("refuses a bad max_message_size or timeout before the handshake",
     function()
    green_run(function()
      local errs, current = green.Queue(), nil
      local port, stop = h.http_serve(function(req)
        local ok, err = pcall(req.upgrade_websocket, req, nil, current)
        errs:put(ok and "upgraded" or err)
        return 400, nil, "no"
      end)
      local function expected(what)
        return what == "timeout" and "number of seconds expected"
               or "positive number expected"
      end
      for _, case in ipairs {
        { "max_message_size", 0 / 0, "NaN" }, { "max_message_size", -1 },
        { "max_message_size", 0 }, { "max_message_size", "1e6", "string" },
        { "timeout", "5", "string" }, { "timeout", 0 / 0, "NaN" },
      } do
        local name, value = case[1], case[2]
        local why = ("%s: %s, got %s"):format(name, expected(name),
                                              case[3] or tostring(value))
        current = { [name] = value }
        -- the server: it raises, no 101 went out, the handler's 400 did
        local c, status = raw_upgrade(port)
        assert.matches("^HTTP/1%.[01] 400 ", status, nil, false, why)
        c:close()
        assert.are.equal("bad argument #2 to 'upgrade_websocket' (" .. why
                         .. ")", (errs:get():gsub("^[^:]+:%d+: ", "")))
        -- the client: it raises before connecting anywhere
        local ok, err = pcall(green.http.websocket, "ws://127.0.0.1:1/",
                              current)
        assert.is_false(ok, why)
        assert.are.equal("bad argument #2 to 'websocket' (" .. why .. ")",
                         (err:gsub("^[^:]+:%d+: ", "")))
      end
      stop()
    end)
  end)

  it("sends nothing after a close; closes twice; receives the end again",
     function()
    green_run(function()
      local port, ended, stop = ws_server({}, function(ws, _, q)
        q:put({ ws:receive() })
        q:put({ ws:close(4001, "server done") })
        q:put({ ws:close() })
        q:put({ ws:send("late") })
        q:put({ ws:ping() })
        q:put({ ws:receive() })
        q:put({ ws:receive() })
      end)
      local c = raw_upgrade(port)
      c:send(cframe(1, "first"))
      assert.are.same({ "first", "text" }, ended:get())
      -- the server's close; the client answers it
      assert.are.same({ 4001, "server done", {} }, { read_close(c) })
      c:send(cframe(8, close_payload(4001)))
      assert.are.same({ true }, ended:get())
      assert.are.same({ true }, ended:get())
      assert.are.same({ nil, "closed" }, ended:get())
      assert.are.same({ nil, "closed" }, ended:get())
      local r = ended:get()
      assert.are.same({ nil, "closed" }, { r[1], r[2] })
      r = ended:get()
      assert.are.same({ nil, "closed" }, { r[1], r[2] })
      assert.is_true(at_end(c))
      c:close()
      stop()
    end)
  end)

  it("stays usable when a thread blocked in receive is killed, and"
     .. " cleanly closed when one is killed mid-send", function()
    green_run(function()
      local big = ("B"):rep(32 << 20) -- more than the socket buffers
      local port, ended, stop = ws_server({}, function(ws, _, q)
        -- a receive killed; the next one gets the message
        local r = green.spawn(ws.receive, ws)
        h.until_suspended(r)
        r:kill()
        q:put("killed")
        q:put({ ws:receive() })
        assert(ws:send("small 1"))
        -- a send that blocks (the client does not read) killed
        local w = green.spawn(ws.send, ws, big, "binary")
        h.until_suspended(w)
        -- a second writer waits for the first; killed while it waits
        local w2 = green.spawn(ws.send, ws, "never")
        h.until_suspended(w2)
        w2:kill()
        q:put("blocked")
        w:kill()
        q:put({ ws:send("after") })
        q:put({ ws:receive() })
      end)
      local c = raw_upgrade(port)
      assert.are.equal("killed", ended:get())
      c:send(cframe(1, "one"))
      assert.are.same({ "one", "text" }, ended:get())
      assert.are.equal("blocked", ended:get())
      assert.are.same({ nil, "closed" }, ended:get())
      assert.are.same({ nil, "closed" }, { ended:get()[1], "closed" })
      -- the client: the whole frames sent before, then the cut one and
      -- the end of the stream; never a frame spliced into it
      assert.are.same({ 1, "small 1" }, { op_payload(c) })
      local hd = assert(c:receive(10))
      local b1, b2, n = unpack(">BBI8", hd)
      assert.are.same({ 0x82, 127, #big }, { b1, b2, n })
      local got, err, partial = c:receive(#big)
      assert.is_nil(got)
      assert.are.equal("closed", err)
      assert(#partial < #big)
      assert.is_nil(partial:find("[^B]"))
      c:close()
      stop()
    end)
  end)

  it("lets one thread receive while another sends: pongs wait their"
     .. " turn", function()
    green_run(function()
      local big = ("C"):rep(32 << 20)
      local port, ended, stop = ws_server({}, function(ws, _, q)
        local w = green.spawn(ws.send, ws, big, "binary")
        h.until_suspended(w)
        q:put("blocked")
        -- the client pings: this receive's pong waits for the send
        q:put({ ws:receive() })
        q:put({ w:wait() })
        q:put({ ws:receive() })
      end)
      local c = raw_upgrade(port)
      assert.are.equal("blocked", ended:get())
      c:send(cframe(9, "are you there") .. cframe(1, "msg"))
      -- read it all: the big message whole, then the pong
      local op, payload = read_frame(c)
      assert.are.equal(2, op)
      assert.are.equal(#big, #payload)
      assert.are.same({ 10, "are you there" }, { op_payload(c) })
      assert.are.same({ "msg", "text" }, ended:get())
      assert.are.same({ true }, ended:get())
      c:send(cframe(8, close_payload(1000)))
      assert.are.same({ nil, "closed", 1000, "" }, ended:get())
      assert.are.same({ 1000, "", {} }, { read_close(c) })
      c:close()
      stop()
    end)
  end)

  it("keeps its timeout when a close waiting for the peer is killed",
     function()
    green_run(function()
      local port, ended, stop = ws_server({}, function(ws, _, q)
        local closer = green.spawn(ws.close, ws)
        h.until_suspended(closer)
        closer:kill()
        q:put({ ws.timeout })
      end)
      local c = raw_upgrade(port)
      assert.are.same({ 1000, "", {} }, { read_close(c) })
      assert.are.same({}, ended:get())
      c:close()
      stop()
    end)
  end)

  it("closes from one thread while another is blocked in receive",
     function()
    green_run(function()
      local port, ended, stop = ws_server({}, function(ws, _, q)
        local r = green.spawn(ws.receive, ws)
        h.until_suspended(r)
        q:put({ ws:close(1001, "going away") })
        q:put({ r:wait() })
      end)
      local c = raw_upgrade(port)
      assert.are.same({ 1001, "going away", {} }, { read_close(c) })
      c:send(cframe(8, close_payload(1001)))
      assert.are.same({ true }, ended:get())
      assert.are.same({ nil, "closed", 1001, "" }, ended:get())
      assert.is_true(at_end(c))
      c:close()
      stop()
    end)
  end)
end)

describe("WebSocket server against Python's websockets", function()
  it("hears the close code a real peer fails it with", function()
    if not os.execute("env -u LD_PRELOAD /usr/bin/python3 -c "
                      .. "'import websockets' >/dev/null 2>&1") then
      pending("python3-websockets is not installed")
      return
    end
    green_run(function()
      local port, ended, stop = ws_server({}, function(ws, _, q)
        assert(ws:send(("x"):rep(1000)))
        q:put({ ws:receive() })
      end)
      local py = ([[
import asyncio, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%d/",
                                  max_size=100) as ws:
        try:
            await ws.recv()
        except websockets.ConnectionClosedError as e:
            print(e.sent.code)
asyncio.run(main())
]]):format(port)
      local out, err, rc = h.bg("/usr/bin/python3 -c " .. h.quote(py))()
      assert.are.equal(0, rc, err)
      assert.are.equal("1009\n", out)
      assert.are.same({ nil, "closed", 1009, "" }, ended:get())
      stop()
    end)
  end)
end)

-- {=== the client's side: green.http.websocket against a raw server

local accept_key = green.core.ws_accept_key

-- A raw WebSocket server for one connection at a time: reads the
-- handshake, sends `answer(key, head)` (default: a right 101), then runs
-- `script(c, n)`. Returns the URL, `st` (n: connections so far; stop()).
local function raw_server(script, answer, host)
  local port, st = h.raw_server(function(c, n)
    c:setlimit(nil)
    local head, key = {}, nil
    while true do
      local l = c:receive("*l")
      if not l or l == "" then break end
      head[#head + 1] = l
      key = key or l:match("^[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey:%s*(%S+)")
    end
    c:send(answer and answer(key, head, n) or
      ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       .. "Connection: Upgrade\r\nSec-WebSocket-Accept: "
       .. accept_key(key) .. "\r\n\r\n"))
    if script then script(c, n) end
  end, host)
  local h6 = (host or ""):find(":", 1, true)
  return "ws://" .. (h6 and "[" .. host .. "]" or host or "127.0.0.1")
    .. ":" .. port .. "/", st
end

describe("WebSocket client against hostile servers", function()
  it("computes RFC 6455's example Sec-WebSocket-Accept", function()
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept_key(KEY))
  end)

  it("refuses bad handshake responses", function()
    green_run(function()
      local function r101(extra, accept)
        return function(key)
          return "HTTP/1.1 101 Switching Protocols\r\n" .. extra
            .. "Sec-WebSocket-Accept: " .. (accept or accept_key(key))
            .. "\r\n\r\n"
        end
      end
      local up = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      local cases = {
        { "200", function() return "HTTP/1.1 200 OK\r\nContent-Length: "
            .. "2\r\n\r\nok" end,
          "^WebSocket handshake refused %(200 OK%)$" },
        { "426", function() return "HTTP/1.1 426 Upgrade Required\r\n"
            .. "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
          end, "^WebSocket handshake refused %(426 " },
        { "wrong accept", r101(up, accept_key("other")),
          "wrong Sec%-WebSocket%-Accept" },
        { "no accept", function()
            return "HTTP/1.1 101 Switching Protocols\r\n" .. up .. "\r\n"
          end, "wrong Sec%-WebSocket%-Accept" },
        { "no Upgrade", r101("Connection: Upgrade\r\n"),
          "no Upgrade: websocket" },
        { "Upgrade: h2c", r101("Upgrade: h2c\r\nConnection: Upgrade\r\n"),
          "no Upgrade: websocket" },
        { "no Connection", r101("Upgrade: websocket\r\n"),
          "no Connection: Upgrade" },
        { "a subprotocol not offered",
          r101(up .. "Sec-WebSocket-Protocol: evil\r\n"),
          "subprotocol \"evil\" was not offered" },
        { "an extension not offered",
          r101(up .. "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
          "an extension was not offered" },
        { "garbage", function() return "garbage\r\n\r\n" end,
          "^bad response$" },
        { "nothing", function() return "" end, "^closed$" },
      }
      for _, case in ipairs(cases) do
        local url, st = raw_server(nil, case[2])
        local ws, err = green.http.websocket(url, { timeout = 20 })
        assert.is_nil(ws, case[1])
        assert.matches(case[3], err, nil, false, case[1])
        st.stop()
      end
      -- a subprotocol offered, but not the one chosen
      local url, st = raw_server(nil, r101(up
        .. "Sec-WebSocket-Protocol: chat\r\n"))
      local ws, err = green.http.websocket(url, { protocols = { "other" } })
      assert.is_nil(ws)
      assert.matches('subprotocol "chat" was not offered', err)
      ws = assert(green.http.websocket(url, { protocols = { "x", "chat" } }))
      assert.are.equal("chat", ws.protocol)
      ws.sock:close()
      st.stop()
      -- protocols must be tokens: no header can be smuggled through them
      assert.has_error(function()
        green.http.websocket(url, { protocols = { "a\r\nX-Evil: 1" } })
      end)
      -- a handshake that stalls: the timeout
      local hold = green.Event()
      url, st = raw_server(function() hold:wait() end, function()
        return "HTTP/1.1 101 Switching Protocols\r\nUpg"
      end)
      assert.are.same({ nil, "timeout" },
        { green.http.websocket(url, { timeout = 0.1 }) })
      hold:send()
      st.stop()
    end)
  end)

  it("closes with 1002, 1007, 1009 on frames a server must not send",
     function()
    green_run(function()
      local cases = {
        { 1002, "masked", frame(1, "hi", { mask = true }) },
        { 1002, "opcode 3", frame(3, "x") },
        { 1002, "opcode 0xF", frame(0xF, "x") },
        { 1002, "rsv2", frame(1, "x", { rsv = 2 }) },
        { 1002, "continuation first", frame(0, "x") },
        { 1002, "ping over 125 bytes", frame(9, ("p"):rep(200)) },
        { 1002, "fragmented close", frame(8, close_payload(1000),
                                          { fin = false }) },
        { 1002, "64-bit length with the high bit",
          frame(2, "x", { len = -1 }) },
        { 1002, "a 2-byte length under 126", frame(2, "x", { len = 5 })
          :gsub("^(.)\5", "%1\126\0\5") },
        { 1002, "close with a 1-byte payload", frame(8, "\0") },
        { 1002, "close code 1004", frame(8, close_payload(1004)) },
        { 1002, "close code 1015", frame(8, close_payload(1015)) },
        { 1007, "invalid UTF-8", frame(1, "\xfe") },
        { 1007, "invalid UTF-8 in a close reason",
          frame(8, close_payload(1000, "\xc3")) },
        { 1009, "beyond max_message_size",
          frame(2, ("a"):rep(600), { fin = false })
            .. frame(0, ("a"):rep(600)) },
      }
      local sent = green.Queue()
      local url, st = raw_server(function(c, n)
        c:send(cases[n][3])
        sent:put({ read_close(c) })
      end)
      local wrong = {}
      for i, case in ipairs(cases) do
        local ws = assert(green.http.websocket(url, {
          max_message_size = 1000, timeout = 20 }))
        local m, err, code = ws:receive()
        local got = sent:get()
        if m ~= nil or err ~= "closed" or code ~= case[1]
           or got[1] ~= case[1] then
          wrong[#wrong + 1] = ("%s: reported %s %s, sent %s"):format(
            case[2], tostring(err), tostring(code), tostring(got[1]))
        end
        assert.are.equal(i, st.n)
        assert.are.same({ nil, "closed" }, { ws:send("x") })
      end
      assert.are.same({}, wrong)
      st.stop()
    end)
  end)

  it("reads frames sent with the 101; times out a stall mid-frame; sees"
     .. " a reset", function()
    green_run(function()
      local go = green.Event()
      local url, st = raw_server(function(c)
        local f = frame(1, "second half")
        c:send(f:sub(1, 5))
        go:wait()
        c:send(f:sub(6) .. frame(2, ("r"):rep(5000)):sub(1, 100))
        assert.are.same({ 1, "ack" }, { op_payload(c) })
        c:setoption("linger", { on = true, timeout = 0 })
      end, function(key)
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
          .. "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
          .. accept_key(key) .. "\r\n\r\n" .. frame(1, "with the 101")
      end)
      local ws = assert(green.http.websocket(url, { timeout = 0.1 }))
      assert.are.same({ "with the 101", "text" }, { ws:receive() })
      assert.are.same({ nil, "timeout" }, { ws:receive() })
      go:send()
      ws:settimeout(20)
      assert.are.same({ "second half", "text" }, { ws:receive() })
      assert(ws:send("ack"))
      local m, err, code = ws:receive()
      assert.are.same({ nil, "closed", 1006 }, { m, err, code })
      st.stop()
    end)
  end)

  it("names an IPv6 host in brackets; closes its socket when killed in"
     .. " the handshake", function()
    green_run(function()
      local heads = green.Queue()
      local url, st = raw_server(function(c, n)
        if n == 1 then -- answers the close
          local code = read_close(c)
          c:send(frame(8, close_payload(code)))
          heads:put(code)
        else
          local _, err = c:receive("*a")
          heads:put(err)
        end
      end, function(key, head)
        heads:put(head)
        if head[1]:match("/stall") then return "" end
        return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
          .. "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
          .. accept_key(key) .. "\r\n\r\n"
      end, "::1")
      local port = url:match(":(%d+)/$")
      local ws = assert(green.http.websocket(url))
      local head = heads:get()
      local host
      for _, l in ipairs(head) do host = host or l:match("^Host: (.*)$") end
      assert.are.equal("[::1]:" .. port, host)
      ws:close()
      assert.are.equal(1000, heads:get())
      -- killed while it waits for the 101: its socket is closed at once,
      -- not when collected (the collector stopped meanwhile)
      local _ <close> = setmetatable({}, { __close = function()
        collectgarbage("restart")
      end })
      collectgarbage("stop")
      local gt = green.spawn(green.http.websocket, url .. "stall")
      heads:get()
      h.until_suspended(gt)
      gt:kill()
      assert.are.equal("closed", heads:get())
      st.stop()
    end)
  end)
end)
