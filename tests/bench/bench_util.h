// Shared helpers for the benchmark data generators (single-threaded tools): a
// portable seeded PRNG (xoshiro256** seeded through splitmix64, so output never
// depends on the standard library's distributions) and a buffered writer that
// emits large write(2) calls.
#ifndef ONCEFLOW_TESTS_BENCH_BENCH_UTIL_H_
#define ONCEFLOW_TESTS_BENCH_BENCH_UTIL_H_

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace onceflow::bench {

// xoshiro256** (Blackman & Vigna). Deterministic on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& word : s_) word = SplitMix64(seed);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform integer in [0, bound) via Lemire's multiply-shift (the tiny bias
  // is irrelevant here; determinism is what matters).
  uint32_t Below(uint32_t bound) { return static_cast<uint32_t>(((Next() >> 32) * bound) >> 32); }

  // Uniform double in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
};

// Appends to an in-memory buffer and flushes it with write(2) once it holds
// more than `flush_at` bytes. Exits the process on I/O errors: these are
// command-line tools, and a half-written data file must not look valid.
class BufferedWriter {
 public:
  explicit BufferedWriter(const std::string& path, size_t flush_at = 8 << 20)
      : path_(path), flush_at_(flush_at) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) Die("open");
    buf_.reserve(flush_at_ + 4096);
  }
  BufferedWriter(const BufferedWriter&) = delete;
  BufferedWriter& operator=(const BufferedWriter&) = delete;
  ~BufferedWriter() { Close(); }

  void Append(std::string_view s) {
    buf_.append(s);
    if (buf_.size() >= flush_at_) Flush();
  }
  void Append(char c) {
    buf_.push_back(c);
    if (buf_.size() >= flush_at_) Flush();
  }
  // Appends the decimal form of `v`.
  void AppendUint(uint64_t v) {
    char tmp[24];
    char* end = tmp + sizeof(tmp);
    char* p = end;
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    Append(std::string_view(p, static_cast<size_t>(end - p)));
  }

  void Flush() {
    const char* p = buf_.data();
    size_t left = buf_.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die("write");
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    buf_.clear();
  }

  void Close() {
    if (fd_ < 0) return;
    Flush();
    if (::close(fd_) != 0) Die("close");
    fd_ = -1;
  }

 private:
  [[noreturn]] void Die(const char* what) {
    std::fprintf(stderr, "%s %s: %s\n", what, path_.c_str(), std::strerror(errno));
    std::exit(1);
  }

  std::string path_;
  size_t flush_at_;
  int fd_ = -1;
  std::string buf_;
};

// Parses a non-negative decimal count such as "20000000" (also accepts
// "20M" / "200k"). Returns false on malformed input.
inline bool ParseCount(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s) return false;
  uint64_t mult = 1;
  if (*end == 'k' || *end == 'K') {
    mult = 1000;
    ++end;
  } else if (*end == 'm' || *end == 'M') {
    mult = 1000000;
    ++end;
  }
  if (*end != '\0') return false;
  *out = static_cast<uint64_t>(v) * mult;
  return true;
}

}  // namespace onceflow::bench

#endif  // ONCEFLOW_TESTS_BENCH_BENCH_UTIL_H_
