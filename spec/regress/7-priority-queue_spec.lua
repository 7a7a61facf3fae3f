-- Issue 7, fault 8: a PriorityQueue put of an item that cannot be
-- compared with the others raised but left the item in the heap; the next
-- get raised too and a valid item was lost. A put or get whose comparison
-- fails now leaves the queue exactly as it was.
local green = require "green"

local function drain(q)
  local out = {}
  while not q:empty() do out[#out + 1] = q:get() end
  return out
end

describe("PriorityQueue with items that do not compare", function()
  it("a failed put leaves the queue as it was", function()
    green_run(function()
      local q = green.PriorityQueue()
      for _, v in ipairs { 5, 3, 8, 1, 9, 2 } do q:put(v) end
      local ok, err = pcall(q.put, q, "not a number")
      assert.is_false(ok)
      assert.matches("compare", err)
      assert.are.equal(6, q:qsize())
      assert.are.same({ 1, 2, 3, 5, 8, 9 }, drain(q))
    end)
  end)

  it("a get whose comparison fails loses nothing", function()
    green_run(function()
      local failing = false
      local q = green.PriorityQueue(nil, function(a, b)
        if failing then error("comparison failed") end
        return a < b
      end)
      for _, v in ipairs { 4, 7, 1, 6, 3 } do q:put(v) end
      failing = true
      local ok, err = pcall(q.get, q)
      assert.is_false(ok)
      assert.matches("comparison failed", err)
      failing = false
      assert.are.equal(5, q:qsize())
      assert.are.same({ 1, 3, 4, 6, 7 }, drain(q))
    end)
  end)

  it("stays ordered under random puts, gets and failing comparisons",
     function()
    green_run(function()
      local rng = 12345
      local function rand(n) -- a fixed sequence: the spec is repeatable
        rng = (rng * 1103515245 + 12345) % 2147483648
        return rng % n
      end
      local fail_next = false
      local q = green.PriorityQueue(nil, function(a, b)
        if fail_next then
          fail_next = false
          error("flaky comparison")
        end
        return a < b
      end)
      local model = {}
      for _ = 1, 3000 do
        if rand(3) > 0 or #model == 0 then
          local v = rand(100)
          fail_next = rand(5) == 0 and #model > 0
          if pcall(q.put, q, v) then model[#model + 1] = v end
        else
          fail_next = rand(5) == 0 and #model > 1
          table.sort(model)
          local ok, v = pcall(q.get, q)
          if ok then
            assert.are.equal(table.remove(model, 1), v)
          end
        end
        fail_next = false
        assert.are.equal(#model, q:qsize())
      end
      table.sort(model)
      assert.are.same(model, drain(q))
    end)
  end)
end)
