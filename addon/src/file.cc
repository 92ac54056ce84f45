// Regular files and block devices: fallocate(2), which Node's fs does not offer. It runs on the
// libuv thread pool (a zero-range on a block device can take as long as writing the zeroes) and
// settles a promise, like fs.promises calls. The caller keeps the fd open until it settles.
#include <fcntl.h>

#include <cerrno>

#include "common.h"

namespace vshm {

namespace {

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

void InitFile(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
}

}  // namespace vshm
