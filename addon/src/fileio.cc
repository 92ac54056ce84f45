// Files and block devices, what Node's fs lacks. Positioned reads that never wait for storage: preadv2(RWF_NOWAIT) copies what the page cache
// already holds and stops where it would have to fetch from the device. A caller that must not
// leave I/O running once it returns — the block back-end reading into shared memory that its
// session may lose at any moment — reads the cached part synchronously and fetches the rest into
// memory of its own.
//
// fallocate(2), which Node's fs does not offer, runs on the libuv thread pool (a zero-range on a
// block device can take as long as writing the zeroes) and settles a promise, like fs.promises
// calls; the caller keeps the fd open until it settles.
#include <fcntl.h>
#include <sys/uio.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <vector>

#include "common.h"

namespace vshm {

namespace {

Napi::Value PreadCached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "preadCached", &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArray()) {
    ThrowTypeError(env, "preadCached: views must be an array of Uint8Array");
    return env.Undefined();
  }
  int64_t length;
  int64_t position;
  if (!ArgInt(info, 2, "preadCached", "length", 0, kMaxSafeInteger, &length) ||
      !ArgInt(info, 3, "preadCached", "position", 0, kMaxSafeInteger, &position)) {
    return env.Undefined();
  }
  Napi::Array views = info[1].As<Napi::Array>();
  uint32_t count = views.Length();
  // Two passes: the first fetches and checks every entry (a getter may run JS, and may detach
  // a buffer seen earlier); the second takes pointers and lengths, with no JS in between.
  // (Napi::Uint8Array caches both when constructed, so only plain values are kept here.)
  std::vector<Napi::Value> arrays;
  arrays.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = views.Get(i);
    if (env.IsExceptionPending()) return env.Undefined();  // a getter that threw
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError(env, "preadCached: views[" + std::to_string(i) + "] must be a Uint8Array");
      return env.Undefined();
    }
    // Checked in full before any read, so a bad entry never leaves a partial read behind.
    arrays.push_back(v);
  }
  std::vector<iovec> iov;
  iov.reserve(count < IOV_MAX ? count : IOV_MAX);
  int64_t left = length;
  for (const Napi::Value& v : arrays) {
    if (left == 0 || iov.size() == IOV_MAX) break;
    Napi::Uint8Array u = v.As<Napi::Uint8Array>();
    size_t len = u.ByteLength();
    if (static_cast<int64_t>(len) > left) len = static_cast<size_t>(left);
    if (len == 0) continue;  // also a detached buffer
    iov.push_back({u.Data(), len});
    left -= static_cast<int64_t>(len);
  }
  if (iov.empty()) return Napi::Number::New(env, 0);
  ssize_t r;
  do r = preadv2(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(position), RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, 0);  // nothing cached at `position`
    // The file system (or the kernel) cannot read without waiting: the caller stops asking.
    if (errno == EOPNOTSUPP || errno == ENOSYS) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "preadv2");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(r));
}

class FallocateWorker : public Napi::AsyncWorker {
 public:
  FallocateWorker(Napi::Env env, int fd, int mode, int64_t offset, int64_t length)
      : Napi::AsyncWorker(env, "vshm.fallocate"),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd),
        mode_(mode),
        offset_(offset),
        length_(length) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int r;
    do r = fallocate(fd_, mode_, static_cast<off_t>(offset_), static_cast<off_t>(length_));
    while (r < 0 && errno == EINTR);
    err_ = r < 0 ? errno : 0;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (err_ == 0) {
      deferred_.Resolve(env.Undefined());
    } else {
      deferred_.Reject(ErrnoError(env, err_, "fallocate").Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  int mode_;
  int64_t offset_;
  int64_t length_;
  int err_ = 0;
};

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t mode, offset, length;
  if (!ArgFd(info, 0, "fallocate", &fd) ||
      !ArgInt(info, 1, "fallocate", "mode", 0, 0x7fffffff, &mode) ||
      !ArgInt(info, 2, "fallocate", "offset", 0, kMaxSafeInteger, &offset) ||
      !ArgInt(info, 3, "fallocate", "length", 1, kMaxSafeInteger, &length)) {
    return env.Undefined();
  }
  auto* w = new FallocateWorker(env, fd, static_cast<int>(mode), offset, length);
  Napi::Promise p = w->Promise();
  w->Queue();  // libuv owns it now; it deletes itself after OnOK
  return p;
}

}  // namespace

void InitFileio(Napi::Env env, Napi::Object exports) {
  exports.Set("preadCached", Napi::Function::New(env, PreadCached, "preadCached"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
}

}  // namespace vshm
