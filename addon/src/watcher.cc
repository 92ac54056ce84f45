// FdWatcher: a uv_poll_t on the environment's loop, for doorbells (eventfd) and sockets.
//
// Lifetime rules (why it is built this way):
//  - The uv handle lives in its own heap block (`PollHandle`) that only its uv close callback
//    frees: libuv may still touch a closing handle until then, whatever happens to the JS object.
//  - While started or closing, the JS object is pinned (strong reference), so it cannot be
//    collected while libuv can still call back into it. When stopped it is weak; if it is then
//    collected without close(), the destructor closes the handle.
//  - After close() the JS callback is never called again: the poll callback checks `closed_`
//    (uv_close also stops the handle, but a callback can already be running when close() is
//    called from inside it).
//  - Environment teardown (a worker exiting): an async cleanup hook closes every handle still
//    open and holds the teardown until all close callbacks ran. Otherwise a close callback could
//    run after Node unloaded this library (it dlcloses addons when a worker's env goes away).
//    The per-env bookkeeping (`EnvWatchers`) is owned by that hook, not by napi instance data,
//    because napi may free instance data before the close callbacks run.
//  - The async context uses a private resource object (not the watcher itself) so that it never
//    keeps the watcher alive.
// libuv notes: uv_poll_init sets O_NONBLOCK on the fd; only one watcher per fd per loop (the
// second gets EEXIST). Close the watcher before closing its fd.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <uv.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <set>
#include <utility>

#include "common.h"

namespace vshm {

namespace {

constexpr int kAllEvents = UV_READABLE | UV_WRITABLE | UV_DISCONNECT;

// (loop, fd) pairs that have an open FdWatcher. libuv only detects a second poll handle on an
// fd once the first is started, and two started handles on one fd trip libuv assertions, so the
// second watcher is refused up front with EEXIST. Process-wide because worker threads have
// their own loops but share fd numbers.
std::mutex g_watchedMutex;
std::set<std::pair<uv_loop_t*, int>> g_watched;

bool ClaimFd(uv_loop_t* loop, int fd) {
  std::lock_guard<std::mutex> lock(g_watchedMutex);
  return g_watched.insert({loop, fd}).second;
}

void ReleaseFd(uv_loop_t* loop, int fd) {
  std::lock_guard<std::mutex> lock(g_watchedMutex);
  g_watched.erase({loop, fd});
}

class Watcher;
struct EnvWatchers;

struct PollHandle {
  uv_poll_t poll;
  Watcher* owner;     // null once no watcher object wants to hear about this handle
  EnvWatchers* envw;  // bookkeeping of the environment the handle belongs to
  uv_loop_t* loop;
  int fd;
  bool closing;  // uv_close was called (the fd claim was released then)
};

// Handles of one environment that are not yet freed; owned by the env's async cleanup hook.
struct EnvWatchers {
  std::set<PollHandle*> live;
  napi_async_cleanup_hook_handle hook = nullptr;
  bool tearingDown = false;

