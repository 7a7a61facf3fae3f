--- green.http.serve: an HTTP/1.1 server over green sockets. The heads and
-- bodies are parsed in C by libhttp-parser straight from the socket's
-- read buffer (bindings/http.c); this file is the protocol logic: one
-- green thread per connection (green.serve's accept model), keep-alive,
-- pipelining, request bodies, 100-continue, responses, limits, graceful
-- stop. See docs/internals.md ("green.http").
-- @module green.http.server

local core = require "green.core"
local common = require "green.http.common"
local serve_mod = require "green.serve"
local check = require("green.opts").check
local callable_arg = require("green.opts").callable_arg

local http_parser, http_head, http_body, http_state, http_setmaxbody,
      http_response, http_run, http_output, http_flush, http_next =
  core.http_parser,
  core.http_head, core.http_body, core.http_state, core.http_setmaxbody,
  core.http_response, core.http_run, core.http_output, core.http_flush,
  core.http_next
local getcurrent = core.getcurrent
local status_line, date_line = common.status_line, common.date_line
local Headers = common.Headers
local is_tls, tls_head, tls_body = common.is_tls, common.tls_head,
  common.tls_body
local StopServe = serve_mod.StopServe

local concat, type, pairs, error, xpcall =
  table.concat, type, pairs, error, xpcall
local traceback, format = debug.traceback, string.format
local math_type = math.type

local M = {}

local DEFAULTS = {
  concurrency = 1000,
  max_header_size = 8192,
  max_headers = 100,
  max_body_size = 1 << 20,
  header_timeout = 10,
  keepalive_timeout = 60,
  body_timeout = 60,
  send_timeout = 60,
  graceful_timeout = 30,
}

-- Options passed through to green.serve's prefork master.
local PREFORK = { workers = true, worker_timeout = true,
                  on_worker_start = true, on_worker_exit = true }

-- Every option serve takes.
local KNOWN = { log = true }
for k in pairs(DEFAULTS) do KNOWN[k] = true end
for k in pairs(PREFORK) do KNOWN[k] = true end

-- Responses batched for pipelined requests are sent once they reach this
-- many bytes, or when no further request is buffered.
local FLUSH_AT = 64 * 1024
-- A request body the handler left unread is read and dropped, up to
-- this much; beyond it the connection is closed instead.
local DRAIN_MAX = 64 * 1024

-- The requests' metatable: its methods, and (bindings/http.c) `headers`
-- made from the raw head at its first use, `conn` and `remote_addr`.
local Request = {}
Request.__name = "green.http.Request"

--- Error bodies the server writes itself; for `req` a HEAD request (or
-- true: a head refused or timed out that began "HEAD "), the head alone
-- (no content in a response to HEAD, RFC 9110 9.3.2).
local function simple(status, keep, req)
  local body = status .. " " .. (common.REASONS[status] or "Error") .. "\n"
  return concat {
    status_line(status), date_line(),
    "Content-Type: text/plain\r\nContent-Length: ", #body, "\r\n",
    keep and "" or "Connection: close\r\n", "\r\n",
    (req == true or req and req.method == "HEAD") and "" or body }
end

-- Send the responses that wait in the parser's output (laid out there by
-- http_response, for pipelined requests): on a plain socket straight
-- from the output (http_flush), sendall only for what cannot go at once.
-- What http_flush returned (true, the rest, or nil, err) finished.
local function flushed(c, data, err)
  if data == true then return true end
  if data then
    data, err = c.sock:sendall(data)
    if data then return true end
  end
  c.broken = err
  return false
end

local function flush(c)
  if c.tls then
    local data = http_output(c.parser)
    if not data then return true end
    return flushed(c, data)
  end
  return flushed(c, http_flush(c.sock, c.parser))
end

local function queue(c, data)
  if http_output(c.parser, data) >= FLUSH_AT then return flush(c) end
  return true
end

