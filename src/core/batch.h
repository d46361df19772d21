// The batch commands' generic walks (the kernel's generic_map_*_batch), built on a type's
// single-element ops. A family without its own batch walk points its ops table here.
//
// Each returns 0 or -errno and writes the caller's count (and out_batch) into the caller's
// attr, uattr, exactly where and when the kernel's do.
#pragma once

#include "core/map.h"

namespace bpfmap {

int generic_map_lookup_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr);
int generic_map_update_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr);
int generic_map_delete_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr);

// elem_flags: only BPF_F_LOCK is defined, and no map records a bpf_spin_lock in its value yet.
int batch_check_elem_flags(uint64_t elem_flags);

} // namespace bpfmap
