// The fuzz target's bpf() command operations (see bpfmap_fuzz.cc for the input format).
#include "bpfmap_fuzz.h"

namespace bpfmap_fuzz {

// ---- Operations.

// A type bpfmap does not serve (the kernel's BPF_MAP_TYPE_PROG_ARRAY), as a wrong guess.
constexpr uint32_t MAP_TYPE_PROG_ARRAY = 3;

const uint32_t served_types[] = {
	u::MAP_TYPE_HASH,	  u::MAP_TYPE_ARRAY,	    u::MAP_TYPE_PERCPU_HASH,
	u::MAP_TYPE_PERCPU_ARRAY, u::MAP_TYPE_LRU_HASH,	    u::MAP_TYPE_LRU_PERCPU_HASH,
	u::MAP_TYPE_LPM_TRIE,	  u::MAP_TYPE_QUEUE,	    u::MAP_TYPE_STACK,
	u::MAP_TYPE_RINGBUF,	  u::MAP_TYPE_BLOOM_FILTER, u::MAP_TYPE_USER_RINGBUF,
	u::MAP_TYPE_UNSPEC,	  MAP_TYPE_PROG_ARRAY,	    u::MAP_TYPE_ARENA,
	u::MAP_TYPE_MAX};

bool keyless(uint32_t type)
{
	return is_ring(type) || type == u::MAP_TYPE_QUEUE || type == u::MAP_TYPE_STACK ||
	       type == u::MAP_TYPE_BLOOM_FILTER;
}

const uint32_t flag_bits[16] = {
	u::BPF_F_NO_PREALLOC, u::BPF_F_NO_COMMON_LRU,  u::BPF_F_RDONLY,
	u::BPF_F_WRONLY,      u::BPF_F_ZERO_SEED,      u::BPF_F_RDONLY_PROG,
	u::BPF_F_WRONLY_PROG, u::BPF_F_MMAPABLE,       u::BPF_F_NUMA_NODE,
	u::BPF_F_TOKEN_FD,    u::BPF_F_PRESERVE_ELEMS, u::BPF_F_INNER_MAP,
	u::BPF_F_CLONE,	      u::BPF_F_SEGV_ON_FAULT,  u::BPF_F_RB_OVERWRITE,
	u::BPF_F_NO_USER_CONV};

// MAP_CREATE. Each size is either one that fits the type ("valid-ish", selector < 0x80)
// or any 32-bit value.
void op_create(reader &in, state &st)
{
	u::bpf_attr a{};
	auto &c = a.map_create;
	uint8_t t = in.u8();
	c.map_type = t < 0xf0 ? served_types[t % 16] : in.u32();
	bool ring = is_ring(c.map_type);
	uint8_t s = in.u8();
	if (s < 0x80)
		c.key_size =
			keyless(c.map_type) ? 0
			: c.map_type == u::MAP_TYPE_ARRAY || c.map_type == u::MAP_TYPE_PERCPU_ARRAY
				? 4
			: c.map_type == u::MAP_TYPE_LPM_TRIE ? 4 + (1U << (s % 5))
							     : 1U << (s % 7);
	else
		c.key_size = in.pick32();
	s = in.u8();
	c.value_size = s < 0x80 ? (ring ? 0 : 1 + s % 64) : in.pick32();
	s = in.u8();
	c.max_entries = s < 0x80 ? (ring ? 4096U << (s % 5) : 1 + s % 64) : in.pick32();
	s = in.u8();
	if (s < 0x80) {
		uint16_t bits = in.u16();
		for (int i = 0; i < 16; i++)
			if (bits & (1U << i))
				c.map_flags |= flag_bits[i];
	} else {
		c.map_flags = in.pick32();
	}
	s = in.u8();
	c.map_extra =
		s < 0x80 ? (c.map_type == u::MAP_TYPE_BLOOM_FILTER ? s % 16 : 0) : in.pick64();
	static const char *names[] = {"",
				      "m",
				      "map_1",
				      "a.b",
				      "bad name",
				      "\xc3\xa9t\xc3\xa9",
				      "0123456789abcde",
				      "0123456789abcdef"};
	s = in.u8();
	if (s < 0xf0)
		memcpy(c.map_name, names[s % 8], strnlen(names[s % 8], sizeof(c.map_name)));
	else
		in.bytes(c.map_name, sizeof(c.map_name));
	s = in.u8();
	if (s >= 0x80) { // BTF types
		const fd_entry *e;
		c.btf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
		c.btf_key_type_id = in.pick32();
		c.btf_value_type_id = in.pick32();
	}
	s = in.u8();
	if (s >= 0xc0) { // the rarer fields
		c.numa_node = in.pick32();
		c.map_ifindex = in.u8() % 3;
		c.inner_map_fd = in.pick32();
		c.btf_vmlinux_value_type_id = in.u8() % 2;
		c.map_token_fd = static_cast<int32_t>(in.pick32());
		c.value_type_btf_obj_fd = static_cast<int32_t>(in.pick32());
		c.excl_prog_hash = ptr64(pick_ptr(in, 3, 32));
		c.excl_prog_hash_size = in.pick32();
	}
	adopt(st, call(in, u::MAP_CREATE, a), fd_kind::map);
}

// The element commands. Key and value pointers are sized from the map when it is ours.
void op_elem(reader &in, state &st)
{
	static const int cmds[] = {u::MAP_LOOKUP_ELEM, u::MAP_UPDATE_ELEM, u::MAP_DELETE_ELEM,
				   u::MAP_GET_NEXT_KEY, u::MAP_LOOKUP_AND_DELETE_ELEM};
	int cmd = cmds[in.u8() % 5];
	const fd_entry *e;
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	size_t ks = e && e->known ? e->key_size : 0;
	size_t vs = e && e->known ? e->value_bytes : 0;
	void *key = pick_ptr(in, 0, ks);
	fill(in, key, ks ? ks : 8);
	void *value = pick_ptr(in, cmd == u::MAP_GET_NEXT_KEY ? 2 : 1,
			       cmd == u::MAP_GET_NEXT_KEY ? ks : vs);
	fill(in, value, cmd == u::MAP_GET_NEXT_KEY ? 0 : vs);
	a.elem.key = ptr64(key);
	a.elem.value = ptr64(value);
	a.elem.flags = in.pick64();
	call(in, cmd, a);
}

// The batch commands: count is clamped so that count keys and values fit a buffer.
void op_batch(reader &in, state &st)
{
	static const int cmds[] = {u::MAP_LOOKUP_BATCH, u::MAP_LOOKUP_AND_DELETE_BATCH,
				   u::MAP_UPDATE_BATCH, u::MAP_DELETE_BATCH};
	int cmd = cmds[in.u8() % 4];
	const fd_entry *e;
	u::bpf_attr a{};
	auto &b = a.batch;
	b.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	size_t ks = e && e->known ? e->key_size : 0;
	size_t vs = e && e->known ? e->value_bytes : 0;
	size_t elem =
		e && e->known ? std::max<size_t>({ks, vs, 8}) : std::max<size_t>(st.max_elem, 8);
	uint32_t count = in.pick32();
	count = static_cast<uint32_t>(std::min<size_t>(count, BUF_SIZE / elem));
	b.count = count;
	size_t batch_token = std::max<size_t>(ks, 8);
	void *in_batch = pick_ptr(in, 2, batch_token);
	fill(in, in_batch, batch_token);
	if (in.u8() & 1)
		in_batch = nullptr; // the first call of a walk
	b.in_batch = ptr64(in_batch);
	b.out_batch = ptr64(pick_ptr(in, 3, batch_token));
	void *keys = pick_ptr(in, 0, ks * count);
	void *values = pick_ptr(in, 1, vs * count);
	fill(in, keys, ks * count);
	fill(in, values, vs * count);
	b.keys = ptr64(keys);
	b.values = ptr64(values);
	b.elem_flags = in.pick64();
	b.flags = in.pick64();
	call(in, cmd, a);
}

void op_freeze(reader &in, state &st)
{
	const fd_entry *e;
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	call(in, u::MAP_FREEZE, a);
}

// OBJ_GET_INFO_BY_FD on a map or BTF fd, with nested pointers chosen like the others.
void op_info(reader &in, state &st)
{
	const fd_entry *e;
	u::bpf_attr a{};
	a.info.bpf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	uint32_t len = in.pick32();
	// info_len over one page is E2BIG before any access; up to it, the buffer holds it.
	void *info = pick_ptr(in, 3, len <= u::BPF_ATTR_MAX_USER_SIZE ? len : 0);
	if (reinterpret_cast<uintptr_t>(info) >= PAGE && len <= u::BPF_ATTR_MAX_USER_SIZE) {
		memset(info, 0, len);
		uint8_t s = in.u8();
		if (s & 1) { // garbage past the known fields
			size_t at = sizeof(u::bpf_map_info) + in.u8();
			if (at < len)
				static_cast<uint8_t *>(info)[at] = 1;
		}
		if (e && e->kind == fd_kind::btf) {
			u::bpf_btf_info bi{};
			bi.btf_size = std::min<uint32_t>(in.pick32(), BUF_SIZE);
			bi.btf = ptr64(pick_ptr(in, 0, bi.btf_size));
			bi.name_len = in.pick32();
			bi.name = ptr64(pick_ptr(in, 1, 1));
			memcpy(info, &bi, std::min<size_t>(len, sizeof(bi)));
		} else {
			u::bpf_map_info mi{};
			mi.hash_size = in.pick32();
			mi.hash = ptr64(pick_ptr(in, 0, 32));
			memcpy(info, &mi, std::min<size_t>(len, sizeof(mi)));
		}
	}
	a.info.info_len = len;
	a.info.info = ptr64(info);
	call(in, u::OBJ_GET_INFO_BY_FD, a);
}

// A pin path: under the bpffs stand-in, under the pin root itself or a directory in it,
// relative to a directory fd, outside the root, or empty; its last part from the input.
std::string pick_path(reader &in, int32_t *path_fd, uint32_t *file_flags)
{
	uint8_t s = in.u8();
	char name[17] = {};
	uint8_t n = in.u8() % 16;
	for (int i = 0; i < n; i++) {
		static const char chars[] = "abcxyz019._-";
		name[i] = chars[in.u8() % (sizeof(chars) - 1)];
	}
	if (!n)
		name[n++] = 'p';
	switch (s % 8) {
	case 0:
	case 1:
		return std::string("/sys/fs/bpf/") + name;
	case 2:
		return root + "/" + name;
	case 3:
		return "/sys/fs/bpf/sub/" + std::string(name);
	case 4:
		*file_flags |= u::BPF_F_PATH_FD;
		*path_fd = dir_fd;
		return name;
	case 5:
		return outside_dir + "/" + name;
	case 6:
		return "";
	default:
		return "/sys/fs/bpf/nodir/" + std::string(name);
	}
}

void op_pin(reader &in, state &st, bool get)
{
	const fd_entry *e;
	u::bpf_attr a{};
	if (!get)
		a.obj.bpf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	std::string path = pick_path(in, &a.obj.path_fd, &a.obj.file_flags);
	char *p = reinterpret_cast<char *>(bufs[3]);
	memcpy(p, path.c_str(), path.size() + 1);
	uint8_t s = in.u8();
	a.obj.pathname = s == 0xff ? 0 : s == 0xfe ? 64 : ptr64(p);
	if (s >= 0xc0 && s < 0xfe) {
		a.obj.file_flags ^= in.pick32();
		a.obj.path_fd ^= static_cast<int32_t>(in.pick32());
		if (get)
			a.obj.bpf_fd = in.pick32();
	}
	long r = call(in, get ? u::OBJ_GET : u::OBJ_PIN, a);
	if (get)
		adopt(st, r, fd_kind::map);
}

// An id operand: one of our maps' ids, or any number.
uint32_t pick_id(reader &in, const state &st)
{
	uint8_t s = in.u8();
	if (s < 0x80 && !st.fds.empty()) {
		const fd_entry &e = st.fds[s % st.fds.size()];
		return e.id + (s >> 6);
	}
	return in.pick32();
}

void op_id(reader &in, state &st)
{
	uint8_t s = in.u8();
	u::bpf_attr a{};
	a.id.start_id = pick_id(in, st);
	if (in.u8() >= 0xc0) {
		a.id.open_flags = in.pick32();
		a.id.fd_by_id_token_fd = static_cast<int32_t>(in.pick32());
		a.id.next_id = in.pick32();
	}
	switch (s % 4) {
	case 0:
		call(in, u::MAP_GET_NEXT_ID, a);
		break;
	case 1:
		call(in, u::BTF_GET_NEXT_ID, a);
		break;
	case 2:
		adopt(st, call(in, u::MAP_GET_FD_BY_ID, a), fd_kind::map);
		break;
	default:
		adopt(st, call(in, u::BTF_GET_FD_BY_ID, a), fd_kind::btf);
		break;
	}
}

// BPF_BTF_LOAD of a blob from the input (written into a buffer), with a log buffer.
void op_btf(reader &in, state &st)
{
	u::bpf_attr a{};
	auto &b = a.btf_load;
	uint16_t n = in.u16() % 2048;
	in.bytes(bufs[2], n);
	uint32_t size = n;
	uint8_t s = in.u8();
	if (s >= 0xf0)
		size = in.pick32();
	// Over BTF_MAX_SIZE is E2BIG before the copy; up to it, the buffer must hold it.
	if (size > BUF_SIZE && size <= (16 << 20))
		size = BUF_SIZE;
	b.btf_size = size;
	b.btf = size <= BUF_SIZE && (s & 0xf) == 1 ? ptr64(bufs[2] + BUF_SIZE - size)
						   : ptr64(bufs[2]);
	if ((s & 0xf) == 2)
		b.btf = 0;
	s = in.u8();
	if (s & 1) {
		b.btf_log_level = in.pick32();
		b.btf_log_size = in.pick32();
		b.btf_log_buf = ptr64(pick_ptr(in, 3, std::min<size_t>(b.btf_log_size, BUF_SIZE)));
	}
	if (s & 2) {
		b.btf_flags = in.pick32();
		b.btf_token_fd = static_cast<int32_t>(in.pick32());
	}
	TRACE("btf %u bytes at %#llx, log level %u size %u at %#llx\n", b.btf_size,
	      (unsigned long long)b.btf, b.btf_log_level, b.btf_log_size,
	      (unsigned long long)b.btf_log_buf);
	adopt(st, call(in, u::BTF_LOAD, a), fd_kind::btf);
}

// Commands bpfmap does not serve, and served commands without pointers, with raw attrs.
void op_raw(reader &in, state &st)
{
	static const int cmds[] = {u::PROG_LOAD,
				   8,
				   9,
				   10,
				   11,
				   13,
				   16,
				   17,
				   20,
				   28,
				   29,
				   36,
				   -1,
				   1000,
				   u::MAP_GET_NEXT_ID,
				   u::MAP_GET_FD_BY_ID,
				   u::BTF_GET_NEXT_ID,
				   u::BTF_GET_FD_BY_ID,
				   u::MAP_FREEZE,
				   u::MAP_CREATE};
	uint8_t s = in.u8();
	int cmd = s < 0xf0 ? cmds[s % 20] : static_cast<int>(in.u32());
	u::bpf_attr a{};
	in.bytes(&a, in.u8() % (sizeof(a) + 1));
	long r = call(in, cmd, a);
	if (cmd == u::MAP_CREATE || cmd == u::MAP_GET_FD_BY_ID)
		adopt(st, r, fd_kind::map);
	else if (cmd == u::BTF_GET_FD_BY_ID)
		adopt(st, r, fd_kind::btf);
}

void op_close(reader &in, state &st)
{
	uint8_t s = in.u8();
	if (st.fds.empty())
		return;
	size_t i = s % st.fds.size();
	close(st.fds[i].fd);
	st.last_closed = st.fds[i].fd;
	st.fds.erase(st.fds.begin() + static_cast<long>(i));
}

// dup2() or dup3() of one of our fds over another: the fd cache must forget what the
// target was and see the source's map there.
void op_dup_over(reader &in, state &st)
{
	uint8_t from = in.u8();
	uint8_t to = in.u8();
	if (st.fds.empty())
		return;
	fd_entry src = st.fds[from % st.fds.size()];
	fd_entry &dst = st.fds[to % st.fds.size()];
	int r = (to & 0x80) ? dup3(src.fd, dst.fd, O_CLOEXEC) : dup2(src.fd, dst.fd);
	if (r < 0)
		return; // dup3() of an fd onto itself
	int fd = dst.fd;
	dst = src;
	dst.fd = fd;
	u::bpf_map_info info;
	if (src.kind == fd_kind::map && (!map_info(fd, &info) || info.id != src.id)) {
		fprintf(stderr, "fd %d is map %u after dup2(), but bpfmap sees map %u\n", fd,
			src.id, info.id);
		abort();
	}
}

// close_range() of one of our fds, or its CLOSE_RANGE_CLOEXEC form (which closes nothing).
void op_close_range(reader &in, state &st)
{
	uint8_t s = in.u8();
	if (st.fds.empty())
		return;
	size_t i = s % st.fds.size();
	int fd = st.fds[i].fd;
	if (s & 0x80) {
		close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd),
			    CLOSE_RANGE_CLOEXEC);
		return;
	}
	if (close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd), 0) == 0) {
		st.last_closed = fd;
		st.fds.erase(st.fds.begin() + static_cast<long>(i));
	}
}

void op_dup(reader &in, state &st)
{
	static const int lows[] = {0, 100, 1000, 1023, 1024, 2047, 2048, 3000};
	uint8_t s = in.u8();
	uint8_t l = in.u8();
	if (st.fds.empty() || st.fds.size() >= MAX_FDS)
		return;
	fd_entry e = st.fds[s % st.fds.size()];
	e.fd = fcntl(e.fd, F_DUPFD_CLOEXEC, lows[l % 8]);
	if (e.fd >= 0)
		st.fds.push_back(e);
}

} // namespace bpfmap_fuzz
