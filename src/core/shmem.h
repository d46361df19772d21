// Copies to and from memory that other threads or processes may write at the same time.
//
// Values in a region are read optimistically (a sequence count says afterwards whether the
// copy is usable) and array values are overwritten in place, as the kernel does. Plain
// memcpy is what runs; under ThreadSanitizer the copies are made of relaxed atomic byte
// accesses so that the sanitizer checks everything else without flagging these
// deliberate races.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstring>

#if defined(__SANITIZE_THREAD__)
#define BPFMAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BPFMAP_TSAN 1
#endif
#endif

namespace bpfmap {

// Keys and values of 4, 8 and 16 bytes are the common case; a constant-size memcpy
// compiles to plain moves instead of a library call.
#define BPFMAP_SMALL_SIZES(n, stmt)      \
	switch (n) {                     \
	case 4: {                        \
		constexpr size_t k = 4;  \
		stmt;                    \
	}                                \
	case 8: {                        \
		constexpr size_t k = 8;  \
		stmt;                    \
	}                                \
	case 16: {                       \
		constexpr size_t k = 16; \
		stmt;                    \
	}                                \
	default:                         \
		break;                   \
	}

inline void copy_from_shared(void *dst, const void *src, size_t n)
{
#ifdef BPFMAP_TSAN
	auto *d = static_cast<unsigned char *>(dst);
	auto *s = static_cast<const unsigned char *>(src);
	for (size_t i = 0; i < n; i++)
		d[i] = __atomic_load_n(s + i, __ATOMIC_RELAXED);
#else
	BPFMAP_SMALL_SIZES(n, memcpy(dst, src, k); return )
	memcpy(dst, src, n);
#endif
}

inline void copy_to_shared(void *dst, const void *src, size_t n)
{
#ifdef BPFMAP_TSAN
	auto *d = static_cast<unsigned char *>(dst);
	auto *s = static_cast<const unsigned char *>(src);
	for (size_t i = 0; i < n; i++)
		__atomic_store_n(d + i, s[i], __ATOMIC_RELAXED);
#else
	BPFMAP_SMALL_SIZES(n, memcpy(dst, src, k); return )
	memcpy(dst, src, n);
#endif
}

inline void zero_shared(void *dst, size_t n)
{
#ifdef BPFMAP_TSAN
	auto *d = static_cast<unsigned char *>(dst);
	for (size_t i = 0; i < n; i++)
		__atomic_store_n(d + i, 0, __ATOMIC_RELAXED);
#else
	memset(dst, 0, n);
#endif
}

// Key comparison against a key that may be changing under us; a torn read just compares
// unequal and the caller's sequence check discards it.
inline bool equal_shared(const void *shared, const void *key, size_t n)
{
#ifdef BPFMAP_TSAN
	auto *a = static_cast<const unsigned char *>(shared);
	auto *b = static_cast<const unsigned char *>(key);
	for (size_t i = 0; i < n; i++)
		if (__atomic_load_n(a + i, __ATOMIC_RELAXED) != b[i])
			return false;
	return true;
#else
	BPFMAP_SMALL_SIZES(n, return memcmp(shared, key, k) == 0)
	return memcmp(shared, key, n) == 0;
#endif
}

} // namespace bpfmap
