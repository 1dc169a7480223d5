{
  "targets": [
    {
      "target_name": "devmapper",
      "sources": [
        "native/addon.cc",
        "native/dm_ioctl.cc",
        "native/dm_decode.cc",
        "native/loop.cc",
        "native/sys.cc",
        "native/fd_watcher.cc",
        "native/executor.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
