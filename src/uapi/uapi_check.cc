// Compile-time proof that our declarations match the system's <linux/bpf.h> wherever the
// (older) system header declares the same field. Fields newer than the header are checked
// by the kernel-differential tests instead.
#include <linux/bpf.h>

#include "bpfmap/map.hpp"
#include "uapi/bpf_uapi.h"

namespace u = bpfmap::uapi;

static_assert(sizeof(union bpf_attr) <= u::BPF_ATTR_SIZE);
static_assert(offsetof(union bpf_attr, map_type) == offsetof(u::map_create_attr, map_type));
static_assert(offsetof(union bpf_attr, map_flags) == offsetof(u::map_create_attr, map_flags));
static_assert(offsetof(union bpf_attr, map_name) == offsetof(u::map_create_attr, map_name));
static_assert(offsetof(union bpf_attr, btf_fd) == offsetof(u::map_create_attr, btf_fd));
static_assert(offsetof(union bpf_attr, map_extra) == offsetof(u::map_create_attr, map_extra));
static_assert(offsetof(union bpf_attr, map_fd) == offsetof(u::elem_attr, map_fd));
static_assert(offsetof(union bpf_attr, key) == offsetof(u::elem_attr, key));
static_assert(offsetof(union bpf_attr, value) == offsetof(u::elem_attr, value));
static_assert(offsetof(union bpf_attr, flags) == offsetof(u::elem_attr, flags));
static_assert(offsetof(union bpf_attr, batch.count) == offsetof(u::batch_attr, count));
static_assert(offsetof(union bpf_attr, batch.flags) == offsetof(u::batch_attr, flags));
static_assert(offsetof(union bpf_attr, pathname) == offsetof(u::obj_attr, pathname));
static_assert(offsetof(union bpf_attr, file_flags) == offsetof(u::obj_attr, file_flags));
static_assert(offsetof(union bpf_attr, info.info) == offsetof(u::info_attr, info));
static_assert(offsetof(struct bpf_map_info, map_extra) == offsetof(u::bpf_map_info, map_extra));
static_assert(offsetof(struct bpf_map_info, name) == offsetof(u::bpf_map_info, name));
static_assert(offsetof(struct bpf_map_info, btf_value_type_id) ==
	      offsetof(u::bpf_map_info, btf_value_type_id));
static_assert(int(BPF_MAP_LOOKUP_AND_DELETE_ELEM) == int(u::MAP_LOOKUP_AND_DELETE_ELEM));
static_assert(int(BPF_MAP_FREEZE) == int(u::MAP_FREEZE));
static_assert(int(BPF_OBJ_GET_INFO_BY_FD) == int(u::OBJ_GET_INFO_BY_FD));
static_assert(int(BPF_MAP_DELETE_BATCH) == int(u::MAP_DELETE_BATCH));
static_assert(int(BPF_F_MMAPABLE) == int(u::BPF_F_MMAPABLE));
static_assert(int(BPF_F_ZERO_SEED) == int(u::BPF_F_ZERO_SEED));
static_assert(int(BPF_F_INNER_MAP) == int(u::BPF_F_INNER_MAP));
static_assert(sizeof(struct bpf_map_info) <= sizeof(u::bpf_map_info));
static_assert(uint64_t(BPF_RB_NO_WAKEUP) == u::BPF_RB_NO_WAKEUP);
static_assert(uint64_t(BPF_RB_FORCE_WAKEUP) == u::BPF_RB_FORCE_WAKEUP);
static_assert(uint64_t(BPF_RB_AVAIL_DATA) == u::BPF_RB_AVAIL_DATA);
static_assert(uint64_t(BPF_RB_RING_SIZE) == u::BPF_RB_RING_SIZE);
static_assert(uint64_t(BPF_RB_CONS_POS) == u::BPF_RB_CONS_POS);
static_assert(uint64_t(BPF_RB_PROD_POS) == u::BPF_RB_PROD_POS);
static_assert(uint32_t(BPF_RINGBUF_BUSY_BIT) == u::BPF_RINGBUF_BUSY_BIT);
static_assert(uint32_t(BPF_RINGBUF_DISCARD_BIT) == u::BPF_RINGBUF_DISCARD_BIT);
static_assert(uint32_t(BPF_RINGBUF_HDR_SZ) == u::BPF_RINGBUF_HDR_SZ);

// Every type of the one list (bpfmap/map_types.h): the system header's number, ours, and
// the C++ enum's.
#define BPFMAP_MAP_TYPE(name, value, cxx, ops)              \
	static_assert(int(BPF_MAP_TYPE_##name) == (value)); \
	static_assert(int(u::MAP_TYPE_##name) == (value));  \
	static_assert(int(bpfmap::cxx) == (value));
#include "bpfmap/map_types.h"
#undef BPFMAP_MAP_TYPE