-- {=== request bodies

-- Before the first read of a body that the client announced with
-- "Expect: 100-continue", tell it to go on.
local function continue(c)
  if c.expect then
    c.expect = false
    if not flush(c) then return false end
    local ok, err = c.sock:sendall("HTTP/1.1 100 Continue\r\n\r\n")
    if not ok then c.broken = err return false end
  end
  return true
end

-- A failed body read: remember what the request deserves (the response
-- becomes that status) and translate it for the handler.
local BODY_ERRORS = { [400] = "bad request", [413] = "too large" }
local function body_failed(c, err)
  if type(err) == "number" then
    c.failed = err
    return nil, BODY_ERRORS[err] or "bad request"
  end
  if err == "timeout" then c.failed = 408 end
  c.broken = c.broken or err
  return nil, err
end

--- The next piece of the request body, or nil at its end, or nil, err.
local function next_piece(req)
  local c = req.conn
  if c.req ~= req then
    error("green.http: this request's connection has moved on", 3)
  end
  local kind = c.bodykind
  if not kind or kind == 0 then return nil end
  if not continue(c) then return nil, c.broken end
  local piece, err
  if c.tls then
    piece, err = tls_body(c.sock, c.parser, c.srv.o.body_timeout)
  else
    piece, err = http_body(c.sock, c.parser, c.srv.o.body_timeout)
  end
  if piece then return piece end
  if piece == false then
    c.bodykind = 0
    return nil
  end
  return body_failed(c, err)
end

--- req:body([max]): the whole request body (chunked decoded) as a
-- string ("" if none), or nil, err ("too large" beyond max, which
-- defaults to the server's max_body_size; "bad request", "timeout",
-- "closed").
function Request:body(max)
  local c = self.conn
  if c.req ~= self then
    error("green.http: this request's connection has moved on", 2)
  end
  if c.bodytext then return c.bodytext end
  if not c.bodykind or c.bodykind == 0 then
    return "" -- none (or all read already)
  end
  if max ~= nil then
    if type(max) ~= "number" or max < 0 then
      error("bad argument #1 to 'body' (non-negative number expected)", 2)
    end
    if c.bodykind > max then
      c.failed = 413
      return nil, "too large"
    end
    local _, sofar = http_state(c.parser)
    if sofar > max then return nil, "too large" end
    http_setmaxbody(c.parser, max)
  end
  local parts, n = {}, 0
  while true do
    local piece, err = next_piece(self)
    if not piece then
      if err then return nil, err end
      break
    end
    n = n + 1
    parts[n] = piece
  end
  local text = n == 1 and parts[1] or concat(parts, "", 1, n)
  c.bodytext = text
  return text
end

--- req:body_reader(): an iterator over the pieces of the request body,
-- as they come (for piece in req:body_reader() do ... end); it returns
-- nil, err on failure.
function Request:body_reader()
  return next_piece, self
end

--- req:upgrade_websocket([protocols], [opts]): switch this connection to
-- the WebSocket protocol (see green.http.websocket).
function Request:upgrade_websocket(protocols, opts)
  return require("green.http.ws").accept(self, protocols, opts)
end

-- }===

