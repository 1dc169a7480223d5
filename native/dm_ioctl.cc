// Device-mapper ioctls: pack struct dm_ioctl (+ target specs, messages, names),
// issue it, grow the buffer while the kernel sets DM_BUFFER_FULL_FLAG, decode
// the reply. One entry point, dmIoctl(fd, command, request) -> Promise<reply>.
#include <linux/dm-ioctl.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "async.h"
#include "dm_decode.h"

namespace devmapper {

namespace {

enum class Reply { None, Names, Versions, Targets, Deps, Message };

struct Command {
  const char* name;
  unsigned long request;
  Reply reply;
  bool retryOnFull;  // safe to re-issue with a bigger buffer (no side effect)
};

const Command kCommands[] = {
    {"DM_VERSION", DM_VERSION, Reply::None, false},
    {"DM_REMOVE_ALL", DM_REMOVE_ALL, Reply::None, false},
    {"DM_LIST_DEVICES", DM_LIST_DEVICES, Reply::Names, true},
    {"DM_DEV_CREATE", DM_DEV_CREATE, Reply::None, false},
    {"DM_DEV_REMOVE", DM_DEV_REMOVE, Reply::None, false},
    {"DM_DEV_RENAME", DM_DEV_RENAME, Reply::None, false},
    {"DM_DEV_SUSPEND", DM_DEV_SUSPEND, Reply::None, false},
    {"DM_DEV_STATUS", DM_DEV_STATUS, Reply::None, false},
    {"DM_DEV_WAIT", DM_DEV_WAIT, Reply::Targets, true},
    {"DM_TABLE_LOAD", DM_TABLE_LOAD, Reply::None, false},
    {"DM_TABLE_CLEAR", DM_TABLE_CLEAR, Reply::None, false},
    {"DM_TABLE_DEPS", DM_TABLE_DEPS, Reply::Deps, true},
    {"DM_TABLE_STATUS", DM_TABLE_STATUS, Reply::Targets, true},
    {"DM_LIST_VERSIONS", DM_LIST_VERSIONS, Reply::Versions, true},
    {"DM_TARGET_MSG", DM_TARGET_MSG, Reply::Message, false},
    {"DM_DEV_SET_GEOMETRY", DM_DEV_SET_GEOMETRY, Reply::None, false},
    {"DM_DEV_ARM_POLL", DM_DEV_ARM_POLL, Reply::None, false},
    {"DM_GET_TARGET_VERSION", DM_GET_TARGET_VERSION, Reply::Versions, true},
};

constexpr size_t kHeader = (sizeof(struct dm_ioctl) + 7) & ~static_cast<size_t>(7);
constexpr size_t kMaxBuffer = 256u << 20;  // a reply this large means something is wrong

struct TargetIn {
  uint64_t start, length;
  std::string type, params;
};

struct Request {
  const Command* cmd = nullptr;
  int fd = -1;
  std::string name, uuid;
  uint32_t flags = 0, eventNr = 0;
  uint64_t dev = 0;
  std::vector<TargetIn> targets;
  bool hasPayload = false;  // DEV_RENAME / DEV_SET_GEOMETRY: one string
  std::string payload;
  bool hasMessage = false;  // TARGET_MSG
  uint64_t sector = 0;
  std::string message;
  size_t bufferSize = 16 * 1024;
};

struct Result {
  struct dm_ioctl header;
  size_t bufferSize = 0;
  unsigned growths = 0;
  std::vector<NameEntry> names;
  std::vector<VersionEntry> versions;
  std::vector<TargetEntry> targets;
  std::vector<uint64_t> deps;
  bool hasMessage = false;
  std::string message;
};

size_t Align8(size_t n) { return (n + 7) & ~static_cast<size_t>(7); }

// Size of the input payload that follows the header.
size_t PayloadSize(const Request& r) {
  size_t n = 0;
  for (const auto& t : r.targets) n += Align8(sizeof(struct dm_target_spec) + t.params.size() + 1);
  if (r.hasPayload) n += Align8(r.payload.size() + 1);
  if (r.hasMessage) n += Align8(sizeof(struct dm_target_msg) + r.message.size() + 1);
  return n;
}

// Pack the request into the first `size` bytes of buf. Only what the request
// occupies is cleared (the kernel reads no further; the reply says how much
// it wrote), not the whole 16 KiB per call.
void Pack(const Request& r, std::vector<char>& buf, size_t size) {
  std::fill(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(kHeader + PayloadSize(r)), 0);
  auto* io = reinterpret_cast<struct dm_ioctl*>(buf.data());
  io->version[0] = DM_VERSION_MAJOR;  // kernel accepts any minor <= its own
  io->version[1] = 0;
  io->version[2] = 0;
  io->data_size = static_cast<uint32_t>(size);
  io->data_start = static_cast<uint32_t>(kHeader);
  io->flags = r.flags;
  io->event_nr = r.eventNr;
  io->dev = r.dev;
  std::memcpy(io->name, r.name.data(), std::min(r.name.size(), sizeof io->name - 1));
  std::memcpy(io->uuid, r.uuid.data(), std::min(r.uuid.size(), sizeof io->uuid - 1));
  char* p = buf.data() + kHeader;
  if (!r.targets.empty()) {
    io->target_count = static_cast<uint32_t>(r.targets.size());
    for (const auto& t : r.targets) {
      auto* spec = reinterpret_cast<struct dm_target_spec*>(p);
      size_t len = Align8(sizeof *spec + t.params.size() + 1);
      spec->sector_start = t.start;
      spec->length = t.length;
      spec->next = static_cast<uint32_t>(len);  // on input: relative to this spec
      std::memcpy(spec->target_type, t.type.data(), std::min(t.type.size(), sizeof spec->target_type - 1));
      std::memcpy(p + sizeof *spec, t.params.data(), t.params.size());
      p += len;
    }
  }
  if (r.hasPayload) std::memcpy(p, r.payload.data(), r.payload.size());
  if (r.hasMessage) {
    auto* msg = reinterpret_cast<struct dm_target_msg*>(p);
    msg->sector = r.sector;
    std::memcpy(p + sizeof *msg, r.message.data(), r.message.size());
  }
}

SysError Decode(const Request& r, const std::vector<char>& buf, size_t size, Result& out) {
  const struct dm_ioctl& h = out.header;
  if (r.cmd->reply == Reply::None) return SysError::Ok();
  if (h.data_start > size || h.data_size > size) return {EPROTO, "ioctl", r.cmd->name, "reply sizes outside the buffer"};
  // The kernel resets data_size to the bare header before each command and
  // sets it past data_start only when it wrote data: otherwise there is none.
  const char* data = buf.data() + h.data_start;
  size_t len = h.data_size > h.data_start ? h.data_size - h.data_start : 0;
  std::string err;
  bool ok = true;
  switch (r.cmd->reply) {
    case Reply::None: break;
    case Reply::Names: ok = DecodeNameList(data, len, out.names, err); break;
    case Reply::Versions: ok = DecodeVersions(data, len, out.versions, err); break;
    case Reply::Targets: ok = DecodeTargets(data, len, h.target_count, out.targets, err); break;
    case Reply::Deps: ok = DecodeDeps(data, len, out.deps, err); break;
    case Reply::Message:
      if (h.flags & DM_DATA_OUT_FLAG) {
        out.hasMessage = true;
        ok = ReadCString(data, len, out.message);
        if (!ok) err = "message reply unterminated";
      }
      break;
  }
  if (!ok) return {EPROTO, "ioctl", r.cmd->name, err};
  return SysError::Ok();
}

// The ioctl buffer: one per thread, kept from call to call (no allocation per
// call); a buffer grown past kKeptBuffer for a large reply is let go after it.
constexpr size_t kKeptBuffer = 1u << 20;
std::vector<char>& ThreadBuffer() {
  thread_local std::vector<char> buf;
  return buf;
}

struct ReleaseIfLarge {
  std::vector<char>& buf;
  ~ReleaseIfLarge() {
    if (buf.size() > kKeptBuffer) std::vector<char>().swap(buf);
  }
};

SysError Execute(const Request& r, Result& out) {
  size_t need = kHeader + PayloadSize(r);
  size_t size = std::max(need, std::max(r.bufferSize, kHeader + 8));
  std::vector<char>& buf = ThreadBuffer();
  ReleaseIfLarge release{buf};
  for (;;) {
    if (buf.size() < size) buf.resize(size);
    Pack(r, buf, size);
    if (ioctl(r.fd, r.cmd->request, buf.data()) < 0) {
      int e = errno;
      std::memcpy(&out.header, buf.data(), sizeof out.header);
      return SysError::Errno(e, "ioctl", r.cmd->name);
    }
    std::memcpy(&out.header, buf.data(), sizeof out.header);
    if (!(out.header.flags & DM_BUFFER_FULL_FLAG)) break;
    if (!r.cmd->retryOnFull) return {ENOBUFS, "ioctl", r.cmd->name, "the reply did not fit in " + std::to_string(size) + " bytes"};
    if (size >= kMaxBuffer) return {ENOBUFS, "ioctl", r.cmd->name, "reply larger than the buffer cap"};
    size = std::min(size * 2, kMaxBuffer);
    out.growths++;
  }
  out.bufferSize = size;
  return Decode(r, buf, size, out);
}

Napi::Object DevObject(Napi::Env env, uint64_t dev) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("major", Napi::Number::New(env, major(dev)));
  o.Set("minor", Napi::Number::New(env, minor(dev)));
  return o;
}

std::string FixedString(const char* s, size_t cap) { return std::string(s, strnlen(s, cap)); }

Napi::Value ToJs(Napi::Env env, const Request& r, const Result& res) {
  const struct dm_ioctl& h = res.header;
  Napi::Object o = Napi::Object::New(env);
  Napi::Array v = Napi::Array::New(env, 3);
  for (uint32_t i = 0; i < 3; i++) v.Set(i, Napi::Number::New(env, h.version[i]));
  o.Set("version", v);
  o.Set("flags", Napi::Number::New(env, h.flags));
  o.Set("eventNr", Napi::Number::New(env, h.event_nr));
  o.Set("openCount", Napi::Number::New(env, h.open_count));
  o.Set("targetCount", Napi::Number::New(env, h.target_count));
  o.Set("dev", DevObject(env, h.dev));
  o.Set("name", Napi::String::New(env, FixedString(h.name, sizeof h.name)));
  o.Set("uuid", Napi::String::New(env, FixedString(h.uuid, sizeof h.uuid)));
  o.Set("bufferSize", Napi::Number::New(env, static_cast<double>(res.bufferSize)));
  o.Set("growths", Napi::Number::New(env, res.growths));
  switch (r.cmd->reply) {
    case Reply::None: break;
    case Reply::Names: {
      Napi::Array a = Napi::Array::New(env, res.names.size());
      for (uint32_t i = 0; i < res.names.size(); i++) {
        const NameEntry& e = res.names[i];
        Napi::Object n = DevObject(env, e.dev);
        n.Set("name", Napi::String::New(env, e.name));
        if (e.hasEventNr) n.Set("eventNr", Napi::Number::New(env, e.eventNr));
        if (e.hasUuid) n.Set("uuid", Napi::String::New(env, e.uuid));
        a.Set(i, n);
      }
      o.Set("names", a);
      break;
    }
    case Reply::Versions: {
      Napi::Array a = Napi::Array::New(env, res.versions.size());
      for (uint32_t i = 0; i < res.versions.size(); i++) {
        Napi::Object n = Napi::Object::New(env);
        n.Set("name", Napi::String::New(env, res.versions[i].name));
        Napi::Array ver = Napi::Array::New(env, 3);
        for (uint32_t j = 0; j < 3; j++) ver.Set(j, Napi::Number::New(env, res.versions[i].version[j]));
        n.Set("version", ver);
        a.Set(i, n);
      }
      o.Set("versions", a);
      break;
    }
    case Reply::Targets: {
      Napi::Array a = Napi::Array::New(env, res.targets.size());
      for (uint32_t i = 0; i < res.targets.size(); i++) {
        const TargetEntry& t = res.targets[i];
        Napi::Object n = Napi::Object::New(env);
        n.Set("start", Napi::Number::New(env, static_cast<double>(t.start)));
        n.Set("length", Napi::Number::New(env, static_cast<double>(t.length)));
        n.Set("type", Napi::String::New(env, t.type));
        n.Set("params", Napi::String::New(env, t.params));
        a.Set(i, n);
      }
      o.Set("targets", a);
      break;
    }
    case Reply::Deps: {
      Napi::Array a = Napi::Array::New(env, res.deps.size());
      for (uint32_t i = 0; i < res.deps.size(); i++) a.Set(i, DevObject(env, res.deps[i]));
      o.Set("deps", a);
      break;
    }
    case Reply::Message:
      if (res.hasMessage) o.Set("message", Napi::String::New(env, res.message));
      break;
  }
  return o;
}

// A request from JS: command name and { name?, uuid?, flags?, eventNr?,
// dev?: {major, minor}, targets?: [{start, length, type, params}], payload?,
// message?, sector?, bufferSize? }.
std::shared_ptr<Request> ParseRequest(Napi::Env env, int fd, const std::string& cmd, Napi::Object o) {
  auto req = std::make_shared<Request>();
  req->fd = fd;
  for (const auto& c : kCommands)
    if (cmd == c.name) req->cmd = &c;
  if (!req->cmd) throw Napi::TypeError::New(env, "unknown device-mapper command " + cmd);
  req->name = OptString(o, "name");
  req->uuid = OptString(o, "uuid");
  req->flags = static_cast<uint32_t>(OptNumber(o, "flags"));
  req->eventNr = static_cast<uint32_t>(OptNumber(o, "eventNr"));
  if (o.Get("dev").IsObject()) {
    Napi::Object d = o.Get("dev").As<Napi::Object>();
    req->dev = makedev(static_cast<unsigned>(OptNumber(d, "major")), static_cast<unsigned>(OptNumber(d, "minor")));
  }
  if (o.Get("targets").IsArray()) {
    Napi::Array a = o.Get("targets").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object t = a.Get(i).As<Napi::Object>();
      req->targets.push_back({static_cast<uint64_t>(OptNumber(t, "start")), static_cast<uint64_t>(OptNumber(t, "length")),
                              OptString(t, "type"), OptString(t, "params")});
    }
  }
  if (o.Get("payload").IsString()) {
    req->hasPayload = true;
    req->payload = OptString(o, "payload");
  }
  if (o.Get("message").IsString()) {
    req->hasMessage = true;
    req->message = OptString(o, "message");
    req->sector = static_cast<uint64_t>(OptNumber(o, "sector"));
  }
  double bs = OptNumber(o, "bufferSize", 0);
  if (bs > 0) req->bufferSize = std::min(static_cast<size_t>(bs), kMaxBuffer);
  return req;
}

