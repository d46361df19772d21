// Our own binary-compatible declarations of the subset of include/uapi/linux/bpf.h that
// bpfmap serves. Layouts follow the running kernel (6.18); uapi_check.cc asserts every
// offset that the system's (older) <linux/bpf.h> also declares.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bpfmap::uapi {

enum bpf_cmd : int {
	MAP_CREATE = 0,
	MAP_LOOKUP_ELEM = 1,
	MAP_UPDATE_ELEM = 2,
	MAP_DELETE_ELEM = 3,
	MAP_GET_NEXT_KEY = 4,
	PROG_LOAD = 5,
	OBJ_PIN = 6,
	OBJ_GET = 7,
	MAP_GET_NEXT_ID = 12,
	MAP_GET_FD_BY_ID = 14,
	OBJ_GET_INFO_BY_FD = 15,
	MAP_LOOKUP_AND_DELETE_ELEM = 21,
	BTF_LOAD = 18,
	BTF_GET_FD_BY_ID = 19,
	MAP_FREEZE = 22,
	BTF_GET_NEXT_ID = 23,
	MAP_LOOKUP_BATCH = 24,
	MAP_LOOKUP_AND_DELETE_BATCH = 25,
	MAP_UPDATE_BATCH = 26,
	MAP_DELETE_BATCH = 27,
};

enum bpf_map_type : uint32_t {
	MAP_TYPE_UNSPEC = 0,
#define BPFMAP_MAP_TYPE(name, value, cxx, ops) MAP_TYPE_##name = value,
#include "bpfmap/map_types.h"
#undef BPFMAP_MAP_TYPE
	MAP_TYPE_ARENA = 33, // not served; named for a MAP_CREATE rule (map_extra)
	MAP_TYPE_MAX = 64,   // upper bound of the registry table, not a kernel value
};

// Element command flags.
enum : uint64_t {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_LOCK = 4,
};

// MAP_CREATE map_flags.
enum : uint32_t {
	BPF_F_NO_PREALLOC = 1U << 0,
	BPF_F_NO_COMMON_LRU = 1U << 1,
	BPF_F_NUMA_NODE = 1U << 2,
	BPF_F_RDONLY = 1U << 3,
	BPF_F_WRONLY = 1U << 4,
	BPF_F_STACK_BUILD_ID = 1U << 5,
	BPF_F_ZERO_SEED = 1U << 6,
	BPF_F_RDONLY_PROG = 1U << 7,
	BPF_F_WRONLY_PROG = 1U << 8,
	BPF_F_CLONE = 1U << 9,
	BPF_F_MMAPABLE = 1U << 10,
	BPF_F_PRESERVE_ELEMS = 1U << 11,
	BPF_F_INNER_MAP = 1U << 12,
	BPF_F_LINK = 1U << 13,
	BPF_F_PATH_FD = 1U << 14,
	BPF_F_VTYPE_BTF_OBJ_FD = 1U << 15,
	BPF_F_TOKEN_FD = 1U << 16,
	BPF_F_SEGV_ON_FAULT = 1U << 17,
	BPF_F_NO_USER_CONV = 1U << 18,
	BPF_F_RB_OVERWRITE = 1U << 19,
};

// Ring buffers: wakeup flags of submit/discard/output/drain, what query asks, and the
// record header's bits and size.
enum : uint64_t {
	BPF_RB_NO_WAKEUP = 1ULL << 0,
	BPF_RB_FORCE_WAKEUP = 1ULL << 1,
};
enum : uint64_t {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};
enum : uint32_t {
	BPF_RINGBUF_BUSY_BIT = 1U << 31,
	BPF_RINGBUF_DISCARD_BIT = 1U << 30,
	BPF_RINGBUF_HDR_SZ = 8,
};

inline constexpr uint32_t BPF_F_ACCESS_MASK =
	BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

inline constexpr unsigned OBJ_NAME_LEN = 16;

// The kernel's internal "not supported" errno, which bpf(2) hands to user space as is.
inline constexpr int ENOTSUPP = 524;

// The kernel rejects attr sizes above one page and non-zero bytes past its own union.
inline constexpr unsigned BPF_ATTR_MAX_USER_SIZE = 4096;

