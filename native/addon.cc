// Module entry: context-aware (NODE_API_MODULE), no static mutable state, so
// it loads in worker threads and several times per process.
#include "async.h"

namespace devmapper {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitDm(env, exports);
  InitLoop(env, exports);
  InitSys(env, exports);
  InitFdWatcher(env, exports);
  InitExecutor(env, exports);
  return exports;
}

}  // namespace devmapper

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return devmapper::Init(env, exports); }

NODE_API_MODULE(devmapper, InitModule)
