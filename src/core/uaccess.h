// Caller memory, as the syscall layer sees it. The kernel faults on any address it cannot
// reach; in one address space bpfmap can only refuse the ones that are never valid (the
// first page, where NULL and small integers point).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/shmem.h"
#include "uapi/bpf_uapi.h"

namespace bpfmap {

// Whether any of n bytes at p is not zero (the kernel's memchr_inv() != NULL): read a word
// at a time, since a caller's attr tail may be a hundred bytes or more of zeros.
inline bool mem_nonzero(const void *p, size_t n)
{
	auto *b = static_cast<const unsigned char *>(p);
	uint64_t acc = 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= b[i];
	return acc != 0;
}

inline void *user_ptr(uint64_t v) { return reinterpret_cast<void *>(static_cast<uintptr_t>(v)); }

inline bool bad_user_ptr(const void *p) { return reinterpret_cast<uintptr_t>(p) < 4096; }

inline int copy_to_user(uint64_t uptr, const void *src, size_t n)
{
	void *dst = user_ptr(uptr);
	if (bad_user_ptr(dst))
		return -EFAULT;
	BPFMAP_SMALL_SIZES(n, memcpy(dst, src, k); return 0)
	memcpy(dst, src, n);
	return 0;
}

inline int copy_from_user(void *dst, uint64_t uptr, size_t n)
{
	const void *src = user_ptr(uptr);
	if (bad_user_ptr(src))
		return -EFAULT;
	BPFMAP_SMALL_SIZES(n, memcpy(dst, src, k); return 0)
	memcpy(dst, src, n);
	return 0;
}

// The start of OBJ_GET_INFO_BY_FD: the caller's info buffer of *len bytes may be longer
// than the `size` bytes of the info struct bpfmap knows, but only with zeros past `known`
// (the kernel's bpf_check_uarg_tail_zero()); *len is cut to `size` and that much of the
// caller's buffer copied into info.
inline int info_copy_in(uint64_t uinfo, uint32_t *len, size_t known, void *info, size_t size)
{
	auto *u = static_cast<const unsigned char *>(user_ptr(uinfo));
	if (*len > uapi::BPF_ATTR_MAX_USER_SIZE)
		return -E2BIG;
	if (*len && bad_user_ptr(u))
		return -EFAULT;
	if (*len > known && mem_nonzero(u + known, *len - known))
		return -E2BIG;
	if (*len > size)
		*len = static_cast<uint32_t>(size);
	if (*len)
		memcpy(info, u, *len);
	return 0;
}

} // namespace bpfmap
