// Syscalls Node has no binding for: mknod, mount, umount2, flock, and the
// block-device size / discard ioctls; and a batched read of many small
// files. Each runs off the JS thread.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "async.h"

namespace devmapper {

namespace {

Napi::Value Undefined(Napi::Env env) { return env.Undefined(); }

// mknod(path, mode, major, minor): mode includes the file type (S_IFBLK...).
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  mode_t mode = static_cast<mode_t>(ArgInt(info, 1));
  dev_t dev = makedev(static_cast<unsigned>(ArgInt(info, 2)), static_cast<unsigned>(ArgInt(info, 3)));
  return RunAsync(
      info.Env(), "mknod",
      [path, mode, dev]() { return ::mknod(path.c_str(), mode, dev) < 0 ? SysError::Errno(errno, "mknod", path) : SysError::Ok(); },
      Undefined);
}

// mknodSync(path, mode, major, minor): on the JS thread, for /dev, which is
// in memory (devtmpfs/tmpfs): the call is quicker than a threadpool trip.
// Throws the SysError-shaped Error on failure.
Napi::Value MknodSync(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  mode_t mode = static_cast<mode_t>(ArgInt(info, 1));
  dev_t dev = makedev(static_cast<unsigned>(ArgInt(info, 2)), static_cast<unsigned>(ArgInt(info, 3)));
  if (::mknod(path.c_str(), mode, dev) < 0) throw Napi::Error(info.Env(), MakeSysError(info.Env(), SysError::Errno(errno, "mknod", path)));
  return info.Env().Undefined();
}

// mount(source, target, fstype, flags, data)
Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source = ArgString(info, 0), target = ArgString(info, 1), fstype = ArgString(info, 2);
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  std::string data = ArgString(info, 4);
  return RunAsync(
      info.Env(), "mount",
      [=]() {
        int rc = ::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
                         data.empty() ? nullptr : data.c_str());
        return rc < 0 ? SysError::Errno(errno, "mount", target) : SysError::Ok();
      },
      Undefined);
}

// umount2(target, flags)
Napi::Value Umount(const Napi::CallbackInfo& info) {
  std::string target = ArgString(info, 0);
  int flags = ArgInt(info, 1);
  return RunAsync(
      info.Env(), "umount2",
      [=]() { return ::umount2(target.c_str(), flags) < 0 ? SysError::Errno(errno, "umount2", target) : SysError::Ok(); }, Undefined);
}

// flock(fd, operation)
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0), op = ArgInt(info, 1);
  return RunWaiting(  // LOCK_EX without LOCK_NB waits for the holder, for as long as it takes
      info.Env(), "flock", [=]() { return ::flock(fd, op) < 0 ? SysError::Errno(errno, "flock", "") : SysError::Ok(); }, Undefined);
}

// blkGetSize64(fd) -> bytes
Napi::Value BlkGetSize64(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  auto size = std::make_shared<uint64_t>(0);
  return RunAsync(
      info.Env(), "BLKGETSIZE64",
      [fd, size]() { return ioctl(fd, BLKGETSIZE64, size.get()) < 0 ? SysError::Errno(errno, "ioctl", "BLKGETSIZE64") : SysError::Ok(); },
      [size](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*size)); });
}

// blkDiscard(fd, offset, length)
Napi::Value BlkDiscard(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0);
  uint64_t range[2] = {static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                       static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value())};
  return RunAsync(
      info.Env(), "BLKDISCARD",
      [fd, range]() {
        uint64_t r[2] = {range[0], range[1]};
        return ioctl(fd, BLKDISCARD, r) < 0 ? SysError::Errno(errno, "ioctl", "BLKDISCARD") : SysError::Ok();
      },
      Undefined);
}

// readFiles(dir, names) -> Array<string | null>: the files' contents (null
// for one that is gone), read in one threadpool trip. Opening a device set
// reads one small record file per device; a trip per file costs more than
// the reads themselves.
Napi::Value ReadFiles(const Napi::CallbackInfo& info) {
  std::string dir = ArgString(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "readFiles(dir, names)");
  Napi::Array list = info[1].As<Napi::Array>();
  auto names = std::make_shared<std::vector<std::string>>();
  for (uint32_t i = 0; i < list.Length(); i++) names->push_back(list.Get(i).As<Napi::String>().Utf8Value());
  auto contents = std::make_shared<std::vector<std::pair<bool, std::string>>>(names->size());
  return RunAsync(
      info.Env(), "readFiles",
      [dir, names, contents]() {
        int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) return SysError::Errno(errno, "open", dir);
        char buf[65536];
        for (size_t i = 0; i < names->size(); i++) {
          const std::string& name = (*names)[i];
          int fd = openat(dfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
          if (fd < 0) {
            if (errno == ENOENT) continue;  // removed since the listing
            int e = errno;
            close(dfd);
            return SysError::Errno(e, "open", dir + "/" + name);
          }
          std::string& out = (*contents)[i].second;
          for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
              int e = errno;
              close(fd);
              close(dfd);
              return SysError::Errno(e, "read", dir + "/" + name);
            }
            out.append(buf, static_cast<size_t>(n));
            if (static_cast<size_t>(n) < sizeof buf) break;  // a short read of a regular file: its end
          }
          close(fd);
          (*contents)[i].first = true;
        }
        close(dfd);
        return SysError::Ok();
      },
      [contents](Napi::Env env) {
        Napi::Array out = Napi::Array::New(env, contents->size());
        for (size_t i = 0; i < contents->size(); i++) {
          const auto& c = (*contents)[i];
          out.Set(static_cast<uint32_t>(i), c.first ? Napi::String::New(env, c.second) : env.Null());
        }
        return out;
      });
}

}  // namespace

void InitSys(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("mknodSync", Napi::Function::New(env, MknodSync, "mknodSync"));
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount, "umount2"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("blkGetSize64", Napi::Function::New(env, BlkGetSize64, "blkGetSize64"));
  exports.Set("blkDiscard", Napi::Function::New(env, BlkDiscard, "blkDiscard"));
  exports.Set("readFiles", Napi::Function::New(env, ReadFiles, "readFiles"));
  Napi::Object c = Napi::Object::New(env);
#define C(n) c.Set(#n, Napi::Number::New(env, static_cast<double>(n)))
  C(S_IFBLK);
  C(S_IFCHR);
  C(LOCK_SH);
  C(LOCK_EX);
  C(LOCK_NB);
  C(LOCK_UN);
  C(MS_RDONLY);
  C(MS_NOSUID);
  C(MS_NODEV);
  C(MS_NOEXEC);
  C(MS_REMOUNT);
  C(MS_BIND);
  C(MS_SYNCHRONOUS);
  C(MS_DIRSYNC);
  C(MS_NOATIME);
  C(MS_NODIRATIME);
  C(MS_RELATIME);
  C(MS_STRICTATIME);
  C(MS_LAZYTIME);
  C(MS_MANDLOCK);
  C(MNT_FORCE);
  C(MNT_DETACH);
  C(UMOUNT_NOFOLLOW);
#undef C
  exports.Set("sysConstants", c);
}

}  // namespace devmapper
