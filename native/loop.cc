// Loop-device ioctls on file descriptors the TypeScript layer opened.
// Sequencing (GET_FREE -> CONFIGURE, the SET_FD fallback, retries) is policy
// and lives in lib/loop.ts; each function here is one ioctl.
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "async.h"

namespace devmapper {

namespace {

struct SimpleOp {
  const char* name;
  unsigned long request;
};

// ioctls whose argument is an integer (or nothing) and whose result is the
// ioctl's return value.
const SimpleOp kSimple[] = {
    {"LOOP_CTL_GET_FREE", LOOP_CTL_GET_FREE}, {"LOOP_CTL_ADD", LOOP_CTL_ADD},
    {"LOOP_CTL_REMOVE", LOOP_CTL_REMOVE},     {"LOOP_SET_FD", LOOP_SET_FD},
    {"LOOP_CLR_FD", LOOP_CLR_FD},             {"LOOP_SET_CAPACITY", LOOP_SET_CAPACITY},
    {"LOOP_SET_BLOCK_SIZE", LOOP_SET_BLOCK_SIZE}, {"LOOP_SET_DIRECT_IO", LOOP_SET_DIRECT_IO},
};

void FillInfo(const Napi::Object& o, struct loop_info64& li) {
  std::memset(&li, 0, sizeof li);
  li.lo_offset = static_cast<uint64_t>(OptNumber(o, "offset"));
  li.lo_sizelimit = static_cast<uint64_t>(OptNumber(o, "sizeLimit"));
  li.lo_flags = static_cast<uint32_t>(OptNumber(o, "flags"));
  std::string name = OptString(o, "fileName");
  std::memcpy(li.lo_file_name, name.data(), std::min(name.size(), sizeof li.lo_file_name - 1));
}

// loopIoctl(fd, op, arg) -> Promise<number>
Napi::Value LoopIoctl(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  std::string op = ArgString(info, 1);
  unsigned long arg = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  const SimpleOp* found = nullptr;
  for (const auto& s : kSimple)
    if (op == s.name) found = &s;
  if (!found) throw Napi::TypeError::New(info.Env(), "unknown loop ioctl " + op);
  auto rc = std::make_shared<int>(0);
  return RunAsync(
      info.Env(), found->name,
      [fd, found, arg, rc]() {
        *rc = ioctl(fd, found->request, arg);
        return *rc < 0 ? SysError::Errno(errno, "ioctl", found->name) : SysError::Ok();
      },
      [rc](Napi::Env env) { return Napi::Number::New(env, *rc); });
}

// loopConfigure(fd, { fd, blockSize, offset, sizeLimit, flags, fileName })
Napi::Value LoopConfigure(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  Napi::Object o = ArgObject(info, 1);
  auto cfg = std::make_shared<struct loop_config>();
  std::memset(cfg.get(), 0, sizeof *cfg);
  cfg->fd = static_cast<uint32_t>(OptNumber(o, "fd"));
  cfg->block_size = static_cast<uint32_t>(OptNumber(o, "blockSize"));
  FillInfo(o, cfg->info);
  return RunAsync(
      info.Env(), "LOOP_CONFIGURE",
      [fd, cfg]() {
        return ioctl(fd, LOOP_CONFIGURE, cfg.get()) < 0 ? SysError::Errno(errno, "ioctl", "LOOP_CONFIGURE")
                                                        : SysError::Ok();
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// loopSetStatus(fd, { offset, sizeLimit, flags, fileName })
Napi::Value LoopSetStatus(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  auto li = std::make_shared<struct loop_info64>();
  FillInfo(ArgObject(info, 1), *li);
  return RunAsync(
      info.Env(), "LOOP_SET_STATUS64",
      [fd, li]() {
        return ioctl(fd, LOOP_SET_STATUS64, li.get()) < 0 ? SysError::Errno(errno, "ioctl", "LOOP_SET_STATUS64")
                                                          : SysError::Ok();
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// loopGetStatus(fd) -> { number, device, inode, rdevice, offset, sizeLimit, flags, fileName }
Napi::Value LoopGetStatus(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  auto li = std::make_shared<struct loop_info64>();
  return RunAsync(
      info.Env(), "LOOP_GET_STATUS64",
      [fd, li]() {
        return ioctl(fd, LOOP_GET_STATUS64, li.get()) < 0 ? SysError::Errno(errno, "ioctl", "LOOP_GET_STATUS64")
                                                          : SysError::Ok();
      },
      [li](Napi::Env env) {
        auto dev = [&](uint64_t d) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("major", Napi::Number::New(env, major(d)));
          o.Set("minor", Napi::Number::New(env, minor(d)));
          return o;
        };
        Napi::Object o = Napi::Object::New(env);
        o.Set("number", Napi::Number::New(env, li->lo_number));
        o.Set("device", dev(li->lo_device));
        o.Set("inode", Napi::Number::New(env, static_cast<double>(li->lo_inode)));
        o.Set("rdevice", dev(li->lo_rdevice));
        o.Set("offset", Napi::Number::New(env, static_cast<double>(li->lo_offset)));
        o.Set("sizeLimit", Napi::Number::New(env, static_cast<double>(li->lo_sizelimit)));
        o.Set("flags", Napi::Number::New(env, li->lo_flags));
        const char* n = reinterpret_cast<const char*>(li->lo_file_name);
        o.Set("fileName", Napi::String::New(env, std::string(n, strnlen(n, sizeof li->lo_file_name))));
        return o;
      });
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("loopIoctl", Napi::Function::New(env, LoopIoctl, "loopIoctl"));
  exports.Set("loopConfigure", Napi::Function::New(env, LoopConfigure, "loopConfigure"));
  exports.Set("loopSetStatus", Napi::Function::New(env, LoopSetStatus, "loopSetStatus"));
  exports.Set("loopGetStatus", Napi::Function::New(env, LoopGetStatus, "loopGetStatus"));
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("LO_FLAGS_READ_ONLY", Napi::Number::New(env, LO_FLAGS_READ_ONLY));
  flags.Set("LO_FLAGS_AUTOCLEAR", Napi::Number::New(env, LO_FLAGS_AUTOCLEAR));
  flags.Set("LO_FLAGS_PARTSCAN", Napi::Number::New(env, LO_FLAGS_PARTSCAN));
  flags.Set("LO_FLAGS_DIRECT_IO", Napi::Number::New(env, LO_FLAGS_DIRECT_IO));
  exports.Set("loopFlags", flags);
}

}  // namespace devmapper
