// Kernel-differential tests of MAP_CREATE (the error table, ifindex, names), of the id
// commands, and of OBJ_GET_INFO_BY_FD.
#include "kernel_diff.h"

#include <cerrno>
#include <cstring>
#include <net/if.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== ids ==============================================================================

TEST_F(KernelDiff, IdCommandErrors)
{
	constexpr int C_GET_NEXT_ID = 12, C_GET_FD_BY_ID = 14;
	auto next = [](uint32_t start, size_t poke = 0) {
		Req q(C_GET_NEXT_ID);
		q.u32(0, start);
		if (poke)
			q.attr[poke] = 1;
		return q;
	};
	// Only errors compare: the two id spaces differ.
	check("GET_NEXT_ID start INT_MAX", next(0x7fffffff));
	check("GET_NEXT_ID start 0xffffffff", next(0xffffffff));
	check("GET_NEXT_ID start INT_MAX-1", next(0x7ffffffe));
	check("GET_NEXT_ID open_flags set", next(0, 8));
	check("GET_NEXT_ID byte 100 set", next(0, 100));
	auto by_id = [](uint32_t id, uint32_t flags, size_t poke = 0) {
		Req q(C_GET_FD_BY_ID);
		q.u32(0, id);
		q.u32(8, flags);
		if (poke)
			q.attr[poke] = 1;
		return q;
	};
	check("GET_FD_BY_ID id 0", by_id(0, 0));
	check("GET_FD_BY_ID id 0xffffffff", by_id(0xffffffff, 0));
	check("GET_FD_BY_ID id 0x7ffffffe", by_id(0x7ffffffe, 0));
	check("GET_FD_BY_ID RDONLY|WRONLY", by_id(1, F_RDONLY | F_WRONLY));
	check("GET_FD_BY_ID RDONLY_PROG", by_id(1, F_RDONLY_PROG));
	check("GET_FD_BY_ID flag 1", by_id(1, 1));
	check("GET_FD_BY_ID byte 12 set", by_id(1, 0, 12));
	// Each side opens its own map by its own id, with the asked-for mode.
	Pair p = hash_pair("by id");
	ASSERT_TRUE(p);
	auto own_id = [](int fd, bool kernel) {
		std::vector<uint8_t> info(INFO_SIZE, 0), attr(KATTR, 0);
		put32(attr, I_FD, static_cast<uint32_t>(fd));
		put32(attr, I_LEN, INFO_SIZE);
		put64(attr, I_INFO, reinterpret_cast<uintptr_t>(info.data()));
		long r = call_side(kernel, C_OBJ_GET_INFO, attr.data(), KATTR);
		EXPECT_EQ(r, 0);
		return get32(info, 4);
	};
	uint32_t kid = own_id(p.k, true), uid = own_id(p.u, false);
	for (uint32_t flags : {0u, F_RDONLY, F_WRONLY}) {
		std::vector<uint8_t> ka(KATTR, 0), ua(KATTR, 0);
		put32(ka, 0, kid);
		put32(ka, 8, flags);
		put32(ua, 0, uid);
		put32(ua, 8, flags);
		long kf = call_side(true, C_GET_FD_BY_ID, ka.data(), KATTR);
		long uf = call_side(false, C_GET_FD_BY_ID, ua.data(), KATTR);
		ASSERT_GE(kf, 0);
		ASSERT_GE(uf, 0) << errname(errno);
		std::string m = fd_modes(static_cast<int>(kf), static_cast<int>(uf));
		if (!m.empty())
			MISMATCH("GET_FD_BY_ID open_flags " + std::to_string(flags), m);
		close(static_cast<int>(kf));
		close(static_cast<int>(uf));
	}
}

// ==== MAP_CREATE ====================================================================================

