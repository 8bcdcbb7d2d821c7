/* Shared by every unit of the ccache sample (test/e2e/ccache_test.sh). */
#ifndef CCACHEWS_COMMON_H
#define CCACHEWS_COMMON_H
#define COMMON_ROUNDS 64
/* -DCCACHEWS_SALT=N changes every unit's preprocessed text (new ccache keys). */
#ifdef CCACHEWS_SALT
enum { ccachews_salt = CCACHEWS_SALT };
#endif
#ifdef __cplusplus
extern "C" {
#endif
static inline long mix(long a, long b) {
  unsigned long h = (unsigned long)a * 0x9E3779B97F4A7C15UL ^ (unsigned long)b;
  return (long)(h ^ (h >> 29));
}
#ifdef __cplusplus
}
#endif
#endif
