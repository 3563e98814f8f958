// RegisterBuiltins: collects the definition of every built-in node type. Each type's
// option table, checks and factory live beside its implementation (see defs.h), so adding
// a type is one file plus one line here.
//
// Threading: called once at start-up, before any lookup.
#include "operators/builtins.h"

#include "operators/defs.h"

namespace onceflow {

void RegisterBuiltins(Registry* registry) {
  using namespace ops;
  registry->Add(FileSourceDef());
  registry->Add(FilesSourceDef());
  registry->Add(GenerateSourceDef());
  registry->Add(StdinSourceDef());

  registry->Add(MapDef());
  registry->Add(FilterDef());
  registry->Add(FlatMapDef());
  registry->Add(SplitDef());
  registry->Add(CountDef());
  registry->Add(AggregateDef());
  registry->Add(DistinctDef());
  registry->Add(PluginDef());
  registry->Add(ExecDef());
  registry->Add(WindowDef());
  registry->Add(JoinDef());

  registry->Add(FileSinkDef());
  registry->Add(SqliteSinkDef());
  registry->Add(StdoutSinkDef());
  registry->Add(DiscardSinkDef());
}

}  // namespace onceflow
