// Shared mappings as external ArrayBuffers.
//
// Lifetime: each mapping has a heap `Mapping` record, registered by its address so munmap() and
// mprotect() can recognise buffers that came from mmap(). Two paths end a mapping:
//  - munmap(buf): mark the record unmapped and unregister it, detach the ArrayBuffer (every view
//    drops to length 0, so JS can never touch the unmapped range), then munmap.
//  - the ArrayBuffer's finalizer (GC, or environment teardown): munmap only if munmap() has not
//    already done it, then free the record. Node may run this finalizer synchronously inside the
//    detach or later from an immediate, so munmap() does not touch the record after detaching.
//  - a failed napi_create_external_arraybuffer (e.g. a length above what this Node.js can hold
//    in an ArrayBuffer): Node runs the finalizer itself, synchronously inside the failing call
//    or, in some versions, later from an immediate, or not at all. While `creating` the
//    finalizer unmaps but leaves the record to mmap(), which then knows what already happened.
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
  bool unmapped;   // guarded by g_mutex
  bool creating;   // guarded by g_mutex: mmap() still owns the record
  bool finalized;  // guarded by g_mutex: the finalizer ran while `creating`
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
  bool owned;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    doUnmap = !m->unmapped;
    if (doUnmap) {
      m->unmapped = true;
      auto it = g_mappings.find(reinterpret_cast<uintptr_t>(m->addr));
      if (it != g_mappings.end() && it->second == m) g_mappings.erase(it);
    }
    owned = !m->creating;
    m->finalized = true;
  }
  if (doUnmap) munmap(m->addr, m->len);
  if (owned) delete m;
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

// napi could not wrap a fresh mapping in an ArrayBuffer. Node usually left an exception
// (ERR_BUFFER_TOO_LARGE for lengths above buffer.constants.MAX_LENGTH); rethrow it under mmap's
// name — a RangeError when the length was the problem — with its code and the original as
// `cause`.
void ThrowWrapFailure(Napi::Env env, int64_t length) {
  std::string msg =
      "mmap: cannot wrap " + std::to_string(length) + " bytes in an ArrayBuffer in this Node.js";
  bool range = false;
  Napi::Value cause, code;
  if (env.IsExceptionPending()) {
    Napi::Error orig = env.GetAndClearPendingException();
    cause = orig.Value();
    if (cause.IsObject()) {
      Napi::Object o = cause.As<Napi::Object>();
      Napi::Value name = o.Get("name");
      Napi::Value message = o.Get("message");
      code = o.Get("code");
      // Node 20 reports the length limit as a plain Error with code ERR_BUFFER_TOO_LARGE.
      range = (name.IsString() && name.As<Napi::String>().Utf8Value() == "RangeError") ||
              (code.IsString() && code.As<Napi::String>().Utf8Value() == "ERR_BUFFER_TOO_LARGE");
      if (message.IsString()) msg += " (" + message.As<Napi::String>().Utf8Value() + ")";
    }
  }
  Napi::Error e = range ? Napi::RangeError::New(env, msg) : Napi::Error::New(env, msg);
  if (!cause.IsEmpty()) e.Value().Set("cause", cause);
  if (!code.IsEmpty() && code.IsString()) e.Value().Set("code", code);
  e.ThrowAsJavaScriptException();
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
  const size_t len = static_cast<size_t>(length);
  Mapping* m = new Mapping{addr, len, false, true, false};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_mappings[reinterpret_cast<uintptr_t>(addr)] = m;
  }
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, addr, len, FinalizeMapping, m, &ab);
  bool doUnmap = false;
  bool finalized;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    m->creating = false;
    finalized = m->finalized;
    if (st != napi_ok && !m->unmapped) {
      m->unmapped = true;
      auto it = g_mappings.find(reinterpret_cast<uintptr_t>(addr));
      if (it != g_mappings.end() && it->second == m) g_mappings.erase(it);
      doUnmap = true;
    }
  }
  if (st == napi_ok) return Napi::Value(env, ab);
  // From here `m` may only be freed if its finalizer already ran; otherwise a finalizer Node
  // deferred will free it (if Node never calls it, the small record leaks; the mapping does not).
  if (doUnmap) munmap(addr, len);
  if (finalized) delete m;
  ThrowWrapFailure(env, length);
  return env.Undefined();
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
