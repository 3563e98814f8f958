// PrefetchLine: asks the CPU to load the cache line holding `p` (read, all cache levels).
//
// Why not just __builtin_prefetch: GCC treats it as free of side effects, so a loop whose
// only work is prefetching (walking an index to prefetch the entries it names) counts as
// side-effect free and is deleted — together, it turned out, with the prefetches around
// it: KeyedState's two-stage prefetch compiled to nothing in `count` and `aggregate`. An
// asm volatile statement is kept where it is written.
//
// Threading: none.
#pragma once

namespace onceflow {

inline void PrefetchLine(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
  asm volatile("" : : "r"(p) : "memory");
#endif
}

}  // namespace onceflow
