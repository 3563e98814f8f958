// Topology fingerprints: see fingerprint.h.
#include "runtime/state/fingerprint.h"

#include <algorithm>
#include <map>
#include <sstream>

namespace onceflow {
namespace {

// "node <id> <rest>" lines by id, and the other lines by their first word.
void Parse(const std::string& text, std::map<std::string, std::string>* nodes,
           std::map<std::string, std::string>* settings) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const std::string word = line.substr(0, sp);
    const std::string rest = line.substr(sp + 1);
    if (word == "node") {
      const size_t sp2 = rest.find(' ');
      (*nodes)[rest.substr(0, sp2)] = sp2 == std::string::npos ? "" : rest.substr(sp2 + 1);
    } else {
      (*settings)[word] = rest;
    }
  }
}

}  // namespace

std::string Fingerprint(const PipelineSpec& spec) {
  std::vector<std::string> lines;
  lines.push_back(std::string("semantics ") + SemanticsName(spec.semantics));
  if (spec.semantics == Semantics::kEffectivelyOnce) {
    lines.push_back(std::string("mode ") + ModeName(spec.mode));
  }
  for (const NodeSpec& n : spec.nodes) {
    std::string line = "node " + n.id + " " + NodeKindName(n.kind) + " " + n.type;
    if (!n.key.empty()) {
      line += " key=";
      for (size_t i = 0; i < n.key.size(); ++i) line += (i ? "," : "") + n.key[i];
    }
    lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::vector<std::string> FingerprintChanges(const std::string& stored, const std::string& current,
                                            std::set<std::string>* changed_nodes) {
  std::map<std::string, std::string> old_nodes, new_nodes, old_settings, new_settings;
  Parse(stored, &old_nodes, &old_settings);
  Parse(current, &new_nodes, &new_settings);
  std::vector<std::string> changes;
  for (const auto& [k, v] : new_settings) {
    auto it = old_settings.find(k);
    const std::string was = it == old_settings.end() ? "(none)" : it->second;
    if (was != v) changes.push_back(k + " changed from " + was + " to " + v);
  }
  for (const auto& [id, v] : old_nodes) {
    auto it = new_nodes.find(id);
    if (it == new_nodes.end()) {
      changes.push_back("node '" + id + "' removed");
      changed_nodes->insert(id);
    } else if (it->second != v) {
      changes.push_back("node '" + id + "' changed from '" + v + "' to '" + it->second + "'");
      changed_nodes->insert(id);
    }
  }
  for (const auto& [id, v] : new_nodes) {
    if (!old_nodes.count(id)) {
      changes.push_back("node '" + id + "' added");
      changed_nodes->insert(id);
    }
  }
  return changes;
}

}  // namespace onceflow
