#include "syscall/objtab.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <new>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>

#include "core/percpu.h"
#include "core/rcu.h"
#include "core/region.h"
#include "core/registry.h"
#include "syscall/btf_obj.h"
#include "syscall/mapid.h"

namespace bpfmap {

std::atomic<fd_cache::fd_chunk *> fd_cache::fd_chunks[FD_CHUNKS];

namespace {

using namespace fd_cache;

static_assert(alignof(bpf_map) > FD_MODE_BITS);

uintptr_t slot_pack(bpf_map *map, unsigned denied)
{
	return reinterpret_cast<uintptr_t>(map) | denied;
}

// Handles by region identity, so every fd of one map shares one mapping. A handle whose
// count reached zero is being freed and is never revived: a lookup makes a new one.
// Never destroyed: the fds still cached at exit are released after static objects are gone.
std::mutex handles_lock;
auto &handles = *new std::map<std::pair<dev_t, ino_t>, bpf_map *>;

// A fork while another thread holds handles_lock must not leave the child's copy locked.
const bool handles_lock_atfork = [] {
	pthread_atfork([] { handles_lock.lock(); }, [] { handles_lock.unlock(); },
		       [] { new (&handles_lock) std::mutex; });
	return true;
}();

// Whether a header read from a region describes a map this process could have made: the
// region is untrusted, so the fields that size and place everything are checked once here
// against the family's own creation rules, and only this private copy is used after.
bool header_valid(const bpf_map_ops *ops, const map_header &hdr, size_t size)
{
	uapi::map_create_attr a{};
	a.map_type = hdr.map_type;
	a.key_size = hdr.key_size;
	a.value_size = hdr.value_size;
	a.max_entries = hdr.max_entries;
	a.map_flags = hdr.map_flags;
	a.map_extra = hdr.map_extra;
	size_t need;
	return hdr.nr_cpus == num_possible_cpus() && ops->map_alloc_check(a) == 0 &&
	       ops->map_mem_size(a, &need) == 0 && round_up(need, PAGE_SIZE) == hdr.data_size &&
	       hdr.data_size + MAP_HEADER_SIZE == size;
}

// A map made in another PID namespace is refused: its lock words and the ring buffers'
// owner words hold thread and process ids of the creator's namespace, which name other
// threads (or none) here, so a lock could be held twice or a live holder taken for dead.
int pid_ns_check(const map_header &hdr)
{
	uint64_t dev, ino;
	pid_ns_id(&dev, &ino);
	if (dev == hdr.pid_ns_dev && ino == hdr.pid_ns_ino)
		return 0;
	static std::atomic<bool> said{false};
	if (!said.exchange(true))
		fprintf(stderr,
			"bpfmap: map %u was made in another PID namespace; sharing a map across "
			"PID namespaces is not supported (EPERM)\n",
			hdr.id);
	return -EPERM;
}

// A handle over a mapped region, its fields taken from hdr (the creator's attr for a
// fresh map, a validated private copy otherwise). nullptr when the family refuses the
// region.
bpf_map *handle_new(const bpf_map_ops *ops, const map_header &hdr, void *base, size_t size,
		    dev_t dev, ino_t ino, bool fresh)
{
	bpf_map *map = ops->map_alloc();
	map->ops = ops;
	map->data = static_cast<char *>(base);
	map->region_size = size;
	map->hdr = reinterpret_cast<map_header *>(map->data + size - MAP_HEADER_SIZE);
	map->map_type = hdr.map_type;
	map->key_size = hdr.key_size;
	map->value_size = hdr.value_size;
	map->uvalue_size = map->value_size;
	map->max_entries = hdr.max_entries;
	map->map_flags = hdr.map_flags;
	map->nr_cpus = hdr.nr_cpus;
	map->id = hdr.id;
	map->map_extra = hdr.map_extra;
	map->dev = dev;
	map->ino = ino;
	if (fresh)
		ops->map_init(map);
	if (ops->map_attach(map) != 0) {
		delete map;
		return nullptr;
	}
	return map;
}

// Put map at fd; whoever takes a pointer out of a slot drops its reference.
void fd_install(int fd, bpf_map *map, unsigned denied)
{
	std::atomic<uintptr_t> *slot = fd_slot(fd, true);
	if (!slot) {
		map_put(map); // beyond the cache: looked up each time instead
		return;
	}
	uintptr_t old = slot->exchange(slot_pack(map, denied), std::memory_order_acq_rel);
	if (old)
		map_put(slot_map(old));
}

// What the fd's open mode does not allow, as the kernel's FMODE_CAN_READ/WRITE say.
int fd_denied(int fd, unsigned *denied)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	*denied = access_mode_denied(fl & O_ACCMODE);
	return 0;
}

// Slow path: an fd we have not cached. Returns a referenced handle.
bpf_map *handle_from_fd(int fd, int *err)
{
	map_header hdr;
	size_t size;
	dev_t dev;
	ino_t ino;
	// A read-only or write-only fd can neither be read nor mapped shared-writable; the
	// same file opened read-write through /proc serves instead.
	int rw = region_reopen(fd, O_RDWR);
	if (rw < 0) {
		*err = rw;
		return nullptr;
	}
	struct closer {
		int fd, orig;
		~closer()
		{
			if (fd != orig)
				close(fd);
		}
	} rw_closer{rw, fd};
	*err = region_read_header(rw, &hdr, &size, &dev, &ino);
	if (*err)
		return nullptr;
	const bpf_map_ops *ops = map_type_ops(hdr.map_type);
	if (!ops || !header_valid(ops, hdr, size)) {
		*err = -EINVAL;
		return nullptr;
	}
	if ((*err = pid_ns_check(hdr)))
		return nullptr;
	std::lock_guard<std::mutex> g(handles_lock);
	auto it = handles.find({dev, ino});
	if (it != handles.end() && map_get(it->second))
		return it->second;
	void *base;
	*err = region_map(rw, size, &base);
	if (*err)
		return nullptr;
	bpf_map *map = handle_new(ops, hdr, base, size, dev, ino, false);
	if (!map) {
		region_unmap(base, size);
		*err = -EINVAL;
		return nullptr;
	}
	map->refcnt.store(1, std::memory_order_relaxed);
	handles[{dev, ino}] = map;
	return map;
}

void put_cb(void *map) { map_put(static_cast<bpf_map *>(map)); }

// Drop a reference from inside a read-side section (every caller of map_from_fd is in one).
void map_put_later(bpf_map *map) { rcu_defer(put_cb, map); }

} // namespace

bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

bpf_map *map_from_fd_uncached(int fd, int *err, unsigned *denied)
{
	unsigned mode;
	if ((*err = fd_denied(fd, &mode)))
		return nullptr;
	bpf_map *map = handle_from_fd(fd, err);
	if (!map)
		return nullptr;
	*denied = mode;
	if (fd >= FD_MAX) {
		// Not cacheable: the handle lives through the caller's section, then goes.
		map_put_later(map);
		return map;
	}
	std::atomic<uintptr_t> *slot = fd_slot(fd, true);
	uintptr_t expected = 0;
	if (!slot->compare_exchange_strong(expected, slot_pack(map, mode),
					   std::memory_order_acq_rel)) {
		map_put_later(map); // another thread cached it first
		*denied = expected & FD_MODE_BITS;
		return slot_map(expected);
	}
	// A close() between our fstat and the install found nothing to forget; if the number
	// was closed or reused since, take the entry back and look again.
	struct stat st;
	unsigned now_mode;
	if (file_stat(fd, &st) != 0 || st.st_dev != map->dev || st.st_ino != map->ino ||
	    fd_denied(fd, &now_mode) != 0 || now_mode != mode) {
		uintptr_t mine = slot_pack(map, mode);
		if (slot->compare_exchange_strong(mine, 0, std::memory_order_acq_rel))
			map_put_later(map);
		return map_from_fd(fd, err, denied);
	}
	return map;
}

