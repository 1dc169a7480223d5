#include "dm_decode.h"

#include <linux/dm-ioctl.h>

#include <cstring>

namespace devmapper {

namespace {
size_t Align8(size_t n) { return (n + 7) & ~static_cast<size_t>(7); }

template <typename T>
T Load(const char* p) {  // unaligned-safe read
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
}  // namespace

bool ReadCString(const char* data, size_t len, std::string& out) {
  const void* nul = std::memchr(data, '\0', len);
  if (!nul) return false;
  out.assign(data, static_cast<const char*>(nul) - data);
  return true;
}

bool DecodeNameList(const char* data, size_t len, std::vector<NameEntry>& out, std::string& err) {
  const size_t head = offsetof(struct dm_name_list, name);
  if (len < sizeof(uint64_t)) return true;     // no data at all: no devices
  if (Load<uint64_t>(data) == 0) return true;  // kernel marks "no devices" with dev == 0
  size_t off = 0;
  for (;;) {
    if (len - off < head) {
      err = "name list record truncated";
      return false;
    }
    const char* rec = data + off;
    NameEntry e;
    e.dev = Load<uint64_t>(rec + offsetof(struct dm_name_list, dev));
    uint32_t next = Load<uint32_t>(rec + offsetof(struct dm_name_list, next));
    size_t end = next ? static_cast<size_t>(next) : len - off;  // record extent
    if (next && (next < head || next > len - off)) {
      err = "name list next offset out of range";
      return false;
    }
    if (!ReadCString(rec + head, end - head, e.name)) {
      err = "name list name unterminated";
      return false;
    }
    // After the name, 8-aligned from the record start: event_nr, flags, uuid.
    size_t extra = Align8(head + e.name.size() + 1);
    if (extra + 8 <= end) {
      e.hasEventNr = true;
      e.eventNr = Load<uint32_t>(rec + extra);
      uint32_t flags = Load<uint32_t>(rec + extra + 4);
      if (flags & DM_NAME_LIST_FLAG_HAS_UUID) {
        size_t u = Align8(extra + 8);
        if (u > end || !ReadCString(rec + u, end - u, e.uuid)) {
          err = "name list uuid unterminated";
          return false;
        }
        e.hasUuid = true;
      }
    }
    out.push_back(std::move(e));
    if (!next) return true;
    off += next;
  }
}

bool DecodeVersions(const char* data, size_t len, std::vector<VersionEntry>& out, std::string& err) {
  const size_t head = offsetof(struct dm_target_versions, name);
  size_t off = 0;
  if (len == 0) return true;
  for (;;) {
    if (len - off < head) {
      err = "version record truncated";
      return false;
    }
    const char* rec = data + off;
    uint32_t next = Load<uint32_t>(rec);
    size_t end = next ? static_cast<size_t>(next) : len - off;
    if (next && (next < head || next > len - off)) {
      err = "version next offset out of range";
      return false;
    }
    VersionEntry e;
    for (int i = 0; i < 3; i++) e.version[i] = Load<uint32_t>(rec + offsetof(struct dm_target_versions, version) + 4 * i);
    if (!ReadCString(rec + head, end - head, e.name)) {
      err = "version name unterminated";
      return false;
    }
    out.push_back(std::move(e));
    if (!next) return true;
    off += next;
  }
}

bool DecodeTargets(const char* data, size_t len, uint32_t count, std::vector<TargetEntry>& out, std::string& err) {
  const size_t head = sizeof(struct dm_target_spec);
  size_t off = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (off > len || len - off < head) {
      err = "target spec truncated";
      return false;
    }
    const char* rec = data + off;
    TargetEntry t;
    t.start = Load<uint64_t>(rec + offsetof(struct dm_target_spec, sector_start));
    t.length = Load<uint64_t>(rec + offsetof(struct dm_target_spec, length));
    t.status = Load<int32_t>(rec + offsetof(struct dm_target_spec, status));
    uint32_t next = Load<uint32_t>(rec + offsetof(struct dm_target_spec, next));
    const char* type = rec + offsetof(struct dm_target_spec, target_type);
    t.type.assign(type, strnlen(type, DM_MAX_TYPE_NAME));
    if (!ReadCString(rec + head, len - off - head, t.params)) {
      err = "target params unterminated";
      return false;
    }
    out.push_back(std::move(t));
    if (i + 1 < count) {
      // `next` counts from the start of the data area; it must move forward.
      if (next <= off || next > len) {
        err = "target spec next offset out of range";
        return false;
      }
      off = next;
    }
  }
  return true;
}

bool DecodeDeps(const char* data, size_t len, std::vector<uint64_t>& out, std::string& err) {
  const size_t head = offsetof(struct dm_target_deps, dev);
  if (len < head) {
    err = "deps header truncated";
    return false;
  }
  uint32_t count = Load<uint32_t>(data);
  if (count > (len - head) / sizeof(uint64_t)) {
    err = "deps count exceeds reply";
    return false;
  }
  out.reserve(count);
  for (uint32_t i = 0; i < count; i++) out.push_back(Load<uint64_t>(data + head + 8 * i));
  return true;
}

}  // namespace devmapper
