--- `green.backdoor`: a Lua prompt into the running process, served over
-- TCP or a Unix-domain socket (eventlet's backdoor). Each connection gets
-- a green thread whose lines run as in `greenlua -i`: an expression prints
-- its values, `print` writes to the connection, blocking calls work, and
-- the other green threads keep running. Usable with `nc` or `socat`.
-- @module green.backdoor

local green = require "green"
local repl = require "green.repl"
local check = require("green.opts").check

local format, type, setmetatable, error, ipairs =
  string.format, type, setmetatable, error, ipairs

local M = {}

local MAX_LINE = 64 * 1024

-- Is the address (host, family) a loopback one?
local function loopback(host)
  return host == "::1" or host:match("^127%.") ~= nil
      or host:match("^::ffff:127%.") ~= nil
end

-- The session environment: reads fall through to the globals, writes stay
-- in the session (`_G.x = v` sets a real global), `print` writes to the
-- connection, and `green` is at hand. A `print` the connection refuses
-- (the client left) raises, and so does every one after it: a loop of
-- prints ran on with nobody to read it (a failed write was ignored).
local function session_env(conn)
  -- The session's `green`: the module, but `green.debug.dump()` writes to
  -- the connection (the banner offers it; it went to the process's
  -- stderr, and the session saw only the returned file).
  local out = setmetatable({
    write = function(self, s)
      local ok, err = conn:sendall(s)
      if not ok then return nil, err end
      return self
    end,
  }, { __tostring = function() return "the backdoor connection" end })
  local gdebug = setmetatable({
    dump = function(file) return green.debug.dump(file or out) end,
  }, { __index = green.debug })
  local env = { green = setmetatable({ debug = gdebug },
                                     { __index = green }) }
  local gone
  env.print = function(...)
    local s, err = repl.format_values(...)
    if not s then error(err, 2) end
    if not gone then
      local ok, serr = conn:sendall(s .. "\n")
      if not ok then gone = "green.backdoor: the client is gone (" .. serr
                            .. ")" end
    end
    if gone then error(gone, 2) end
  end
  return setmetatable(env, { __index = _G })
end

local function session(conn, banner)
  conn:setlimit(MAX_LINE)
  conn:sendall(banner)
  local env = session_env(conn)
  repl.loop({
    read = function(prompt)
      if not conn:sendall(prompt) then return nil end
      local line, err = conn:receive("*l")
      if err == "too long" then
        conn:sendall(format("backdoor: line longer than %d bytes\n",
                            MAX_LINE))
        return nil
      end
      return line
    end,
    write = function(s) conn:sendall(s) end,
    error = function(s) conn:sendall(s .. "\n") end,
  }, env, "=backdoor")
end

--- Serve a prompt into this process. `opts`: `host` and `port` (TCP;
-- default host "127.0.0.1", port 0 picks a free one) or `path` (a Unix
-- socket, created with mode 0600 and removed when the server closes), and
-- `allow_remote = true` to permit a TCP address that is not loopback
-- (anyone who can connect runs any code in the process).
-- Returns the listening socket (close it to stop the backdoor; sessions
-- under way go on until their peer leaves), or nil, err.
-- @tparam table opts
-- @return the listening socket
local OPTIONS = { host = true, port = true, path = true,
                  allow_remote = true }

function M.backdoor(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'backdoor' (table of options expected)", 2)
  end
  opts = check(opts or {}, OPTIONS, 1, "backdoor", 2)
  local server, err
  if opts.path ~= nil then
    if opts.host ~= nil or opts.port ~= nil then
      error("bad argument #1 to 'backdoor' (path, or host and port)", 2)
    end
    if type(opts.path) ~= "string" then
      error("bad argument #1 to 'backdoor' (path: string expected)", 2)
    end
    server, err = green.listen_unix(opts.path, { mode = 6 * 64 }) -- 0600
  else
    local host = opts.host or "127.0.0.1"
    if type(host) ~= "string" then
      error("bad argument #1 to 'backdoor' (host: string expected)", 2)
    end
    local port = opts.port or 0
    port = type(port) == "number" and math.tointeger(port)
    if not port or port < 0 or port > 65535 then
      error("bad argument #1 to 'backdoor' (port: integer from 0 to "
            .. "65535 expected)", 2)
    end
    if not opts.allow_remote then -- refuse before anything is bound
      local addrs, rerr = green.getaddrinfo(host)
      if not addrs then return nil, rerr end
      for _, a in ipairs(addrs) do
        if not loopback(a.addr) then
          error(format("green.backdoor: %s (%s) is not a loopback "
                       .. "address; pass allow_remote = true to serve it "
                       .. "anyway (whoever connects can run any code in "
                       .. "this process)", host, a.addr), 2)
        end
      end
      -- Listen on an address checked, not on the name: resolved again,
      -- a name may give other addresses (a name server that changed its
      -- answer, DNS rebinding), and the backdoor would serve them.
      err = "host not found" -- (no address)
      for _, a in ipairs(addrs) do
        server, err = green.listen(a.addr, port)
        if server then break end
      end
    else
      server, err = green.listen(host, port)
    end
  end
  if not server then return nil, err end
  local banner = format("greenlua %s backdoor (green.debug.dump() lists "
                        .. "the green threads)\n", green.version)
  local serving = green.spawn(green.serve, server, function(conn)
    session(conn, banner)
  end)
  serving.name = "green.backdoor"
  return server
end

return M
