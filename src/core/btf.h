// BTF blobs as BPF_BTF_LOAD takes them: the checks the kernel's btf_parse() makes, and the
// one question map creation asks of a type (its size, as btf_type_id_size() answers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bpfmap::btf {

inline constexpr uint16_t MAGIC = 0xeb9f;
inline constexpr size_t MAX_SIZE = 16 * 1024 * 1024; // the kernel's BTF_MAX_SIZE

enum kind : uint32_t {
	KIND_UNKN,
	KIND_INT,
	KIND_PTR,
	KIND_ARRAY,
	KIND_STRUCT,
	KIND_UNION,
	KIND_ENUM,
	KIND_FWD,
	KIND_TYPEDEF,
	KIND_VOLATILE,
	KIND_CONST,
	KIND_RESTRICT,
	KIND_FUNC,
	KIND_FUNC_PROTO,
	KIND_VAR,
	KIND_DATASEC,
	KIND_FLOAT,
	KIND_DECL_TAG,
	KIND_TYPE_TAG,
	KIND_ENUM64,
	KIND_MAX = KIND_ENUM64,
};

struct type_ref {
	uint32_t kind, vlen, size_or_type, name_off;
	bool kflag;
	const uint8_t *extra; // the kind's records after struct btf_type
};

// What an INT type's 32-bit record says: its bits, their offset, and its encoding.
struct int_data {
	uint32_t bits, offset, encoding;
};
int_data int_of(const type_ref &t);

// A checked blob: where each type starts. Type id i (1-based) is types[i - 1].
class view {
public:
	// 0, or -EINVAL / -E2BIG / -ENOTSUPP (524) with a one-line reason, as btf_parse().
	int parse(const uint8_t *data, size_t size, std::string *why);
	uint32_t nr_types() const { return static_cast<uint32_t>(types_.size()); }
	type_ref type(uint32_t id) const;
	// The size of type id once typedefs and modifiers are peeled; false for a type with
	// no size (void, functions, variables, forward declarations, or an id out of range).
	bool type_size(uint32_t id, uint32_t *size, type_ref *resolved) const;

private:
	int check_type(uint32_t id, std::string *why) const;
	const uint8_t *types_base_ = nullptr;
	const char *strings_ = nullptr;
	uint32_t str_len_ = 0;
	std::vector<uint32_t> types_; // offsets into the type section
	bool name_ok(uint32_t off) const { return off < str_len_; }
	bool identifier(uint32_t off, bool section) const;
};

} // namespace bpfmap::btf