TEST_F(KernelDiff, CreateErrorTable)
{
	struct Case {
		const char *name;
		void (*edit)(Req &, uint32_t type);
		bool hash = true, array = true;
	};
	static std::vector<uint8_t> excl_hash(32, 0x61);
	const Case cases[] = {
		{"map_type 0", [](Req &q, uint32_t) { q.u32(MC_TYPE, 0); }, true, false},
		{"map_type 1000", [](Req &q, uint32_t) { q.u32(MC_TYPE, 1000); }, true, false},
		{"map_type 0xffffffff", [](Req &q, uint32_t) { q.u32(MC_TYPE, 0xffffffff); }, true, false},
		{"key_size 0", [](Req &q, uint32_t) { q.u32(MC_KEY, 0); }},
		{"key_size 3", [](Req &q, uint32_t) { q.u32(MC_KEY, 3); }},
		{"key_size 8", [](Req &q, uint32_t) { q.u32(MC_KEY, 8); }},
		{"key_size 513", [](Req &q, uint32_t) { q.u32(MC_KEY, 513); }},
		{"value_size 0", [](Req &q, uint32_t) { q.u32(MC_VALUE, 0); }},
		{"max_entries 0", [](Req &q, uint32_t) { q.u32(MC_MAX, 0); }},
		{"flag 1<<20", [](Req &q, uint32_t) { q.u32(MC_FLAGS, 1u << 20); }},
		{"flag 1<<31", [](Req &q, uint32_t) { q.u32(MC_FLAGS, 1u << 31); }},
		{"NO_PREALLOC", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_NO_PREALLOC); }},
		{"NO_COMMON_LRU", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_NO_COMMON_LRU); }},
		{"MMAPABLE", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_MMAPABLE); }},
		{"INNER_MAP", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_INNER_MAP); }},
		{"PRESERVE_ELEMS", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_PRESERVE_ELEMS); }},
		{"ZERO_SEED", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_ZERO_SEED); }},
		{"RDONLY|WRONLY", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_RDONLY | F_WRONLY); }},
		{"RDONLY_PROG|WRONLY_PROG", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_RDONLY_PROG | F_WRONLY_PROG); }},
		{"RDONLY|RDONLY_PROG", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_RDONLY | F_RDONLY_PROG); }},
		{"NUMA_NODE numa 0", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_NUMA_NODE); }},
		{"NUMA_NODE numa -1",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_NUMA_NODE);
			 q.u32(MC_NUMA, 0xffffffff);
		 }},
		{"NUMA_NODE numa 1",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_NUMA_NODE);
			 q.u32(MC_NUMA, 1);
		 }},
		{"NUMA_NODE numa 1000",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_NUMA_NODE);
			 q.u32(MC_NUMA, 1000);
		 }},
		{"NUMA_NODE numa -2",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_NUMA_NODE);
			 q.u32(MC_NUMA, 0xfffffffe);
		 }},
		{"numa 1000 without flag", [](Req &q, uint32_t) { q.u32(MC_NUMA, 1000); }},
		{"map_extra 1", [](Req &q, uint32_t) { q.u64(MC_EXTRA, 1); }},
		{"inner_map_fd 1", [](Req &q, uint32_t) { q.u32(MC_INNER, 1); }},
		{"inner_map_fd 999", [](Req &q, uint32_t) { q.u32(MC_INNER, 999); }},
		{"map_ifindex 1 (lo)", [](Req &q, uint32_t) { q.u32(MC_IFINDEX, 1); }},
		{"map_ifindex 9999", [](Req &q, uint32_t) { q.u32(MC_IFINDEX, 9999); }},
		{"btf_fd 999 alone", [](Req &q, uint32_t) { q.u32(MC_BTF_FD, 999); }},
		{"btf_key_type_id 1 alone", [](Req &q, uint32_t) { q.u32(MC_BTF_KEY, 1); }},
		{"btf_value_type_id 1, btf_fd 0", [](Req &q, uint32_t) { q.u32(MC_BTF_VALUE, 1); }},
		{"btf_value_type_id 1, btf_fd 999",
		 [](Req &q, uint32_t) {
			 q.u32(MC_BTF_VALUE, 1);
			 q.u32(MC_BTF_FD, 999);
		 }},
		{"btf_vmlinux_value_type_id 1", [](Req &q, uint32_t) { q.u32(MC_BTF_VMLINUX, 1); }},
		{"value_type_btf_obj_fd 5 without flag", [](Req &q, uint32_t) { q.u32(MC_VTYPE_FD, 5); }},
		{"VTYPE_BTF_OBJ_FD flag, fd 999",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_VTYPE_BTF_OBJ_FD);
			 q.u32(MC_VTYPE_FD, 999);
		 }},
		{"map_token_fd 5 without flag", [](Req &q, uint32_t) { q.u32(MC_TOKEN, 5); }},
		{"TOKEN_FD flag, fd 999",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_TOKEN_FD);
			 q.u32(MC_TOKEN, 999);
		 }},
		{"TOKEN_FD flag, fd 0", [](Req &q, uint32_t) { q.u32(MC_FLAGS, F_TOKEN_FD); }},
		{"excl hash ptr, size 32",
		 [](Req &q, uint32_t) {
			 q.buf(MC_EXCL, excl_hash);
			 q.u32(MC_EXCL_SIZE, 32);
		 }},
		{"excl hash ptr, size 31",
		 [](Req &q, uint32_t) {
			 q.buf(MC_EXCL, excl_hash);
			 q.u32(MC_EXCL_SIZE, 31);
		 }},
		{"excl hash ptr, size 0", [](Req &q, uint32_t) { q.buf(MC_EXCL, excl_hash); }},
		{"excl hash NULL, size 32", [](Req &q, uint32_t) { q.u32(MC_EXCL_SIZE, 32); }},
		{"excl hash 0x10, size 32",
		 [](Req &q, uint32_t) {
			 q.u64(MC_EXCL, 0x10);
			 q.u32(MC_EXCL_SIZE, 32);
		 }},
		{"name a-b", [](Req &q, uint32_t) { memcpy(&q.attr[MC_NAME], "a-b", 3); }},
		{"name 'a b'", [](Req &q, uint32_t) { memcpy(&q.attr[MC_NAME], "a b", 3); }},
		{"name 16 chars", [](Req &q, uint32_t) { memcpy(&q.attr[MC_NAME], "abcdefghijklmnop", 16); }},
		{"key+value 4194256 (4 + 4194252)", [](Req &q, uint32_t) { q.u32(MC_VALUE, 4194252); }, true, false},
		{"key+value 4194256 (4194252 + 4)", [](Req &q, uint32_t) { q.u32(MC_KEY, 4194252); }, true, false},
		{"key+value 4194255, NO_PREALLOC",
		 [](Req &q, uint32_t) {
			 q.u32(MC_VALUE, 4194251);
			 q.u32(MC_FLAGS, F_NO_PREALLOC);
		 },
		 true, false},
		{"value_size 32768", [](Req &q, uint32_t) { q.u32(MC_VALUE, 32768); }},
		{"value_size 32761", [](Req &q, uint32_t) { q.u32(MC_VALUE, 32761); }},
		{"value_size 32769", [](Req &q, uint32_t) { q.u32(MC_VALUE, 32769); }},
		{"value_size 32769, max_entries 2^20",
		 [](Req &q, uint32_t) {
			 q.u32(MC_VALUE, 32769);
			 q.u32(MC_MAX, 1u << 20);
		 }},
		{"value_size 0x80000000", [](Req &q, uint32_t) { q.u32(MC_VALUE, 0x80000000u); }},
		{"value_size 0xffffffff", [](Req &q, uint32_t) { q.u32(MC_VALUE, 0xffffffffu); }},
		{"max_entries 0x08000001", [](Req &q, uint32_t) { q.u32(MC_MAX, 0x08000001u); }, true, false},
		{"max_entries 0x80000000", [](Req &q, uint32_t) { q.u32(MC_MAX, 0x80000000u); }, true, false},
		{"max_entries 0xffffffff", [](Req &q, uint32_t) { q.u32(MC_MAX, 0xffffffffu); }, true, false},
		// Combined causes whose order is documented (section 3.1).
		{"map_extra + value_size 2^31",
		 [](Req &q, uint32_t) {
			 q.u64(MC_EXTRA, 1);
			 q.u32(MC_VALUE, 0x80000000u);
		 }},
		{"bad name + max_entries 2^31",
		 [](Req &q, uint32_t) {
			 memcpy(&q.attr[MC_NAME], "a-b", 3);
			 q.u32(MC_MAX, 0x80000000u);
		 },
		 true, false},
		{"bad name + ifindex 1",
		 [](Req &q, uint32_t) {
			 memcpy(&q.attr[MC_NAME], "a-b", 3);
			 q.u32(MC_IFINDEX, 1);
		 }},
		{"token fd 999 + key_size 0",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_TOKEN_FD);
			 q.u32(MC_TOKEN, 999);
			 q.u32(MC_KEY, 0);
		 }},
		{"ifindex 1 + key/value too big",
		 [](Req &q, uint32_t) {
			 q.u32(MC_IFINDEX, 1);
			 q.u32(MC_VALUE, 0x80000000u);
		 }},
		{"bad name + BTF fd 999",
		 [](Req &q, uint32_t) {
			 memcpy(&q.attr[MC_NAME], "a-b", 3);
			 q.u32(MC_BTF_VALUE, 1);
			 q.u32(MC_BTF_FD, 999);
		 }},
		{"BTF fd 999 + excl 0x10",
		 [](Req &q, uint32_t) {
			 q.u32(MC_BTF_VALUE, 1);
			 q.u32(MC_BTF_FD, 999);
			 q.u64(MC_EXCL, 0x10);
			 q.u32(MC_EXCL_SIZE, 32);
		 }},
		{"RDONLY_PROG|WRONLY_PROG + key_size 0",
		 [](Req &q, uint32_t) {
			 q.u32(MC_FLAGS, F_RDONLY_PROG | F_WRONLY_PROG);
			 q.u32(MC_KEY, 0);
		 }},
	};
	for (const Case &c : cases) {
		for (uint32_t type : {T_HASH, T_ARRAY, T_PERCPU_HASH, T_PERCPU_ARRAY}) {
			if (is_hash(type) ? !c.hash : !c.array)
				continue;
			Req q = create_req(type, 4, 4, 1);
			c.edit(q, type);
			std::string label = std::string(map_type_name(type)) + " " + c.name;
			Both b{run_side(true, q), run_side(false, q)};
			std::string d = diff(q, b);
			if (d.empty() && b.k.ret >= 0) {
				d = fd_modes(static_cast<int>(b.k.ret), static_cast<int>(b.u.ret));
				Pair p;
				p.k = static_cast<int>(b.k.ret);
				p.u = static_cast<int>(b.u.ret);
				info_check(label + " info", p);
			} else {
				if (b.k.ret >= 0)
					close(static_cast<int>(b.k.ret));
				if (b.u.ret >= 0)
					close(static_cast<int>(b.u.ret));
			}
			if (!d.empty())
				MISMATCH("MAP_CREATE " + label, d << "\n    " << describe(q));
		}
	}
}

