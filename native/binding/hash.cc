// SHA-256 of input files on native threads with the platform's OpenSSL (core/hash.h).
//   hashFiles({ files: [{ fd, size, file? }], threads?, ctl?: Float64Array }) -> Promise<{ sha256: string[], seconds: number[] }>
//     ctl[1] non-zero cancels (ERR_ABORTED), as the stream's ctl
//   sha256Info() -> { available, provider, reason }
//   outputHash(prefix?: Uint8Array) -> handle: an output file's SHA-256 taken as the stream writes it
//     (core OrderedHash; stream tasks name it as `outHash`); `prefix`: the bytes at offset 0 the caller
//     has written itself (a safetensors header)
//   outputHashFinish(handle, { fd, size, file?, ctl? }) -> Promise<{ sha256, fromMemory, reread }>
#include "common.h"
#include "core/hash.h"

namespace geoedit_binding {

namespace {
const napi_type_tag kOutputHashTag = {0x6b7ed3a4c1e04f52ULL, 0x9a1d0c3be5f27186ULL};
using HashPtr = std::shared_ptr<geoedit::OrderedHash>;

// ctl[1] of a { ctl?: Float64Array(>= 2) } spec (the job's cancel flag, held in keep), or null.
const double* cancel_of(Napi::Object spec, Keep& keep) {
  Napi::Value cv = spec.Get("ctl");
  if (!cv.IsTypedArray()) return nullptr;
  Napi::TypedArray ta = cv.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_float64_array || ta.ElementLength() < 2) return nullptr;
  char* p;
  size_t bytes;
  typed_bytes(ta, "ctl", &p, &bytes);
  keep.hold(ta);
  return reinterpret_cast<const double*>(p) + 1;
}

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
  b->cancel = cancel_of(spec, b->keep);
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

// The handle: an External holding a shared_ptr (a stream call holds its own reference while it runs),
// type-tagged (kOutputHashTag) so that another External is refused.

Napi::Value OutputHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!geoedit::sha256_unavailable_reason().empty())
    throw make_error(env, "ERR_INTERNAL", "SHA-256 unavailable: " + geoedit::sha256_unavailable_reason());
  auto h = call_sync(env, "creating an output hash", [] { return std::make_shared<geoedit::OrderedHash>(); });
  if (info.Length() > 0 && info[0].IsTypedArray()) {
    char* p;
    size_t bytes;
    typed_bytes(info[0].As<Napi::TypedArray>(), "prefix", &p, &bytes);
    call_sync(env, "hashing the prefix", [&] { h->feed(h->ticket(), 0, p, bytes); });
  } else if (info.Length() > 0 && !info[0].IsUndefined()) {
    throw_type(env, "outputHash: Expected a Uint8Array prefix or nothing");
  }
  auto* holder = new HashPtr(h);
  Napi::External<HashPtr> ext = Napi::External<HashPtr>::New(env, holder, [](Napi::Env, HashPtr* x) { delete x; });
  napi_type_tag_object(env, ext, &kOutputHashTag);
  return ext;
}

Napi::Value OutputHashFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HashPtr h = output_hash_of(env, info.Length() > 0 ? info[0] : env.Undefined(), "outputHashFinish");
  if (info.Length() < 2 || !info[1].IsObject()) throw_type(env, "outputHashFinish: Expected { fd, size, file? }");
  Napi::Object o = info[1].As<Napi::Object>();
  struct Baton {
    HashPtr h;
    int fd = -1;
    uint64_t size = 0;
    std::string file;
    const double* cancel = nullptr;
    geoedit::OrderedHash::Result r;
    Keep keep;
  };
  auto b = std::make_shared<Baton>();
  b->h = h;
  b->fd = int(num(o, "fd", -1));
  const double size = num(o, "size", -1);
  if (b->fd < 0 || !(size >= 0)) throw make_error(env, "ERR_INVALID_OPTION", "outputHashFinish: fd >= 0 and size >= 0 are needed");
  b->size = uint64_t(size);
  b->file = str(o, "file");
  b->cancel = cancel_of(o, b->keep);
  return PromiseWorker::queue(
      env, "geoedit:hash", "hashing an output file", [b]() { b->r = b->h->finish(b->fd, b->size, b->file, b->cancel); }, b,
      Napi::Object::New(env), [b](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        r.Set("sha256", b->r.sha256);
        r.Set("fromMemory", double(b->r.from_memory));
        r.Set("reread", double(b->r.reread));
        return r;
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

std::shared_ptr<geoedit::OrderedHash> output_hash_of(Napi::Env env, Napi::Value v, const std::string& what) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(env, v, &kOutputHashTag, &ok);
  if (!ok) throw_type(env, what + ": Expected a handle from outputHash()");
  return *v.As<Napi::External<HashPtr>>().Data();
}

void register_hash(Napi::Env env, Napi::Object exports) {
  exports.Set("hashFiles", Napi::Function::New(env, HashFiles, "hashFiles"));
  exports.Set("sha256Info", Napi::Function::New(env, Sha256Info, "sha256Info"));
  exports.Set("outputHash", Napi::Function::New(env, OutputHash, "outputHash"));
  exports.Set("outputHashFinish", Napi::Function::New(env, OutputHashFinish, "outputHashFinish"));
}

}  // namespace geoedit_binding
