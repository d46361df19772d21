#include "core/btf.h"

#include <cerrno>
#include <cstring>

#include "core/uaccess.h"
#include "uapi/bpf_uapi.h"

namespace bpfmap::btf {
namespace {

constexpr uint32_t INFO_MASK = 0x9f00ffff; // vlen, kind, kind_flag
constexpr uint32_t MAX_NAME_OFFSET = 0xffffff;
constexpr uint32_t MAX_TYPE = 0xfffff;
constexpr size_t TYPE_SIZE = 12; // struct btf_type
constexpr int MAX_RESOLVE_DEPTH = 32;

struct header {
	uint16_t magic;
	uint8_t version, flags;
	uint32_t hdr_len, type_off, type_len, str_off, str_len;
};
static_assert(sizeof(header) == 24);

uint32_t load32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

int fail(std::string *why, const char *reason, int err = -EINVAL)
{
	*why = reason;
	return err;
}

// Bytes of records that follow struct btf_type for this kind.
int64_t extra_size(uint32_t kind, uint32_t vlen)
{
	switch (kind) {
	case KIND_INT:
	case KIND_VAR:
	case KIND_DECL_TAG:
		return 4;
	case KIND_ARRAY:
		return 12;
	case KIND_STRUCT:
	case KIND_UNION:
	case KIND_DATASEC:
	case KIND_ENUM64:
		return int64_t{12} * vlen;
	case KIND_ENUM:
	case KIND_FUNC_PROTO:
		return int64_t{8} * vlen;
	default:
		return 0;
	}
}

bool is_modifier(uint32_t kind)
{
	return kind == KIND_TYPEDEF || kind == KIND_VOLATILE || kind == KIND_CONST ||
	       kind == KIND_RESTRICT || kind == KIND_TYPE_TAG;
}

bool pow2_upto(uint32_t v, uint32_t max) { return v && v <= max && !(v & (v - 1)); }

} // namespace

int_data int_of(const type_ref &t)
{
	uint32_t v = load32(t.extra);
	return {v & 0xff, (v >> 16) & 0xff, v >> 24};
}

type_ref view::type(uint32_t id) const
{
	const uint8_t *t = types_base_ + types_[id - 1];
	uint32_t info = load32(t + 4);
	return {(info >> 24) & 0x1f, info & 0xffff,	load32(t + 8),
		load32(t),	     (info >> 31) != 0, t + TYPE_SIZE};
}

bool view::identifier(uint32_t off, bool section) const
{
	if (!off || !name_ok(off))
		return false;
	const char *s = strings_ + off;
	auto head = [&](char c) {
		return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
		       (section && c == '.');
	};
	if (!head(*s))
		return false;
	for (s++; *s; s++)
		if (!head(*s) && !(*s >= '0' && *s <= '9') &&
		    !(section && (*s == '.' || *s == '?')))
			return false;
	return true;
}

bool view::type_size(uint32_t id, uint32_t *size, type_ref *resolved) const
{
	for (int depth = 0; depth < MAX_RESOLVE_DEPTH; depth++) {
		if (id == 0 || id > nr_types())
			return false;
		type_ref t = type(id);
		switch (t.kind) {
		case KIND_INT:
		case KIND_ENUM:
		case KIND_ENUM64:
		case KIND_STRUCT:
		case KIND_UNION:
		case KIND_FLOAT:
		case KIND_DATASEC:
			*size = t.size_or_type;
			break;
		case KIND_PTR:
			*size = sizeof(uint64_t);
			break;
		case KIND_ARRAY: {
			uint32_t elem;
			if (!type_size(load32(t.extra), &elem, nullptr))
				return false;
			uint64_t total = uint64_t{elem} * load32(t.extra + 8);
			if (total > UINT32_MAX)
				return false;
			*size = static_cast<uint32_t>(total);
			break;
		}
		default:
			// Modifiers and variables stand for the type they name.
			if (!is_modifier(t.kind) && t.kind != KIND_VAR)
				return false;
			id = t.size_or_type;
			continue;
		}
		if (resolved)
			*resolved = t;
		return true;
	}
	return false;
}

// The checks of one type's own record (the kernel's check_meta) and of what it refers to
// (its resolve step), together.
int view::check_type(uint32_t id, std::string *why) const
{
	type_ref t = type(id);
	const uint32_t n = nr_types();
	auto valid_id = [&](uint32_t ref) { return ref <= n; };
	uint32_t size;
	switch (t.kind) {
	case KIND_INT: {
		int_data d = int_of(t);
		if (t.vlen || t.kflag || (load32(t.extra) & 0x0000ff00))
			return fail(why, "int: vlen, kind_flag or reserved bits set");
		if (!t.size_or_type || t.size_or_type > 16 || d.bits > 128 ||
		    d.offset + d.bits > t.size_or_type * 8)
			return fail(why, "int: invalid size, bits or offset");
		if (d.encoding && d.encoding != 1 && d.encoding != 2 && d.encoding != 4)
			return fail(why, "int: unsupported encoding");
		return 0;
	}
	case KIND_PTR:
	case KIND_VOLATILE:
	case KIND_CONST:
	case KIND_RESTRICT:
		if (t.vlen || t.kflag || t.name_off)
			return fail(why, "modifier: vlen, kind_flag or name set");
		[[fallthrough]];
	case KIND_TYPEDEF:
	case KIND_TYPE_TAG:
		if ((t.kind == KIND_TYPEDEF || t.kind == KIND_TYPE_TAG) &&
		    (t.vlen || !identifier(t.name_off, false) ||
		     (t.kind == KIND_TYPEDEF && t.kflag)))
			return fail(why, "typedef/type_tag: invalid name, vlen or kind_flag");
		if (t.size_or_type > MAX_TYPE || !valid_id(t.size_or_type))
			return fail(why, "modifier: invalid type");
		if (t.kind != KIND_PTR) {
			// A chain of modifiers must end somewhere other than itself.
			uint32_t ref = t.size_or_type;
			for (int depth = 0; ref && is_modifier(type(ref).kind); depth++) {
				if (depth >= MAX_RESOLVE_DEPTH || ref == id)
					return fail(why, "loop detected", -EEXIST);
				ref = type(ref).size_or_type;
			}
		}
		return 0;
	case KIND_ARRAY: {
		uint32_t elem = load32(t.extra), index = load32(t.extra + 4);
		type_ref it;
		if (t.vlen || t.kflag || t.name_off || t.size_or_type)
			return fail(why, "array: vlen, kind_flag, name or size set");
		if (!valid_id(elem) || !valid_id(index))
			return fail(why, "array: invalid type");
		if (!type_size(index, &size, &it) || it.kind != KIND_INT)
			return fail(why, "array: invalid index");
		if (!type_size(elem, &size, nullptr))
			return fail(why, "array: invalid elem");
		if (uint64_t{size} * load32(t.extra + 8) > UINT32_MAX)
			return fail(why, "array: size overflows U32_MAX");
		return 0;
	}
	case KIND_STRUCT:
	case KIND_UNION:
		if (t.name_off && !identifier(t.name_off, false))
			return fail(why, "struct: invalid name");
		for (uint32_t i = 0; i < t.vlen; i++) {
			const uint8_t *m = t.extra + 12 * i;
			uint32_t mname = load32(m), mtype = load32(m + 4), moff = load32(m + 8);
			if (mname && !identifier(mname, false))
				return fail(why, "member: invalid name");
			type_ref mt;
			if (!valid_id(mtype) || !type_size(mtype, &size, &mt))
				return fail(why, "member: invalid type");
			uint32_t bitfield = t.kflag ? moff >> 24 : 0,
				 bit_off = t.kflag ? moff & 0xffffff : moff;
			uint64_t bits = uint64_t{size} * 8;
			if (mt.kind == KIND_INT && !t.kflag) {
				// An int member may sit at any bit: its own bits are what must fit.
				int_data d = int_of(mt);
				bit_off += d.offset;
				bits = d.bits + (bit_off & 7);
				bit_off &= ~7U;
			} else if (bitfield) {
				bits = bitfield;
			} else if (bit_off & 7) {
				return fail(why, "member is not byte aligned");
			}
			if (uint64_t{bit_off} + bits > uint64_t{t.size_or_type} * 8)
				return fail(why, "member exceeds struct_size");
		}
		return 0;
	case KIND_ENUM:
	case KIND_ENUM64: {
		if (!pow2_upto(t.size_or_type, 8))
			return fail(why, "enum: invalid size");
		if (t.name_off && !identifier(t.name_off, false))
			return fail(why, "enum: invalid name");
		uint32_t rec = t.kind == KIND_ENUM ? 8 : 12;
		for (uint32_t i = 0; i < t.vlen; i++)
			if (!identifier(load32(t.extra + rec * i), false))
				return fail(why, "enum: invalid value name");
		return 0;
	}
	case KIND_FWD:
		if (t.vlen || t.size_or_type || !identifier(t.name_off, false))
			return fail(why, "fwd: invalid name, vlen or type");
		return 0;
	case KIND_FUNC:
		if (t.vlen > 2 || t.kflag || !identifier(t.name_off, false))
			return fail(why, "func: invalid name, linkage or kind_flag");
		if (!valid_id(t.size_or_type) || !t.size_or_type ||
		    type(t.size_or_type).kind != KIND_FUNC_PROTO)
			return fail(why, "func: type is not a func_proto");
		return 0;
	case KIND_FUNC_PROTO:
		if (t.kflag || t.name_off)
			return fail(why, "func_proto: name or kind_flag set");
		if (!valid_id(t.size_or_type))
			return fail(why, "func_proto: invalid return type");
		for (uint32_t i = 0; i < t.vlen; i++) {
			uint32_t pname = load32(t.extra + 8 * i),
				 ptype = load32(t.extra + 8 * i + 4);
			bool varargs = i + 1 == t.vlen && !ptype && !pname;
			if (!varargs &&
			    (!valid_id(ptype) || !ptype || (pname && !identifier(pname, false))))
				return fail(why, "func_proto: invalid arg");
		}
		return 0;
	case KIND_VAR:
		if (t.vlen || t.kflag || !identifier(t.name_off, false) || load32(t.extra) > 2)
			return fail(why, "var: invalid name, linkage, vlen or kind_flag");
		if (!valid_id(t.size_or_type) || !type_size(t.size_or_type, &size, nullptr))
			return fail(why, "var: invalid type");
		return 0;
	case KIND_DATASEC: {
		if (!t.vlen || !t.size_or_type || t.kflag || !identifier(t.name_off, true))
			return fail(why, "datasec: invalid name, vlen, size or kind_flag");
		uint64_t last_end = 0;
		for (uint32_t i = 0; i < t.vlen; i++) {
			const uint8_t *v = t.extra + 12 * i;
			uint32_t vtype = load32(v), voff = load32(v + 4), vsize = load32(v + 8);
			if (!valid_id(vtype) || !vtype ||
			    (type(vtype).kind != KIND_VAR && type(vtype).kind != KIND_FUNC))
				return fail(why, "datasec: not a var");
			if (!vsize || voff < last_end || uint64_t{voff} + vsize > t.size_or_type)
				return fail(why, "datasec: invalid offset or size");
			last_end = uint64_t{voff} + vsize;
		}
		return 0;
	}
	case KIND_FLOAT:
		if (t.vlen || t.kflag)
			return fail(why, "float: vlen or kind_flag set");
		if (t.size_or_type != 2 && t.size_or_type != 4 && t.size_or_type != 8 &&
		    t.size_or_type != 12 && t.size_or_type != 16)
			return fail(why, "float: invalid size");
		return 0;
	case KIND_DECL_TAG: {
		auto idx = static_cast<int32_t>(load32(t.extra));
		if (t.vlen || !t.name_off || !name_ok(t.name_off) || !strings_[t.name_off] ||
		    idx < -1)
			return fail(why, "decl_tag: invalid name, vlen or component_idx");
		if (!valid_id(t.size_or_type) || !t.size_or_type)
			return fail(why, "decl_tag: invalid type");
		return 0;
	}
	default:
		return fail(why, "invalid kind");
	}
}

int view::parse(const uint8_t *data, size_t size, std::string *why)
{
	if (size > MAX_SIZE)
		return fail(why, "btf too large", -E2BIG);
	if (size < offsetof(header, hdr_len) + sizeof(uint32_t))
		return fail(why, "hdr_len not found");
	header h{};
	uint32_t hdr_len = load32(data + offsetof(header, hdr_len));
	if (size < hdr_len)
		return fail(why, "btf_header not found");
	if (hdr_len > sizeof(header) &&
	    mem_nonzero(data + sizeof(header), hdr_len - sizeof(header)))
		return fail(why, "unsupported btf_header", -E2BIG);
	memcpy(&h, data, hdr_len < sizeof(h) ? hdr_len : sizeof(h));
	if (h.magic != MAGIC)
		return fail(why, "invalid magic");
	if (h.version != 1)
		return fail(why, "unsupported version", -uapi::ENOTSUPP);
	if (h.flags)
		return fail(why, "unsupported flags", -uapi::ENOTSUPP);
	if (size == hdr_len)
		return fail(why, "no data");
	// The type and string sections must tile the rest, without gaps or overlap.
	uint64_t total = 0, expected = size - hdr_len;
	struct {
		uint32_t off, len;
	} secs[2] = {{h.type_off, h.type_len}, {h.str_off, h.str_len}};
	if (secs[1].off < secs[0].off)
		std::swap(secs[0], secs[1]);
	for (auto &s : secs) {
		if (expected < s.off)
			return fail(why, "invalid section offset");
		if (total != s.off)
			return fail(why, total < s.off ? "unsupported section found"
						       : "section overlap found");
		if (expected - total < s.len)
			return fail(why, "total section length too long");
		total += s.len;
	}
	if (total != expected)
		return fail(why, "unsupported section found");
	const uint8_t *body = data + hdr_len;
	if (uint64_t{h.str_off} + h.str_len != expected)
		return fail(why, "string section is not at the end");
	strings_ = reinterpret_cast<const char *>(body + h.str_off);
	str_len_ = h.str_len;
	if (!h.str_len || h.str_len - 1 > MAX_NAME_OFFSET || strings_[h.str_len - 1] || strings_[0])
		return fail(why, "invalid string section");
	if (h.type_off & 3)
		return fail(why, "unaligned type_off");
	if (!h.type_len)
		return fail(why, "no type found");
	types_base_ = body + h.type_off;
	types_.clear();
	for (uint32_t off = 0; off < h.type_len;) {
		uint32_t left = h.type_len - off;
		if (left < TYPE_SIZE)
			return fail(why, "meta_left too small");
		const uint8_t *t = types_base_ + off;
		uint32_t info = load32(t + 4), kind = (info >> 24) & 0x1f;
		if (info & ~INFO_MASK)
			return fail(why, "invalid btf_info");
		if (kind == KIND_UNKN || kind > KIND_MAX)
			return fail(why, "invalid kind");
		if (load32(t) > MAX_NAME_OFFSET || load32(t) >= str_len_)
			return fail(why, "invalid name_offset");
		int64_t extra = extra_size(kind, info & 0xffff);
		if (static_cast<int64_t>(left - TYPE_SIZE) < extra)
			return fail(why, "meta_left too small");
		if (types_.size() >= MAX_TYPE)
			return fail(why, "too many types", -E2BIG);
		types_.push_back(off);
		off += static_cast<uint32_t>(TYPE_SIZE + extra);
	}
	for (uint32_t id = 1; id <= nr_types(); id++)
		if (int err = check_type(id, why))
			return err;
	return 0;
}

} // namespace bpfmap::btf
