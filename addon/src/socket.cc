// UNIX stream sockets with SCM_RIGHTS fd passing (the ivshmem-server control channel).
// All sockets are CLOEXEC and non-blocking after creation; EAGAIN is reported as a value
// (-1 / null) rather than an error so callers can wait on a watcher and retry.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"

namespace vshm {

namespace {

// Linux's per-message limit on passed fds (SCM_MAX_FD).
constexpr int64_t kMaxFds = 253;

bool IsAgain(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// Fills a sockaddr_un for a filesystem path. Throws ENAMETOOLONG (as `syscall`) if it does not
// fit with its terminating NUL, and EINVAL for an empty path.
bool MakeAddr(Napi::Env env, const std::string& path, const char* syscall, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty()) {
    ThrowErrno(env, EINVAL, syscall);
    return false;
  }
  if (path.size() >= sizeof addr->sun_path) {
    ThrowErrno(env, ENAMETOOLONG, syscall);
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// Closes fd preserving errno, then throws errno as `syscall`.
void FailClose(Napi::Env env, int fd, int err, const char* syscall) {
  close(fd);
  ThrowErrno(env, err, syscall);
}

Napi::Value SocketListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int64_t mode, backlog;
  if (!ArgString(info, 0, "socketListen", "path", &path) ||
      !ArgInt(info, 1, "socketListen", "mode", 0, 0777, &mode) ||
      !ArgInt(info, 2, "socketListen", "backlog", 0, INT_MAX, &backlog)) {
    return env.Undefined();
  }
  sockaddr_un addr;
  if (!MakeAddr(env, path, "bind", &addr)) return env.Undefined();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  // The socket inode's mode becomes the file's mode at bind() (minus umask), so the file never
  // exists with wider permissions than requested.
  if (fchmod(fd, static_cast<mode_t>(mode)) < 0) {
    FailClose(env, fd, errno, "fchmod");
    return env.Undefined();
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    FailClose(env, fd, errno, "bind");
    return env.Undefined();
  }
  // The umask may have removed bits the caller asked for; adding them back only widens towards
  // the requested mode, never past it.
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 0777) != static_cast<mode_t>(mode)) {
    if (chmod(path.c_str(), static_cast<mode_t>(mode)) < 0) {
      int err = errno;
      unlink(path.c_str());
      FailClose(env, fd, err, "chmod");
      return env.Undefined();
    }
  }
  if (listen(fd, static_cast<int>(backlog)) < 0) {
    int err = errno;
    unlink(path.c_str());
    FailClose(env, fd, err, "listen");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SocketAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "socketAccept", &fd)) return env.Undefined();
  int c;
  do c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  if (c < 0) {
    if (IsAgain(errno)) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "accept4");
    return env.Undefined();
  }
  return Napi::Number::New(env, c);
}

