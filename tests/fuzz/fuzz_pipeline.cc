// libFuzzer target: the pipeline file front end — YAML parsing with positions, ${VAR}
// interpolation, --set, validation against every built-in node type (including compiling
// inline Lua) and rendering the diagnostics. Whatever the bytes, LoadPipeline must return
// (no crash, no sanitizer report, no hang), and it must report an error exactly when it
// returns false.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "operators/builtins.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const onceflow::Registry& Builtins() {
  static const onceflow::Registry* registry = [] {
    auto* r = new onceflow::Registry;
    onceflow::RegisterBuiltins(r);
    return r;
  }();
  return *registry;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static onceflow::fuzz::ScratchFile file("pipeline", ".yaml");
  if (!file.Write(data, size)) return 0;
  // Interpolation reads the environment: give ${FUZZ_VAR} something to expand to.
  setenv("FUZZ_VAR", "fuzz", 0);
  onceflow::LoadOptions opts;
  onceflow::PipelineSpec spec;
  onceflow::Diagnostics diags;
  const bool ok = onceflow::LoadPipeline(file.path(), opts, Builtins(), &spec, &diags);
  if (ok == diags.has_errors()) abort();  // the result and the diagnostics must agree
  (void)diags.RenderToString();
  return 0;
}