  void Remove(PollHandle* ph) {
    live.erase(ph);
    if (tearingDown && live.empty()) Finish();
  }
  void Finish() {
    napi_remove_async_cleanup_hook(hook);  // lets the environment teardown continue
    delete this;
  }
};

void OnHandleClosed(uv_handle_t* h);

// Starts closing a handle (once). Its fd may be watched again right away: uv_close stops it.
void CloseHandle(PollHandle* ph) {
  if (ph->closing) return;
  ph->closing = true;
  ReleaseFd(ph->loop, ph->fd);
  uv_close(reinterpret_cast<uv_handle_t*>(&ph->poll), OnHandleClosed);
}

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function Define(Napi::Env env, EnvWatchers* envw) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&Watcher::Start>("start"),
                        InstanceMethod<&Watcher::Stop>("stop"),
                        InstanceMethod<&Watcher::RefLoop>("ref"),
                        InstanceMethod<&Watcher::UnrefLoop>("unref"),
                        InstanceMethod<&Watcher::Close>("close")},
                       envw);
  }

  // Constructed by createWatcher() only; `data` carries the env's EnvWatchers.
  explicit Watcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    int fd;
    if (!ArgFd(info, 0, "createWatcher", &fd)) return;
    if (!info[1].IsFunction()) {
      ThrowTypeError(env, "createWatcher: callback must be a function");
      return;
    }
    auto* envw = static_cast<EnvWatchers*>(info.Data());
    uv_loop_t* loop = nullptr;
    if (envw == nullptr || envw->tearingDown || napi_get_uv_event_loop(env, &loop) != napi_ok ||
        loop == nullptr) {
      Napi::Error::New(env, "createWatcher: no usable event loop").ThrowAsJavaScriptException();
      return;
    }
    // The file behind the fd, so start() can tell when the number now means another file.
    struct stat st;
    if (fstat(fd, &st) < 0) {
      ThrowErrno(env, errno, "uv_poll_init");
      return;
    }
    if (!ClaimFd(loop, fd)) {
      ThrowErrno(env, EEXIST, "uv_poll_init");
      return;
    }
    auto* ph = new PollHandle{};
    int r = uv_poll_init(loop, &ph->poll, fd);
    if (r < 0) {
      delete ph;  // uv_poll_init validates before registering anything, so nothing to close
      ReleaseFd(loop, fd);
      ThrowUvError(env, r, "uv_poll_init");
      return;
    }
    ph->owner = this;
    ph->envw = envw;
    ph->loop = loop;
    ph->fd = fd;
    ph->poll.data = ph;
    envw->live.insert(ph);
    handle_ = ph;
    fd_ = fd;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "vshm:FdWatcher", Napi::Object::New(env));
  }

  ~Watcher() override {
    // Reached when unpinned (stopped or never started, not closed): close the handle; or at
    // environment teardown, when the cleanup hook has already detached us (handle_ is null).
    if (handle_ != nullptr) {
      handle_->owner = nullptr;
      CloseHandle(handle_);
      handle_ = nullptr;
    }
  }

  // The handle is going away without us (closed, or closed by environment teardown).
  void Detach() {
    handle_ = nullptr;
    closed_ = true;
  }

  void AfterClose() {
    async_.reset();
    callback_.Reset();
    Unpin();  // may allow the JS object (and this) to be collected later, never now
  }

 private:
  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* ph = static_cast<PollHandle*>(h->data);
    Watcher* w = ph->owner;
    if (w == nullptr || w->closed_ || w->callback_.IsEmpty()) return;
    Napi::Env env = w->Env();
    Napi::HandleScope scope(env);
    // Raw napi here: while a worker is being terminated JS cannot run and every call fails;
    // that must be ignored, not turned into a (fatal) attempt to throw.
    napi_value argv[2] = {Napi::Number::New(env, status), Napi::Number::New(env, events)};
    napi_value result;
    napi_status st = napi_make_callback(env, *w->async_, w->Value(), w->callback_.Value(), 2,
                                        argv, &result);
    if (st == napi_pending_exception) {
      // Route to process 'uncaughtException', like a throwing callback of any Node handle.
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }

  void Pin() {
    if (!pinned_) {
      Ref();
      pinned_ = true;
    }
  }
  void Unpin() {
    if (pinned_) {
      pinned_ = false;
      Unref();
    }
  }

  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t events;
    if (!ArgInt(info, 0, "FdWatcher.start", "events", 1, kAllEvents, &events)) return;
    if ((events & ~kAllEvents) != 0) {
      ThrowRangeError(env, "FdWatcher.start: events must be a non-empty mask of POLL_* bits");
      return;
    }
    if (closed_ || handle_ == nullptr) {
      ThrowErrno(env, EBADF, "uv_poll_start");
      return;
    }
    // libuv aborts the process if epoll_ctl fails: on a closed fd, or on one closed and reused
    // (fd numbers are reused lowest-first) for a file epoll refuses, such as a regular file.
    // Refuse both here. Eventfds share one anonymous inode, so one eventfd reused for another
    // still passes; that one is pollable and does not abort.
    struct stat st;
    if (fstat(fd_, &st) < 0) {
      ThrowErrno(env, errno, "uv_poll_start");
      return;
    }
    if (st.st_dev != dev_ || st.st_ino != ino_) {
      ThrowErrno(env, EBADF, "uv_poll_start");
      return;
    }
    int r = uv_poll_start(&handle_->poll, static_cast<int>(events), OnPoll);
    if (r < 0) {
      ThrowUvError(env, r, "uv_poll_start");
      return;
    }
    Pin();
  }

  void Stop(const Napi::CallbackInfo&) {
    if (closed_ || handle_ == nullptr) return;
    uv_poll_stop(&handle_->poll);
    Unpin();
  }

  void RefLoop(const Napi::CallbackInfo&) {
    if (closed_ || handle_ == nullptr) return;
    uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  }

  void UnrefLoop(const Napi::CallbackInfo&) {
    if (closed_ || handle_ == nullptr) return;
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  }

  void Close(const Napi::CallbackInfo&) {
    if (closed_) return;
    closed_ = true;
    if (handle_ == nullptr) return;
    Pin();  // keep this object until the close callback
    CloseHandle(handle_);  // handle_ stays set (owned by libuv) until OnHandleClosed
  }

  int fd_ = -1;
  dev_t dev_ = 0;  // identity of the file the watcher was created for
  ino_t ino_ = 0;
  PollHandle* handle_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
  bool closed_ = false;
  bool pinned_ = false;
};