// dmIoctl(fd, command, request) -> reply
Napi::Value DmIoctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = ParseRequest(env, ArgInt(info, 0), ArgString(info, 1), ArgObject(info, 2));
  auto res = std::make_shared<Result>();
  auto work = [req, res]() { return Execute(*req, *res); };
  auto done = [req, res](Napi::Env env) { return ToJs(env, *req, *res); };
  // DM_DEV_WAIT sleeps until the device's next event: not on one of the executor's threads.
  if (req->cmd->request == DM_DEV_WAIT) return RunWaiting(env, req->cmd->name, work, done);
  return RunAsync(env, req->cmd->name, work, done);
}

// dmIoctlSeq(fd, [[command, request], ...]) -> [reply, ...]: the ioctls in
// order, in one threadpool trip (a trip costs more than most ioctls). Stops at
// the first failure, which carries `step`, its index, and `replies`, those of
// the steps before it: what to undo is the caller's business.
Napi::Value DmIoctlSeq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "dmIoctlSeq(fd, steps)");
  Napi::Array steps = info[1].As<Napi::Array>();
  auto reqs = std::make_shared<std::vector<std::shared_ptr<Request>>>();
  for (uint32_t i = 0; i < steps.Length(); i++) {
    Napi::Value v = steps.Get(i);
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(env, "each step is [command, request]");
    Napi::Array step = v.As<Napi::Array>();
    if (!step.Get(0u).IsString() || !step.Get(1u).IsObject()) throw Napi::TypeError::New(env, "each step is [command, request]");
    reqs->push_back(ParseRequest(env, fd, step.Get(0u).As<Napi::String>().Utf8Value(), step.Get(1u).As<Napi::Object>()));
  }
  auto results = std::make_shared<std::vector<Result>>(reqs->size());
  auto failure = std::make_shared<SysError>();
  return RunAsync(
      env, "dmIoctlSeq",
      [reqs, results, failure]() {
        for (size_t i = 0; i < reqs->size(); i++) {
          SysError e = Execute(*(*reqs)[i], (*results)[i]);
          if (e.errnum != 0) {
            e.step = static_cast<int>(i);
            *failure = e;
            break;
          }
        }
        return SysError::Ok();  // a failure is reported by the JS side, with the replies before it
      },
      [reqs, results, failure](Napi::Env env) -> Napi::Value {
        size_t done = failure->errnum != 0 ? static_cast<size_t>(failure->step) : reqs->size();
        Napi::Array out = Napi::Array::New(env, done);
        for (size_t i = 0; i < done; i++) out.Set(static_cast<uint32_t>(i), ToJs(env, *(*reqs)[i], (*results)[i]));
        if (failure->errnum == 0) return out;
        Napi::Object err = MakeSysError(env, *failure).As<Napi::Object>();
        err.Set("replies", out);
        throw Napi::Error(env, err);
      });
}

}  // namespace

