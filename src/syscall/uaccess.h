// Caller memory, as the syscall layer sees it. The kernel faults on any address it cannot
// reach; in one address space bpfmap can only refuse the ones that are never valid (the
// first page, where NULL and small integers point).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace bpfmap {

inline void *user_ptr(uint64_t v) { return reinterpret_cast<void *>(static_cast<uintptr_t>(v)); }

inline bool bad_user_ptr(const void *p) { return reinterpret_cast<uintptr_t>(p) < 4096; }

inline int copy_to_user(uint64_t uptr, const void *src, size_t n)
{
	void *dst = user_ptr(uptr);
	if (bad_user_ptr(dst))
		return -EFAULT;
	memcpy(dst, src, n);
	return 0;
}

inline int copy_from_user(void *dst, uint64_t uptr, size_t n)
{
	const void *src = user_ptr(uptr);
	if (bad_user_ptr(src))
		return -EFAULT;
	memcpy(dst, src, n);
	return 0;
}

} // namespace bpfmap
