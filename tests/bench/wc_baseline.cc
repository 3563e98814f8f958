// wc_baseline: the hand-written, single-threaded C++ word counter that
// onceflow's wordcount pipeline is measured against.
//
// Usage: wc_baseline INPUT [OUTPUT]   (OUTPUT defaults to stdout; "-" too)
//
// Streams INPUT with large read(2) calls, splits on ASCII whitespace
// (space, \t, \n, \v, \f, \r), counts words in an absl::flat_hash_map keyed by
// std::string using heterogeneous string_view lookup (a word already in
// the map costs no allocation), then writes one JSON line per distinct word,
// `{"word":"x","count":N}`, in unspecified order -- the same records that
// `onceflow run pipelines/wordcount.yaml` writes with `emit: final`, so the two
// outputs compare equal as sorted sets.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace {

constexpr size_t kReadChunk = 1 << 20;  // 1 MiB per read(2)

using CountMap = absl::flat_hash_map<std::string, uint64_t>;

constexpr std::array<bool, 256> MakeSpaceTable() {
  std::array<bool, 256> t{};
  for (unsigned char c : {' ', '\t', '\n', '\v', '\f', '\r'}) t[c] = true;
  return t;
}
constexpr std::array<bool, 256> kIsSpace = MakeSpaceTable();

inline bool IsSpace(char c) { return kIsSpace[static_cast<unsigned char>(c)]; }

inline void CountWord(CountMap& counts, absl::string_view word) {
  // Heterogeneous lookup: absl's default hash/eq for std::string keys are
  // transparent over absl::string_view. Debian's libabsl is built with its
  // own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which
  // std::string_view does not convert to implicitly; hence absl::string_view.
  auto it = counts.find(word);
  if (it != counts.end()) {
    ++it->second;
  } else {
    counts.emplace(std::string(word), 1);
  }
}

[[noreturn]] void Die(const char* what, const char* path) {
  std::fprintf(stderr, "wc_baseline: %s %s: %s\n", what, path, std::strerror(errno));
  std::exit(1);
}

// Counts every whitespace-separated word of the file at `path`.
void CountFile(const char* path, CountMap& counts) {
  const int fd = ::open(path, O_RDONLY);
  if (fd < 0) Die("open", path);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  // buf holds [carry | fresh data]; carry is the unfinished word that ended
  // the previous chunk. It grows only if a single word exceeds a chunk.
  size_t cap = 2 * kReadChunk;
  std::unique_ptr<char[]> buf(new char[cap]);
  size_t carry = 0;
  for (;;) {
    if (cap - carry < kReadChunk) {
      const size_t new_cap = 2 * cap;
      std::unique_ptr<char[]> bigger(new char[new_cap]);
      std::memcpy(bigger.get(), buf.get(), carry);
      buf = std::move(bigger);
      cap = new_cap;
    }
    const ssize_t n = ::read(fd, buf.get() + carry, cap - carry);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("read", path);
    }
    const char* const begin = buf.get();
    const char* const end = begin + carry + static_cast<size_t>(n);
    if (n == 0) {  // EOF: the carry is the last word.
      if (carry > 0) CountWord(counts, absl::string_view(begin, carry));
      break;
    }
    const char* p = begin;
    for (;;) {
      while (p < end && IsSpace(*p)) ++p;
      const char* word = p;
      while (p < end && !IsSpace(*p)) ++p;
      if (p == end) {  // Word (possibly empty) may continue in next chunk.
        carry = static_cast<size_t>(end - word);
        std::memmove(buf.get(), word, carry);
        break;
      }
      CountWord(counts, absl::string_view(word, static_cast<size_t>(p - word)));
    }
  }
  ::close(fd);
}

// Appends `s` as a JSON string literal (quotes included).
void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

void WriteAll(int fd, const std::string& data, const char* path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void WriteCounts(const CountMap& counts, const char* path) {
  const bool to_stdout = path == nullptr || std::strcmp(path, "-") == 0;
  const char* name = to_stdout ? "<stdout>" : path;
  const int fd = to_stdout ? STDOUT_FILENO : ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die("open", name);
  std::string out;
  out.reserve(kReadChunk + 256);
  for (const auto& [word, count] : counts) {
    out.append("{\"word\":");
    AppendJsonString(out, word);
    out.append(",\"count\":");
    out.append(std::to_string(count));
    out.append("}\n");
    if (out.size() >= kReadChunk) {
      WriteAll(fd, out, name);
      out.clear();
    }
  }
  WriteAll(fd, out, name);
  if (!to_stdout && ::close(fd) != 0) Die("close", name);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s INPUT [OUTPUT|-]\n", argv[0]);
    return 2;
  }
  CountMap counts;
  counts.reserve(1 << 17);
  CountFile(argv[1], counts);
  WriteCounts(counts, argc == 3 ? argv[2] : nullptr);
  return 0;
}
