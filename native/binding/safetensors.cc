// safetensors headers (lib/safetensors.ts): stHeader(path), stHeaderBytes(bytes, name?).
//   -> { fileSize, headerLen, dataOffset, metadata | null, tensors: [{ name, dtype, shape, begin, end }] }
#include "common.h"

#include "core/safetensors.h"

namespace geoedit_binding {

namespace {

Napi::Object header_to_js(Napi::Env env, const geoedit::StHeader& h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fileSize", double(h.file_size));
  o.Set("headerLen", double(h.header_len));
  o.Set("dataOffset", double(h.data_offset));
  if (h.has_metadata) {
    Napi::Object m = Napi::Object::New(env);
    for (const auto& kv : h.metadata) m.Set(kv.first, kv.second);
    o.Set("metadata", m);
  } else {
    o.Set("metadata", env.Null());
  }
  Napi::Array ts = Napi::Array::New(env, h.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const geoedit::StTensor& t = h.tensors[i];
    Napi::Object to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("dtype", t.dtype);
    Napi::Array sh = Napi::Array::New(env, t.shape.size());
    for (size_t k = 0; k < t.shape.size(); ++k) sh.Set(uint32_t(k), double(t.shape[k]));
    to.Set("shape", sh);
    to.Set("begin", double(t.begin));
    to.Set("end", double(t.end));
    ts.Set(uint32_t(i), to);
  }
  o.Set("tensors", ts);
  return o;
}

// stHeader(path): reads and validates a safetensors header with pread.
Napi::Value StHeaderFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "Expected a path string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  return header_to_js(env, call_sync(env, "reading a safetensors header", [&]() { return geoedit::read_st_header(path); }));
}

// stHeaderBytes(bytes, name): validates a whole file held in memory (tests, fuzzing).
Napi::Value StHeaderBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw_type(env, "Expected a Uint8Array");
  const std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "<bytes>";
  char* p;
  size_t n;
  typed_bytes(info[0].As<Napi::TypedArray>(), "bytes", &p, &n);
  return header_to_js(env, call_sync(env, "reading a safetensors header", [&]() {
                        return geoedit::parse_st_bytes(reinterpret_cast<const uint8_t*>(p), n, name);
                      }));
}

}  // namespace

void register_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("stHeader", Napi::Function::New(env, StHeaderFile, "stHeader"));
  exports.Set("stHeaderBytes", Napi::Function::New(env, StHeaderBytes, "stHeaderBytes"));
}

}  // namespace geoedit_binding