struct map_create_attr {
	uint32_t map_type;
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;
	uint32_t inner_map_fd;
	uint32_t numa_node;
	char map_name[OBJ_NAME_LEN];
	uint32_t map_ifindex;
	uint32_t btf_fd;
	uint32_t btf_key_type_id;
	uint32_t btf_value_type_id;
	uint32_t btf_vmlinux_value_type_id;
	uint64_t map_extra;
	int32_t value_type_btf_obj_fd;
	int32_t map_token_fd;
	uint64_t excl_prog_hash;
	uint32_t excl_prog_hash_size;
};

struct elem_attr {
	uint32_t map_fd;
	uint64_t key;
	union {
		uint64_t value;
		uint64_t next_key;
	};
	uint64_t flags;
};

struct batch_attr {
	uint64_t in_batch;
	uint64_t out_batch;
	uint64_t keys;
	uint64_t values;
	uint32_t count;
	uint32_t map_fd;
	uint64_t elem_flags;
	uint64_t flags;
};

struct obj_attr {
	uint64_t pathname;
	uint32_t bpf_fd;
	uint32_t file_flags;
	int32_t path_fd;
};

struct id_attr {
	union {
		uint32_t start_id;
		uint32_t map_id;
	};
	uint32_t next_id;
	uint32_t open_flags;
	int32_t fd_by_id_token_fd;
};

struct info_attr {
	uint32_t bpf_fd;
	uint32_t info_len;
	uint64_t info;
};

struct btf_load_attr {
	uint64_t btf;
	uint64_t btf_log_buf;
	uint32_t btf_size;
	uint32_t btf_log_size;
	uint32_t btf_log_level;
	uint32_t btf_log_true_size;
	uint32_t btf_flags;
	int32_t btf_token_fd;
};

// The kernel's union bpf_attr is larger than anything a map command reads; the raw
// array gives ours the running kernel's size so the tail-zero rule matches.
inline constexpr size_t BPF_ATTR_SIZE = 168;

union bpf_attr {
	map_create_attr map_create;
	elem_attr elem;
	batch_attr batch;
	obj_attr obj;
	id_attr id;
	info_attr info;
	btf_load_attr btf_load;
	unsigned char raw[BPF_ATTR_SIZE];
};
static_assert(sizeof(bpf_attr) == BPF_ATTR_SIZE);

struct alignas(8) bpf_map_info {
	uint32_t type;
	uint32_t id;
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;
	char name[OBJ_NAME_LEN];
	uint32_t ifindex;
	uint32_t btf_vmlinux_value_type_id;
	uint64_t netns_dev;
	uint64_t netns_ino;
	uint32_t btf_id;
	uint32_t btf_key_type_id;
	uint32_t btf_value_type_id;
	uint32_t btf_vmlinux_id;
	uint64_t map_extra;
	uint64_t hash;
	uint32_t hash_size;
};

struct alignas(8) bpf_btf_info {
	uint64_t btf;
	uint32_t btf_size;
	uint32_t id;
	uint64_t name;
	uint32_t name_len;
	uint32_t kernel_btf;
};

// Per-command "last field": the kernel's CHECK_ATTR requires every byte after it to be 0.
inline constexpr size_t end_of_map_create = offsetof(map_create_attr, excl_prog_hash_size) + 4;
inline constexpr size_t end_of_elem = offsetof(elem_attr, flags) + 8;
inline constexpr size_t end_of_map_fd = offsetof(elem_attr, map_fd) + 4;
inline constexpr size_t end_of_key = offsetof(elem_attr, key) + 8;
inline constexpr size_t end_of_next_key = offsetof(elem_attr, next_key) + 8;
inline constexpr size_t end_of_batch = offsetof(batch_attr, flags) + 8;
inline constexpr size_t end_of_obj = offsetof(obj_attr, path_fd) + 4;
inline constexpr size_t end_of_info = offsetof(info_attr, info) + 8;
inline constexpr size_t end_of_next_id = offsetof(id_attr, next_id) + 4;
inline constexpr size_t end_of_open_flags = offsetof(id_attr, open_flags) + 4;
inline constexpr size_t end_of_btf_load = offsetof(btf_load_attr, btf_token_fd) + 4;
inline constexpr size_t end_of_btf_by_id = offsetof(id_attr, fd_by_id_token_fd) + 4;

} // namespace bpfmap::uapi
