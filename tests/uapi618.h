// The 6.18 kernel's bpf() uapi as the tests need it: command and map type numbers, flags,
// the byte offsets of the attr fields, and a raw bpf() call to the running kernel.
//
// Written out by hand, not taken from <linux/bpf.h> (the installed one is older than 6.18)
// nor from bpfmap's own src/uapi/bpf_uapi.h: the kernel-differential tests use these to
// build attrs byte by byte, and an oracle that shared bpfmap's definitions could not catch
// a wrong one. Needs nothing but the C library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace uapi618 {

enum : int {
	C_MAP_CREATE = 0,
	C_LOOKUP = 1,
	C_UPDATE = 2,
	C_DELETE = 3,
	C_GET_NEXT_KEY = 4,
	C_PROG_LOAD = 5,
	C_PROG_TEST_RUN = 10,
	C_OBJ_GET_INFO = 15,
	C_BTF_LOAD = 18,
	C_BTF_GET_FD_BY_ID = 19,
	C_LOOKUP_AND_DELETE = 21,
	C_FREEZE = 22,
	C_LOOKUP_BATCH = 24,
	C_LOOKUP_AND_DELETE_BATCH = 25,
	C_UPDATE_BATCH = 26,
	C_DELETE_BATCH = 27,
};

constexpr uint32_t T_HASH = 1, T_ARRAY = 2, T_PERCPU_HASH = 5, T_PERCPU_ARRAY = 6, T_LRU_HASH = 9,
		   T_LRU_PERCPU_HASH = 10, T_LPM = 11, T_QUEUE = 22, T_STACK = 23, T_RINGBUF = 27,
		   T_BLOOM = 30, T_USER_RINGBUF = 31;

// The map type's name as the uapi spells it after BPF_MAP_TYPE_, for test labels.
inline const char *map_type_name(uint32_t type)
{
	switch (type) {
	case T_HASH:
		return "HASH";
	case T_ARRAY:
		return "ARRAY";
	case T_PERCPU_HASH:
		return "PERCPU_HASH";
	case T_PERCPU_ARRAY:
		return "PERCPU_ARRAY";
	case T_LRU_HASH:
		return "LRU_HASH";
	case T_LRU_PERCPU_HASH:
		return "LRU_PERCPU_HASH";
	case T_LPM:
		return "LPM_TRIE";
	case T_QUEUE:
		return "QUEUE";
	case T_STACK:
		return "STACK";
	case T_RINGBUF:
		return "RINGBUF";
	case T_BLOOM:
		return "BLOOM_FILTER";
	case T_USER_RINGBUF:
		return "USER_RINGBUF";
	}
	return "type?";
}

constexpr uint32_t F_NO_PREALLOC = 0x1, F_NO_COMMON_LRU = 0x2, F_NUMA_NODE = 0x4, F_RDONLY = 0x8,
		   F_WRONLY = 0x10, F_ZERO_SEED = 0x40, F_RDONLY_PROG = 0x80, F_WRONLY_PROG = 0x100,
		   F_MMAPABLE = 0x400, F_PRESERVE_ELEMS = 0x800, F_INNER_MAP = 0x1000,
		   F_VTYPE_BTF_OBJ_FD = 0x8000, F_TOKEN_FD = 0x10000;

constexpr uint64_t U_ANY = 0, U_NOEXIST = 1, U_EXIST = 2, U_LOCK = 4;

constexpr size_t KATTR = 168;	  // sizeof(union bpf_attr) on 6.18
constexpr size_t INFO_SIZE = 104; // sizeof(struct bpf_map_info) on 6.18
constexpr int ENOTSUPP_ = 524;
constexpr size_t PAGE = 4096;

// MAP_CREATE offsets
constexpr size_t MC_TYPE = 0, MC_KEY = 4, MC_VALUE = 8, MC_MAX = 12, MC_FLAGS = 16, MC_INNER = 20,
		 MC_NUMA = 24, MC_NAME = 28, MC_IFINDEX = 44, MC_BTF_FD = 48, MC_BTF_KEY = 52,
		 MC_BTF_VALUE = 56, MC_BTF_VMLINUX = 60, MC_EXTRA = 64, MC_VTYPE_FD = 72,
		 MC_TOKEN = 76, MC_EXCL = 80, MC_EXCL_SIZE = 88, MC_END = 92;
// batch offsets
constexpr size_t B_IN = 0, B_OUT = 8, B_KEYS = 16, B_VALUES = 24, B_COUNT = 32, B_FD = 36,
		 B_ELEM_FLAGS = 40, B_FLAGS = 48;
// element command offsets
constexpr size_t E_FD = 0, E_KEY = 8, E_VALUE = 16, E_FLAGS = 24;
// OBJ_GET_INFO_BY_FD offsets
constexpr size_t I_FD = 0, I_LEN = 4, I_INFO = 8;

inline void put32(std::vector<uint8_t> &b, size_t off, uint32_t v)
{
	memcpy(b.data() + off, &v, 4);
}
inline void put64(std::vector<uint8_t> &b, size_t off, uint64_t v)
{
	memcpy(b.data() + off, &v, 8);
}
inline uint32_t get32(const std::vector<uint8_t> &b, size_t off)
{
	uint32_t v;
	memcpy(&v, b.data() + off, 4);
	return v;
}

// bpf(2) on the running kernel: the result, errno set on failure.
inline long kernel_bpf(int cmd, void *attr, unsigned size)
{
	return syscall(__NR_bpf, cmd, attr, size);
}

} // namespace uapi618
