// bpfmap's C++ interface: a move-only handle over one map fd, and TypedMap<K, V> over it.
//
// Every call that can fail returns 0 or the kernel's (positive) errno for the same
// operation; nothing throws. Lookups, updates and iteration go through bpfmap_bpf(), so
// they have exactly the kernel's syscall semantics; lookup_ptr() is the program-side
// pointer lookup (no copy, no permission checks, as for a BPF program).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "bpfmap/bpfmap.h"

namespace bpfmap {

// Kernel values, repeated so this header needs no <linux/bpf.h>.
// The map types bpfmap serves (bpfmap/map_types.h).
enum map_type : uint32_t {
#define BPFMAP_MAP_TYPE(name, value, cxx, ops) cxx = value,
#include "bpfmap/map_types.h"
#undef BPFMAP_MAP_TYPE
};
enum update_flags : uint64_t {
	ANY = 0,
	NOEXIST = 1,
	EXIST = 2,
};

struct MapSpec {
	uint32_t type = MAP_HASH;
	uint32_t key_size = 0;
	uint32_t value_size = 0;
	uint32_t max_entries = 0;
	uint32_t flags = 0;
	std::string name;
	uint64_t map_extra = 0; // a bloom filter's number of hash functions (0: the default, 5)
};

struct MapInfo {
	uint32_t type, id, key_size, value_size, max_entries, flags;
	std::string name;
};

class BPFMAP_API Map {
public:
	Map() = default;
	~Map();
	Map(Map &&other) noexcept;
	Map &operator=(Map &&other) noexcept;
	Map(const Map &) = delete;
	Map &operator=(const Map &) = delete;

	static int create(const MapSpec &spec, Map &out);
	// Open a pinned map (a /sys/fs/bpf path or one under the pin root).
	static int open_pinned(const std::string &path, Map &out);
	// Wrap a duplicate of a map fd that the caller keeps owning.
	static int from_fd(int fd, Map &out);

	bool valid() const { return fd_ >= 0; }
	int fd() const { return fd_; }
	uint32_t key_size() const { return key_size_; }
	uint32_t value_size() const { return value_size_; }
	// Bytes that lookup() and update() copy: value_size(), or for a per-CPU map
	// round_up(value_size(), 8) for each of bpfmap_num_possible_cpus() CPUs, in CPU order.
	uint32_t value_bytes() const { return value_bytes_; }
	bool percpu() const
	{
		return type_ == MAP_PERCPU_HASH || type_ == MAP_PERCPU_ARRAY ||
		       type_ == MAP_LRU_PERCPU_HASH;
	}
	int info(MapInfo &out) const;

	int lookup(const void *key, void *value) const;
	int lookup(std::span<const std::byte> key, std::span<std::byte> value) const;
	// Pointer into the map's value, or nullptr when the key is absent.
	void *lookup_ptr(const void *key) const;
	// Many keys at once (bpfmap_map_lookup_multi): keys holds ptrs.size() keys packed
	// key_size() bytes apart, and ptrs[i] gets key i's pointer or nullptr; *found, if
	// given, how many were found. EINVAL, with nothing written, when keys is not exactly
	// that many keys (or more than 2^32 - 1 of them).
	int lookup_ptr(std::span<const std::byte> keys, std::span<void *> ptrs,
		       uint32_t *found = nullptr) const;
	int update(const void *key, const void *value, uint64_t flags = ANY);
	int update(std::span<const std::byte> key, std::span<const std::byte> value,
		   uint64_t flags = ANY);
	int erase(const void *key);
	int lookup_and_erase(const void *key, void *value);
	// key == nullptr asks for the first key.
	int next_key(const void *key, void *next) const;
	int pin(const std::string &path) const;
	int freeze();

	// Queue, stack and bloom filter, program-side like lookup_ptr() (no fd permission or
	// frozen checks): push a value (flags ANY, or EXIST to drop the oldest value of a full
	// queue or stack); pop or peek the next value (ENOENT when empty); a bloom filter's
	// peek answers 0 (maybe present) or ENOENT for the value it is given.
	int push(const void *value, uint64_t flags = ANY);
	int pop(void *value);
	int peek(void *value) const;

