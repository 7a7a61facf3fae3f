--- The `greenlua` command line (called by runtime/main.c): lua5.4's
-- options and REPL, with the main chunk running as a green thread.
-- @module green.cli

local green = require "green"
local core = green.core

local cli = {}

local progname = "greenlua"

local function message(msg)
  io.stderr:write(progname, ": ", msg, "\n")
  io.stderr:flush()
end

-- As lua.c's msghandler: a traceback for strings and numbers; an object
-- with __tostring becomes its string, others "(error object is a ...)".
local function msghandler(msg)
  if type(msg) ~= "string" and type(msg) ~= "number" then
    local mt = debug.getmetatable(msg)
    if mt and mt.__tostring then
      local s = mt.__tostring(msg)
      if type(s) == "string" then return s end
    end
    msg = string.format("(error object is a %s value)", type(msg))
  end
  -- The frames below the chunk are this driver's: hide them, as lua.c
  -- has none to show.
  local tb = debug.traceback(tostring(msg), 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

-- Ctrl-C armed for the next chunk: once one has been delivered to the
-- main chunk, another ends the process until then (lua.c arms it for each
-- chunk it runs): a chunk that catches "interrupted!" in a loop is still
-- stopped by a second Ctrl-C.
local function arm()
  core.interrupt_target(green.getcurrent())
end

local function docall(fn, ...)
  arm()
  local r = table.pack(xpcall(fn, msghandler, ...))
  if not r[1] then
    message(r[2])
    return false
  end
  return true, r
end

local function dochunk(chunk, err)
  if not chunk then
    message(err)
    return false
  end
  return (docall(chunk))
end

local function version()
  io.stdout:write("greenlua ", green.version, " (", _VERSION, ") ",
                  "-- green threads on libuv\n")
  io.stdout:flush()
end

-- -l [g=]mod, as lua.c: require is called from C there, so an error
-- names no position in this driver.
local function dolibrary(spec)
  local name, mod = spec, spec
  local eq = spec:find("=", 1, true)
  if eq then
    name, mod = spec:sub(1, eq - 1), spec:sub(eq + 1)
  end
  local ok, r = docall(require, mod)
  if ok then _G[name] = r[2] end
  return ok
end

-- The main thread was killed (by a line, or by another thread): a kill is
-- for good, every read would raise it again (the prompt printed it in a
-- loop at full speed), so the prompt ends, as a script's main chunk does.
local function killed()
  return core.killed(green.getcurrent()) ~= nil
end

-- One line of the prompt; an interrupted read just shows a new prompt.
local function readline(prompt)
  local ok, line = pcall(core.readline, prompt)
  if not ok then
    io.stdout:write("\n")
    message(tostring(line))
    return false
  end
  return line
end

-- Returns 1 when the main thread was killed, else nothing (end of input).
local function repl()
  while true do
    if killed() then return 1 end
    arm() -- a Ctrl-C at the prompt shows a new one
    local line = readline(_G._PROMPT and tostring(_G._PROMPT) or "> ")
    if line == nil then
      io.stdout:write("\n")
      return
    end
    if line then
      local chunk, err = load("return " .. line, "=stdin")
      if not chunk then
        local buf = line
        while true do
          chunk, err = load(buf, "=stdin")
          if chunk or not err:find("<eof>$") then break end
          local more = readline(_G._PROMPT2 and tostring(_G._PROMPT2) or ">> ")
          if not more then break end
          buf = buf .. "\n" .. more
        end
      end
      if not chunk then
        message(err)
      else
        local ok, r = docall(chunk)
        if ok and r.n > 1 then
          local printok, perr = pcall(print, table.unpack(r, 2, r.n))
          if not printok then
            message("error calling 'print' (" .. tostring(perr) .. ")")
          end
        end
      end
    end
  end
end

-- The main chunk: everything lua.c's pmain does after option parsing.
-- `opts` is the command line as runtime/main.c parsed it (see cli.main).
local function run(argv, opts)
  local argc = #argv + 1
  local script = opts.script
  if opts.version then version() end
  if not opts.noenv then
    local init = os.getenv("LUA_INIT_5_4") or os.getenv("LUA_INIT")
    if init then
      local ok
      if init:sub(1, 1) == "@" then
        ok = dochunk(loadfile(init:sub(2)))
      else
        ok = dochunk(load(init, "=LUA_INIT"))
      end
      if not ok then return 1 end
    end
  end
  for _, action in ipairs(opts) do
    local o, extra = action[1], action[2]
    if o == "W" then
      warn("@on")
    else
      local ok
      if o == "e" then
        ok = dochunk(load(extra, "=(command line)"))
      else
        ok = dolibrary(extra)
      end
      if not ok then return 1 end
    end
  end
  if script < argc then
    local fname = argv[script]
    if opts.stdin then fname = nil end
    local chunk, err = loadfile(fname)
    if not chunk then
      message(err)
      return 1
    end
    if not docall(chunk, table.unpack(argv, script + 1, argc - 1)) then
      return 1
    end
  end
  if opts.interactive then
    return repl() or 0
  elseif script == argc and not opts.execute and not opts.version then
    if core.isatty(0) then
      version()
      return repl() or 0
    else
      if not dochunk(loadfile(nil)) then return 1 end
    end
  end
  return 0
end

--- Entry point: run the command line, then the hub until it is idle.
-- @tparam table argv the command line, argv[0] being the program
-- @tparam table opts the command line parsed once, by runtime/main.c:
--   `script` (index in argv of the script, argc if none), `stdin` (the
--   script is "-"), `interactive` (-i), `version` (-v or -i), `execute`
--   (some -e), `noenv` (-E), and in the array part the options to run in
--   order: `{"e", stat}`, `{"l", "g=mod"}`, `{"W"}`
-- @treturn integer the process exit status
function cli.main(argv, opts)
  progname = argv[0] or progname
  if opts.time_slice then green.debug.time_slice(opts.time_slice) end
  local main = green.spawn(function()
    local status = run(argv, opts)
    arm() -- a Ctrl-C now stops the wait for the other threads (exit 1)
    return status
  end)
  main.name = "main"
  core.observe(main)
  core.interrupt_target(main)
  local ok, status = pcall(main.wait, main)
  if not ok then
    message(tostring(status))
    return 1
  end
  if status ~= 0 then return status end
  ok, status = pcall(green.run)
  if not ok then
    message(tostring(status))
    return 1
  end
  return 0
end

return cli