void OnHandleClosed(uv_handle_t* h) {
  auto* ph = static_cast<PollHandle*>(h->data);
  Watcher* w = ph->owner;
  EnvWatchers* envw = ph->envw;
  if (w != nullptr) {
    w->Detach();
    if (!envw->tearingDown) w->AfterClose();  // at teardown napi releases references itself
  }
  envw->Remove(ph);  // may free envw
  delete ph;
}

// Environment teardown: close what is still open and finish once every close callback ran.
void OnEnvTeardown(napi_async_cleanup_hook_handle hook, void* arg) {
  auto* envw = static_cast<EnvWatchers*>(arg);
  envw->hook = hook;
  envw->tearingDown = true;
  if (envw->live.empty()) {
    envw->Finish();
    return;
  }
  // Copy: CloseHandle does not free synchronously, but stay independent of that detail.
  std::set<PollHandle*> open = envw->live;
  for (PollHandle* ph : open) {
    if (ph->owner != nullptr) {
      ph->owner->Detach();
      ph->owner = nullptr;
    }
    CloseHandle(ph);
  }
}

struct AddonData {
  Napi::FunctionReference watcherCtor;
};

Napi::Value CreateWatcher(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "createWatcher", &fd)) return env.Undefined();
  if (!info[1].IsFunction()) {
    ThrowTypeError(env, "createWatcher: callback must be a function");
    return env.Undefined();
  }
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object w = data->watcherCtor.New({info[0], info[1]});
  if (env.IsExceptionPending()) return env.Undefined();
  return w;
}

// poll(2) on one fd with timeout 0: what is ready right now, in the watcher's POLL_* bits.
// Lets a caller look at a socket's state before its watcher's callback has run in this loop turn.
Napi::Value PollNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t events;
  if (!ArgFd(info, 0, "pollNow", &fd) || !ArgInt(info, 1, "pollNow", "events", 0, 255, &events)) {
    return env.Undefined();
  }
  // poll(2) skips a negative fd (revents 0), which would read as "nothing ready yet".
  if (fd < 0) {
    ThrowErrno(env, EBADF, "poll");
    return env.Undefined();
  }
  pollfd p{};
  p.fd = fd;
  if (events & UV_READABLE) p.events |= POLLIN;
  if (events & UV_WRITABLE) p.events |= POLLOUT;
  if (events & UV_DISCONNECT) p.events |= POLLRDHUP;
  int n;
  do {
    n = poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(env, errno, "poll");
    return env.Undefined();
  }
  if (p.revents & POLLNVAL) {
    ThrowErrno(env, EBADF, "poll");
    return env.Undefined();
  }
  int out = 0;
  if (p.revents & POLLIN) out |= UV_READABLE;
  if (p.revents & POLLOUT) out |= UV_WRITABLE;
  // POLLHUP and POLLERR are always reported; they count as a disconnect whatever was asked.
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) out |= UV_DISCONNECT;
  return Napi::Number::New(env, out);
}

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports) {
  auto* envw = new EnvWatchers();
  if (napi_add_async_cleanup_hook(env, OnEnvTeardown, envw, &envw->hook) != napi_ok) {
    delete envw;
    envw = nullptr;  // createWatcher will throw rather than risk a late close callback
  }
  auto* data = new AddonData();
  // The constructor finds this env's bookkeeping through its callback data.
  data->watcherCtor = Napi::Persistent(Watcher::Define(env, envw));
  env.SetInstanceData(data);
  exports.Set("createWatcher", Napi::Function::New(env, CreateWatcher, "createWatcher"));
  exports.Set("pollNow", Napi::Function::New(env, PollNow, "pollNow"));
}

}  // namespace vshm