	// Range-for over the keys, in the map's get_next_key order.
	class BPFMAP_API key_iterator {
	public:
		key_iterator() = default;
		key_iterator(const Map *m, bool first);
		const std::vector<std::byte> &operator*() const { return key_; }
		key_iterator &operator++();
		bool operator==(const key_iterator &o) const { return at_end_ == o.at_end_; }

	private:
		const Map *map_ = nullptr;
		std::vector<std::byte> key_;
		bool at_end_ = true;
	};
	key_iterator begin() const { return key_iterator(this, true); }
	key_iterator end() const { return key_iterator(); }

private:
	int adopt(int fd);
	void reset();

	int fd_ = -1;
	bpfmap_map *map_ = nullptr;
	uint32_t key_size_ = 0;
	uint32_t value_size_ = 0;
	uint32_t value_bytes_ = 0;
	uint32_t type_ = 0;
};

// A map whose keys and values are trivially copyable C++ types of exactly the map's sizes.
// Not for per-CPU maps, whose syscall values hold one V per CPU: use Map and value_bytes().
template <typename K, typename V> class TypedMap {
	static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);

public:
	TypedMap() = default;

	static int create(uint32_t type, uint32_t max_entries, TypedMap &out, uint32_t flags = 0,
			  const std::string &name = "")
	{
		if (type == MAP_PERCPU_HASH || type == MAP_PERCPU_ARRAY)
			return EINVAL;
		MapSpec spec{type, sizeof(K), sizeof(V), max_entries, flags, name};
		return Map::create(spec, out.map_);
	}
	// Fails with EINVAL when the map's sizes are not sizeof(K) and sizeof(V).
	static int open(Map &&map, TypedMap &out)
	{
		if (map.key_size() != sizeof(K) || map.value_size() != sizeof(V) || map.percpu())
			return EINVAL;
		out.map_ = std::move(map);
		return 0;
	}

	std::optional<V> lookup(const K &key) const
	{
		V v;
		if (map_.lookup(&key, &v) != 0)
			return std::nullopt;
		return v;
	}
	V *lookup_ptr(const K &key) const { return static_cast<V *>(map_.lookup_ptr(&key)); }
	// Many keys at once, as Map's: ptrs[i] for keys[i]; EINVAL when the counts differ.
	int lookup_ptr(std::span<const K> keys, std::span<V *> ptrs,
		       uint32_t *found = nullptr) const
	{
		if (keys.size() != ptrs.size())
			return EINVAL;
		// Through a buffer of void pointers, a few hundred keys at a time: one call per
		// chunk keeps the misses of a chunk's keys overlapped.
		void *chunk[256];
		uint32_t total = 0;
		for (size_t i = 0; i < keys.size(); i += std::size(chunk)) {
			size_t n = std::min(std::size(chunk), keys.size() - i);
			uint32_t got = 0;
			int err = map_.lookup_ptr(std::as_bytes(keys.subspan(i, n)),
						  std::span<void *>(chunk, n), &got);
			if (err)
				return err;
			for (size_t j = 0; j < n; j++)
				ptrs[i + j] = static_cast<V *>(chunk[j]);
			total += got;
		}
		if (found)
			*found = total;
		return 0;
	}
	int update(const K &key, const V &value, uint64_t flags = ANY)
	{
		return map_.update(&key, &value, flags);
	}
	int erase(const K &key) { return map_.erase(&key); }

	// Range-for over (key, value) pairs; a key deleted during the walk is skipped.
	template <typename F> int for_each(F &&f) const
	{
		K key, next;
		const K *cur = nullptr;
		for (;;) {
			int err = map_.next_key(cur, &next);
			if (err)
				return err == ENOENT ? 0 : err;
			key = next;
			cur = &key;
			V v;
			if (map_.lookup(&key, &v) == 0)
				f(key, v);
		}
	}

	Map &map() { return map_; }
	const Map &map() const { return map_; }

private:
	Map map_;
};

} // namespace bpfmap