// Every network interface of this machine as map_ifindex (the kernel's answer depends on
// whether the device has an ndo_bpf).
TEST_F(KernelDiff, CreateIfindex)
{
	struct if_nameindex *ifs = if_nameindex();
	ASSERT_NE(ifs, nullptr);
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		for (uint32_t type : {T_HASH, T_ARRAY}) {
			Req q = create_req(type, 4, 4, 1);
			q.u32(MC_IFINDEX, i->if_index);
			check(std::string(type == T_HASH ? "HASH" : "ARRAY") + " map_ifindex " +
				      std::to_string(i->if_index) + " (" + i->if_name + ")",
			      q);
		}
	}
	if_freenameindex(ifs);
}

TEST_F(KernelDiff, CreateNameRules)
{
	// Every byte value as a one-byte name and in the middle of a longer one.
	for (int c = 0; c < 256; c++) {
		Req q = create_req(T_HASH, 4, 4, 1);
		q.attr[MC_NAME] = static_cast<uint8_t>(c);
		check("HASH name byte " + std::to_string(c), q);
		Req r = create_req(T_ARRAY, 4, 4, 1, 0, "ab_");
		r.attr[MC_NAME + 3] = static_cast<uint8_t>(c);
		r.attr[MC_NAME + 4] = 'z';
		bool same;
		check("ARRAY name ab_<" + std::to_string(c) + ">z", r, {}, &same);
		Req s = create_req(T_HASH, 4, 4, 1, 0, "123456789012345");
		s.attr[MC_NAME + 15] = static_cast<uint8_t>(c); // 16th byte: NUL or no terminator
		check("name 15 chars + byte " + std::to_string(c), s);
	}
	// Bytes after the first NUL are ignored, even invalid ones.
	Req q = create_req(T_HASH, 4, 4, 1, 0, "ok");
	q.attr[MC_NAME + 3] = '-';
	q.attr[MC_NAME + 15] = ' ';
	Pair p = create_both("name with junk after NUL", q);
	EXPECT_TRUE(p);
	Req e = create_req(T_ARRAY, 4, 4, 1);
	e.attr[MC_NAME + 1] = '!';
	Pair p2 = create_both("empty name, junk after", e);
	EXPECT_TRUE(p2);
	Req l = create_req(T_ARRAY, 4, 4, 1, 0, "\xc0\xdf\xe0\xff\xd8\xf8");
	Pair p3 = create_both("Latin-1 name", l);
	EXPECT_TRUE(p3);
}

