// FdWatcher: wait for a file descriptor to become readable on the libuv loop
// itself (uv_poll), so an indefinite wait occupies no threadpool thread.
// Used with DM_DEV_ARM_POLL: the control fd turns readable once any
// device-mapper event has happened since it was armed.
//
//   const w = new FdWatcher(fd); w.start(cb); w.stop(); w.close();
//
// cb(status) is called once (status < 0 is a libuv error), then the watch
// stops; start() again to re-arm. While started the handle keeps the loop
// alive; close() releases it. The fd itself stays owned by the caller.
#include <uv.h>

#include "async.h"

namespace devmapper {

namespace {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&FdWatcher::Start>("start"), InstanceMethod<&FdWatcher::Stop>("stop"),
                        InstanceMethod<&FdWatcher::Close>("close")});
  }

  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    int fd = ArgInt(info, 0);
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(info.Env(), &loop) != napi_ok) throw Napi::Error::New(info.Env(), "no event loop");
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, fd);
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      throw Napi::Error::New(info.Env(), std::string("uv_poll_init: ") + uv_strerror(rc));
    }
    handle_->data = this;
  }

  ~FdWatcher() override { Release(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (!handle_) throw Napi::Error::New(info.Env(), "FdWatcher is closed");
    if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "start(callback)");
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (!active_) Ref();  // keep the JS object alive while the kernel may call back
    active_ = true;
    int rc = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (rc != 0) {
      Deactivate();
      throw Napi::Error::New(info.Env(), std::string("uv_poll_start: ") + uv_strerror(rc));
    }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_) uv_poll_stop(handle_);
    Deactivate();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop(info);
    Release();
    return info.Env().Undefined();
  }

  void Deactivate() {
    callback_.Reset();
    if (active_) Unref();
    active_ = false;
  }

  void Release() {
    if (!handle_) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    auto* self = static_cast<FdWatcher*>(h->data);
    uv_poll_stop(h);
    if (!self || !self->active_) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Function cb = self->callback_.Value();
    Napi::Object recv = self->Value();
    self->Deactivate();
    // MakeCallback (not Call): runs the microtask queue afterwards, so
    // promises resolved in cb settle now rather than at the next tick.
    cb.MakeCallback(recv, {Napi::Number::New(env, status)});
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  bool active_ = false;
};

}  // namespace

void InitFdWatcher(Napi::Env env, Napi::Object exports) { exports.Set("FdWatcher", FdWatcher::Define(env)); }

}  // namespace devmapper
