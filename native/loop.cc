// Loop-device ioctls. Most take a descriptor the TypeScript layer opened and
// issue one ioctl. loopAttach, loopPathIoctl and loopPathStatus do the
// open/ioctl/close of the common path in one trip, and say which step failed:
// sequencing around them (retries, making nodes, the SET_FD fallback) is
// policy and lives in lib/loop.ts.
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/major.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
    {"LOOP_CTL_GET_FREE", LOOP_CTL_GET_FREE},
    {"LOOP_CTL_ADD", LOOP_CTL_ADD},
    {"LOOP_CTL_REMOVE", LOOP_CTL_REMOVE},
    {"LOOP_SET_FD", LOOP_SET_FD},
    {"LOOP_CLR_FD", LOOP_CLR_FD},
    {"LOOP_SET_CAPACITY", LOOP_SET_CAPACITY},
    {"LOOP_SET_BLOCK_SIZE", LOOP_SET_BLOCK_SIZE},
    {"LOOP_SET_DIRECT_IO", LOOP_SET_DIRECT_IO},
};

void FillInfo(const Napi::Object& o, struct loop_info64& li) {
  std::memset(&li, 0, sizeof li);
  li.lo_offset = static_cast<uint64_t>(OptNumber(o, "offset"));
  li.lo_sizelimit = static_cast<uint64_t>(OptNumber(o, "sizeLimit"));
  li.lo_flags = static_cast<uint32_t>(OptNumber(o, "flags"));
  std::string name = OptString(o, "fileName");
  std::memcpy(li.lo_file_name, name.data(), std::min(name.size(), sizeof li.lo_file_name - 1));
}

// The kSimple ioctl named by argument `i`, and its integer argument `i + 1` (0 if none).
const SimpleOp* SimpleArgs(const Napi::CallbackInfo& info, size_t i, unsigned long* arg) {
  std::string op = ArgString(info, i);
  *arg = info.Length() > i + 1 && info[i + 1].IsNumber() ? info[i + 1].As<Napi::Number>().Uint32Value() : 0;
  for (const auto& s : kSimple)
    if (op == s.name) return &s;
  throw Napi::TypeError::New(info.Env(), "unknown loop ioctl " + op);
}

// A loop device's path from its number.
std::string LoopPath(int n) { return "/dev/loop" + std::to_string(n); }

// Whether fd is a loop device's node. Asked when a loop ioctl fails, not
// before every call (C does not, and a wrong node fails the ioctl: ENOTTY or
// EINVAL from another driver), so that the failure reads as a wrong node,
// which the TypeScript layer remakes, not as an old kernel or a bad value.
bool IsLoopNode(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISBLK(st.st_mode) && major(st.st_rdev) == LOOP_MAJOR;
}

SysError NotLoopNode(const std::string& path) {
  SysError err = SysError::Errno(ENODEV, "open", path);
  err.detail = "not a loop device node";
  return err;
}

// open(path) that also proves the node is a loop device: a wrong node would
// turn LOOP_CONFIGURE into ENOTTY, read as an old kernel.
int OpenLoopNode(const std::string& path, int flags, SysError& err, dev_t* rdev = nullptr) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    err = SysError::Errno(errno, "open", path);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) || major(st.st_rdev) != LOOP_MAJOR) {
    close(fd);
    err = NotLoopNode(path);
    return -1;
  }
  if (rdev) *rdev = st.st_rdev;
  return fd;
}

// Open the loop device at `path` for one ioctl: no check of the node until
// the ioctl fails (IsLoopNode). -1 with `err` set when the open fails.
int OpenForIoctl(const std::string& path, int flags, SysError& err) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) err = SysError::Errno(errno, "open", path);
  return fd;
}

// The failure of a loop ioctl on fd (errno as the ioctl left it).
SysError IoctlFailure(int fd, const std::string& path, const char* name) {
  int e = errno;
  return IsLoopNode(fd) ? SysError::Errno(e, "ioctl", name) : NotLoopNode(path);
}

Napi::Value StatusToJs(Napi::Env env, const struct loop_info64& status) {
  const struct loop_info64* li = &status;
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
}

