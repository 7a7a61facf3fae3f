std = "lua54"
max_line_length = 80
include_files = { "lua/**/*.lua", "spec/**/*.lua", "examples/**/*.lua",
                  "bench/**/*.lua", ".busted", ".luacheckrc" }
exclude_files = { "build/**" }
files["spec/**/*.lua"] = { std = "+busted", globals = { "green_run" } }
files["spec/helper.lua"] = { globals = { "green_run" } }
