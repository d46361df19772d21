#include "core/registry.h"

#include <array>

namespace bpfmap {
namespace {

constexpr std::array<const bpf_map_ops *, uapi::MAP_TYPE_MAX> build_table()
{
	std::array<const bpf_map_ops *, uapi::MAP_TYPE_MAX> t{};
#define BPFMAP_MAP_TYPE(name, value, cxx, ops) t[uapi::MAP_TYPE_##name] = &ops;
#include "bpfmap/map_types.h"
#undef BPFMAP_MAP_TYPE
	return t;
}

constexpr auto ops_by_type = build_table();

} // namespace

const bpf_map_ops *map_type_ops(uint32_t map_type)
{
	return map_type < ops_by_type.size() ? ops_by_type[map_type] : nullptr;
}

} // namespace bpfmap
