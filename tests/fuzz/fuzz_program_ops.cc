// The fuzz target's program-side, ring, mmap, C++ handle and scribbling operations (see
// bpfmap_fuzz.cc for the input format).
#include "bpfmap_fuzz.h"

namespace bpfmap_fuzz {

// ---- The program side (include/bpfmap/bpfmap.h).

// Read every byte of n at p, so that a bad pointer or size shows here.
uint8_t touch(const void *p, size_t n)
{
	const volatile uint8_t *c = static_cast<const volatile uint8_t *>(p);
	uint8_t x = 0;
	for (size_t i = 0; i < n; i++)
		x ^= c[i];
	return x;
}

void commit_record(state &st, size_t i, uint64_t flags, bool discard)
{
	record_entry r = st.records[i];
	st.records.erase(st.records.begin() + static_cast<long>(i));
	if (r.producer >= 0) {
		st.producer_records[r.producer]--;
		if (discard)
			st.producers[r.producer]->discard(r.data);
		else
			st.producers[r.producer]->submit(r.data);
		return;
	}
	st.handles[r.handle].records--;
	if (discard)
		bpfmap_ringbuf_discard(r.data, flags);
	else
		bpfmap_ringbuf_submit(r.data, flags);
}

struct drain_ctx {
	uint8_t stop_at;
	int seen;
};

long drain_cb(const void *data, uint64_t size, void *ctx)
{
	auto *c = static_cast<drain_ctx *>(ctx);
	touch(data, size);
	return ++c->seen == c->stop_at;
}

void op_prog(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t h = in.u8();
	if (s % 16 == 0) {
		const fd_entry *e;
		int fd = pick_fd(in, st, &e);
		if (st.handles.size() >= MAX_HANDLES)
			return;
		bpfmap_map *m = bpfmap_map_get(fd);
		if (!m)
			return;
		u::bpf_map_info info;
		if (!map_info(fd, &info)) {
			fprintf(stderr,
				"bpfmap_map_get(%d) gave a handle, but the fd has no map info\n",
				fd);
			abort();
		}
		st.handles.push_back({m, info.type, info.key_size, info.value_size,
				      value_bytes(info.type, info.value_size), info.map_flags});
		return;
	}
	if (st.handles.empty())
		return;
	size_t hi = h % st.handles.size();
	handle_entry &he = st.handles[hi];
	bpfmap_map *m = he.map;
	// Program-side pointers are valid for the map's sizes, as the verifier ensures.
	auto key_ptr = [&] {
		void *k = bufs[0] + BUF_SIZE - he.key_size;
		fill(in, k, he.key_size);
		return k;
	};
	auto value_ptr = [&](bool in_value) {
		void *v = bufs[1] + BUF_SIZE - he.value_size;
		if (in_value)
			fill(in, v, he.value_size);
		return v;
	};
	bool ro = he.flags & u::BPF_F_RDONLY_PROG;
	TRACE("prog op %d on handle %zu (type %u)\n", s % 16, hi, he.type);
	switch (s % 16) {
	case 1:
		if (!he.records) {
			bpfmap_map_put(m);
			st.handles.erase(st.handles.begin() + static_cast<long>(hi));
		}
		break;
	case 2:
	case 3: {
		void *v = bpfmap_map_lookup_elem(m, key_ptr());
		uint8_t w = in.u8();
		if (v) {
			touch(v, he.value_size);
			if (!ro && (w & 1))
				memset(v, w, he.value_size);
		}
		break;
	}
	case 4: {
		void *k = key_ptr();
		void *v = bpfmap_map_lookup_percpu_elem(m, k, in.pick32());
		if (v)
			touch(v, he.value_size);
		break;
	}
	case 5:
	case 6: {
		void *k = key_ptr();
		void *v = value_ptr(true);
		bpfmap_map_update_elem(m, k, v, in.pick64());
		break;
	}
	case 7:
		bpfmap_map_delete_elem(m, key_ptr());
		break;
	case 8: {
		void *v = value_ptr(true);
		bpfmap_map_push_elem(m, v, in.pick64());
		break;
	}
	case 9:
		bpfmap_map_pop_elem(m, value_ptr(false));
		break;
	case 10:
		bpfmap_map_peek_elem(m, value_ptr(true));
		break;
	case 11: { // ring buffer reserve
		uint64_t size = in.pick32();
		uint64_t flags = in.pick64();
		if (st.records.size() >= MAX_RECORDS)
			break;
		void *r = bpfmap_ringbuf_reserve(m, size, flags);
		TRACE("reserve(%llu, %llu) = %p\n", (unsigned long long)size,
		      (unsigned long long)flags, r);
		if (r) {
			memset(r, 0x5a, size);
			st.records.push_back({r, size, static_cast<int>(hi), -1});
			he.records++;
		}
		break;
	}
	case 12: { // submit or discard
		uint8_t i = in.u8();
		uint64_t flags = in.pick64();
		if (!st.records.empty())
			commit_record(st, i % st.records.size(), flags, i & 0x80);
		break;
	}
	case 13: { // output: sizes a buffer holds, or so large the ring must refuse them
		uint64_t size = in.pick32();
		uint64_t flags = in.pick64();
		if (size > BUF_SIZE && size < (1U << 30))
			size = BUF_SIZE;
		bpfmap_ringbuf_output(m, size <= BUF_SIZE ? bufs[1] + BUF_SIZE - size : bufs[1],
				      size, flags);
		break;
	}
	case 14:
		bpfmap_ringbuf_query(m, in.pick64());
		break;
	default: {
		drain_ctx c{in.u8(), 0};
		bpfmap_user_ringbuf_drain(m, drain_cb, &c, in.pick64());
		break;
	}
	}
}

// ---- The C++ ring API: consumers and user-ring producers.

void op_ring(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t i = in.u8();
	const fd_entry *e;
	TRACE("ring op %d, %d\n", s % 8, i);
	switch (s % 8) {
	case 0: {
		int fd = pick_fd(in, st, &e);
		auto c = std::make_unique<bpfmap::RingConsumer>();
		uint8_t stop = in.u8();
		auto cb = [stop, n = 0](const void *data, size_t size) mutable {
			touch(data, size);
			return ++n == stop ? -1 : 0;
		};
		if (st.consumers.size() < 4 && bpfmap::RingConsumer::open(fd, cb, *c) == 0)
			st.consumers.push_back(std::move(c));
		break;
	}
	case 1:
		if (!st.consumers.empty()) {
			auto &c = st.consumers[i % st.consumers.size()];
			if (i & 0x80)
				c->poll(0);
			else
				c->consume();
		}
		break;
	case 2: {
		int fd = pick_fd(in, st, &e);
		auto p = std::make_unique<bpfmap::UserRingProducer>();
		if (st.producers.size() < 4 && bpfmap::UserRingProducer::open(fd, *p) == 0) {
			st.producers.push_back(std::move(p));
			st.producer_records.push_back(0);
		}
		break;
	}
	case 3: {
		uint64_t size = in.pick32();
		if (st.producers.empty() || st.records.size() >= MAX_RECORDS)
			break;
		size_t pi = i % st.producers.size();
		int err;
		void *r = st.producers[pi]->reserve(size, &err);
		if (r) {
			memset(r, 0xa5, size);
			st.records.push_back({r, size, -1, static_cast<int>(pi)});
			st.producer_records[pi]++;
		}
		break;
	}
	case 4:
		if (!st.records.empty())
			commit_record(st, i % st.records.size(), 0, i & 0x80);
		break;
	case 5:
		if (!st.consumers.empty())
			st.consumers.erase(st.consumers.begin() +
					   static_cast<long>(i % st.consumers.size()));
		break;
	case 6: { // epoll_ctl() of an fd, a ring's included, into the input's epoll set
		int fd = pick_fd(in, st, &e);
		uint32_t events = in.pick32();
		if (st.epfd < 0)
			st.epfd = epoll_create1(EPOLL_CLOEXEC);
		epoll_event ev{};
		ev.events = events;
		ev.data.u64 = i;
		static const int ops[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, 0};
		epoll_ctl(st.epfd, ops[i % 4], fd, (i & 0x40) ? nullptr : &ev);
		break;
	}
	default: { // epoll_wait() without sleeping
		epoll_event evs[8];
		if (st.epfd >= 0)
			epoll_wait(st.epfd, evs, 1 + i % 8, 0);
		break;
	}
	}
}

// ---- mmap() of map fds, and writes where the mapping allows them.

void op_mmap(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t i = in.u8();
	switch (s % 5) {
	case 0: {
		const fd_entry *e;
		int fd = pick_fd(in, st, &e);
		static const int prots[] = {
			PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE,
			PROT_NONE, PROT_READ | PROT_EXEC,  PROT_READ | PROT_WRITE};
		static const int flags[] = {MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE,
					    MAP_SHARED | MAP_POPULATE};
		uint8_t p = in.u8();
		uint32_t pages = in.pick32();
		uint32_t off_pages = in.pick32();
		size_t len = pages < 4096 ? pages * PAGE : pages;
		off_t off = static_cast<off_t>(off_pages < 4096 ? off_pages * PAGE : off_pages);
		if (st.mappings.size() >= MAX_MAPPINGS)
			break;
		int prot = prots[p % 6];
		void *addr = mmap(nullptr, len, prot, flags[(p >> 3) % 4], fd, off);
		TRACE("mmap(%zu, %d, %#x, fd %d, %lld) = %p\n", len, prot, flags[(p >> 3) % 4], fd,
		      (long long)off, addr);
		if (addr == MAP_FAILED)
			break;
		auto *a = static_cast<uint8_t *>(addr);
		bool ours = e && e->kind == fd_kind::map;
		// What mmap() gave of a map must be there: one read per page.
		if (ours && (prot & (PROT_READ | PROT_WRITE)))
			for (size_t o = 0; o < len; o += PAGE)
				touch(a + o, 1);
		st.mappings.push_back(
			{a, (len + PAGE - 1) & ~(PAGE - 1), prot, ours, ours && is_ring(e->type)});
		break;
	}
	case 1: { // write through a writable mapping, as user space may
		uint32_t off = in.pick32();
		uint8_t n = in.u8();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		// A ring's positions and record headers are what the library reads and trusts
		// least: writing them is scribbling (consumers and producers elsewhere may
		// write them, but the checks on them are another part of issue 18).
		if (!(m.prot & PROT_WRITE) || !m.map || (m.ring && !scribble)) {
			in.bytes(bufs[3], n);
			break;
		}
		off %= m.len;
		TRACE("write %d bytes at %u of mapping %p\n", n, off, m.addr);
		in.bytes(m.addr + off, std::min<size_t>(n, m.len - off));
		break;
	}
	case 2: { // unmap the first pages of one
		uint32_t pages = in.pick32();
		if (st.mappings.empty())
			break;
		size_t mi = i % st.mappings.size();
		mapping_entry &m = st.mappings[mi];
		size_t len = std::min<size_t>(m.len, size_t{pages} * PAGE);
		if (len == 0 || len == m.len) {
			munmap(m.addr, m.len);
			st.mappings.erase(st.mappings.begin() + static_cast<long>(mi));
			break;
		}
		if (munmap(m.addr, len) == 0) {
			m.addr += len;
			m.len -= len;
		}
		break;
	}
	case 4: { // mremap(), which may move a mapping but never grow one past its map
		uint32_t pages = in.pick32();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		size_t len = pages < 4096 ? size_t{pages} * PAGE : pages;
		void *addr = mremap(m.addr, m.len, len, (i & 0x80) ? MREMAP_MAYMOVE : 0);
		TRACE("mremap(%p, %zu, %zu) = %p\n", m.addr, m.len, len, addr);
		if (addr == MAP_FAILED)
			break;
		m.addr = static_cast<uint8_t *>(addr);
		m.len = (len + PAGE - 1) & ~(PAGE - 1);
		if (m.map && (m.prot & (PROT_READ | PROT_WRITE)))
			for (size_t o = 0; o < m.len; o += PAGE)
				touch(m.addr + o, 1);
		break;
	}
	default: {
		static const int prots[] = {PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE,
					    PROT_EXEC};
		uint8_t p = in.u8();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		if (mprotect(m.addr, m.len, prots[p % 4]) == 0)
			m.prot = prots[p % 4];
		break;
	}
	}
}

// ---- The C++ map handle (include/bpfmap/map.hpp).

void op_cxx(reader &in, state &st)
{
	const fd_entry *e;
	int fd = pick_fd(in, st, &e);
	uint8_t s = in.u8();
	bpfmap::Map m;
	if (bpfmap::Map::from_fd(fd, m) != 0)
		return;
	bpfmap::MapInfo info;
	m.info(info);
	int n = 0;
	for (auto it = m.begin(); n < (s & 15) && !(it == m.end()); ++it, n++)
		touch((*it).data(), (*it).size());
}

// ---- Writes into a live map's file (BPFMAP_FUZZ_SCRIBBLE=1 only).

void op_scribble(reader &in, state &st)
{
	const fd_entry *e;
	int fd = pick_fd(in, st, &e);
	uint32_t off = in.pick32();
	uint8_t n = in.u8() % 17;
	uint8_t words[16];
	in.bytes(words, n);
	struct stat sb;
	if (!scribble || !e || e->kind != fd_kind::map || fstat(fd, &sb) != 0 || sb.st_size <= 0)
		return;
	int rw = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC);
	if (rw < 0)
		return;
	TRACE("scribble %d bytes at %llu of %lld (fd %d)\n", n,
	      (unsigned long long)(off % static_cast<uint64_t>(sb.st_size)), (long long)sb.st_size,
	      fd);
	if (pwrite(rw, words, n, static_cast<off_t>(off % static_cast<uint64_t>(sb.st_size))) < 0)
		perror("scribble");
	close(rw);
}

} // namespace bpfmap_fuzz
