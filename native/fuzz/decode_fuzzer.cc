// libFuzzer target for the decoders of kernel replies (native/dm_decode.cc).
// Input: byte 0 picks the decoder, bytes 1-4 are the target count (for
// DecodeTargets), the rest is the reply's data area, copied into a heap
// buffer of exactly its size so that AddressSanitizer sees any read past it.
//
// Built with -DSEED_MAIN instead, this file writes a seed corpus of valid
// replies of each kind into the directory given as argv[1].
#include <linux/dm-ioctl.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../dm_decode.h"

using namespace devmapper;

namespace {

void Decode(const uint8_t* bytes, size_t size) {
  if (size < 5) return;
  uint8_t which = bytes[0] % 5;
  uint32_t count;
  std::memcpy(&count, bytes + 1, 4);
  size_t len = size - 5;
  std::unique_ptr<char[]> data(new char[len ? len : 1]);
  if (len) std::memcpy(data.get(), bytes + 5, len);
  std::string err;
  switch (which) {
    case 0: {
      std::vector<NameEntry> out;
      DecodeNameList(data.get(), len, out, err);
      break;
    }
    case 1: {
      std::vector<VersionEntry> out;
      DecodeVersions(data.get(), len, out, err);
      break;
    }
    case 2: {
      std::vector<TargetEntry> out;
      DecodeTargets(data.get(), len, count, out, err);
      break;
    }
    case 3: {
      std::vector<uint64_t> out;
      DecodeDeps(data.get(), len, out, err);
      break;
    }
    case 4: {
      std::string out;
      ReadCString(data.get(), len, out);
      break;
    }
  }
}

}  // namespace

#ifndef SEED_MAIN
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Decode(data, size);
  return 0;
}
#else
namespace {

void Put(std::vector<char>& b, const void* p, size_t n) { b.insert(b.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n); }
void Pad8(std::vector<char>& b, size_t from) {
  while ((b.size() - from) % 8) b.push_back(0);
}

void Write(const std::string& dir, const std::string& name, uint8_t which, uint32_t count, const std::vector<char>& data) {
  std::vector<char> file{static_cast<char>(which)};
  Put(file, &count, 4);
  file.insert(file.end(), data.begin(), data.end());
  FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (!f) {
    std::perror(name.c_str());
    std::exit(1);
  }
  std::fwrite(file.data(), 1, file.size(), f);
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: seeds DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  // Name list: two devices, the first with event_nr + uuid, as kernels >= 4.46 send.
  std::vector<char> names;
  const char* devs[] = {"pool", "thin-1"};
  for (int i = 0; i < 2; i++) {
    size_t start = names.size();
    uint64_t dev = (253ull << 8) | static_cast<uint64_t>(i);
    uint32_t next = 0;
    Put(names, &dev, 8);
    Put(names, &next, 4);
    Put(names, devs[i], std::strlen(devs[i]) + 1);
    Pad8(names, start);
    uint32_t ev = 7, flags = i == 0 ? DM_NAME_LIST_FLAG_HAS_UUID : DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID;
    Put(names, &ev, 4);
    Put(names, &flags, 4);
    if (i == 0) {
      Put(names, "LVM-abc", 8);
      Pad8(names, start);
    }
    if (i == 0) {
      uint32_t n = static_cast<uint32_t>(names.size() - start);
      std::memcpy(names.data() + start + 8, &n, 4);
    }
  }
  Write(dir, "names", 0, 0, names);
  // Versions: two targets.
  std::vector<char> versions;
  const char* targets[] = {"thin-pool", "zero"};
  for (int i = 0; i < 2; i++) {
    size_t start = versions.size();
    uint32_t next = 0, v[3] = {1, 22, 0};
    Put(versions, &next, 4);
    Put(versions, v, 12);
    Put(versions, targets[i], std::strlen(targets[i]) + 1);
    Pad8(versions, start);
    if (i == 0) {
      uint32_t n = static_cast<uint32_t>(versions.size() - start);
      std::memcpy(versions.data() + start, &n, 4);
    }
  }
  Write(dir, "versions", 1, 0, versions);
  // Target specs: two, `next` counted from the data start.
  std::vector<char> specs;
  const char* params[] = {"0 1/512 0/1024 - rw discard_passdown queue_if_no_space - 1024", ""};
  for (int i = 0; i < 2; i++) {
    size_t start = specs.size();
    struct dm_target_spec t;
    std::memset(&t, 0, sizeof t);
    t.sector_start = static_cast<uint64_t>(i) * 2048;
    t.length = 2048;
    std::strcpy(t.target_type, i == 0 ? "thin-pool" : "zero");
    Put(specs, &t, sizeof t);
    Put(specs, params[i], std::strlen(params[i]) + 1);
    Pad8(specs, start);
    uint32_t n = static_cast<uint32_t>(specs.size());
    if (i == 0) std::memcpy(specs.data() + start + offsetof(struct dm_target_spec, next), &n, 4);
  }
  Write(dir, "targets", 2, 2, specs);
  // Deps: two devices.
  std::vector<char> deps;
  uint32_t count = 2, pad = 0;
  uint64_t d[2] = {(7ull << 8) | 0, (7ull << 8) | 1};
  Put(deps, &count, 4);
  Put(deps, &pad, 4);
  Put(deps, d, 16);
  Write(dir, "deps", 3, 0, deps);
  Write(dir, "cstring", 4, 0, std::vector<char>{'a', 'b', '\0'});
  return 0;
}
#endif
