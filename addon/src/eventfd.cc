// eventfd doorbells. The counter is a u64 in the kernel; JS sees numbers, so reads clamp to
// 2^53 - 1 (a doorbell only cares about "non-zero") and writes accept safe integers only.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "common.h"

namespace vshm {

namespace {

Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t initval;
  bool nonBlocking;
  if (!ArgInt(info, 0, "eventfd", "initval", 0, UINT32_MAX, &initval) ||
      !ArgBool(info, 1, "eventfd", "nonBlocking", &nonBlocking)) {
    return env.Undefined();
  }
  int fd = eventfd(static_cast<unsigned>(initval), EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0));
  if (fd < 0) {
    ThrowErrno(env, errno, "eventfd");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t value;
  if (!ArgFd(info, 0, "eventfdWrite", &fd) ||
      !ArgInt(info, 1, "eventfdWrite", "value", 0, kMaxSafeInteger, &value)) {
    return env.Undefined();
  }
  uint64_t v = static_cast<uint64_t>(value);
  ssize_t r;
  do r = write(fd, &v, sizeof v);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "write");
    return env.Undefined();
  }
  if (r != sizeof v) {  // not an eventfd (e.g. a pipe taking a partial write)
    ThrowErrno(env, EINVAL, "write");
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "eventfdRead", &fd)) return env.Undefined();
  uint64_t v = 0;
  ssize_t r;
  do r = read(fd, &v, sizeof v);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    ThrowErrno(env, errno, "read");
    return env.Undefined();
  }
  if (r != sizeof v) {
    ThrowErrno(env, EINVAL, "read");
    return env.Undefined();
  }
  if (v > static_cast<uint64_t>(kMaxSafeInteger)) v = static_cast<uint64_t>(kMaxSafeInteger);
  return Napi::Number::New(env, static_cast<double>(v));
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
}

}  // namespace vshm
