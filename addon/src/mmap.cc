// Shared mappings as external ArrayBuffers.
//
// Lifetime: each mapping has a heap `Mapping` record, registered by its address so munmap() and
// mprotect() can recognise buffers that came from mmap(). Two paths end a mapping:
//  - munmap(buf): mark the record unmapped and unregister it, detach the ArrayBuffer (every view
//    drops to length 0, so JS can never touch the unmapped range), then munmap.
//  - the ArrayBuffer's finalizer (GC, or environment teardown): munmap only if munmap() has not
//    already done it, then free the record. Node may run this finalizer synchronously inside the
//    detach or later from an immediate, so munmap() does not touch the record after detaching.
// The registry is process-wide (worker threads share the address space), hence the mutex.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <mutex>
#include <unordered_map>

#include "common.h"

namespace vshm {

namespace {

struct Mapping {
  void* addr;
  size_t len;
  bool unmapped;  // guarded by g_mutex
};

std::mutex g_mutex;
std::unordered_map<uintptr_t, Mapping*> g_mappings;

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

void FinalizeMapping(napi_env /*env*/, void* /*data*/, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  bool doUnmap;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    doUnmap = !m->unmapped;
    if (doUnmap) {
      m->unmapped = true;
      auto it = g_mappings.find(reinterpret_cast<uintptr_t>(m->addr));
      if (it != g_mappings.end() && it->second == m) g_mappings.erase(it);
    }
  }
  if (doUnmap) munmap(m->addr, m->len);
  delete m;
}

// Looks up the registered mapping behind `buf` (argument `i`). Returns false after throwing:
// TypeError if it is not an ArrayBuffer, EINVAL if it is not a live mapping from mmap().
bool ArgMapping(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* syscall,
                Napi::ArrayBuffer* bufOut, void** addrOut, size_t* lenOut) {
  Napi::Value v = info[i];
  if (!v.IsArrayBuffer()) {
    ThrowTypeError(info.Env(), std::string(fn) + ": buf must be an ArrayBuffer returned by mmap()");
    return false;
  }
  Napi::ArrayBuffer buf = v.As<Napi::ArrayBuffer>();
  void* data = buf.Data();
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = data ? g_mappings.find(reinterpret_cast<uintptr_t>(data)) : g_mappings.end();
    if (it == g_mappings.end() || it->second->unmapped) {
      ThrowErrno(info.Env(), EINVAL, syscall);
      return false;
    }
    *addrOut = it->second->addr;
    *lenOut = it->second->len;
  }
  *bufOut = buf;
  return true;
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset, length, prot;
  if (!ArgFd(info, 0, "mmap", &fd) ||
      !ArgInt(info, 1, "mmap", "offset", 0, kMaxSafeInteger, &offset) ||
      !ArgInt(info, 2, "mmap", "length", 1, kMaxSafeInteger, &length) ||
      !ArgInt(info, 3, "mmap", "prot", 0, PROT_READ | PROT_WRITE, &prot)) {
    return env.Undefined();
  }
  if (static_cast<uint64_t>(offset) % PageSize() != 0) {
    ThrowErrno(env, EINVAL, "mmap");
    return env.Undefined();
  }
  void* addr = mmap(nullptr, static_cast<size_t>(length), static_cast<int>(prot), MAP_SHARED, fd,
                    static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap");
    return env.Undefined();
  }
  Mapping* m = new Mapping{addr, static_cast<size_t>(length), false};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_mappings[reinterpret_cast<uintptr_t>(addr)] = m;
  }
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, addr, m->len, FinalizeMapping, m, &ab);
  if (st != napi_ok) {
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      g_mappings.erase(reinterpret_cast<uintptr_t>(addr));
    }
    munmap(addr, m->len);
    delete m;
    if (!env.IsExceptionPending()) {
      Napi::Error::New(env, "mmap: napi_create_external_arraybuffer failed")
          .ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  return Napi::Value(env, ab);
}

Napi::Value Mprotect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buf;
  void* addr;
  size_t len;
  int64_t offset, length, prot;
  if (!ArgMapping(info, 0, "mprotect", "mprotect", &buf, &addr, &len) ||
      !ArgInt(info, 1, "mprotect", "offset", 0, kMaxSafeInteger, &offset) ||
      !ArgInt(info, 2, "mprotect", "length", 0, kMaxSafeInteger, &length) ||
      !ArgInt(info, 3, "mprotect", "prot", 0, PROT_READ | PROT_WRITE, &prot)) {
    return env.Undefined();
  }
  // Only ever change protection inside this mapping: offset page-aligned, range within it.
  uint64_t off = static_cast<uint64_t>(offset), n = static_cast<uint64_t>(length);
  if (off % PageSize() != 0 || off > len || n > len - off) {
    ThrowErrno(env, EINVAL, "mprotect");
    return env.Undefined();
  }
  if (n == 0) return env.Undefined();
  if (mprotect(static_cast<char*>(addr) + off, n, static_cast<int>(prot)) < 0) {
    ThrowErrno(env, errno, "mprotect");
  }
  return env.Undefined();
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) {
    ThrowTypeError(env, "munmap: buf must be an ArrayBuffer returned by mmap()");
    return env.Undefined();
  }
  Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
  void* data = buf.Data();
  void* addr;
  size_t len;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = data ? g_mappings.find(reinterpret_cast<uintptr_t>(data)) : g_mappings.end();
    if (it == g_mappings.end() || it->second->unmapped) {
      ThrowErrno(env, EINVAL, "munmap");
      return env.Undefined();
    }
    Mapping* m = it->second;
    m->unmapped = true;  // from here the finalizer only frees the record
    addr = m->addr;
    len = m->len;
    g_mappings.erase(it);
  }
  // Detach before unmapping: afterwards no view can reach the range. The finalizer may run (and
  // free the record) during this call, so only the copied addr/len are used below.
  napi_status st = napi_detach_arraybuffer(env, buf);
  if (st != napi_ok) {
    // Not detachable (should not happen for our external buffers). Leaving the memory mapped
    // is the only safe choice; the finalizer will not unmap it since it is marked unmapped, so
    // it leaks, which beats a use-after-unmap.
    if (!env.IsExceptionPending()) ThrowErrno(env, EINVAL, "munmap");
    return env.Undefined();
  }
  if (munmap(addr, len) < 0) ThrowErrno(env, errno, "munmap");
  return env.Undefined();
}

Napi::Value Fence(const Napi::CallbackInfo& info) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return info.Env().Undefined();
}

}  // namespace

void InitMmap(Napi::Env env, Napi::Object exports) {
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("mprotect", Napi::Function::New(env, Mprotect, "mprotect"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("fence", Napi::Function::New(env, Fence, "fence"));
}

}  // namespace vshm
