// Memory objects and plain fd operations: memfd, POSIX shm, unlinked temp files, size, seals,
// fstat, close, dup. Every fd created here is O_CLOEXEC so children spawned by Node never
// inherit shared memory or doorbells by accident.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <vector>

#include "common.h"

namespace vshm {

namespace {

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  bool allowSealing;
  if (!ArgString(info, 0, "memfdCreate", "name", &name) ||
      !ArgBool(info, 1, "memfdCreate", "allowSealing", &allowSealing)) {
    return env.Undefined();
  }
  unsigned flags = MFD_CLOEXEC | (allowSealing ? MFD_ALLOW_SEALING : 0);
  int fd = memfd_create(name.c_str(), flags);
  if (fd < 0) {
    ThrowErrno(env, errno, "memfd_create");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  int64_t flags, mode;
  if (!ArgString(info, 0, "shmOpen", "name", &name) ||
      !ArgInt(info, 1, "shmOpen", "flags", 0, INT_MAX, &flags) ||
      !ArgInt(info, 2, "shmOpen", "mode", 0, 07777, &mode)) {
    return env.Undefined();
  }
  int fd = shm_open(name.c_str(), static_cast<int>(flags) | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) {
    ThrowErrno(env, errno, "shm_open");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!ArgString(info, 0, "shmUnlink", "name", &name)) return env.Undefined();
  if (shm_unlink(name.c_str()) < 0) ThrowErrno(env, errno, "shm_unlink");
  return env.Undefined();
}

Napi::Value OpenTmpfile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir;
  int64_t mode;
  if (!ArgString(info, 0, "openTmpfile", "dir", &dir) ||
      !ArgInt(info, 1, "openTmpfile", "mode", 0, 07777, &mode)) {
    return env.Undefined();
  }
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd >= 0) return Napi::Number::New(env, fd);
  int err = errno;
  // Filesystems (or kernels) without O_TMPFILE report EOPNOTSUPP, or EISDIR/EINVAL when the
  // flag is not understood at all; anything else (ENOENT, EACCES...) is a real error.
  if (err != EOPNOTSUPP && err != EISDIR && err != EINVAL) {
    ThrowErrno(env, err, "open");
    return env.Undefined();
  }
  std::string tmpl = dir + "/.vshm-XXXXXX";
  std::vector<char> path(tmpl.begin(), tmpl.end());
  path.push_back('\0');
  fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, errno, "mkostemp");
    return env.Undefined();
  }
  // Unlink first: the name must not outlive this call even if fchmod fails.
  if (unlink(path.data()) < 0) {
    err = errno;
    close(fd);
    ThrowErrno(env, err, "unlink");
    return env.Undefined();
  }
  if (fchmod(fd, static_cast<mode_t>(mode)) < 0) {
    err = errno;
    close(fd);
    ThrowErrno(env, err, "fchmod");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t size;
  if (!ArgFd(info, 0, "ftruncate", &fd) ||
      !ArgInt(info, 1, "ftruncate", "size", 0, kMaxSafeInteger, &size)) {
    return env.Undefined();
  }
  int r;
  do r = ftruncate(fd, static_cast<off_t>(size));
  while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(env, errno, "ftruncate");
  return env.Undefined();
}

Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t seals;
  if (!ArgFd(info, 0, "addSeals", &fd) ||
      !ArgInt(info, 1, "addSeals", "seals", 0, INT_MAX, &seals)) {
    return env.Undefined();
  }
  if (fcntl(fd, F_ADD_SEALS, static_cast<int>(seals)) < 0) ThrowErrno(env, errno, "fcntl");
  return env.Undefined();
}

Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "getSeals", &fd)) return env.Undefined();
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    ThrowErrno(env, errno, "fcntl");
    return env.Undefined();
  }
  return Napi::Number::New(env, seals);
}

Napi::Value Fstat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fstat", &fd)) return env.Undefined();
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, errno, "fstat");
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Napi::Number::New(env, static_cast<double>(st.st_size)));
  o.Set("mode", Napi::Number::New(env, st.st_mode));
  o.Set("ino", Napi::Number::New(env, static_cast<double>(st.st_ino)));
  // st_dev whole, as a bigint: glibc's makedev() encoding puts major bits above bit 32, and
  // node:fs's fstatSync(fd, { bigint: true }).dev reports the same value.
  o.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
  return o;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "close", &fd)) return env.Undefined();
  // Linux releases the fd even when close() reports EINTR, so never retry (a retry could close
  // an fd another part of the process just opened).
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(env, errno, "close");
  return env.Undefined();
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "dup", &fd)) return env.Undefined();
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) {
    ThrowErrno(env, errno, "dup");
    return env.Undefined();
  }
  return Napi::Number::New(env, nfd);
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("shmOpen", Napi::Function::New(env, ShmOpen, "shmOpen"));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink, "shmUnlink"));
  exports.Set("openTmpfile", Napi::Function::New(env, OpenTmpfile, "openTmpfile"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
  exports.Set("addSeals", Napi::Function::New(env, AddSeals, "addSeals"));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals, "getSeals"));
  exports.Set("fstat", Napi::Function::New(env, Fstat, "fstat"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
}

}  // namespace vshm
