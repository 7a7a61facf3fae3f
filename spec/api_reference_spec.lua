-- docs/api.md against the running code, both ways: every public name the
-- library exposes (found at run time, by walking the modules and real
-- instances of every class) has an entry in the reference, and every
-- entry names something that exists. So the reference cannot drift.
-- Also: its links to its own headings resolve, and README.md names every
-- package .ci/setup installs and links the reference.
--
-- The convention (also stated at the top of docs/api.md): an entry is a
-- Markdown heading or a table row whose text starts with a code span, and
-- the code span starts with the qualified name:
--
--   ### `green.spawn(fn, ...)` → GreenThread
--   #### `sock:receive([pattern], [prefix])`
--   | `socket.dns.toip(host)` | ... |
--   | `-e stat` | ... |             (an option of the greenlua command)
--
-- The name is the code span's leading `a.b.c`, `Class:method` or
-- `Class.field` (a key that is not an identifier is written `t["key"]`);
-- what follows it (arguments, results) is free text. The part before the
-- first "." or ":" says where the name lives: `green` (the module), a
-- class or object prefix from CLASSES below, `socket` (green.socket, the
-- LuaSocket-compatible module), `coroutine` (the green coroutine.*),
-- `helper` and `green_run` (spec/helper.lua); a code span starting with
-- "-" names an option of the greenlua command.
local green = require "green"
local h = require "helper"

local DOC = "docs/api.md"

-- {====================================================================
-- What is deliberately left out, each with its reason. Everything else
-- reachable is public and must be documented.

-- Qualified names that are not walked into or required.
local PRIVATE = {
  ["green.core"] = "the C module the Lua layer is built on; its functions "
    .. "may change, and what users need is re-exported on green",
}

-- Module tables with a metatable (callable) that are walked all the same.
local CALLABLE_MODULE = {
  ["green.signal"] = "green.signal(sig, handler) and green.signal.wait",
}

-- Tables reached from the module that are classes' method tables: each
-- needs its own entry, and its methods are documented (and checked) as
-- the class's (see CLASSES), not as fields of the table.
local CLASS_TABLE = {
  ["green.GreenThread"] = "GreenThread",
  ["green.pools.Pool_mt"] = "Pool",
}

-- Members that are implementation hooks, not API.
local PRIVATE_MEMBER = {
  Queue = {
    _unpop = "gives an item back to the front (GreenPile puts a thread "
      .. "back with it)",
  },
}

-- Metamethods that are mechanics rather than something a user calls or
-- writes: not required (a class's other metamethods, such as __close for
-- `<close>` or __call for a generic `for`, are).
local MECHANICS = {
  __index = "method lookup", __newindex = "field assignment checks",
  __name = "the type name in error messages", __gc = "finalizer",
  __mode = "weak table mode", __metatable = "metatable protection",
  __tostring = "tostring's format is described in each class's text",
}

-- }====================================================================