-- {=== responses

-- The rest of a response whose head http_response laid out: a long
-- string body, sent as it is, or a function body streamed. Returns keep
-- or false.
local function send_body(c, body, stream, clen, keep)
  if not flush(c) then return false end
  local sock = c.sock
  if stream == "body" then -- a long string body, sent as it is
    local ok, err = sock:sendall(body)
    if not ok then c.broken = err return false end
    return keep
  end
  -- Streamed: the head is out; each chunk as it comes. An error in the
  -- iterator ends the connection (the client sees a truncated body: the
  -- status is out already).
  -- from here on, an error can only cut the body short
  local want = stream == "length" and clen or nil
  local sent, ok, err = 0
  while true do
    local chunk = body()
    if chunk == nil then break end
    if type(chunk) ~= "string" then
      error("green.http: the body iterator must yield strings, not "
            .. type(chunk), 0)
    end
    if #chunk > 0 then
      sent = sent + #chunk
      if want and sent > want then
        error("green.http: the body iterator gave more than its "
              .. "Content-Length", 0)
      end
      if stream == "chunked" then
        ok, err = sock:sendall(format("%x\r\n", #chunk) .. chunk .. "\r\n")
      else
        ok, err = sock:sendall(chunk)
      end
      if not ok then c.broken = err return false end
    end
  end
  if want and sent ~= want then
    error("green.http: the body iterator gave less than its "
          .. "Content-Length", 0)
  end
  if stream == "chunked" then
    ok, err = sock:sendall("0\r\n\r\n")
    if not ok then c.broken = err return false end
  end
  return keep
end

-- }===

-- The handler's error, with its traceback for the report.
local function catch(err)
  if err == StopServe or err == core.GreenletExit then return err end
  return { err = err, traceback = traceback("", 2) }
end

-- Read and drop the rest of a body the handler did not read; false if
-- the connection cannot go on.
local function drain(c, req)
  if not c.bodykind or c.bodykind == 0 then return true end
  if c.expect then return false end -- never told to send it
  if c.bodykind > DRAIN_MAX then return false end
  http_setmaxbody(c.parser, DRAIN_MAX)
  while true do
    local piece = next_piece(req)
    if not piece then return c.bodykind == 0 end
  end
end

-- The requests of one connection until it closes, fails, or the server
-- stops; under one xpcall (see connection). While a request's handler
-- runs and its response is written, c.req is that request: an error
-- then is that request's 500 (or, once http_response has laid out its
-- response, the end of the connection). Per request without a body the
-- state gets only c.req: c.bodykind, c.expect and c.bodytext are set for
-- a request with a body and reset after it, c.failed ends the connection.
local function requests(c)
  local sock, parser, srv = c.sock, c.parser, c.srv
  local o = srv.o
  local handler, log = srv.handler, o.log
  local tls = c.tls
  local head = tls and tls_head or http_head
  -- on a plain socket http_response parses the next buffered head too,
  -- and http_run runs the loop of the bodyless requests
  local rsock = not tls and sock or nil
  local run = rsock and http_run
  -- the step between requests: http_next on a plain socket (the steps
  -- below in one call: the head if buffered, else the flush, then the
  -- wait; false and http_flush's results if it did not wait)
  local ka, ht = o.keepalive_timeout, o.header_timeout
  local req, kind, keep, ctl
  if run then
    req, kind, keep, ctl = http_next(sock, parser, c, ka, ht, srv)
  else
    req, kind, keep, ctl = head(sock, parser, false)
  end
  while true do
    if not req then -- (a table on the way that does not wait)
      if req == false then
        local ok
        if run then ok = flushed(c, kind, keep) else ok = flush(c) end
        if not ok or srv.stopping then return end
        c.idle = true
        req, kind, keep, ctl = head(sock, parser, true, ka, ht)
        c.idle = false
      end
      if not req then
        local status = math_type(kind) == "integer" and kind
          or kind == "timeout" and keep and 408 -- a head had begun
        if status then
          -- no request table, but the parser knows if its head was a
          -- HEAD's as far as it was read
          local _, _, _, was_head = http_state(parser)
          queue(c, simple(status, false, was_head))
          if log then log({ remote_addr = srv.conns[c] or nil }, status) end
        end
        return
      end
    end
    if ctl and ctl ~= true then -- refused before the handler (505, 413, 417)
      queue(c, simple(ctl, false, req))
      if log then log(req, ctl) end
      return
    end
    c.req = req
    local status, kept, pending, stream, clen, nreq, nkind, nkeep, nctl,
          body
    if run and kind == 0 then
      -- this handler and those of the bodyless requests buffered behind
      -- it, each with its response (and the log of all but the last), in
      -- C (http_run, the same steps as below); req is the last one
      req, status, kept, pending, stream, clen, nreq, nkind, nkeep, nctl,
        body = run(sock, parser, handler, c, srv, req, keep, log)
      if c.upgraded then return end -- a WebSocket owns the socket now
    else
      if kind ~= 0 then c.bodykind, c.expect = kind, ctl end
      local hs
      status, hs, body = handler(req)
      if c.upgraded then return end
      if c.failed then -- the request was at fault (body too large, ...)
        status = c.failed
        c.sent = status
        queue(c, simple(status, false, req))
        c.req = false
        if log then log(req, status) end
        return
      end
      if srv.stopping then keep = false end -- a stop: its last response
      -- laid out: an error from here on (in drain, in a streamed body)
      -- must not add a 500 after it, and the log gets this status
      -- (http_state's third result); with the next request if all of it
      -- is buffered
      kept, pending, stream, clen, nreq, nkind, nkeep, nctl =
        http_response(parser, status, hs, body, keep, kind == 0 and rsock
                      or nil)
    end
    if stream then
      kept = send_body(c, body, stream, clen, kept) and not srv.stopping
    elseif pending >= FLUSH_AT and (not flush(c) or srv.stopping) then
      kept = false
    end
    if kind ~= 0 then
      if kept and (srv.stopping or not drain(c, req)) then kept = false end
      c.bodykind, c.expect, c.bodytext = 0, false, false
    end
    c.req = false
    if log then log(req, status) end
    if not kept or c.broken then return end
    if nreq then
      req, kind, keep, ctl = nreq, nkind, nkeep, nctl
    else
      -- the next head may be a keep-alive timeout away: an idle
      -- connection keeps neither the last request (its table, its head's
      -- arena) nor its response body (stack slots the collector marks)
      req, body = nil, nil -- luacheck: ignore 311 (dropped, not read)
      if run then
        req, kind, keep, ctl = http_next(sock, parser, c, ka, ht, srv)
      else
        req, kind, keep, ctl = head(sock, parser, false)
      end
    end
  end
end

-- One connection: its requests (see requests), then the end. Its state
-- `c` is made with 8 fields: those every request reads or writes (a
-- hash of 8 nodes: an idle connection's memory, bench/idle.lua; a key
-- read absent costs more than one present); bodykind, expect, failed,
-- bodytext, sent and upgraded are nil until a request sets them (a
-- body, an error, a WebSocket). The peer's address is srv.conns[c].
local function connection(srv, sock, addr)
  local o = srv.o
  local c = {
    sock = sock, parser = false, srv = srv, req = false, idle = false,
    broken = false, tls = is_tls(sock), thread = getcurrent(),
  }
  -- The parser's buffers (malloc'd) go at the connection's end however
  -- it ends, not at its __gc: Lua skips a finalizer that a collection
  -- step calls in a thread whose stack is at its limit (a handler that
  -- catches a "stack overflow"), and the buffers would leak.
  local parser <close> = http_parser("request", o.max_header_size,
    o.max_headers, o.max_body_size, Request, Headers, c, addr)
  c.parser = parser
  srv.conns[c] = addr or false
  sock:settimeout(o.send_timeout)
  local ok, e = xpcall(requests, catch, c)
  if not ok then
    if e == StopServe or e == core.GreenletExit then
      flush(c)
      srv.conns[c] = nil
      error(e, 0)
    end
    -- (a memory error skips catch: Lua calls no message handler for it,
    -- and one that fails for want of memory gives "error in error
    -- handling"; indexing that string would report nil)
    if type(e) == "table" then
      core.report(getcurrent(), e.err, e.traceback, "http")
    else
      core.report(getcurrent(), e, nil, "http")
    end
    local req = c.req
    if req and not c.upgraded then -- its handler or response failed: a
      -- 500, unless its response had gone out (then the connection's end
      -- cuts it short) or a WebSocket took the connection (a 101 went
      -- out; its frames follow: the WebSocket's end closes it)
      local _, _, sent = http_state(c.parser)
      sent = c.sent or sent
      if not sent and not c.broken then
        queue(c, simple(500, false, req))
      end
      if o.log then o.log(req, sent or 500) end
    end
  end
  flush(c)
  srv.conns[c] = nil
  if srv.stopping and next(srv.conns) == nil and srv.drained then
    core.wake(srv.drained)
  end
end

--- green.http.serve(server, handler, [opts]): see docs/api.md.
function M.serve(server, handler, opts)
  callable_arg(handler, 2, "serve", 2)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'serve' (table expected)", 2)
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(check(opts or o, KNOWN, 3, "serve", 2)) do o[k] = v end
  callable_arg(o.log, 3, "serve", 2, true, "log")
  for k in pairs(DEFAULTS) do
    if type(o[k]) ~= "number" or o[k] ~= o[k] or o[k] <= 0 then
      error(format("bad argument #3 to 'serve' (opts.%s: positive number "
                   .. "expected)", k), 2)
    end
  end
  for _, k in ipairs { "concurrency", "max_header_size", "max_headers" } do
    if math_type(o[k]) ~= "integer" then
      error(format("bad argument #3 to 'serve' (opts.%s: integer "
                   .. "expected)", k), 2)
    end
  end
  local srv = { o = o, handler = handler, conns = {}, stopping = false }
  local function conn(sock, addr)
    return connection(srv, sock, addr)
  end
  -- green.serve's accept loop; with opts.workers, its prefork machinery
  -- takes the same options table.
  -- Passed without workers too: green.serve checks them then as well.
  local accept_opts = { concurrency = o.concurrency,
                        graceful_timeout = o.graceful_timeout }
  for k in pairs(PREFORK) do accept_opts[k] = o[k] end
  if o.workers ~= nil then
    -- a worker told to stop closes its idle keep-alive connections at
    -- once rather than after graceful_timeout
    accept_opts.on_stop = function()
      srv.stopping = true
      for c in pairs(srv.conns) do
        if c.idle then c.sock:close() end
      end
    end
  end
  -- No Nagle (as nginx's tcp_nodelay): a response written in more than
  -- one piece (a streamed body's chunks) waited for the client's delayed
  -- ACK, 40 ms a request on a keep-alive connection. Set on the listener,
  -- Linux's accepted sockets inherit it (a TLS listener has it already;
  -- a Unix one has no such option).
  if type(server) == "userdata" then server:setoption("tcp-nodelay", true) end
  local ok, r1, r2 = pcall(serve_mod.serve, server, conn, accept_opts)
  -- Graceful stop: no more accepting; idle keep-alive connections close
  -- now, busy ones after their current response; those still running
  -- after graceful_timeout are killed.
  srv.stopping = true
  for c in pairs(srv.conns) do
    if c.idle then c.sock:close() end
  end
  if next(srv.conns) ~= nil then
    srv.drained = getcurrent()
    local t = core.Timeout(o.graceful_timeout)
    local waited, err = pcall(core.suspend, "green.http.serve (draining)")
    t:cancel()
    srv.drained = nil
    if not waited then -- graceful_timeout, or the caller was killed
      for c in pairs(srv.conns) do
        if not c.thread:dead() then c.thread:kill() end
      end
      if err ~= t then error(err, 0) end
    end
  end
  if not ok then error(r1, 0) end
  return r1, r2
end

Request.__index = core.http_request_index(Request, Headers)

M.Request = Request
M.DEFAULTS = DEFAULTS

return M
