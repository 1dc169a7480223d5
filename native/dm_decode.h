// Decoders for the variable-length parts of device-mapper ioctl replies.
// Pure functions over untrusted bytes: no N-API, no syscalls, so a fuzzer can
// link them on their own. Each returns false with a reason on malformed input.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace devmapper {

struct NameEntry {
  uint64_t dev = 0;
  std::string name;
  bool hasEventNr = false;
  uint32_t eventNr = 0;
  bool hasUuid = false;
  std::string uuid;
};

struct VersionEntry {
  std::string name;
  uint32_t version[3] = {0, 0, 0};
};

struct TargetEntry {
  uint64_t start = 0;
  uint64_t length = 0;
  int32_t status = 0;
  std::string type;
  std::string params;
};

// DM_LIST_DEVICES: struct dm_name_list records chained by relative `next`.
bool DecodeNameList(const char* data, size_t len, std::vector<NameEntry>& out, std::string& err);
// DM_LIST_VERSIONS / DM_GET_TARGET_VERSION: struct dm_target_versions records.
bool DecodeVersions(const char* data, size_t len, std::vector<VersionEntry>& out, std::string& err);
// DM_TABLE_STATUS / DM_DEV_WAIT: `count` dm_target_spec records whose `next`
// is an offset from the start of the data area.
bool DecodeTargets(const char* data, size_t len, uint32_t count, std::vector<TargetEntry>& out, std::string& err);
// DM_TABLE_DEPS: struct dm_target_deps.
bool DecodeDeps(const char* data, size_t len, std::vector<uint64_t>& out, std::string& err);
// A NUL-terminated string inside [data, data+len); false if unterminated.
bool ReadCString(const char* data, size_t len, std::string& out);

}  // namespace devmapper
