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
        "native/glibc_floor.cc",
        "native/executor.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      # RTTI on: without it std::make_shared calls a GLIBCXX_3.4.26 symbol, newer than
      # glibc 2.28 systems' libstdc++ (GCC 8). The --wrap keeps mknod and fstat off
      # glibc 2.33's symbols (native/glibc_floor.cc).
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-Wl,--wrap=mknod,--wrap=fstat,--wrap=fstat64"]
    }
  ]
}
