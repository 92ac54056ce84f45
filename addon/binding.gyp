{
  "targets": [
    {
      "target_name": "vshm",
      "sources": ["src/addon.cc", "src/errors.cc", "src/args.cc", "src/memory.cc", "src/mmap.cc", "src/eventfd.cc", "src/socket.cc", "src/watcher.cc", "src/fileio.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
