// SHA-256 of input files on native threads with the platform's OpenSSL (core/hash.h).
//   hashFiles({ files: [{ fd, size, file? }], threads?, ctl?: Float64Array }) -> Promise<{ sha256: string[], seconds: number[] }>
//     ctl[1] non-zero cancels (ERR_ABORTED), as the stream's ctl
//   sha256Info() -> { available, provider, reason }
#include "common.h"
#include "core/hash.h"

namespace geoedit_binding {

namespace {

struct HashBaton {
  std::vector<geoedit::HashFile> files;
  std::vector<geoedit::HashResult> results;
  int threads = 0;
  const double* cancel = nullptr;
  Keep keep;
};

Napi::Value HashFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a hashFiles specification object");
  auto b = std::make_shared<HashBaton>();
  Napi::Value fv = spec.Get("files");
  if (!fv.IsArray()) throw_type(env, "Expected an array of files");
  Napi::Array fa = fv.As<Napi::Array>();
  for (uint32_t i = 0; i < fa.Length(); ++i) {
    Napi::Value v = fa.Get(i);
    if (!v.IsObject()) throw_type(env, "Expected a file object { fd, size, file? }");
    Napi::Object o = v.As<Napi::Object>();
    geoedit::HashFile f;
    f.fd = int(num(o, "fd", -1));
    const double size = num(o, "size", -1);
    if (f.fd < 0 || !(size >= 0)) throw make_error(env, "ERR_INVALID_OPTION", "hashFiles: each file needs fd >= 0 and size >= 0");
    f.size = uint64_t(size);
    f.path = str(o, "file");
    b->files.push_back(f);
  }
  b->threads = int(num(spec, "threads", 0));
  Napi::Value cv = spec.Get("ctl");
  if (cv.IsTypedArray() && cv.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array && cv.As<Napi::TypedArray>().ElementLength() >= 2) {
    char* p;
    size_t bytes;
    typed_bytes(cv.As<Napi::TypedArray>(), "ctl", &p, &bytes);
    b->keep.hold(cv.As<Napi::Object>());
    b->cancel = reinterpret_cast<const double*>(p) + 1;
  }
  return PromiseWorker::queue(
      env, "geoedit:hash", "hashing input files", [b]() { b->results = geoedit::hash_files(b->files, b->threads, b->cancel); }, b,
      Napi::Object::New(env), [b](Napi::Env e) -> Napi::Value {
        Napi::Object o = Napi::Object::New(e);
        Napi::Array h = Napi::Array::New(e, b->results.size()), s = Napi::Array::New(e, b->results.size());
        for (uint32_t i = 0; i < b->results.size(); ++i) {
          h.Set(i, b->results[i].sha256);
          s.Set(i, b->results[i].seconds);
        }
        o.Set("sha256", h);
        o.Set("seconds", s);
        return o;
      });
}

Napi::Value Sha256Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", geoedit::sha256_unavailable_reason().empty());
  o.Set("provider", geoedit::sha256_provider());
  o.Set("reason", geoedit::sha256_unavailable_reason());
  return o;
}

}  // namespace

void register_hash(Napi::Env env, Napi::Object exports) {
  exports.Set("hashFiles", Napi::Function::New(env, HashFiles, "hashFiles"));
  exports.Set("sha256Info", Napi::Function::New(env, Sha256Info, "sha256Info"));
}

}  // namespace geoedit_binding
