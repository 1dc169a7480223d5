// The addon's own executor for its kernel calls: one queue per environment,
// up to kMaxThreads worker threads started as calls need them, and one
// completion handle (uv_async_t) on the event loop that settles every call
// finished since it last ran.
//
// Why not libuv's threadpool (napi_async_work)? Per call, libuv signals its
// condition variable while holding the queue's mutex, so the woken worker
// runs straight into that mutex and sleeps again: two wake-ups of the
// worker, five futex calls. Here the queue's mutex is never held across a
// wake-up, and workers sleep on a semaphore (one post per call: a futex wake
// only when a worker is asleep, none when one is still running). On the
// host's kernel an empty trip costs about half as much (bench/README.md).
//
// libuv's threads, mutexes and semaphores (exported by Node), not
// std::thread: no new libc symbols for the addon to need.
#include <uv.h>

#include <cerrno>
#include <deque>
#include <vector>

#include "async.h"

namespace devmapper {

namespace {

constexpr size_t kMaxThreads = 4;  // as many as libuv's threadpool has by default

class Executor {
 public:
  explicit Executor(Napi::Env env) : env_(env), context_(env, "devmapper") {
    uv_mutex_init(&mutex_);
    uv_sem_init(&ready_, 0);
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    async_ = new uv_async_t;
    async_->data = this;
    uv_async_init(loop, async_, OnAsync);
    uv_unref(reinterpret_cast<uv_handle_t*>(async_));  // only while calls are in flight does it keep the loop alive
    env.AddCleanupHook(Stop, this);
  }

  // JS thread.
  void Submit(Job* job) {
    if (outstanding_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
    uv_mutex_lock(&mutex_);
    queue_.push_back(job);
    // A new thread when the calls waiting outnumber the threads free to take them.
    bool spawn = queue_.size() > threads_.size() - busy_ && threads_.size() < kMaxThreads;
    uv_mutex_unlock(&mutex_);
    uv_sem_post(&ready_);  // after unlocking: the worker does not wake into a held mutex
    if (spawn) Spawn();
  }

 private:
  void Spawn() {
    uv_thread_t t;
    if (uv_thread_create(&t, Run, this) != 0) {
      // No thread to be had: the calls queued wait for a running one; with none at all, they cannot run.
      if (threads_.empty()) FailQueued();
      return;
    }
    uv_mutex_lock(&mutex_);
    threads_.push_back(t);
    uv_mutex_unlock(&mutex_);
  }

  static void Run(void* arg) {
    auto* self = static_cast<Executor*>(arg);
    for (;;) {
      uv_sem_wait(&self->ready_);  // one post per queued call, and one per thread to stop
      uv_mutex_lock(&self->mutex_);
      if (self->stopping_) break;
      if (self->queue_.empty()) {  // a post for a call FailQueued took back
        uv_mutex_unlock(&self->mutex_);
        continue;
      }
      Job* job = self->queue_.front();
      self->queue_.pop_front();
      self->busy_++;
      uv_mutex_unlock(&self->mutex_);
      job->Execute();
      uv_mutex_lock(&self->mutex_);
      self->busy_--;
      self->done_.push_back(job);
      uv_mutex_unlock(&self->mutex_);
      uv_async_send(self->async_);  // coalesced by libuv: one wake-up for all calls finished meanwhile
    }
    uv_mutex_unlock(&self->mutex_);
  }

  // JS thread: settle every finished call, then run the microtasks they queued.
  static void OnAsync(uv_async_t* handle) {
    auto* self = static_cast<Executor*>(handle->data);
    std::vector<Job*> finished;
    uv_mutex_lock(&self->mutex_);
    finished.swap(self->done_);
    uv_mutex_unlock(&self->mutex_);
    if (finished.empty()) return;
    self->outstanding_ -= finished.size();
    if (self->outstanding_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(self->async_));
    // Raw calls, checked rather than thrown: this runs from the event loop,
    // where an exception would end the process, and also while a worker
    // thread's environment is being torn down, when no JS can run and the
    // calls' promises are gone with it.
    napi_env env = self->env_;
    napi_handle_scope scope = nullptr;
    napi_callback_scope callback = nullptr;
    napi_value resource = nullptr;
    bool live = napi_open_handle_scope(env, &scope) == napi_ok && napi_create_object(env, &resource) == napi_ok &&
                napi_open_callback_scope(env, resource, self->context_, &callback) == napi_ok;
    for (Job* job : finished) {
      if (live) {
        try {
          job->Complete(Napi::Env(env));
        } catch (const Napi::Error&) {
          live = false;  // the environment is going away
        }
      }
      delete job;
    }
    if (callback) napi_close_callback_scope(env, callback);  // runs the microtasks the settled calls queued
    if (scope) napi_close_handle_scope(env, scope);
  }

  // No thread could be started: fail what is queued rather than leave it hanging.
  void FailQueued() {
    std::deque<Job*> queued;
    uv_mutex_lock(&mutex_);
    queued.swap(queue_);
    uv_mutex_unlock(&mutex_);
    for (Job* job : queued) {
      job->Fail(SysError::Errno(EAGAIN, "pthread_create", "worker thread"));
      uv_mutex_lock(&mutex_);
      done_.push_back(job);
      uv_mutex_unlock(&mutex_);
    }
    uv_async_send(async_);
  }

  // Environment teardown (process exit, a worker thread ending): let the
  // running calls finish, drop the queued ones, close the handle.
  static void Stop(void* arg) {
    auto* self = static_cast<Executor*>(arg);
    uv_mutex_lock(&self->mutex_);
    self->stopping_ = true;
    uv_mutex_unlock(&self->mutex_);
    for (size_t i = 0; i < self->threads_.size(); i++) uv_sem_post(&self->ready_);
    for (uv_thread_t& t : self->threads_) uv_thread_join(&t);
    for (Job* job : self->queue_) delete job;
    for (Job* job : self->done_) delete job;
    uv_close(reinterpret_cast<uv_handle_t*>(self->async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    uv_sem_destroy(&self->ready_);
    uv_mutex_destroy(&self->mutex_);
    delete self;  // no call can come after the environment's cleanup
  }

  static void Forget(Napi::Env, Executor*) {}

  Napi::Env env_;
  Napi::AsyncContext context_;
  uv_async_t* async_ = nullptr;  // freed by its close callback, which may run after the executor is gone
  size_t outstanding_ = 0;       // JS thread only
  uv_sem_t ready_;               // posted once per queued call
  uv_mutex_t mutex_;             // guards what follows
  std::deque<Job*> queue_;
  std::vector<Job*> done_;
  std::vector<uv_thread_t> threads_;
  size_t busy_ = 0;  // threads running a call
  bool stopping_ = false;

  friend void devmapper::Submit(Napi::Env env, Job* job);
};

// nop() -> Promise<undefined>: an empty trip through the executor, for the
// benchmark's fixed-cost row.
Napi::Value Nop(const Napi::CallbackInfo& info) {
  return RunAsync(
      info.Env(), "nop", []() { return SysError::Ok(); }, [](Napi::Env env) { return env.Undefined(); });
}

}  // namespace

void Submit(Napi::Env env, Job* job) {
  auto* executor = env.GetInstanceData<Executor>();
  if (executor == nullptr) {
    executor = new Executor(env);
    env.SetInstanceData<Executor, Executor::Forget>(executor);
  }
  executor->Submit(job);
}

void InitExecutor(Napi::Env env, Napi::Object exports) { exports.Set("nop", Napi::Function::New(env, Nop, "nop")); }

}  // namespace devmapper