// loopIoctl(fd, op, arg) -> Promise<number>
Napi::Value LoopIoctl(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  unsigned long arg;
  const SimpleOp* found = SimpleArgs(info, 1, &arg);
  auto rc = std::make_shared<int>(0);
  return RunAsync(
      info.Env(), found->name,
      [fd, found, arg, rc]() {
        *rc = ioctl(fd, found->request, arg);
        return *rc < 0 ? SysError::Errno(errno, "ioctl", found->name) : SysError::Ok();
      },
      [rc](Napi::Env env) { return Napi::Number::New(env, *rc); });
}

// loopSetStatus(fd, { offset, sizeLimit, flags, fileName })
Napi::Value LoopSetStatus(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  auto li = std::make_shared<struct loop_info64>();
  FillInfo(ArgObject(info, 1), *li);
  return RunAsync(
      info.Env(), "LOOP_SET_STATUS64",
      [fd, li]() {
        return ioctl(fd, LOOP_SET_STATUS64, li.get()) < 0 ? SysError::Errno(errno, "ioctl", "LOOP_SET_STATUS64") : SysError::Ok();
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
        return ioctl(fd, LOOP_GET_STATUS64, li.get()) < 0 ? SysError::Errno(errno, "ioctl", "LOOP_GET_STATUS64") : SysError::Ok();
      },
      [li](Napi::Env env) { return StatusToJs(env, *li); });
}

struct Attached {
  int number = -1;
  int fd = -1;  // the device, kept open when asked to hold it
  dev_t dev = 0;
  uint32_t flags = 0;
};

enum AttachStep { kOpenFile, kGetFree, kOpenLoop, kConfigure, kStatus };

// loopAttach(controlFd, file, openFlags, config, { hold, status })
//   -> { number, major, minor, fd, flags? }
// util-linux's attach in one trip: open the backing file, LOOP_CTL_GET_FREE,
// open /dev/loopN, LOOP_CONFIGURE, (LOOP_GET_STATUS64), close. A failure
// carries `step` (see AttachStep) and `number` once known.
Napi::Value LoopAttach(const Napi::CallbackInfo& info) {
  int control = ArgInt(info, 0);
  std::string file = ArgString(info, 1);
  int flags = ArgInt(info, 2);
  Napi::Object o = ArgObject(info, 3);
  Napi::Object opts = ArgObject(info, 4);
  bool hold = opts.Get("hold").ToBoolean();
  bool status = opts.Get("status").ToBoolean();
  auto cfg = std::make_shared<struct loop_config>();
  std::memset(cfg.get(), 0, sizeof *cfg);
  cfg->block_size = static_cast<uint32_t>(OptNumber(o, "blockSize"));
  FillInfo(o, cfg->info);
  auto out = std::make_shared<Attached>();
  return RunAsync(
      info.Env(), "loopAttach",
      [control, file, flags, cfg, hold, status, out]() {
        auto fail = [&](SysError e, int step, int backing, int dev) {
          e.step = step;
          e.number = out->number;
          if (dev >= 0) close(dev);
          if (backing >= 0) close(backing);
          return e;
        };
        int backing = open(file.c_str(), flags | O_CLOEXEC);
        if (backing < 0) return fail(SysError::Errno(errno, "open", file), kOpenFile, -1, -1);
        out->number = ioctl(control, LOOP_CTL_GET_FREE);
        if (out->number < 0) {
          out->number = -1;
          return fail(SysError::Errno(errno, "ioctl", "LOOP_CTL_GET_FREE"), kGetFree, backing, -1);
        }
        SysError err;
        int dev = OpenLoopNode(LoopPath(out->number), flags, err, &out->dev);
        if (dev < 0) return fail(err, kOpenLoop, backing, -1);
        cfg->fd = static_cast<uint32_t>(backing);
        if (ioctl(dev, LOOP_CONFIGURE, cfg.get()) < 0)
          return fail(SysError::Errno(errno, "ioctl", "LOOP_CONFIGURE"), kConfigure, backing, dev);
        close(backing);  // the kernel holds its own reference now
        if (status) {
          struct loop_info64 li;
          if (ioctl(dev, LOOP_GET_STATUS64, &li) == 0) out->flags = li.lo_flags;
        }
        if (hold) {
          out->fd = dev;
        } else {
          close(dev);
        }
        return SysError::Ok();
      },
      [out](Napi::Env env) {
        Napi::Object r = Napi::Object::New(env);
        r.Set("number", Napi::Number::New(env, out->number));
        r.Set("major", Napi::Number::New(env, major(out->dev)));
        r.Set("minor", Napi::Number::New(env, minor(out->dev)));
        r.Set("fd", Napi::Number::New(env, out->fd));
        r.Set("flags", Napi::Number::New(env, out->flags));
        return r;
      });
}