void InitDm(Napi::Env env, Napi::Object exports) {
  exports.Set("dmIoctl", Napi::Function::New(env, DmIoctl, "dmIoctl"));
  exports.Set("dmIoctlSeq", Napi::Function::New(env, DmIoctlSeq, "dmIoctlSeq"));
  Napi::Object flags = Napi::Object::New(env);
#define FLAG(n) flags.Set(#n, Napi::Number::New(env, n))
  FLAG(DM_READONLY_FLAG);
  FLAG(DM_SUSPEND_FLAG);
  FLAG(DM_PERSISTENT_DEV_FLAG);
  FLAG(DM_STATUS_TABLE_FLAG);
  FLAG(DM_ACTIVE_PRESENT_FLAG);
  FLAG(DM_INACTIVE_PRESENT_FLAG);
  FLAG(DM_BUFFER_FULL_FLAG);
  FLAG(DM_SKIP_BDGET_FLAG);
  FLAG(DM_SKIP_LOCKFS_FLAG);
  FLAG(DM_NOFLUSH_FLAG);
  FLAG(DM_QUERY_INACTIVE_TABLE_FLAG);
  FLAG(DM_UEVENT_GENERATED_FLAG);
  FLAG(DM_UUID_FLAG);
  FLAG(DM_SECURE_DATA_FLAG);
  FLAG(DM_DATA_OUT_FLAG);
  FLAG(DM_DEFERRED_REMOVE);
  FLAG(DM_INTERNAL_SUSPEND_FLAG);
#undef FLAG
  exports.Set("dmFlags", flags);
}

}  // namespace devmapper
