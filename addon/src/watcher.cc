// FdWatcher: a uv_poll_t on the main loop, for doorbells (eventfd) and sockets.
//
// Lifetime rules (why it is built this way):
//  - The uv handle lives in its own heap block (`PollHandle`) that only the uv close callback
//    frees: libuv may still touch a closing handle until then, whatever happens to the JS object.
//  - While started or closing, the JS object is pinned (strong reference), so it cannot be
//    collected while libuv can still call back into it. When stopped it is weak; if it is then
//    collected without close(), the destructor closes the handle.
//  - After close() the JS callback is never called again: the poll callback checks `closed_`
//    (uv_close also stops the handle, but a callback can already be running when close() is
//    called from inside it).
//  - The async context uses a private resource object (not the watcher itself) so that it never
//    keeps the watcher alive.
// libuv notes: uv_poll_init sets O_NONBLOCK on the fd; only one watcher per fd per loop (the
// second gets EEXIST). Close the watcher before closing its fd.
#include <fcntl.h>
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

struct PollHandle {
  uv_poll_t poll;
  Watcher* owner;  // null once the watcher no longer wants callbacks
};

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod<&Watcher::Start>("start"),
                        InstanceMethod<&Watcher::Stop>("stop"),
                        InstanceMethod<&Watcher::RefLoop>("ref"),
                        InstanceMethod<&Watcher::UnrefLoop>("unref"),
                        InstanceMethod<&Watcher::Close>("close")});
  }

  explicit Watcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    if (!ArgFd(info, 0, "createWatcher", &fd_)) return;
    if (!info[1].IsFunction()) {
      ThrowTypeError(env, "createWatcher: callback must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "createWatcher: no uv event loop").ThrowAsJavaScriptException();
      return;
    }
    if (!ClaimFd(loop, fd_)) {
      ThrowErrno(env, EEXIST, "uv_poll_init");
      return;
    }
    auto* h = new PollHandle{};
    int r = uv_poll_init(loop, &h->poll, fd_);
    if (r < 0) {
      delete h;  // uv_poll_init validates before registering anything, so nothing to close
      ReleaseFd(loop, fd_);
      ThrowUvError(env, r, "uv_poll_init");
      return;
    }
    loop_ = loop;
    h->owner = this;
    h->poll.data = h;
    handle_ = h;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "vshm:FdWatcher", Napi::Object::New(env));
  }

  ~Watcher() override {
    // Normally reached only when unpinned (stopped, never closed, or fully closed). At
    // environment teardown it can also run while started or closing: detach from the handle
    // so a late callback finds no owner, and make sure the handle gets closed and freed.
    if (handle_ != nullptr) {
      handle_->owner = nullptr;
      if (!closed_) ReleaseFd(loop_, fd_);
      if (!closed_) uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), FreeHandle);
      // else: the pending OnClosed frees it
      handle_ = nullptr;
    }
  }

 private:
  static void FreeHandle(uv_handle_t* h) { delete static_cast<PollHandle*>(h->data); }

  static void OnClosed(uv_handle_t* h) {
    auto* ph = static_cast<PollHandle*>(h->data);
    Watcher* w = ph->owner;
    delete ph;
    if (w != nullptr) {
      w->handle_ = nullptr;
      w->async_.reset();
      w->callback_.Reset();
      w->Unpin();  // may allow the JS object (and this) to be collected later, never now
    }
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* ph = static_cast<PollHandle*>(h->data);
    Watcher* w = ph->owner;
    if (w == nullptr || w->closed_ || w->callback_.IsEmpty()) return;
    Napi::Env env = w->Env();
    Napi::HandleScope scope(env);
    w->callback_.MakeCallback(w->Value(),
                              {Napi::Number::New(env, status), Napi::Number::New(env, events)},
                              *w->async_);
    if (env.IsExceptionPending()) {
      // Route to process 'uncaughtException', like a throwing callback of any Node handle.
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
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
    // libuv aborts the process if epoll_ctl fails on a closed fd, so refuse that here.
    if (fcntl(fd_, F_GETFD) < 0) {
      ThrowErrno(env, errno, "uv_poll_start");
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
    // uv_close stops the handle at once, so the fd is free for a new watcher right away.
    ReleaseFd(loop_, fd_);
    Pin();  // keep this object until OnClosed
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), OnClosed);  // frees handle_
  }

  int fd_ = -1;
  uv_loop_t* loop_ = nullptr;
  PollHandle* handle_ = nullptr;  // until OnClosed (or the destructor) lets go of it
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
  bool closed_ = false;
  bool pinned_ = false;
};

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

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->watcherCtor = Napi::Persistent(Watcher::Define(env));
  env.SetInstanceData(data);
  exports.Set("createWatcher", Napi::Function::New(env, CreateWatcher, "createWatcher"));
}

}  // namespace vshm
