// The C++ handle: a thin layer that builds attrs and calls the dispatcher.
#include "bpfmap/map.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "core/map.h"
#include "syscall/syscall.h"
#include "uapi/bpf_uapi.h"

namespace bpfmap {
namespace {

uint64_t ptr(const void *p) { return reinterpret_cast<uintptr_t>(p); }

int call(uapi::bpf_cmd cmd, uapi::bpf_attr &attr)
{
	long r = sys_bpf(cmd, &attr, sizeof(attr));
	return r < 0 ? static_cast<int>(-r) : 0;
}

int elem_call(uapi::bpf_cmd cmd, int fd, const void *key, const void *value, uint64_t flags)
{
	uapi::bpf_attr attr{};
	attr.elem.map_fd = static_cast<uint32_t>(fd);
	attr.elem.key = ptr(key);
	attr.elem.value = ptr(value);
	attr.elem.flags = flags;
	return call(cmd, attr);
}

} // namespace

Map::~Map() { reset(); }

Map::Map(Map &&o) noexcept
	: fd_(o.fd_)
	, map_(o.map_)
	, key_size_(o.key_size_)
	, value_size_(o.value_size_)
	, value_bytes_(o.value_bytes_)
	, type_(o.type_)
{
	o.fd_ = -1;
	o.map_ = nullptr;
}

Map &Map::operator=(Map &&o) noexcept
{
	if (this != &o) {
		reset();
		fd_ = o.fd_;
		map_ = o.map_;
		key_size_ = o.key_size_;
		value_size_ = o.value_size_;
		value_bytes_ = o.value_bytes_;
		type_ = o.type_;
		o.fd_ = -1;
		o.map_ = nullptr;
	}
	return *this;
}

void Map::reset()
{
	if (map_)
		bpfmap_map_put(map_);
	if (fd_ >= 0)
		close(fd_);
	fd_ = -1;
	map_ = nullptr;
}

int Map::adopt(int fd)
{
	reset();
	fd_ = fd;
	map_ = bpfmap_map_get(fd);
	if (!map_) {
		int err = errno;
		reset();
		return err;
	}
	MapInfo mi;
	if (int err = info(mi)) {
		reset();
		return err;
	}
	key_size_ = mi.key_size;
	value_size_ = mi.value_size;
	type_ = mi.type;
	value_bytes_ = bpf_map_value_size(reinterpret_cast<bpf_map *>(map_));
	return 0;
}

int Map::create(const MapSpec &spec, Map &out)
{
	uapi::bpf_attr attr{};
	attr.map_create.map_type = spec.type;
	attr.map_create.key_size = spec.key_size;
	attr.map_create.value_size = spec.value_size;
	attr.map_create.max_entries = spec.max_entries;
	attr.map_create.map_flags = spec.flags;
	attr.map_create.map_extra = spec.map_extra;
	if (spec.name.size() >= uapi::OBJ_NAME_LEN)
		return EINVAL;
	memcpy(attr.map_create.map_name, spec.name.data(), spec.name.size());
	long fd = sys_bpf(uapi::MAP_CREATE, &attr, sizeof(attr));
	if (fd < 0)
		return static_cast<int>(-fd);
	return out.adopt(static_cast<int>(fd));
}

int Map::open_pinned(const std::string &path, Map &out)
{
	uapi::bpf_attr attr{};
	attr.obj.pathname = ptr(path.c_str());
	long fd = sys_bpf(uapi::OBJ_GET, &attr, sizeof(attr));
	if (fd < 0)
		return static_cast<int>(-fd);
	return out.adopt(static_cast<int>(fd));
}

int Map::from_fd(int fd, Map &out)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0)
		return errno;
	return out.adopt(copy);
}

int Map::info(MapInfo &out) const
{
	uapi::bpf_map_info info{};
	uapi::bpf_attr attr{};
	attr.info.bpf_fd = static_cast<uint32_t>(fd_);
	attr.info.info_len = sizeof(info);
	attr.info.info = ptr(&info);
	if (int err = call(uapi::OBJ_GET_INFO_BY_FD, attr))
		return err;
	out = {info.type,
	       info.id,
	       info.key_size,
	       info.value_size,
	       info.max_entries,
	       info.map_flags,
	       std::string(info.name, strnlen(info.name, sizeof(info.name)))};
	return 0;
}

int Map::lookup(const void *key, void *value) const
{
	return elem_call(uapi::MAP_LOOKUP_ELEM, fd_, key, value, 0);
}

int Map::lookup(std::span<const std::byte> key, std::span<std::byte> value) const
{
	if (key.size() != key_size_ || value.size() != value_bytes_)
		return EINVAL;
	return lookup(key.data(), value.data());
}

void *Map::lookup_ptr(const void *key) const { return bpfmap_map_lookup_elem(map_, key); }

int Map::lookup_ptr(std::span<const std::byte> keys, std::span<void *> ptrs, uint32_t *found) const
{
	if (keys.size() != ptrs.size() * key_size_ || ptrs.size() > UINT32_MAX)
		return EINVAL;
	long n = bpfmap_map_lookup_multi(map_, keys.data(), static_cast<uint32_t>(ptrs.size()),
					 ptrs.data());
	if (n < 0)
		return static_cast<int>(-n);
	if (found)
		*found = static_cast<uint32_t>(n);
	return 0;
}

int Map::push(const void *value, uint64_t flags)
{
	return static_cast<int>(-bpfmap_map_push_elem(map_, value, flags));
}

int Map::pop(void *value) { return static_cast<int>(-bpfmap_map_pop_elem(map_, value)); }

int Map::peek(void *value) const { return static_cast<int>(-bpfmap_map_peek_elem(map_, value)); }

int Map::update(const void *key, const void *value, uint64_t flags)
{
	return elem_call(uapi::MAP_UPDATE_ELEM, fd_, key, value, flags);
}

int Map::update(std::span<const std::byte> key, std::span<const std::byte> value, uint64_t flags)
{
	if (key.size() != key_size_ || value.size() != value_bytes_)
		return EINVAL;
	return update(key.data(), value.data(), flags);
}

int Map::erase(const void *key) { return elem_call(uapi::MAP_DELETE_ELEM, fd_, key, nullptr, 0); }

int Map::lookup_and_erase(const void *key, void *value)
{
	return elem_call(uapi::MAP_LOOKUP_AND_DELETE_ELEM, fd_, key, value, 0);
}

int Map::next_key(const void *key, void *next) const
{
	return elem_call(uapi::MAP_GET_NEXT_KEY, fd_, key, next, 0);
}

int Map::pin(const std::string &path) const
{
	uapi::bpf_attr attr{};
	attr.obj.pathname = ptr(path.c_str());
	attr.obj.bpf_fd = static_cast<uint32_t>(fd_);
	return call(uapi::OBJ_PIN, attr);
}

int Map::freeze()
{
	uapi::bpf_attr attr{};
	attr.elem.map_fd = static_cast<uint32_t>(fd_);
	return call(uapi::MAP_FREEZE, attr);
}

Map::key_iterator::key_iterator(const Map *m, bool first)
	: map_(m)
{
	if (!first)
		return;
	key_.resize(m->key_size_);
	at_end_ = m->next_key(nullptr, key_.data()) != 0;
}

Map::key_iterator &Map::key_iterator::operator++()
{
	std::vector<std::byte> next(key_.size());
	at_end_ = map_->next_key(key_.data(), next.data()) != 0;
	key_.swap(next);
	return *this;
}

} // namespace bpfmap
