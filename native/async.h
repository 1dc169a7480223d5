// One promise per call. `work` runs off the JS thread and returns a SysError
// (errnum 0 = success); `done` runs back on the JS thread and turns the
// captured state into a JS value. RunAsync hands the call to the addon's own
// executor (executor.cc): one queue, worker threads woken only when idle, one
// completion handle on the event loop. RunWaiting uses libuv's threadpool,
// for calls that wait on another process or an event for as long as it takes
// (flock, DM_DEV_WAIT) and so must not hold one of the executor's threads.
#pragma once
#include <napi.h>

#include <string>
#include <utility>

namespace devmapper {

struct SysError {
  int errnum = 0;
  const char* syscall = nullptr;  // "ioctl", "open", "mount", ...
  std::string op;                 // "DM_DEV_CREATE", "LOOP_CONFIGURE", a path, ...
  std::string detail;             // reply decoding failures (errnum = EPROTO)
  int step = -1;                  // in a sequence of calls: the index of the one that failed
  int number = -1;                // a loop device's number the failed call concerned

  static SysError Ok() { return {}; }
  static SysError Errno(int e, const char* syscall, std::string op) { return {e, syscall, std::move(op), {}}; }
};

// A plain Error carrying errno/syscall/op; lib/errors.ts turns it into a DmError.
inline Napi::Value MakeSysError(Napi::Env env, const SysError& e) {
  std::string msg = std::string(e.syscall ? e.syscall : "call") + " " + e.op + " failed";
  if (!e.detail.empty()) msg += ": " + e.detail;
  Napi::Error err = Napi::Error::New(env, msg);
  Napi::Object o = err.Value();
  o.Set("errno", Napi::Number::New(env, e.errnum));
  o.Set("syscall", Napi::String::New(env, e.syscall ? e.syscall : ""));
  o.Set("op", Napi::String::New(env, e.op));
  if (!e.detail.empty()) o.Set("detail", Napi::String::New(env, e.detail));
  if (e.step >= 0) o.Set("step", Napi::Number::New(env, e.step));
  if (e.number >= 0) o.Set("number", Napi::Number::New(env, e.number));
  return o;
}

// Turns a finished call into the promise's outcome (shared by both paths).
template <typename Done>
void Settle(Napi::Env env, const Napi::Promise::Deferred& deferred, const SysError& result, Done& done) {
  if (result.errnum != 0) {
    deferred.Reject(MakeSysError(env, result));
    return;
  }
  try {
    deferred.Resolve(done(env));
  } catch (const Napi::Error& e) {
    deferred.Reject(e.Value());
  }
}

// A call for the executor: Execute on a worker thread, Complete on the JS thread.
class Job {
 public:
  virtual ~Job() = default;
  virtual void Execute() = 0;
  virtual void Complete(Napi::Env env) = 0;
  virtual void Fail(SysError e) = 0;  // instead of Execute, when it cannot run
};

// Queue `job` on this environment's executor; it is deleted after Complete.
void Submit(Napi::Env env, Job* job);

template <typename Work, typename Done>
class PromiseJob : public Job {
 public:
  PromiseJob(Napi::Env env, Work work, Done done)
      : deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override { result_ = work_(); }
  void Complete(Napi::Env env) override { Settle(env, deferred_, result_, done_); }
  void Fail(SysError e) override { result_ = std::move(e); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  SysError result_;
};

template <typename Work, typename Done>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, Work work, Done done)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { result_ = work_(); }
  void OnOK() override { Settle(Env(), deferred_, result_, done_); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  SysError result_;
};

template <typename Work, typename Done>
Napi::Promise RunAsync(Napi::Env env, const char* /*name*/, Work work, Done done) {
  auto* job = new PromiseJob<Work, Done>(env, std::move(work), std::move(done));
  Napi::Promise p = job->Promise();
  Submit(env, job);
  return p;
}

template <typename Work, typename Done>
Napi::Promise RunWaiting(Napi::Env env, const char* name, Work work, Done done) {
  auto* w = new PromiseWorker<Work, Done>(env, name, std::move(work), std::move(done));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Argument helpers: the TypeScript layer validates; these only guard the C++.
inline int32_t ArgInt(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "expected a number argument");
  return info[i].As<Napi::Number>().Int32Value();
}
inline std::string ArgString(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "expected a string argument");
  return info[i].As<Napi::String>().Utf8Value();
}
inline std::string OptString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}
inline double OptNumber(const Napi::Object& o, const char* key, double dflt = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}
inline Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsObject()) throw Napi::TypeError::New(info.Env(), "expected an object argument");
  return info[i].As<Napi::Object>();
}

void InitDm(Napi::Env env, Napi::Object exports);
void InitLoop(Napi::Env env, Napi::Object exports);
void InitSys(Napi::Env env, Napi::Object exports);
void InitFdWatcher(Napi::Env env, Napi::Object exports);
void InitExecutor(Napi::Env env, Napi::Object exports);

}  // namespace devmapper