Napi::Value SocketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgString(info, 0, "socketConnect", "path", &path)) return env.Undefined();
  sockaddr_un addr;
  if (!MakeAddr(env, path, "connect", &addr)) return env.Undefined();
  // Optional second argument: never block. A UNIX stream connect only blocks while the
  // listener's backlog is full; non-blocking, that case is EAGAIN and reported as -1.
  // Anything else is refused: a truthy non-boolean read as "false" would block the thread.
  bool noWait = false;
  if (info.Length() > 1 && !info[1].IsUndefined() &&
      !ArgBool(info, 1, "socketConnect", "noWait", &noWait)) {
    return env.Undefined();
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (noWait ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return env.Undefined();
  }
  // A UNIX stream connect() blocks only while the listener's backlog is full. A signal whose
  // handler lacks SA_RESTART (Node's SIGUSR1 inspector handler is one) ends that wait with EINTR,
  // and unlike TCP nothing goes on in the kernel afterwards: the socket is left unconnected (an
  // unconnected UNIX socket even polls writable with SO_ERROR 0, so the TCP recipe — wait for
  // POLLOUT, read SO_ERROR — returned a socket that was never connected). So connect() is simply
  // called again. EISCONN on a retry would mean an earlier call got through after all: success.
  bool retried = false;
  while (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    int err = errno;
    if (err == EINTR) {
      retried = true;
      continue;
    }
    if (retried && err == EISCONN) break;
    if (noWait && IsAgain(err)) {
      close(fd);
      return Napi::Number::New(env, -1);
    }
    FailClose(env, fd, err, "connect");
    return env.Undefined();
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    FailClose(env, fd, errno, "fcntl");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    ThrowErrno(env, errno, "socketpair");
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, sv[0]));
  a.Set(1u, Napi::Number::New(env, sv[1]));
  return a;
}

Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "sendMsg", &fd)) return env.Undefined();
  if (!info[1].IsTypedArray()) {
    ThrowTypeError(env, "sendMsg: data must be a Uint8Array or Buffer");
    return env.Undefined();
  }
  if (!info[2].IsArray()) {
    ThrowTypeError(env, "sendMsg: fds must be an array of fds");
    return env.Undefined();
  }
  Napi::Array arr = info[2].As<Napi::Array>();
  uint32_t nfds = arr.Length();
  if (nfds > kMaxFds) {
    ThrowRangeError(env, "sendMsg: at most 253 fds per message (got " + std::to_string(nfds) + ")");
    return env.Undefined();
  }
  std::vector<int> fds(nfds);
  for (uint32_t i = 0; i < nfds; i++) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!v.IsNumber() || d != static_cast<double>(static_cast<int>(d)) || d < 0) {
      ThrowTypeError(env, "sendMsg: fds[" + std::to_string(i) + "] must be an integer fd >= 0");
      return env.Undefined();
    }
    fds[i] = static_cast<int>(d);
  }
  // Only now, after the getters above could run JS (and detach `data`), take its bytes
  // (Napi::TypedArray caches the length when constructed).
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  uint8_t* data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  size_t len = ta.ByteLength();
  // On a stream socket, fds ride on the first byte; with no bytes Linux would silently drop them.
  if (nfds > 0 && len == 0) {
    ThrowRangeError(env, "sendMsg: data must not be empty when fds are passed");
    return env.Undefined();
  }
  iovec iov = {data, len};
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (nfds > 0) {
    control.assign(CMSG_SPACE(nfds * sizeof(int)), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), nfds * sizeof(int));
  }
  ssize_t r;
  do r = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (IsAgain(errno)) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "sendmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t length, maxFds;
  if (!ArgFd(info, 0, "recvMsg", &fd) ||
      !ArgInt(info, 1, "recvMsg", "length", 1, INT_MAX, &length) ||
      !ArgInt(info, 2, "recvMsg", "maxFds", 0, kMaxFds, &maxFds)) {
    return env.Undefined();
  }
  uint8_t* buf = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(length)));
  if (!buf) {
    ThrowErrno(env, ENOMEM, "recvmsg");
    return env.Undefined();
  }
  // Exactly `length` bytes are requested, so a message boundary the caller knows about is never
  // read past (the next message's bytes and fds stay queued).
  iovec iov = {buf, static_cast<size_t>(length)};
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for exactly maxFds: extra fds make the kernel set MSG_CTRUNC and close them itself.
  // The buffer is CMSG_SPACE-sized (aligned), but msg_controllen is CMSG_LEN: the kernel
  // derives how many fds it may install from msg_controllen, and CMSG_SPACE's alignment padding
  // would otherwise admit one fd more than asked for when maxFds is odd.
  std::vector<char> control;
  if (maxFds > 0) {
    control.assign(CMSG_SPACE(static_cast<size_t>(maxFds) * sizeof(int)), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_LEN(static_cast<size_t>(maxFds) * sizeof(int));
  }
  ssize_t r;
  do r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    std::free(buf);
    if (IsAgain(err)) return env.Null();
    ThrowErrno(env, err, "recvmsg");
    return env.Undefined();
  }
  std::vector<int> fds;
  if (maxFds > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      size_t base = fds.size();
      fds.resize(base + n);
      std::memcpy(fds.data() + base, CMSG_DATA(c), n * sizeof(int));
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, buf, static_cast<size_t>(r)));
  std::free(buf);
  Napi::Array fa = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) fa.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  out.Set("fds", fa);
  out.Set("ctrunc", Napi::Boolean::New(env, (msg.msg_flags & MSG_CTRUNC) != 0));
  return out;
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "peerCred", &fd)) return env.Undefined();
  ucred cred;
  socklen_t l = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0) {
    ThrowErrno(env, errno, "getsockopt");
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  bool on;
  if (!ArgFd(info, 0, "setNonBlocking", &fd) || !ArgBool(info, 1, "setNonBlocking", "on", &on)) {
    return env.Undefined();
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) {
    ThrowErrno(env, errno, "fcntl");
    return env.Undefined();
  }
  int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0) ThrowErrno(env, errno, "fcntl");
  return env.Undefined();
}

Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "shutdown", &fd)) return env.Undefined();
  if (shutdown(fd, SHUT_RDWR) < 0) ThrowErrno(env, errno, "shutdown");
  return env.Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("socketListen", Napi::Function::New(env, SocketListen, "socketListen"));
  exports.Set("socketAccept", Napi::Function::New(env, SocketAccept, "socketAccept"));
  exports.Set("socketConnect", Napi::Function::New(env, SocketConnect, "socketConnect"));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
}

}  // namespace vshm
