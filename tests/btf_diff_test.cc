// BTF against the kernel: BPF_BTF_LOAD of valid and broken blobs, maps created with BTF
// types, bpf_btf_info and BTF_GET_FD_BY_ID. Each call goes to the running kernel's bpf(2)
// and to bpfmap_bpf() with the same attr; results (fd or errno, and the bytes written
// back, ids aside) must agree. Skips where the kernel does not answer bpf(2).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "uapi618.h"

namespace {

using uapi618::C_BTF_GET_FD_BY_ID;
using uapi618::C_BTF_LOAD;
using uapi618::C_MAP_CREATE;
using uapi618::C_OBJ_GET_INFO;
enum : uint32_t {
	K_INT = 1,
	K_PTR = 2,
	K_ARRAY = 3,
	K_STRUCT = 4,
	K_TYPEDEF = 8,
	K_FUNC = 12,
	K_FUNC_PROTO = 13,
	K_VAR = 14,
	K_DATASEC = 15
};
constexpr unsigned ATTR = uapi618::KATTR;

long call(bool kernel, int cmd, void *attr, unsigned size)
{
	long r = kernel ? uapi618::kernel_bpf(cmd, attr, size)
			: bpfmap_bpf(cmd, static_cast<union bpf_attr *>(attr), size);
	return r < 0 ? -errno : r;
}

// A BTF blob built type by type: 24-byte header, type section, string section.
struct btf_builder {
	std::vector<uint32_t> types;
	std::string strs{'\0'};
	uint32_t n = 0;
	uint32_t name(const char *s)
	{
		if (!*s)
			return 0;
		uint32_t off = static_cast<uint32_t>(strs.size());
		strs += s;
		strs += '\0';
		return off;
	}
	uint32_t add(const char *nm, uint32_t kind, uint32_t vlen, uint32_t size_or_type,
		     std::vector<uint32_t> extra = {}, bool kflag = false)
	{
		types.insert(types.end(),
			     {name(nm), (kflag ? 1U << 31 : 0) | kind << 24 | vlen, size_or_type});
		types.insert(types.end(), extra.begin(), extra.end());
		return ++n;
	}
	uint32_t add_int(const char *nm, uint32_t size, uint32_t bits, uint32_t enc = 1)
	{
		return add(nm, K_INT, 0, size, {enc << 24 | bits});
	}
	std::vector<uint8_t> blob(uint32_t hdr_len = 24) const
	{
		uint32_t tlen = static_cast<uint32_t>(types.size() * 4),
			 slen = static_cast<uint32_t>(strs.size());
		std::vector<uint8_t> b(hdr_len + tlen + slen);
		uint32_t h[6] = {0x0001eb9f, hdr_len, 0, tlen, tlen, slen};
		memcpy(b.data(), h, sizeof(h));
		memcpy(b.data() + hdr_len, types.data(), tlen);
		memcpy(b.data() + hdr_len + tlen, strs.data(), slen);
		return b;
	}
};

// The usual blob: 1 int, 2 struct { int a; int b; }, 3 typedef, 4 func_proto, 5 func,
// 6 var of 2, 7 datasec ".data" of 6.
btf_builder usual()
{
	btf_builder b;
	uint32_t i = b.add_int("int", 4, 32);
	uint32_t s = b.add("pair", K_STRUCT, 2, 8, {b.name("a"), i, 0, b.name("b"), i, 32});
	b.add("pair_t", K_TYPEDEF, 0, s);
	uint32_t proto = b.add("", K_FUNC_PROTO, 0, i);
	b.add("f", K_FUNC, 0, proto);
	uint32_t v = b.add("g", K_VAR, 0, s, {1});
	b.add(".data", K_DATASEC, 1, 8, {v, 0, 8});
	return b;
}

struct load_attr {
	uint64_t btf, log_buf;
	uint32_t btf_size, log_size, log_level, log_true_size, flags;
	int32_t token_fd;
	uint8_t pad[ATTR - 40];
};

struct btf_pair {
	long k = -1, u = -1;
	~btf_pair()
	{
		if (k >= 0)
			close(static_cast<int>(k));
		if (u >= 0)
			close(static_cast<int>(u));
	}
};

long load(bool kernel, const std::vector<uint8_t> &blob, load_attr a = {})
{
	a.btf = reinterpret_cast<uintptr_t>(blob.data());
	a.btf_size = static_cast<uint32_t>(blob.size());
	return call(kernel, C_BTF_LOAD, &a, ATTR);
}

class BtfDiff : public ::testing::Test {
protected:
	void SetUp() override
	{
		std::vector<uint8_t> b = usual().blob();
		long fd = load(true, b);
		if (fd < 0) {
			GTEST_SKIP() << "the kernel's bpf(2) does not load BTF here ("
				     << strerror(static_cast<int>(-fd)) << "): needs root";
		}
		close(static_cast<int>(fd));
	}
	// Load on both sides; the outcomes must agree.
	void both_load(const char *what, const std::vector<uint8_t> &blob, btf_pair *p,
		       load_attr a = {})
	{
		p->k = load(true, blob, a);
		p->u = load(false, blob, a);
		EXPECT_EQ(p->k >= 0, p->u >= 0)
			<< what << ": kernel " << p->k << ", bpfmap " << p->u;
		if (p->k < 0 || p->u < 0) {
			EXPECT_EQ(p->k, p->u) << what << ": errno differs";
		}
	}
};

TEST_F(BtfDiff, LoadAcceptsAndRefusesAsTheKernel)
{
	struct blob_case {
		const char *what;
		std::vector<uint8_t> blob;
	};
	std::vector<blob_case> cases;
	cases.push_back({"usual", usual().blob()});
	cases.push_back({"longer header, zero", usual().blob(32)});
	{
		auto b = usual().blob(32);
		b[28] = 1;
		cases.push_back({"longer header, nonzero", b});
	}
	{
		auto b = usual().blob();
		b[0] = 0;
		cases.push_back({"bad magic", b});
	}
	{
		auto b = usual().blob();
		b[2] = 2;
		cases.push_back({"version 2", b});
	}
	{
		auto b = usual().blob();
		b[3] = 1;
		cases.push_back({"flags", b});
	}
	{
		auto b = usual().blob();
		b.back() = 'x';
		cases.push_back({"strings not NUL-ended", b});
	}
	const std::vector<uint8_t> whole = usual().blob();
	cases.push_back({"header only", std::vector<uint8_t>(whole.begin(), whole.begin() + 24)});
	cases.push_back({"short", std::vector<uint8_t>(whole.begin(), whole.begin() + 6)});
	{
		btf_builder b;
		b.add_int("int", 4, 32);
		b.add("t", K_TYPEDEF, 0, 99);
		cases.push_back({"dangling type id", b.blob()});
	}
	{
		btf_builder b;
		b.add("a", K_TYPEDEF, 0, 2);
		b.add("b", K_TYPEDEF, 0, 1);
		cases.push_back({"typedef loop", b.blob()});
	}
	{
		btf_builder b;
		b.add_int("int", 4, 33);
		cases.push_back({"int of 33 bits in 4 bytes", b.blob()});
	}
	{
		btf_builder b;
		b.add_int("int", 3, 24);
		cases.push_back({"int of 3 bytes", b.blob()});
	}
	{
		btf_builder b;
		b.add_int("long unsigned int", 8, 64, 0);
		cases.push_back({"int name with spaces", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("s", K_STRUCT, 1, 4, {b.name("a"), i, 32});
		cases.push_back({"member past the end", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("s", K_STRUCT, 1, 8, {b.name("a"), i, 4});
		cases.push_back({"member not byte aligned", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("s", K_STRUCT, 1, 8, {b.name("a"), i, 4}, true);
		cases.push_back({"bitfield member", b.blob()});
	}
	{
		btf_builder b;
		b.add("x", 20, 0, 0);
		cases.push_back({"kind 20", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("", K_PTR, 0, i);
		b.add("p", K_PTR, 0, i);
		cases.push_back({"named pointer", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("", K_ARRAY, 0, 0, {i, i, 4});
		b.add("", K_ARRAY, 0, 0, {i, 1, 0xffffffff});
		cases.push_back({"array larger than 4 GiB", b.blob()});
	}
	{
		btf_builder b;
		b.add("9bad", K_TYPEDEF, 0, 0);
		cases.push_back({"typedef name not an identifier", b.blob()});
	}
	{
		btf_builder b;
		uint32_t i = b.add_int("int", 4, 32);
		b.add("f", K_FUNC, 0, i);
		cases.push_back({"func of an int", b.blob()});
	}
	cases.push_back({"empty", {}});
	for (const blob_case &c : cases) {
		btf_pair p;
		both_load(c.what, c.blob, &p);
	}
	// Attr rules: flags, log buffer and level, a missing blob.
	std::vector<uint8_t> ok = usual().blob();
	char log[4096];
	struct attr_case {
		const char *what;
		load_attr a;
	};
	std::vector<attr_case> attrs;
	load_attr a{};
	a.flags = 1;
	attrs.push_back({"btf_flags bit 0", a});
	a = {};
	a.log_buf = reinterpret_cast<uintptr_t>(log);
	a.log_size = sizeof(log);
	attrs.push_back({"log buffer without level", a});
	a.log_level = 1;
	attrs.push_back({"log level 1 with buffer", a});
	a.log_level = 0x20;
	attrs.push_back({"unknown log level bit", a});
	a = {};
	a.log_level = 1;
	attrs.push_back({"log level without buffer", a});
	a = {};
	a.log_buf = reinterpret_cast<uintptr_t>(log);
	a.log_level = 1;
	attrs.push_back({"log buffer of size 0", a});
	for (const attr_case &c : attrs) {
		btf_pair p;
		both_load(c.what, ok, &p, c.a);
	}
	load_attr null_blob{};
	null_blob.btf_size = 64;
	EXPECT_EQ(call(true, C_BTF_LOAD, &null_blob, ATTR),
		  call(false, C_BTF_LOAD, &null_blob, ATTR));
}

struct create_attr {
	uint32_t type, key_size, value_size, max_entries, flags, inner, numa;
	char name[16];
	uint32_t ifindex, btf_fd, btf_key, btf_value, btf_vmlinux;
	uint8_t pad[ATTR - 60];
};

TEST_F(BtfDiff, MapsCreatedWithBtfTypes)
{
	// 1 int, 2 struct pair (8), 3 typedef, 4 proto, 5 func, 6 var, 7 datasec (8),
	// 8 u16-sized struct key of 4 bytes.
	btf_builder b = usual();
	uint32_t i = 1;
	b.add("k4", K_STRUCT, 1, 4, {b.name("x"), i, 0});
	btf_pair btf;
	both_load("usual", b.blob(), &btf);
	ASSERT_GE(btf.k, 0);
	ASSERT_GE(btf.u, 0);
	struct create_case {
		const char *what;
		uint32_t type, key_size, value_size, max_entries, key_id, value_id;
		int btf_fd; // 0: the BTF pair, -1: closed fd, -2: a map fd
	};
	const create_case cases[] = {
		{"hash int -> pair", 1, 4, 8, 16, 1, 2, 0},
		{"hash int -> typedef pair", 1, 4, 8, 16, 1, 3, 0},
		{"hash value size differs", 1, 4, 12, 16, 1, 2, 0},
		{"hash key size differs", 1, 8, 8, 16, 1, 2, 0},
		{"hash without key type", 1, 4, 8, 16, 0, 2, 0},
		{"hash key type only", 1, 4, 8, 16, 1, 0, 0},
		{"hash value is a func", 1, 4, 8, 16, 1, 5, 0},
		{"hash value is a var", 1, 4, 8, 16, 1, 6, 0},
		{"hash value id out of range", 1, 4, 8, 16, 1, 99, 0},
		{"array int -> pair", 2, 4, 8, 16, 1, 2, 0},
		{"array struct key", 2, 4, 8, 16, 8, 2, 0},
		{"array datasec, one entry", 2, 4, 8, 1, 0, 7, 0},
		{"array datasec, two entries", 2, 4, 8, 2, 0, 7, 0},
		{"array no key, pair value", 2, 4, 8, 1, 0, 2, 0},
		{"percpu hash int -> pair", 5, 4, 8, 16, 1, 2, 0},
		{"percpu array int -> pair", 6, 4, 8, 16, 1, 2, 0},
		{"percpu array datasec, one entry", 6, 4, 8, 1, 0, 7, 0},
		{"btf fd closed", 1, 4, 8, 16, 1, 2, -1},
		{"btf fd is not BTF", 1, 4, 8, 16, 1, 2, -2},
	};
	for (const create_case &c : cases) {
		long r[2];
		uint32_t info[2][30] = {};
		for (int side = 0; side < 2; side++) {
			bool kernel = side == 0;
			create_attr a{};
			a.type = c.type;
			a.key_size = c.key_size;
			a.value_size = c.value_size;
			a.max_entries = c.max_entries;
			int fd = static_cast<int>(kernel ? btf.k : btf.u);
			int other = kernel ? static_cast<int>(
						     uapi618::kernel_bpf(C_MAP_CREATE, &a, ATTR))
					   : -1;
			if (!kernel) {
				create_attr plain{};
				plain.type = 2, plain.key_size = 4, plain.value_size = 4,
				plain.max_entries = 1;
				other = static_cast<int>(bpfmap_bpf(
					C_MAP_CREATE, reinterpret_cast<union bpf_attr *>(&plain),
					ATTR));
			}
			a.btf_fd = static_cast<uint32_t>(c.btf_fd == 0	  ? fd
							 : c.btf_fd == -1 ? 999
									  : other);
			a.btf_key = c.key_id;
			a.btf_value = c.value_id;
			r[side] = call(kernel, C_MAP_CREATE, &a, ATTR);
			if (other >= 0)
				close(other);
			if (r[side] >= 0) {
				uint64_t ia[3] = {};
				ia[0] = static_cast<uint64_t>(r[side]) |
					uint64_t{sizeof(info[side])} << 32;
				ia[1] = reinterpret_cast<uintptr_t>(info[side]);
				uint8_t ab[ATTR] = {};
				memcpy(ab, ia, 16);
				EXPECT_EQ(call(kernel, C_OBJ_GET_INFO, ab, ATTR), 0) << c.what;
				close(static_cast<int>(r[side]));
			}
		}
		EXPECT_EQ(r[0] >= 0, r[1] >= 0)
			<< c.what << ": kernel " << r[0] << ", bpfmap " << r[1];
		if (r[0] < 0 || r[1] < 0) {
			EXPECT_EQ(r[0], r[1]) << c.what;
			continue;
		}
		// bpf_map_info: btf_id (word 18) is each side's own, and nonzero; the type ids
		// (words 19, 20) are the caller's.
		EXPECT_NE(info[0][18], 0u) << c.what;
		EXPECT_NE(info[1][18], 0u) << c.what;
		EXPECT_EQ(info[0][19], info[1][19]) << c.what;
		EXPECT_EQ(info[0][20], info[1][20]) << c.what;
	}
}

uint32_t btf_id_of(bool kernel, long fd)
{
	struct {
		uint64_t btf;
		uint32_t btf_size, id;
		uint64_t name;
		uint32_t name_len, kernel_btf;
	} info{};
	uint8_t ab[ATTR] = {};
	uint64_t ia[2] = {static_cast<uint32_t>(fd) | uint64_t{sizeof(info)} << 32,
			  reinterpret_cast<uintptr_t>(&info)};
	memcpy(ab, ia, 16);
	EXPECT_EQ(call(kernel, C_OBJ_GET_INFO, ab, ATTR), 0);
	return info.id;
}

// BTF_GET_FD_BY_ID of id: a new fd (closed again here) or -errno.
long open_btf_by_id(bool kernel, uint32_t id)
{
	uint32_t by_id[ATTR / 4] = {};
	by_id[0] = id;
	long fd = call(kernel, C_BTF_GET_FD_BY_ID, by_id, ATTR);
	if (fd >= 0)
		close(static_cast<int>(fd));
	return fd;
}

// A BTF object lives while an fd or a map made with it holds it; then its id opens nothing.
// The kernel drops a freed map's BTF reference from a work queue, so that case may take a
// moment there.
TEST_F(BtfDiff, ObjectGoesWithItsLastHolder)
{
	std::vector<uint8_t> blob = usual().blob();
	for (int side = 0; side < 2; side++) {
		bool kernel = side == 0;
		SCOPED_TRACE(kernel ? "kernel" : "bpfmap");
		long fd = load(kernel, blob);
		ASSERT_GE(fd, 0);
		uint32_t id = btf_id_of(kernel, fd);
		EXPECT_GE(open_btf_by_id(kernel, id), 0);
		close(static_cast<int>(fd));
		EXPECT_EQ(open_btf_by_id(kernel, id), -ENOENT) << "its only fd was closed";

		fd = load(kernel, blob);
		ASSERT_GE(fd, 0);
		id = btf_id_of(kernel, fd);
		create_attr a{};
		a.type = 1, a.key_size = 4, a.value_size = 8, a.max_entries = 4;
		a.btf_fd = static_cast<uint32_t>(fd), a.btf_key = 1, a.btf_value = 2;
		long map = call(kernel, C_MAP_CREATE, &a, ATTR);
		ASSERT_GE(map, 0);
		close(static_cast<int>(fd));
		EXPECT_GE(open_btf_by_id(kernel, id), 0) << "the map holds it";
		close(static_cast<int>(map));
		long r = open_btf_by_id(kernel, id);
		for (int i = 0; kernel && i < 200 && r >= 0; i++) {
			usleep(10000);
			r = open_btf_by_id(kernel, id);
		}
		EXPECT_EQ(r, -ENOENT) << "its map was closed";
	}
}

TEST_F(BtfDiff, InfoAndOpenById)
{
	std::vector<uint8_t> blob = usual().blob();
	btf_pair p;
	both_load("usual", blob, &p);
	ASSERT_GE(p.k, 0);
	ASSERT_GE(p.u, 0);
	for (int side = 0; side < 2; side++) {
		bool kernel = side == 0;
		int fd = static_cast<int>(kernel ? p.k : p.u);
		SCOPED_TRACE(kernel ? "kernel" : "bpfmap");
		struct {
			uint64_t btf;
			uint32_t btf_size, id;
			uint64_t name;
			uint32_t name_len, kernel_btf;
		} info{};
		auto get = [&](uint32_t len) {
			uint8_t ab[ATTR] = {};
			uint64_t ia[2] = {static_cast<uint32_t>(fd) | uint64_t{len} << 32,
					  reinterpret_cast<uintptr_t>(&info)};
			memcpy(ab, ia, 16);
			long r = call(kernel, C_OBJ_GET_INFO, ab, ATTR);
			uint32_t out_len;
			memcpy(&out_len, ab + 4, 4);
			return r == 0 ? static_cast<long>(out_len) : r;
		};
		EXPECT_EQ(get(sizeof(info)), static_cast<long>(sizeof(info)));
		EXPECT_EQ(info.btf_size, blob.size());
		EXPECT_NE(info.id, 0u);
		EXPECT_EQ(info.kernel_btf, 0u);
		std::vector<uint8_t> copy(blob.size() + 8, 0xee);
		char name[16];
		memset(name, 'x', sizeof(name));
		info = {};
		info.btf = reinterpret_cast<uintptr_t>(copy.data());
		info.btf_size = static_cast<uint32_t>(copy.size());
		info.name = reinterpret_cast<uintptr_t>(name);
		info.name_len = sizeof(name);
		EXPECT_EQ(get(sizeof(info)), static_cast<long>(sizeof(info)));
		EXPECT_TRUE(std::equal(blob.begin(), blob.end(), copy.begin()));
		EXPECT_EQ(copy[blob.size()], 0xee);
		EXPECT_EQ(name[0], 0);
		EXPECT_EQ(info.name_len, 0u);
		info = {};
		info.name = reinterpret_cast<uintptr_t>(name);
		EXPECT_EQ(get(sizeof(info)), -EINVAL) << "a name buffer without its length";
		info = {};
		EXPECT_EQ(get(8), 8) << "a short info_len";
		uint32_t id = 0;
		info = {};
		get(sizeof(info));
		id = info.id;
		uint32_t by_id[ATTR / 4] = {};
		by_id[0] = id;
		long nfd = call(kernel, C_BTF_GET_FD_BY_ID, by_id, ATTR);
		EXPECT_GE(nfd, 0);
		if (nfd >= 0) {
			EXPECT_EQ(fcntl(static_cast<int>(nfd), F_GETFL) & O_ACCMODE, O_RDONLY);
			close(static_cast<int>(nfd));
		}
		by_id[2] = 1;
		EXPECT_EQ(call(kernel, C_BTF_GET_FD_BY_ID, by_id, ATTR), -EINVAL)
			<< "unknown open flag";
		by_id[2] = 0;
		by_id[0] = 0;
		EXPECT_EQ(call(kernel, C_BTF_GET_FD_BY_ID, by_id, ATTR), -ENOENT) << "id 0";
		errno = 0;
		EXPECT_EQ(mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
		EXPECT_EQ(errno, ENODEV) << "a BTF object cannot be mapped";
	}
}

} // namespace