// ==== OBJ_GET_INFO_BY_FD ============================================================================

TEST_F(KernelDiff, InfoByFd)
{
	std::vector<Pair> maps;
	maps.push_back(
		create_both("info hash", create_req(T_HASH, 4, 8, 16, F_NO_PREALLOC | F_ZERO_SEED,
						    "info_hash")));
	maps.push_back(
		create_both("info array", create_req(T_ARRAY, 4, 12, 3, F_MMAPABLE, "arr.x")));
	maps.push_back(create_both("info hash ro",
				   create_req(T_HASH, 3, 5, 7, F_RDONLY | F_RDONLY_PROG, "ro")));
	maps.push_back(
		create_both("info array wo",
			    create_req(T_ARRAY, 4, 1, 64, F_WRONLY | F_WRONLY_PROG | F_INNER_MAP)));
	{
		Req q = create_req(T_HASH, 16, 64, 1000, F_NUMA_NODE, "numa0123456789a");
		maps.push_back(create_both("info hash numa", q));
	}
	maps.push_back(
		create_both("info array frozen", create_req(T_ARRAY, 4, 8, 2, 0, "\xe9t\xe9")));
	ASSERT_TRUE(maps.back());
	elem("freeze", maps.back(), C_FREEZE, EA{});

	for (size_t m = 0; m < maps.size(); m++) {
		const Pair &p = maps[m];
		ASSERT_TRUE(p);
		std::string t = "map " + std::to_string(m) + " ";
		for (uint32_t len :
		     {0u, 1u, 4u, 6u, 8u, 40u, 88u, 92u, 96u, 100u, 101u, 104u, 120u, 4096u, 4097u})
			check(t + "info_len " + std::to_string(len), info_req(p.k, p.u, len),
			      id_mask());
		// Output fields [0,88) filled with junk on input.
		for (uint32_t len : {8u, 40u, 88u, 104u})
			check(t + "info_len " + std::to_string(len) + ", input bytes [0,88) = 0x5a",
			      info_req(p.k, p.u, len, false, true), id_mask());
		check(t + "info_len 0, info NULL", info_req(p.k, p.u, 0, true));
		check(t + "info_len 16, info NULL", info_req(p.k, p.u, 16, true));
		{
			Req q = info_req(p.k, p.u, 16);
			q.u64(I_INFO, 0x10);
			q.ptrs.clear();
			q.bufs.clear();
			check(t + "info_len 16, info 0x10", q);
		}
		// Non-zero input bytes past the known fields.
		for (auto [len, off] : std::vector<std::pair<uint32_t, uint32_t>>{{120, 100},
										  {104, 100},
										  {101, 100},
										  {104, 103},
										  {120, 104},
										  {120, 119},
										  {4096, 4095},
										  {100, 99}}) {
			Req q = info_req(p.k, p.u, len);
			q.bufs[0][off] = 1;
			check(t + "info_len " + std::to_string(len) + " byte " +
				      std::to_string(off) + " set",
			      q, id_mask());
		}
		// The 6.18 hash request fields (hash @88, hash_size @96).
		for (uint32_t hs : {0u, 31u, 32u, 64u}) {
			for (uint32_t len : {96u, 100u, 104u}) {
				Req q = info_req(p.k, p.u, len);
				q.buf(88, std::vector<uint8_t>(40, 0xcc), 0);
				put32(q.bufs[0], 96, hs);
				check(t + "hash ptr, hash_size " + std::to_string(hs) +
					      ", info_len " + std::to_string(len),
				      q, id_mask());
			}
			Req q = info_req(p.k, p.u, INFO_SIZE);
			put32(q.bufs[0], 96, hs);
			check(t + "hash NULL, hash_size " + std::to_string(hs), q, id_mask());
		}
		// Short attrs: the kernel still writes info_len back at offset 4.
		for (unsigned size : {4u, 8u, 16u}) {
			Req q = info_req(p.k, p.u, 0, true);
			Req r(C_OBJ_GET_INFO, size);
			r.fds = q.fds;
			r.attr = q.attr;
			r.attr[4] = r.attr[5] = r.attr[6] = r.attr[7] = size < 8 ? 0xff : 0;
			check(t + "attr size " + std::to_string(size) +
				      " (bytes 4..7 beyond size = ff)",
			      r);
		}
	}
}

} // namespace
} // namespace kernel_diff
