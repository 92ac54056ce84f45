// Shared helpers for the vshm addon: syscall errors (errors.cc), strict argument checks
// (args.cc) and the per-module init functions. Every exported function validates its JS
// arguments first and throws a TypeError/RangeError naming the function and the argument; a
// failing syscall throws an Error carrying code/errno/syscall like Node's own errors.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace vshm {

// ---- errors.cc ---------------------------------------------------------------------------
// Symbolic name of a positive errno ("EBADF"); "E<num>" when unknown.
std::string ErrnoName(int err);
// Error("<syscall> failed: <CODE> (<strerror>)") with code, errno (positive), syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);
// Throws ErrnoError(env, err, syscall).
void ThrowErrno(Napi::Env env, int err, const char* syscall);
// Same for a negative libuv error code (on Linux, -errno).
void ThrowUvError(Napi::Env env, int uvErr, const char* syscall);
void ThrowTypeError(Napi::Env env, const std::string& msg);
void ThrowRangeError(Napi::Env env, const std::string& msg);

// ---- args.cc -----------------------------------------------------------------------------
// Each returns false after throwing a JS exception; the caller then returns immediately.
// A safe integer in [min, max].
bool ArgInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
            int64_t min, int64_t max, int64_t* out);
// A file descriptor: any int32 (negative and closed fds are left for the kernel to reject
// with EBADF, so callers get a SyscallError rather than a TypeError).
bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* fn, int* out);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
             bool* out);
// A string without embedded NULs (it goes to a C API).
bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
               std::string* out);

constexpr int64_t kMaxSafeInteger = 9007199254740991LL;  // 2^53 - 1

// ---- module init -------------------------------------------------------------------------
void InitMemory(Napi::Env env, Napi::Object exports);
void InitMmap(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports);
void InitSocket(Napi::Env env, Napi::Object exports);
void InitFileio(Napi::Env env, Napi::Object exports);

}  // namespace vshm
