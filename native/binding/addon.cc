// The Node addon: registers the exports of each area of the binding (native/binding/EXPORTS.md
// lists them with their signatures). Only native/binding/ includes napi.h.
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  geoedit_binding::register_edit(env, exports);        // edit.cc
  geoedit_binding::register_stream(env, exports);      // stream.cc
  geoedit_binding::register_lora(env, exports);        // lora.cc
  geoedit_binding::register_safetensors(env, exports); // safetensors.cc
  geoedit_binding::register_probe(env, exports);       // probe.cc
  geoedit_binding::register_hash(env, exports);        // hash.cc
  geoedit_binding::register_testing(env, exports);     // testing.cc (`_` exports)
  geoedit_binding::register_preserve(env, exports);    // preserve.cc (_preserveBench)
  // common.cc: lib/native.ts hands over markAsUntransferable (async calls' inputs, see Keep).
  exports.Set("_setTransferGuard", Napi::Function::New(env, geoedit_binding::set_transfer_guard, "_setTransferGuard"));
  return exports;
}

}  // namespace

NODE_API_MODULE(geoedit, Init)