bpf_map *map_from_fd(int fd, int *err)
{
	unsigned denied;
	return map_from_fd(fd, err, &denied);
}

int map_install_new(const bpf_map_ops *ops, void *base, size_t size, int fd, unsigned denied)
{
	struct stat st;
	if (file_stat(fd, &st) != 0)
		return -errno;
	// The creator's own header, written just before: trusted.
	bpf_map *map = handle_new(
		ops,
		*reinterpret_cast<map_header *>(static_cast<char *>(base) + size - MAP_HEADER_SIZE),
		base, size, st.st_dev, st.st_ino, true);
	if (!map)
		return -EINVAL;
	// Other processes recognise the region only once it is complete.
	map->hdr->magic.store(MAP_MAGIC, std::memory_order_release);
	map->refcnt.store(1, std::memory_order_relaxed);
	{
		std::lock_guard<std::mutex> g(handles_lock);
		handles[{st.st_dev, st.st_ino}] = map;
	}
	fd_install(fd, map, denied);
	return 0;
}

bool map_get(bpf_map *map)
{
	long n = map->refcnt.load(std::memory_order_relaxed);
	while (n > 0)
		if (map->refcnt.compare_exchange_weak(n, n + 1, std::memory_order_relaxed))
			return true;
	return false; // its last fd was closed under us: it is being freed
}

void fds_forget(int first, int last)
{
	for (int c = first >> FD_CHUNK_BITS; c < FD_CHUNKS && c <= (last >> FD_CHUNK_BITS); c++) {
		if (!fd_chunks[c].load(std::memory_order_acquire))
			continue;
		int lo = std::max(first, c << FD_CHUNK_BITS);
		int hi = std::min(last, ((c + 1) << FD_CHUNK_BITS) - 1);
		for (int fd = lo; fd <= hi; fd++)
			fd_forget(fd);
	}
}

void map_put(bpf_map *map)
{
	if (map->refcnt.fetch_sub(1, std::memory_order_acq_rel) != 1)
		return;
	{
		std::lock_guard<std::mutex> g(handles_lock);
		auto it = handles.find({map->dev, map->ino});
		if (it != handles.end() && it->second == map)
			handles.erase(it);
	}
	uint32_t id = map->id;
	synchronize_rcu();
	region_unmap(map->data, map->region_size);
	delete map;
	// This process no longer holds the map; if nobody else does, its id goes too.
	map_id_reap(id);
}

void fd_forget(int fd)
{
	std::atomic<uintptr_t> *slot = fd_slot(fd, false);
	if (!slot)
		return;
	uintptr_t old = slot->exchange(0, std::memory_order_acq_rel);
	if (old)
		map_put(slot_map(old));
}

namespace {

// At exit the kernel closes a process's fds, and a map that nothing else holds then (an fd
// of another process, a pin) is freed. The same here, at the library's own teardown, after
// the program's exit handlers and destructors: each map fd in the cache is closed and its
// reference dropped, as close() does, so that a map this process alone held is unmapped
// (which lets go of its file) and its id reaped. A map that a program-side handle still
// holds stays mapped until the process is gone, as does one that a thread is still using
// (map_put waits for commands in flight). A process that dies without exiting leaves its
// maps to the next id walk.
[[gnu::destructor]] void release_fds_at_exit()
{
	for (int c = 0; c < FD_CHUNKS; c++) {
		fd_chunk *chunk = fd_chunks[c].load(std::memory_order_acquire);
		for (int i = 0; chunk && i < FD_CHUNK; i++) {
			if (!chunk->slot[i].load(std::memory_order_relaxed))
				continue;
			int fd = (c << FD_CHUNK_BITS) | i;
			syscall(SYS_close, fd);
			fd_forget(fd);
		}
	}
	// After the maps: a map made with a BTF object holds it until the map's id goes.
	btf_fds_release();
}

} // namespace

} // namespace bpfmap
