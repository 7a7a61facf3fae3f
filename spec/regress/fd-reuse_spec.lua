-- A descriptor number the kernel hands out again after a close must never
-- deliver the new socket's data or events to the old socket's waiters.
local green = require "green"

describe("a reused descriptor number", function()
  it("never reaches the closed socket's waiters", function()
    green_run(function()
      local server = assert(green.listen("127.0.0.1", 0))
      local _, port = server:getsockname()
      local c1 = assert(green.connect("127.0.0.1", port))
      local s1 = assert(server:accept())
      local fd1 = c1:getfd()
      local got
      local reader = green.spawn(function()
        got = table.pack(c1:receive("*l"))
      end)
      green.sleep(0) -- the reader waits on c1
      c1:close()
      local c2 = assert(green.connect("127.0.0.1", port))
      local s2 = assert(server:accept())
      -- The test means something only if the number was reused.
      assert.is_true(c2:getfd() == fd1 or s2:getfd() == fd1,
                     "descriptor " .. fd1 .. " was not reused")
      s2:send("fresh\n")
      s1:send("stale\n")
      assert.are.equal("fresh", c2:receive("*l"))
      reader:wait()
      assert.are.same({ n = 3, nil, "closed", "" }, got)
      for _, s in ipairs { s1, s2, c2, server } do s:close() end
    end)
  end)
end)