-- {====================================================================
-- The classes and objects, with real instances (made inside a green
-- thread; closed afterwards). Each group lists the prefixes its entries
-- may use (the first is the usual one) and the instances whose members
-- are its members; a member of any instance counts for the group.

local function noop() end

local function make_instances()
  local I, closers = {}, {}
  local function closing(x)
    closers[#closers + 1] = x
    return x
  end
  local main_gt = green.spawn(noop)
  main_gt.name = "documented" -- so that gt.name resolves
  I.gt = main_gt
  I.timeout = closing(green.Timeout(3600))
  I.event = green.Event()
  I.sem = green.Semaphore()
  I.bsem = green.BoundedSemaphore()
  I.csem = green.CappedSemaphore(1, 2)
  I.hold = green.Semaphore():hold()
  I.queues = { green.Queue(), green.LightQueue(), green.PriorityQueue(),
               green.LifoQueue() }
  I.gpool = green.GreenPool()
  I.pile = green.GreenPile()
  I.pool = green.pools.Pool { create = function() return {} end }
  I.item = I.pool:item()
  I.lc = green.LoopingCall(noop)
  I.dlc = green.DynamicLoopingCall(noop)
  local srv = closing(assert(green.listen("127.0.0.1", 0)))
  local port = select(2, srv:getsockname())
  I.listener = srv
  I.client = closing(assert(green.connect("127.0.0.1", port)))
  I.accepted = closing(assert(srv:accept()))
  I.udp = closing(assert(green.udp()))
  local tc, ts = h.pair()
  closing(ts)
  I.tls = closing(assert(green.tls.wrap(tc, { verify = false })))
  I.tlsctx = assert(green.tls.context { verify = false })
  local pem = os.tmpname()
  local _, err, code = h.sh("unset LD_PRELOAD; openssl req -batch -nodes "
    .. "-x509 -days 1 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
    .. "-subj /CN=localhost -keyout " .. pem .. " -out " .. pem .. ".crt")
  assert(code == 0, err)
  I.tlslistener = closing(assert(green.listen("127.0.0.1", 0, { tls = {
    certificate = pem .. ".crt", key = pem } })))
  os.remove(pem)
  os.remove(pem .. ".crt")
  local socket = require "green.socket"
  I.master = closing(socket.tcp())
  I.lserver = closing(assert(socket.bind("127.0.0.1", 0)))
  local lport = select(2, I.lserver:getsockname())
  I.lclient = closing(assert(socket.connect("127.0.0.1", lport)))
  I.unconnected = closing(assert(socket.udp()))
  I.connected = closing(assert(socket.udp()))
  assert(I.connected:setpeername("127.0.0.1", lport))
  I.gfile = closing(assert(green.fs.open("/dev/null", "r")))
  I.proc = assert(green.process.spawn { "cat", stdin = "pipe",
                                        stdout = "pipe", stderr = "pipe" })
  I.file = assert(green.process.popen("cat", "w"))
  I.sighandle = green.signal("USR1", noop)
  -- green.http: a request, a response, a WebSocket, a Client
  local hsrv = closing(assert(green.listen("127.0.0.1", 0)))
  local hbase = "127.0.0.1:" .. select(2, hsrv:getsockname())
  green.spawn(green.http.serve, hsrv, function(req)
    if req.path == "/ws" then
      local ws = assert(req:upgrade_websocket())
      ws:receive()
      return
    end
    I.req = req
    return 200, nil, "x"
  end)
  I.hclient = green.http.Client()
  I.resp = assert(I.hclient:get("http://" .. hbase .. "/"))
  I.ws = assert(green.http.websocket("ws://" .. hbase .. "/ws"))
  main_gt:wait()
  return I, function()
    I.ws:close()
    I.hclient:close()
    I.sighandle:cancel()
    I.file:close()
    getmetatable(I.proc).__close(I.proc)
    I.hold:release()
    getmetatable(I.item).__close(I.item)
    for i = #closers, 1, -1 do
      local x = closers[i]
      if green.is_timeout(x) then x:cancel() else x:close() end
    end
  end
end

local function class_groups(I)
  return {
    { prefixes = { "GreenThread" }, objs = { I.gt } },
    { prefixes = { "Timeout" }, objs = { I.timeout } },
    { prefixes = { "Event" }, objs = { I.event } },
    { prefixes = { "Semaphore", "BoundedSemaphore" },
      objs = { I.sem, I.bsem } },
    { prefixes = { "CappedSemaphore" }, objs = { I.csem } },
    { prefixes = { "hold" }, objs = { I.hold } },
    { prefixes = { "Queue", "LightQueue", "PriorityQueue", "LifoQueue" },
      objs = I.queues },
    { prefixes = { "GreenPool" }, objs = { I.gpool } },
    { prefixes = { "GreenPile" }, objs = { I.pile } },
    { prefixes = { "Pool" }, objs = { I.pool } },
    { prefixes = { "item" }, objs = { I.item } },
    { prefixes = { "LoopingCall", "DynamicLoopingCall" },
      objs = { I.lc, I.dlc } },
    { prefixes = { "sock" }, objs = { I.listener, I.client, I.accepted } },
    { prefixes = { "udp" }, objs = { I.udp } },
    { prefixes = { "tls" }, objs = { I.tls } },
    { prefixes = { "Context" }, objs = { I.tlsctx } },
    { prefixes = { "tlslistener" }, objs = { I.tlslistener } },
    { prefixes = { "Process" }, objs = { I.proc } },
    { prefixes = { "pfile" }, objs = { I.file } },
    { prefixes = { "SignalHandle" }, objs = { I.sighandle } },
    { prefixes = { "master", "client", "server" },
      objs = { I.master, I.lclient, I.lserver } },
    { prefixes = { "unconnected", "connected" },
      objs = { I.unconnected, I.connected } },
    { prefixes = { "file" }, objs = { I.gfile } },
    { prefixes = { "req" }, objs = { I.req } },
    { prefixes = { "resp" }, objs = { I.resp } },
    { prefixes = { "ws" }, objs = { I.ws } },
    { prefixes = { "Client" }, objs = { I.hclient } },
  }
end

-- }====================================================================

-- {====================================================================
-- Enumerating names at run time

local function isident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function qualify(path, k)
  if isident(k) then return path .. "." .. k end
  return path .. '["' .. tostring(k) .. '"]'
end

-- Every name under module table `t` (called `path`), into `out`.
local function walk(t, path, out, seen)
  seen = seen or {}
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    local name = qualify(path, k)
    if not PRIVATE[name] then
      out[name] = true
      if type(v) == "table"
         and (getmetatable(v) == nil or CALLABLE_MODULE[name])
         and rawget(v, "__index") == nil and not CLASS_TABLE[name] then
        walk(v, name, out, seen)
      end
    end
  end
end

-- The table upvalue of a C __index function (GreenThread's and
-- Timeout's look their methods up in one); nil for a Lua function.
local function c_methods(f)
  if debug.getinfo(f, "S").what ~= "C" then return nil end
  for i = 1, 8 do
    local name, v = debug.getupvalue(f, i)
    if name == nil then break end
    if type(v) == "table" then return v end
  end
  return nil
end

-- The members of object `obj`: its metatable's metamethods (but the
-- MECHANICS) and the methods and fields along its __index chain.
local function members(obj, out)
  local mt = getmetatable(obj)
  if not mt then return out end
  for k in pairs(mt) do
    if type(k) == "string" and k:match("^__") and not MECHANICS[k] then
      out[k] = true
    end
  end
  local idx, seen = mt.__index, {}
  while idx ~= nil and not seen[idx] do
    seen[idx] = true
    if type(idx) == "function" then
      idx = c_methods(idx)
    elseif type(idx) == "table" then
      for k in pairs(idx) do
        if type(k) == "string" and not k:match("^__") then out[k] = true end
      end
      local imt = getmetatable(idx)
      idx = imt and imt.__index
    else
      idx = nil
    end
  end
  return out
end

-- The options the greenlua command prints in its usage message.
local function cli_options()
  local _, err = h.sh(h.greenlua .. " -%")
  local opts = {}
  -- "-e", "--", "-", and long options such as "--time-slice"
  for opt in err:gmatch("\n  (%-%-?[%a%-]*)") do opts[opt] = true end
  assert(opts["-e"] and opts["--"],
         "could not read greenlua's usage message:\n" .. err)
  return opts
end

-- }====================================================================

-- {====================================================================
-- Reading docs/api.md

-- The qualified name at the start of a code span, or nil.
local function leading_name(code)
  local name = code:match("^[%a_][%w_]*")
  if not name then return nil end
  local pos = #name + 1
  while true do
    local part = code:match("^[.:][%a_][%w_]*", pos)
                 or code:match('^%["[^"]+"%]', pos)
    if not part then break end
    name = name .. part
    pos = pos + #part
  end
  return name
end

-- { {name=, line=, option=bool}, ... } for every entry of the file.
local function read_entries(path)
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  local entries, n, fenced = {}, 0, false
  for line in f:lines() do
    n = n + 1
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      local code = line:match("^#+%s+`([^`]+)`")
                   or line:match("^|%s*`([^`]+)`")
      if code then
        if code:match("^%-") then
          entries[#entries + 1] = { name = code:match("^%-%-?[%a%-]*"),
                                    line = n, option = true }
        else
          local name = leading_name(code)
          if name then
            entries[#entries + 1] = { name = name, line = n }
          end
        end
      end
    end
  end
  f:close()
  return entries
end

-- "green.debug.x" -> "green", "debug.x", "."; "sock:recv" -> "sock", ...
local function split(name)
  local head, sep, rest = name:match("^([%a_][%w_]*)([.:%[]?)(.*)$")
  if sep == "[" then rest = "[" .. rest end
  return head, sep, rest
end

-- }====================================================================

describe("docs/api.md", function()
  local entries, required, exists, groups_by_prefix

  setup(function()
    entries = read_entries(DOC)
    required = {}  -- name -> true: must have an entry
    exists = {}    -- checks that a documented name is real
    green_run(function()
      local I, close = make_instances()
      local ok, err = pcall(function()
        -- the modules
        local mods = {}
        walk(green, "green", mods)
        walk(require "green.socket", "socket", mods)
        for k in pairs(green.core.coroutine) do
          mods["coroutine." .. k] = true
        end
        for k in pairs(h) do mods[qualify("helper", k)] = true end
        mods.green_run = true
        for name in pairs(mods) do required[name] = true end
        exists.module = mods
        -- the classes
        groups_by_prefix = {}
        for _, g in ipairs(class_groups(I)) do
          local m = {}
          for _, obj in ipairs(g.objs) do members(obj, m) end
          local private = PRIVATE_MEMBER[g.prefixes[1]] or {}
          for k in pairs(m) do
            if not private[k] then required[g.prefixes[1] .. ":" .. k] = g end
          end
          g.members = m
          for _, p in ipairs(g.prefixes) do groups_by_prefix[p] = g end
        end
        -- properties (fields an __index function answers) resolve on
        -- the instances themselves
        for _, g in pairs(groups_by_prefix) do
          g.has = function(k)
            if g.members[k] then return true end
            for _, obj in ipairs(g.objs) do
              if obj[k] ~= nil then return true end
            end
            return false
          end
        end
      end)
      close()
      assert(ok, err)
    end)
    exists.options = cli_options()
    for opt in pairs(exists.options) do required[opt] = "option" end
  end)

  it("has entries (the convention is being parsed)", function()
    assert.is_true(#entries > 100, "only " .. #entries .. " entries in "
                   .. DOC)
  end)

  it("documents every public name", function()
    local documented = {}
    for _, e in ipairs(entries) do
      if e.option then
        documented[e.name] = true
      else
        local head, sep, rest = split(e.name)
        local g = groups_by_prefix[head]
        if g and (sep == ":" or sep == ".") then
          documented[g.prefixes[1] .. ":" .. rest] = true
        else
          documented[e.name] = true
        end
      end
    end
    local missing = {}
    for name in pairs(required) do
      if not documented[name] then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert(#missing == 0, #missing .. " public names have no entry in "
           .. DOC .. " (see the convention at its top):\n  "
           .. table.concat(missing, "\n  "))
  end)

  it("documents only names that exist (no stale entries)", function()
    local stale, seen = {}, {}
    local function bad(e, why)
      stale[#stale + 1] = ("%s:%d: %s (%s)"):format(DOC, e.line, e.name, why)
    end
    for _, e in ipairs(entries) do
      local head, sep, rest = split(e.name)
      local g = groups_by_prefix[head]
      if seen[e.name] then
        bad(e, "documented twice; first at line " .. seen[e.name])
      end
      seen[e.name] = e.line
      if e.option then
        if not exists.options[e.name] then
          bad(e, "greenlua has no such option")
        end
      elseif g then
        if (sep ~= ":" and sep ~= ".") or rest:find("[.:%[]") then
          bad(e, "a class entry is Prefix:method or Prefix.field")
        elseif not g.has(rest) then
          bad(e, "no such member on " .. head)
        end
      elseif head == "green" or head == "socket" or head == "coroutine"
             or head == "helper" or head == "green_run" then
        if not exists.module[e.name] then bad(e, "no such name") end
      else
        bad(e, "unknown prefix '" .. head .. "'")
      end
    end
    assert(#stale == 0, #stale .. " entries of " .. DOC .. " name nothing "
           .. "that exists:\n  " .. table.concat(stale, "\n  "))
  end)

  it("links only to its own headings that exist", function()
    -- GitHub's anchors: lower case, punctuation dropped, spaces to "-".
    local function slug(text)
      return (text:lower():gsub("[^%w%s_%-]", ""):gsub("%s", "-"))
    end
    local f = assert(io.open(DOC, "r"))
    local text = f:read("a")
    f:close()
    local anchors, fenced = {}, false
    for line in text:gmatch("[^\n]*") do
      if line:match("^%s*```") then
        fenced = not fenced
      elseif not fenced and line:match("^#+%s") then
        anchors[slug(line:match("^#+%s+(.-)%s*$"))] = true
      end
    end
    local broken = {}
    for target in text:gmatch("%]%(#([^)]+)%)") do
      if not anchors[target] then broken[#broken + 1] = "#" .. target end
    end
    assert(#broken == 0, "links to no heading of " .. DOC .. ": "
           .. table.concat(broken, ", "))
  end)

  it("keeps its allowlists honest: each private name exists", function()
    for name in pairs(PRIVATE) do
      local t = green
      for part in name:gmatch("[^.]+") do
        if part ~= "green" then t = t and t[part] end
      end
      assert.is_not_nil(t, name .. " is allowlisted but does not exist")
    end
    for prefix, names in pairs(PRIVATE_MEMBER) do
      local g = groups_by_prefix[prefix]
      for k in pairs(names) do
        assert.is_true(g.members[k] == true,
                       prefix .. ":" .. k .. " is allowlisted but is gone")
      end
    end
  end)
end)

describe("README.md", function()
  local function slurp(path)
    local f = assert(io.open(path, "r"), "cannot open " .. path)
    local s = f:read("a")
    f:close()
    return s
  end

  it("names every package .ci/setup installs", function()
    local setup = slurp(".ci/setup")
    local list = assert(setup:match("pkgs=%((.-)%)"),
                        "no pkgs=(...) list in .ci/setup")
    local readme, missing, n = slurp("README.md"), {}, 0
    for pkg in list:gmatch("%S+") do
      n = n + 1
      if not readme:find("`" .. pkg .. "`", 1, true) then
        missing[#missing + 1] = pkg
      end
    end
    assert.is_true(n >= 6, "read only " .. n .. " packages from .ci/setup")
    assert(#missing == 0, "README.md does not name these packages that "
           .. ".ci/setup installs: " .. table.concat(missing, ", "))
  end)

  it("links the API reference", function()
    assert.is_truthy(slurp("README.md"):find("(docs/api.md)", 1, true))
  end)
end)
