// bench_gen_words: writes the word-count benchmark input.
//
// Usage: bench_gen_words OUTPUT [N_WORDS]   (default N_WORDS = 20000000)
//
// Emits N_WORDS words drawn from a Zipf(s = 1.0) distribution over a fixed
// 100,000-word vocabulary, 5-15 words per line separated by single spaces,
// lines ended by '\n'. Vocabulary words are 2-12 lowercase ASCII letters, all
// distinct, built from a seeded PRNG. Everything derives from fixed seeds and
// integer/IEEE-double arithmetic done in a fixed order, so the same N_WORDS
// always yields a byte-identical file. Sampling uses Vose's alias method
// (O(1) per word).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "bench_util.h"

namespace {

namespace bench = onceflow::bench;

constexpr uint64_t kDefaultWords = 20'000'000;
constexpr uint32_t kVocabularySize = 100'000;
constexpr uint64_t kVocabularySeed = 0x6f6e6365666c6f77ULL;  // "onceflow"
constexpr uint64_t kStreamSeed = 0x776f726473303031ULL;      // "words001"

std::vector<std::string> MakeVocabulary(uint32_t size) {
  bench::Rng rng(kVocabularySeed);
  std::vector<std::string> words;
  words.reserve(size);
  std::unordered_set<std::string> seen;
  seen.reserve(size * 2);
  while (words.size() < size) {
    const uint32_t len = 2 + rng.Below(11);  // 2..12
    std::string w(len, 'a');
    for (char& c : w) c = static_cast<char>('a' + rng.Below(26));
    if (seen.insert(w).second) words.push_back(std::move(w));
  }
  return words;
}

// Alias table for a discrete distribution: column i is kept with probability
// threshold[i] / 2^32, otherwise its alias is taken.
struct AliasTable {
  std::vector<uint64_t> threshold;
  std::vector<uint32_t> alias;
};

AliasTable MakeZipfAliasTable(uint32_t n, double s) {
  std::vector<double> scaled(n);
  double total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    scaled[i] = 1.0 / std::pow(static_cast<double>(i + 1), s);
    total += scaled[i];
  }
  for (double& p : scaled) p = p * n / total;

  AliasTable table;
  table.threshold.assign(n, uint64_t{1} << 32);
  table.alias.resize(n);
  for (uint32_t i = 0; i < n; ++i) table.alias[i] = i;
  std::vector<uint32_t> small, large;
  for (uint32_t i = 0; i < n; ++i) {
    (scaled[i] < 1.0 ? small : large).push_back(i);
  }
  while (!small.empty() && !large.empty()) {
    const uint32_t s_idx = small.back();
    small.pop_back();
    const uint32_t l_idx = large.back();
    table.threshold[s_idx] = static_cast<uint64_t>(scaled[s_idx] * 4294967296.0);
    table.alias[s_idx] = l_idx;
    scaled[l_idx] = (scaled[l_idx] + scaled[s_idx]) - 1.0;
    if (scaled[l_idx] < 1.0) {
      large.pop_back();
      small.push_back(l_idx);
    }
  }
  // Leftovers (rounding residue) keep their own column with certainty.
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUTPUT [N_WORDS]  (default %llu)\n", argv[0],
                 static_cast<unsigned long long>(kDefaultWords));
    return 2;
  }
  uint64_t n_words = kDefaultWords;
  if (argc == 3 && !bench::ParseCount(argv[2], &n_words)) {
    std::fprintf(stderr, "bad N_WORDS: %s\n", argv[2]);
    return 2;
  }

  const std::vector<std::string> vocab = MakeVocabulary(kVocabularySize);
  const AliasTable table = MakeZipfAliasTable(kVocabularySize, 1.0);

  bench::Rng rng(kStreamSeed);
  bench::BufferedWriter out(argv[1]);
  uint64_t written = 0;
  while (written < n_words) {
    uint64_t line_words = 5 + rng.Below(11);  // 5..15
    if (line_words > n_words - written) line_words = n_words - written;
    for (uint64_t i = 0; i < line_words; ++i) {
      const uint64_t r = rng.Next();
      const uint32_t col = static_cast<uint32_t>(((r >> 32) * kVocabularySize) >> 32);
      const uint32_t idx = (r & 0xffffffffULL) < table.threshold[col] ? col : table.alias[col];
      if (i != 0) out.Append(' ');
      out.Append(vocab[idx]);
    }
    out.Append('\n');
    written += line_words;
  }
  out.Close();
  return 0;
}
