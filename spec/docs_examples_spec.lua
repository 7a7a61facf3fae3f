-- The ```lua examples of README.md and docs/api.md stay true: every block
-- is Lua that compiles, and every runnable block runs under greenlua and
-- prints what its `-->` comments say. The convention (documented at the
-- top of docs/api.md, "Examples"):
--   * a block is runnable when its first line is `local green = require
--     "green"` and no line of it holds `-- (fragment)`; anything else is a
--     fragment, compiled but not run;
--   * a runnable block must exit 0 within LIMIT seconds, and its servers
--     bind 127.0.0.1;
--   * when it has `--> text` comments, its stdout is exactly those texts,
--     one line each in order, compared with each run of blanks (print's
--     tabs, the comment's spaces) taken as one space.
-- And every `green.x.y` name in README.md (prose too) and in api.md's
-- blocks exists (api.md's entries are api_reference_spec's business).
local h = require "helper"

local DOCS = { "README.md", "docs/api.md" }
local LIMIT = 20 -- seconds per block (generous: ASan, a loaded machine)

--- The ```lua blocks of the Markdown file `path`: a list of
-- { src = text, line = line number of the fence, where = "path:line" }.
local function lua_blocks(path)
  local text = assert(h.slurp(path), "cannot read " .. path)
  local blocks, cur, n = {}, nil, 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        cur.src = table.concat(cur.lines, "\n") .. "\n"
        blocks[#blocks + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    elseif line:match("^```lua%s*$") then
      cur = { line = n, where = path .. ":" .. n, lines = {} }
    end
  end
  assert(not cur, path .. ": a ```lua block opened at line "
                  .. (cur and cur.line or 0) .. " is never closed")
  return blocks
end

local function runnable(src)
  return src:match('^local green = require "green"\n') ~= nil
         and not src:find("-- (fragment)", 1, true)
end

local function squeeze(s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

--- The output a block's `-->` comments promise, one entry a line.
local function promised(src)
  local out = {}
  for line in src:gmatch("([^\n]*)\n") do
    local text = line:match("%-%->(.*)$")
    if text then out[#out + 1] = squeeze(text) end
  end
  return out
end

local all = {}
for _, path in ipairs(DOCS) do
  for _, b in ipairs(lua_blocks(path)) do all[#all + 1] = b end
end

--- The `green.x.y` names of `text`, into the set `names`.
local function green_names(text, names)
  for name in text:gmatch("%f[%w_.]green%.[%a_][%w_.]*") do
    names[(name:gsub("%.+$", ""))] = true
  end
  return names
end

-- Run under greenlua: print each name of NAMES that is neither a field
-- path of `green` nor a module `require` finds.
local RESOLVE = [[
local green = require "green"
for _, name in ipairs(NAMES) do
  local v = green
  for part in name:gmatch("[^.]+", #"green." + 1) do
    v = type(v) == "table" and v[part] or nil
  end
  if v == nil and not pcall(require, name) then print(name) end
end
]]

describe("documentation examples", function()
  it("are found: the extractor sees README's blocks and runnable ones",
     function()
    local readme, run = 0, 0
    for _, b in ipairs(all) do
      if b.where:match("^README") then readme = readme + 1 end
      if runnable(b.src) then run = run + 1 end
    end
    assert.is_true(readme >= 10, "README.md's ```lua blocks: " .. readme)
    assert.is_true(run >= 2, "runnable blocks: " .. run)
  end)

  it("promised output is read from `-->` comments, blanks squeezed",
     function()
    assert.are.same({ "a done b done", "7" },
                    promised('print(x)   -->  a done\tb done \n'
                             .. '-- a note\n--> 7\n'))
    assert.is_true(runnable('local green = require "green"\nprint(1)\n'))
    assert.is_false(runnable('local green = require "green"\n'
                             .. '-- (fragment)\nprint(conn)\n'))
    assert.is_false(runnable('green.sleep(1)\n'))
  end)

  it("name only what exists: README's green.* names, and those of "
     .. "api.md's blocks", function()
    local names = green_names(assert(h.slurp("README.md")), {})
    for _, b in ipairs(all) do green_names(b.src, names) end
    local list = {}
    for name in pairs(names) do list[#list + 1] = ("%q"):format(name) end
    table.sort(list)
    assert.is_true(#list >= 40, "names found: " .. #list)
    local out, err, code = h.greenlua_run(
      "local NAMES = { " .. table.concat(list, ", ") .. " }\n" .. RESOLVE,
      nil, LIMIT)
    assert.are.equal(0, code, err)
    assert.are.equal("", out, "names the docs use that do not exist")
  end)

  for _, b in ipairs(all) do
    it(b.where .. " compiles", function()
      local f, err = load(b.src, "=" .. b.where)
      assert(f, err)
    end)

    if runnable(b.src) then
      it(b.where .. " runs and prints what it says", function()
        for host in b.src:gmatch("listen%(%s*\"([^\"]*)\"") do
          assert.are.equal("127.0.0.1", host,
                           b.where .. ": a runnable example's server "
                           .. "binds 127.0.0.1")
        end
        local out, err, code = h.greenlua_run(b.src, nil, LIMIT)
        assert.are.equal(0, code, b.where .. " failed:\n" .. err
                                  .. "\nstdout:\n" .. out)
        local want = promised(b.src)
        if #want > 0 then
          local got = {}
          for line in out:gmatch("([^\n]*)\n") do
            got[#got + 1] = squeeze(line)
          end
          assert.are.same(want, got, b.where .. ": its `-->` comments")
        end
      end)
    end
  end
end)
