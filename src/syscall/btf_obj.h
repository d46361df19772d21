// BTF objects: BPF_BTF_LOAD, BTF_GET_FD_BY_ID, BTF_GET_NEXT_ID, bpf_btf_info, and what map
// creation needs of a BTF fd. A BTF object is a file in the pin root holding the blob; its
// fds are read-only, as the kernel's are, and it lives while an fd or a map made with it
// does (see mapid.h).
#pragma once

#include <cstdint>
#include <vector>

#include "uapi/bpf_uapi.h"

namespace bpfmap {

long btf_load(const uapi::btf_load_attr &attr, bool bad_tail, void *uattr, unsigned size);
long btf_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail);
long btf_get_next_id(uapi::id_attr &attr, bool bad_tail);

// The BTF object behind fd: its id and blob. -EBADF if fd is not open, -EINVAL if it is
// not a BTF object.
int btf_from_fd(int fd, uint32_t *id, std::vector<uint8_t> *blob);

// The id of the BTF object behind fd, or 0 if fd is not a BTF fd.
uint32_t btf_fd_id(int fd);

// OBJ_GET_INFO_BY_FD for a BTF fd, after the generic attr checks.
long btf_get_info(int fd, uapi::info_attr &attr);

// fds first..last were closed or replaced: a BTF object made or opened here that nothing
// holds any more (no fd, no map made with it) loses its id then, as the kernel frees it.
void btf_fds_closed(int first, int last);

// At exit: close the BTF fds made or opened here, with the same effect.
void btf_fds_release();

} // namespace bpfmap
