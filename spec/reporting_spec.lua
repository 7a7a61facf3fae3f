-- Errors in threads the toolkit spawns are reported like any other, with
-- the user's spawn site, unless the toolkit hands them to a consumer.
local green = require "green"

local function collect(fn)
  local reports = {}
  local old = green.on_error(function(gt, err)
    reports[#reports + 1] = { site = green.core.site(gt), err = err }
  end)
  local ok, err = pcall(green.run, fn)
  green.on_error(old)
  assert.is_true(ok, err)
  return reports
end

describe("error reporting through the toolkit", function()
  it("reports a GreenPool thread's error that nobody waits for", function()
    local line
    local reports = collect(function()
      local pool = green.GreenPool(2)
      line = debug.getinfo(1, "l").currentline + 1
      pool:spawn(function() error("pool thread failed") end)
      pool:waitall()
    end)
    assert.are.equal(1, #reports)
    assert.matches("pool thread failed", reports[1].err)
    assert.are.equal("spec/reporting_spec.lua:" .. line, reports[1].site)
  end)

  it("does not report a GreenPool thread's error that wait observes",
     function()
    local reports = collect(function()
      local pool = green.GreenPool(2)
      local t = pool:spawn(function() green.sleep(0); error("seen") end)
      assert.has_error(function() t:wait() end)
    end)
    assert.are.equal(0, #reports)
  end)

  it("imap and GreenPile raise errors at the item, without reporting",
     function()
    local reports = collect(function()
      local pool = green.GreenPool(2)
      local it = pool:imap(function(x)
        if x == 2 then error("item two") end
        return x
      end, { 1, 2, 3 })
      assert.are.equal(1, it())
      assert.has_error(function() it() end, nil)
      local pile = green.GreenPile(2)
      pile:spawn(function() error("pile item") end)
      assert.has_error(function() pile:next() end)
    end)
    assert.are.equal(0, #reports)
  end)
end)

describe("the default error report (issue 7)", function()
  local h = require "helper"

  it("names the thread's own error when its __tostring raises", function()
    local _, err, code = h.greenlua_run([[
      local green = require "green"
      local bad = setmetatable({}, { __tostring = function()
        error("tostring exploded")
      end })
      green.spawn(function() error(bad) end)
    ]])
    assert.are.equal(0, code, err)
    assert.matches("died of an error:\n%(error object is a table value; "
                   .. "its __tostring failed: [^\n]*tostring exploded%)",
                   err)
    assert.are.equal(1, select(2, err:gsub("died of an error", "")))
  end)

  it("says a link failed, not that the thread died", function()
    local _, err, code = h.greenlua_run([[
      local green = require "green"
      local t = green.spawn(function() return 1 end)
      t:link(function() error("link broke") end)
    ]])
    assert.are.equal(0, code, err)
    assert.matches("a link callback of GreenThread %d+[^\n]* failed:\n"
                   .. "[^\n]*link broke", err)
    assert.not_matches("died", err)
  end)

  it("passes 'link' to a custom handler for a link's error", function()
    local seen = {}
    local old = green.on_error(function(gt, err, _, what)
      seen[#seen + 1] = { gt = gt, err = err, what = what }
    end)
    local ok, err = pcall(green.run, function()
      local t = green.spawn(function() return 1 end)
      t:link(function() error("link broke") end)
      green.sleep(0)
      green.sleep(0)
      return t
    end)
    green.on_error(old)
    assert.is_true(ok, err)
    assert.are.equal(1, #seen)
    assert.are.equal("link", seen[1].what)
    assert.matches("link broke", seen[1].err)
  end)
end)

describe("a report that cannot be printed", function()
  it("loses no outcome and skips no link when the handler and the " ..
     "default report both fail", function()
    -- (a subprocess: io.stderr is replaced by one whose use raises)
    local h = require "helper"
    local out, err, code = h.lua54_run([[
      local green = require "green"
      io.stderr = setmetatable({}, { __index = function()
        error("stderr is gone")
      end })
      green.on_error(function() error("handler fails too") end)
      local t = green.spawn(function() return "result" end)
      t:link(function() error("link fails") end)
      t:link(function() print("second link ran") end)
      print(t:wait())
      local t2 = green.spawn(function() error("own error", 0) end)
      green.run()
      print(t2:status(), select(2, pcall(t2.wait, t2)):match("^[^\n]*"))
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("second link ran\nresult\ndead\town error\n", out)
  end)

  it("an error escaping the end of a thread (its links, its report) " ..
     "is printed and leaves the outcome stored", function()
    local h = require "helper"
    local out, err, code = h.lua54_run([[
      local green = require "green"
      green.core.set_thread_end(function() error("the end failed") end)
      local t = green.spawn(function() return "result" end)
      t:link(function() end)
      print(t:wait())
    ]])
    assert.are.equal(0, code, err)
    assert.are.equal("result\n", out)
    assert.matches("green: the end of green thread 1 failed: [^\n]*" ..
                   "the end failed", err)
  end)
end)