// loopPathIoctl(path, openFlags, op, arg) -> Promise<number>: open the device,
// one of kSimple's ioctls, close; one trip. The failed step shows in `syscall`
// (a node that turns out not to be a loop device's fails as an open, ENODEV).
Napi::Value LoopPathIoctl(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  int flags = ArgInt(info, 1);
  unsigned long arg;
  const SimpleOp* found = SimpleArgs(info, 2, &arg);
  auto rc = std::make_shared<int>(0);
  return RunAsync(
      info.Env(), found->name,
      [path, flags, found, arg, rc]() {
        SysError err;
        int fd = OpenForIoctl(path, flags, err);
        if (fd < 0) return err;
        *rc = ioctl(fd, found->request, arg);
        SysError e = *rc < 0 ? IoctlFailure(fd, path, found->name) : SysError::Ok();
        close(fd);
        return e;
      },
      [rc](Napi::Env env) { return Napi::Number::New(env, *rc); });
}

// A sysfs attribute (at most a page, one read returns it all); false when
// it cannot be read (e.g. loop/backing_file of a device detached meanwhile).
bool ReadAttribute(const std::string& path, std::string& out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n < 0) return false;
  out.assign(buf, static_cast<size_t>(n));
  return true;
}

// loopPathStatus(path, sysfsDir?, names?) -> loopGetStatus's object, and
// `files`: the attributes `names` under sysfsDir (null: unreadable). Open
// the device read-only, LOOP_GET_STATUS64, close, then the reads; one trip.
// The failed step shows in `syscall`.
Napi::Value LoopPathStatus(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  std::string dir = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
  auto names = std::make_shared<std::vector<std::string>>();
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array list = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) names->push_back(list.Get(i).ToString().Utf8Value());
  }
  auto li = std::make_shared<struct loop_info64>();
  auto files = std::make_shared<std::vector<std::pair<bool, std::string>>>(names->size());
  return RunAsync(
      info.Env(), "LOOP_GET_STATUS64",
      [path, dir, names, li, files]() {
        SysError err;
        int fd = OpenForIoctl(path, O_RDONLY, err);
        if (fd < 0) return err;
        SysError e = ioctl(fd, LOOP_GET_STATUS64, li.get()) < 0 ? IoctlFailure(fd, path, "LOOP_GET_STATUS64") : SysError::Ok();
        close(fd);
        if (e.errnum != 0) return e;
        for (size_t i = 0; i < names->size(); i++) (*files)[i].first = ReadAttribute(dir + "/" + (*names)[i], (*files)[i].second);
        return e;
      },
      [li, files](Napi::Env env) {
        Napi::Object o = StatusToJs(env, *li).As<Napi::Object>();
        Napi::Array out = Napi::Array::New(env, files->size());
        for (size_t i = 0; i < files->size(); i++) {
          const auto& f = (*files)[i];
          out.Set(static_cast<uint32_t>(i), f.first ? Napi::String::New(env, f.second) : env.Null());
        }
        o.Set("files", out);
        return o;
      });
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("loopIoctl", Napi::Function::New(env, LoopIoctl, "loopIoctl"));
  exports.Set("loopSetStatus", Napi::Function::New(env, LoopSetStatus, "loopSetStatus"));
  exports.Set("loopGetStatus", Napi::Function::New(env, LoopGetStatus, "loopGetStatus"));
  exports.Set("loopAttach", Napi::Function::New(env, LoopAttach, "loopAttach"));
  exports.Set("loopPathIoctl", Napi::Function::New(env, LoopPathIoctl, "loopPathIoctl"));
  exports.Set("loopPathStatus", Napi::Function::New(env, LoopPathStatus, "loopPathStatus"));
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("LO_FLAGS_READ_ONLY", Napi::Number::New(env, LO_FLAGS_READ_ONLY));
  flags.Set("LO_FLAGS_AUTOCLEAR", Napi::Number::New(env, LO_FLAGS_AUTOCLEAR));
  flags.Set("LO_FLAGS_PARTSCAN", Napi::Number::New(env, LO_FLAGS_PARTSCAN));
  flags.Set("LO_FLAGS_DIRECT_IO", Napi::Number::New(env, LO_FLAGS_DIRECT_IO));
  exports.Set("loopFlags", flags);
}

}  // namespace devmapper
