// Map type -> ops, built from map_types.h.
#pragma once

#include "core/map.h"

namespace bpfmap {

#define BPF_MAP_TYPE(type, ops) extern const bpf_map_ops ops;
#include "core/map_types.h"
#undef BPF_MAP_TYPE

// The ops of a map type, or nullptr when bpfmap does not serve it.
const bpf_map_ops *map_type_ops(uint32_t map_type);

} // namespace bpfmap
