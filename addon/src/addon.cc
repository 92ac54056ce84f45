// Module init: constants, then each responsibility's functions (memory.cc, mmap.cc,
// eventfd.cc, watcher.cc, socket.cc, fileio.cc). The JS shape is typed by hand in ../index.d.ts.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"

namespace vshm {

namespace {

void SetConst(Napi::Env env, Napi::Object exports, const char* name, double value) {
  exports.DefineProperty(Napi::PropertyDescriptor::Value(name, Napi::Number::New(env, value),
                                                         napi_enumerable));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  SetConst(env, exports, "PROT_NONE", PROT_NONE);
  SetConst(env, exports, "PROT_READ", PROT_READ);
  SetConst(env, exports, "PROT_WRITE", PROT_WRITE);
  SetConst(env, exports, "F_SEAL_SEAL", F_SEAL_SEAL);
  SetConst(env, exports, "F_SEAL_SHRINK", F_SEAL_SHRINK);
  SetConst(env, exports, "F_SEAL_GROW", F_SEAL_GROW);
  SetConst(env, exports, "F_SEAL_WRITE", F_SEAL_WRITE);
  SetConst(env, exports, "O_RDONLY", O_RDONLY);
  SetConst(env, exports, "O_RDWR", O_RDWR);
  SetConst(env, exports, "O_CREAT", O_CREAT);
  SetConst(env, exports, "O_EXCL", O_EXCL);
  SetConst(env, exports, "POLL_READABLE", UV_READABLE);
  SetConst(env, exports, "POLL_WRITABLE", UV_WRITABLE);
  SetConst(env, exports, "POLL_DISCONNECT", UV_DISCONNECT);
  SetConst(env, exports, "FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE);
  SetConst(env, exports, "FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE);
  SetConst(env, exports, "FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE);
  SetConst(env, exports, "PAGE_SIZE", static_cast<double>(sysconf(_SC_PAGESIZE)));

  InitMemory(env, exports);
  InitMmap(env, exports);
  InitEventfd(env, exports);
  InitWatcher(env, exports);
  InitSocket(env, exports);
  InitFileio(env, exports);
  return exports;
}

}  // namespace vshm

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return vshm::Init(env, exports);
}

NODE_API_MODULE(vshm, InitAddon)
