// Map type -> ops, built from the one list of types (include/bpfmap/map_types.h).
#pragma once

#include "core/map.h"

namespace bpfmap {

#define BPFMAP_MAP_TYPE(name, value, cxx, ops) extern const bpf_map_ops ops;
#include "bpfmap/map_types.h"
#undef BPFMAP_MAP_TYPE

// The ops of a map type, or nullptr when bpfmap does not serve it.
const bpf_map_ops *map_type_ops(uint32_t map_type);

} // namespace bpfmap
