// Strict JS argument validation at the edge: say which function, which argument and what was
// expected, before any syscall runs.
#include <cmath>
#include <climits>

#include "common.h"

namespace vshm {

namespace {

std::string Where(const char* fn, const char* name) {
  return std::string(fn) + ": " + name;
}

std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) return "NaN";
    // %.17g keeps integers exact and fractional values recognisable.
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsBigInt()) return "a bigint";
  if (v.IsFunction()) return "a function";
  return "an object";
}

}  // namespace

bool ArgInt(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
            int64_t min, int64_t max, int64_t* out) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) {
    ThrowTypeError(info.Env(), Where(fn, name) + " must be a number (got " + Describe(v) + ")");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  // Range-check in double first so huge values never reach an undefined int64 conversion.
  if (!std::isfinite(d) || d != std::trunc(d) || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    ThrowRangeError(info.Env(), Where(fn, name) + " must be an integer in [" +
                                    std::to_string(min) + ", " + std::to_string(max) +
                                    "] (got " + Describe(v) + ")");
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* fn, int* out) {
  int64_t v;
  if (!ArgInt(info, i, fn, "fd", INT_MIN, INT_MAX, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
             bool* out) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) {
    ThrowTypeError(info.Env(), Where(fn, name) + " must be a boolean (got " + Describe(v) + ")");
    return false;
  }
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name,
               std::string* out) {
  Napi::Value v = info[i];
  if (!v.IsString()) {
    ThrowTypeError(info.Env(), Where(fn, name) + " must be a string (got " + Describe(v) + ")");
    return false;
  }
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    ThrowTypeError(info.Env(), Where(fn, name) + " must not contain NUL characters");
    return false;
  }
  *out = std::move(s);
  return true;
}

}  // namespace vshm
