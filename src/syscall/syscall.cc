// The bpf(cmd, attr, size) dispatcher: the analogue of kernel/bpf/syscall.c.
//
// This layer owns the rules that are the same for every map type: attr size and tail
// checks, each command's unused-field check, fd lookup and permissions, frozen state,
// key/value copying and the map name. Map families validate only their own attributes.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <net/if.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "core/btf.h"
#include "core/percpu.h"
#include "core/rcu.h"
#include "core/region.h"
#include "core/registry.h"
#include "core/sha256.h"
#include "core/uaccess.h"
#include "syscall/btf_obj.h"
#include "syscall/freeze.h"
#include "syscall/mapid.h"
#include "syscall/objtab.h"
#include "syscall/pin.h"
#include "syscall/syscall.h"

namespace bpfmap {
namespace {

using uapi::bpf_attr;

using uapi::ENOTSUPP;

// The kernel's CHECK_ATTR: every byte after the command's last field must be zero.
bool attr_tail_nonzero(const bpf_attr &attr, size_t end)
{
	return mem_nonzero(attr.raw + end, sizeof(attr.raw) - end);
}

// Copy of the kernel's ___bpf_copy_key() rules: a key pointer for a keyless map is EINVAL.
int check_key_ptr(const bpf_map *map, const void *ukey)
{
	if (map->key_size)
		return bad_user_ptr(ukey) ? -EFAULT : 0;
	return ukey ? -EINVAL : 0;
}

// Up to this many bytes, copied-out values go through a stack buffer.
constexpr size_t BOUNCE_STACK = 512;

class bounce {
public:
	explicit bounce(size_t n)
	{
		if (n > BOUNCE_STACK)
			heap_.reset(new unsigned char[n]);
	}
	void *get() { return heap_ ? heap_.get() : stack_; }

private:
	alignas(8) unsigned char stack_[BOUNCE_STACK];
	std::unique_ptr<unsigned char[]> heap_;
};

// The map behind a command's map fd and what the fd's open mode withholds, or nullptr with
// *err set.
bpf_map *elem_map(uint32_t fd, int *err, unsigned *denied)
{
	return map_from_fd(static_cast<int>(fd), err, denied);
}

// The write half of the kernel's map_get_sys_perms(): the fd's mode, and no writing at all
// once the map is frozen. Only writers pay for reading the frozen flag.
bool write_denied(const bpf_map *map, unsigned denied)
{
	return (denied & FD_NO_WRITE) || map->frozen();
}

// The kernel's isalnum() is Latin-1: it also accepts the accented letters 0xc0-0xff,
// except the multiplication and division signs.
bool name_char_ok(unsigned char c)
{
	if (isalnum(c) || c == '_' || c == '.')
		return true;
	return c >= 0xc0 && c != 0xd7 && c != 0xf7;
}

int name_copy(char *dst, const char *src)
{
	memset(dst, 0, uapi::OBJ_NAME_LEN);
	size_t i = 0;
	for (; i < uapi::OBJ_NAME_LEN && src[i]; i++) {
		if (!name_char_ok(static_cast<unsigned char>(src[i])))
			return -EINVAL;
		dst[i] = src[i];
	}
	return i == uapi::OBJ_NAME_LEN ? -EINVAL : 0;
}

// Map flags that describe an fd, not the map: they are not kept in map_flags.
constexpr uint32_t FD_ONLY_FLAGS = uapi::BPF_F_RDONLY | uapi::BPF_F_WRONLY;

// No device takes a map here. The kernel offloads only hash and array maps (EINVAL for the
// rest), and answers EINVAL for a missing ifindex and for a device whose driver has a BPF
// hook (which then refuses), EOPNOTSUPP for a device without one; software devices (lo,
// ifb, veth...) have no backing device in sysfs, drivers do.
int offload_errno(uint32_t map_type, uint32_t ifindex)
{
	if (map_type != uapi::MAP_TYPE_HASH && map_type != uapi::MAP_TYPE_ARRAY)
		return -EINVAL;
	char name[IF_NAMESIZE];
	if (!if_indextoname(ifindex, name))
		return -EINVAL;
	struct stat st;
	std::string dev = std::string("/sys/class/net/") + name + "/device";
	return stat(dev.c_str(), &st) == 0 ? -EINVAL : -EOPNOTSUPP;
}

// The checks syscall.c makes before the type is known.
int map_create_generic_check(const uapi::map_create_attr &a)
{
	if (a.btf_vmlinux_value_type_id)
		return -EINVAL; // struct_ops only
	if (a.btf_key_type_id && !a.btf_value_type_id)
		return -EINVAL;
	if (a.map_type != uapi::MAP_TYPE_BLOOM_FILTER && a.map_type != uapi::MAP_TYPE_ARENA &&
	    a.map_extra != 0)
		return -EINVAL;
	if ((a.map_flags & uapi::BPF_F_RDONLY) && (a.map_flags & uapi::BPF_F_WRONLY))
		return -EINVAL;
	// One NUMA node, as on the machines this serves.
	int32_t node = map_attr_numa_node(a);
	if (node != NUMA_NO_NODE && node != 0)
		return -EINVAL;
	return 0;
}

// The kernel's map_check_btf(): the key and value types must have the map's sizes, and
// the family may add rules of its own. A map without a key type needs the family's say.
int map_check_btf(const bpf_map_ops *ops, const uapi::map_create_attr &a, const btf::view &v)
{
	uint32_t key_size = 0, value_size;
	btf::type_ref key{}, value;
	if (a.btf_key_type_id) {
		if (!v.type_size(a.btf_key_type_id, &key_size, &key) || key_size != a.key_size)
			return -EINVAL;
	} else if (!ops->map_check_btf) {
		return -EINVAL;
	}
	if (!v.type_size(a.btf_value_type_id, &value_size, &value) || value_size != a.value_size)
		return -EINVAL;
	return ops->map_check_btf ? ops->map_check_btf(a, a.btf_key_type_id ? &key : nullptr, value)
				  : 0;
}

// A map made with BTF types records the BTF object's id and the type ids.
int map_attach_btf(const bpf_map_ops *ops, const uapi::map_create_attr &a, map_header *hdr)
{
	if (!a.btf_key_type_id && !a.btf_value_type_id)
		return 0;
	uint32_t id;
	std::vector<uint8_t> blob;
	int err = btf_from_fd(static_cast<int>(a.btf_fd), &id, &blob);
	if (err)
		return err;
	if (a.btf_value_type_id) {
		btf::view v;
		std::string why;
		if (v.parse(blob.data(), blob.size(), &why) != 0 ||
		    (err = map_check_btf(ops, a, v)))
			return err ? err : -EINVAL;
	}
	hdr->btf_id = id;
	hdr->btf_key_type_id = a.btf_key_type_id;
	hdr->btf_value_type_id = a.btf_value_type_id;
	return 0;
}

// What the kernel checks after the map is allocated: name, BTF, exclusive program hash.
int map_create_late_check(const bpf_map_ops *ops, const uapi::map_create_attr &a, map_header *hdr)
{
	int err = name_copy(hdr->name, a.map_name);
	if (err)
		return err;
	if ((err = map_attach_btf(ops, a, hdr)))
		return err;
	if (a.excl_prog_hash) {
		if (a.excl_prog_hash_size != 32)
			return -EINVAL;
		if (bad_user_ptr(user_ptr(a.excl_prog_hash)))
			return -EFAULT;
	} else if (a.excl_prog_hash_size) {
		return -EINVAL;
	}
	return 0;
}

// Give a fresh read-write map fd the open mode the flags ask for, keeping its number.
int fd_set_mode(int fd, uint32_t flags, unsigned *denied)
{
	int mode = bpf_file_mode(flags);
	*denied = access_mode_denied(mode);
	if (mode == O_RDWR)
		return 0;
	int nfd = region_reopen(fd, mode);
	if (nfd < 0)
		return nfd;
	int err = dup3(nfd, fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(nfd);
	return err;
}

long map_create(bpf_attr &attr)
{
	if (attr_tail_nonzero(attr, uapi::end_of_map_create))
		return -EINVAL;
	uapi::map_create_attr a = attr.map_create;
	bool token = a.map_flags & uapi::BPF_F_TOKEN_FD;
	a.map_flags &= ~uapi::BPF_F_TOKEN_FD; // not a property of the map
	int err = map_create_generic_check(a);
	if (err)
		return err;
	const bpf_map_ops *ops = map_type_ops(a.map_type);
	if (!ops)
		return -EINVAL;
	// Every type refuses both directions of program access at once.
	if ((a.map_flags & uapi::BPF_F_RDONLY_PROG) && (a.map_flags & uapi::BPF_F_WRONLY_PROG))
		return -EINVAL;
	if ((err = ops->map_alloc_check(a)))
		return err;
	if (a.map_ifindex)
		return offload_errno(a.map_type, a.map_ifindex);
	if (token)
		return no_token_errno(a.map_token_fd);

	size_t data_size;
	if ((err = ops->map_mem_size(a, &data_size)))
		return err;
	data_size = round_up(data_size, PAGE_SIZE);
	void *base;
	int fd = region_create(data_size, !(a.map_flags & uapi::BPF_F_NO_PREALLOC), &base);
	if (fd < 0)
		return fd;
	auto *hdr = reinterpret_cast<map_header *>(static_cast<char *>(base) + data_size);
	if ((err = map_create_late_check(ops, a, hdr))) {
		region_unmap(base, data_size + MAP_HEADER_SIZE);
		close(fd);
		return err;
	}
	hdr->map_type = a.map_type;
	hdr->key_size = a.key_size;
	hdr->value_size = a.value_size;
	hdr->max_entries = a.max_entries;
	hdr->map_flags = a.map_flags & ~FD_ONLY_FLAGS;
	hdr->map_extra = a.map_extra;
	hdr->data_size = data_size;
	hdr->nr_cpus = num_possible_cpus();
	pid_ns_id(&hdr->pid_ns_dev, &hdr->pid_ns_ino);
	hdr->id = next_map_id();
	unsigned denied = 0;
	if ((err = fd_set_mode(fd, a.map_flags, &denied)) ||
	    (err = map_install_new(ops, base, data_size + MAP_HEADER_SIZE, fd, denied))) {
		region_unmap(base, data_size + MAP_HEADER_SIZE);
		close(fd);
		return err;
	}
	if (hdr->btf_id)
		btf_ref_by_map(static_cast<int>(a.btf_fd), hdr->btf_id, hdr->id);
	map_id_publish(fd, hdr->id);
	return fd;
}

// An element command's fields. Passed in registers: the hot path never stores an attr
// and loads it back (a load that cannot take its data straight from a recent wide store
// waits for that store to retire, which serialises lookups that miss the cache).
struct elem_args {
	uint32_t map_fd;
	uint64_t key;
	uint64_t value; // or next_key
	uint64_t flags;
};

[[gnu::noinline]] long map_lookup_elem(elem_args e)
{
	if (e.flags & ~uapi::BPF_F_LOCK)
		return -EINVAL;
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(e.map_fd, &err, &denied);
	if (!map)
		return err;
	if (denied & FD_NO_READ)
		return -EPERM;
	if (e.flags & uapi::BPF_F_LOCK)
		return -EINVAL; // no map records a bpf_spin_lock in its value yet
	const void *key = user_ptr(e.key);
	if ((err = check_key_ptr(map, key)))
		return err;
	bounce buf(bpf_map_value_size(map));
	// A bloom filter's lookup asks about the caller's value and returns nothing.
	if (map->map_type == uapi::MAP_TYPE_BLOOM_FILTER) {
		if ((err = copy_from_user(buf.get(), e.value, bpf_map_value_size(map))))
			return err;
		return map->ops->map_copy_value(map, key, buf.get(), e.flags);
	}
	err = map->ops->map_copy_value(map, key, buf.get(), e.flags);
	if (err)
		return err;
	return copy_to_user(e.value, buf.get(), bpf_map_value_size(map));
}

[[gnu::noinline]] long map_update_elem(elem_args e)
{
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(e.map_fd, &err, &denied);
	if (!map)
		return err;
	if (write_denied(map, denied))
		return -EPERM;
	if (e.flags & uapi::BPF_F_LOCK)
		return -EINVAL;
	const void *key = user_ptr(e.key);
	if ((err = check_key_ptr(map, key)))
		return err;
	const void *value = user_ptr(e.value);
	if (bad_user_ptr(value))
		return -EFAULT;
	return map->ops->map_update_value(map, key, value, e.flags);
}

[[gnu::noinline]] long map_delete_elem(elem_args e)
{
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(e.map_fd, &err, &denied);
	if (!map)
		return err;
	if (write_denied(map, denied))
		return -EPERM;
	const void *key = user_ptr(e.key);
	if ((err = check_key_ptr(map, key)))
		return err;
	return map->ops->map_delete_elem(map, key);
}

[[gnu::noinline]] long map_get_next_key(elem_args e)
{
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(e.map_fd, &err, &denied);
	if (!map)
		return err;
	if (denied & FD_NO_READ)
		return -EPERM;
	const void *key = user_ptr(e.key);
	if (key && (err = check_key_ptr(map, key)))
		return err;
	if (!map->ops->map_get_next_key)
		return -ENOTSUPP;
	bounce buf(map->key_size);
	err = map->ops->map_get_next_key(map, key, buf.get());
	if (err)
		return err;
	return copy_to_user(e.value, buf.get(), map->key_size);
}

[[gnu::noinline]] long map_lookup_and_delete_elem(elem_args e)
{
	if (e.flags & ~uapi::BPF_F_LOCK)
		return -EINVAL;
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(e.map_fd, &err, &denied);
	if (!map)
		return err;
	if ((denied & FD_NO_READ) || write_denied(map, denied))
		return -EPERM; // reads and deletes: needs both
	if (e.flags && map->ops->map_pop_elem)
		return -EINVAL;
	if (e.flags & uapi::BPF_F_LOCK)
		return -EINVAL;
	const void *key = user_ptr(e.key);
	if ((err = check_key_ptr(map, key)))
		return err;
	bounce buf(bpf_map_value_size(map));
	if (map->ops->map_pop_elem)
		err = map->ops->map_pop_elem(map, buf.get());
	else if (map->ops->map_lookup_and_delete_elem)
		err = map->ops->map_lookup_and_delete_elem(map, key, buf.get(), e.flags);
	else
		err = -ENOTSUPP;
	if (err)
		return err;
	return copy_to_user(e.value, buf.get(), bpf_map_value_size(map));
}

long map_freeze(bpf_attr &attr)
{
	if (attr_tail_nonzero(attr, uapi::end_of_map_fd))
		return -EINVAL;
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(attr.elem.map_fd, &err, &denied);
	if (!map)
		return err;
	// A frozen map's fds have lost their write permission, so a second freeze is EPERM.
	if (write_denied(map, denied))
		return -EPERM;
	return map_freeze_exclusive(static_cast<int>(attr.elem.map_fd), map);
}

// Input fields of struct bpf_map_info (6.18): a buffer for the map's SHA-256, and its size.
constexpr size_t INFO_HASH_OFF = offsetof(uapi::bpf_map_info, hash);
constexpr size_t INFO_HASH_SIZE_OFF = offsetof(uapi::bpf_map_info, hash_size);
// The kernel checks the caller's tail from the end of hash_size, padding included.
constexpr size_t INFO_TAIL_OFF = INFO_HASH_SIZE_OFF + sizeof(uint32_t);

// The caller asked for the map's hash: only frozen maps whose type has one give it.
int map_info_hash(bpf_map *map, const uapi::bpf_map_info &in)
{
	if (!in.hash && !in.hash_size)
		return 0;
	if (!in.hash || !map->ops->map_get_hash || in.hash_size != SHA256_DIGEST_SIZE)
		return -EINVAL;
	if (!map->frozen())
		return -EPERM;
	uint8_t digest[SHA256_DIGEST_SIZE];
	map->ops->map_get_hash(map, digest);
	return copy_to_user(in.hash, digest, sizeof(digest));
}

long obj_get_info_by_fd(bpf_attr &attr)
{
	if (attr_tail_nonzero(attr, uapi::end_of_info))
		return -EINVAL;
	rcu_guard g;
	int err;
	bpf_map *map = map_from_fd(static_cast<int>(attr.info.bpf_fd), &err);
	if (!map && err == -EINVAL)
		return btf_get_info(static_cast<int>(attr.info.bpf_fd), attr.info);
	if (!map)
		return err == -EBADF ? -EBADFD : err;
	uint32_t len = attr.info.info_len;
	uapi::bpf_map_info info{};
	if ((err = info_copy_in(attr.info.info, &len, INFO_TAIL_OFF, &info, sizeof(info))))
		return err;
	if (len <= INFO_HASH_OFF)
		info.hash = 0;
	if (len <= INFO_HASH_SIZE_OFF)
		info.hash_size = 0;
	if ((err = map_info_hash(map, info)))
		return err;
	// The kernel fills what it knows over the caller's own bytes and leaves the rest
	// (device, netns and BTF fields of a map without them) as the caller wrote them.
	info.type = map->map_type;
	info.id = map->id;
	info.key_size = map->key_size;
	info.value_size = map->value_size;
	info.max_entries = map->max_entries;
	info.map_flags = map->map_flags;
	info.map_extra = map->map_extra;
	info.btf_vmlinux_value_type_id = 0;
	if (map->hdr->btf_id) {
		info.btf_id = map->hdr->btf_id;
		info.btf_key_type_id = map->hdr->btf_key_type_id;
		info.btf_value_type_id = map->hdr->btf_value_type_id;
	}
	memcpy(info.name, map->hdr->name, sizeof(info.name));
	if (len)
		memcpy(user_ptr(attr.info.info), &info, len);
	attr.info.info_len = len;
	return 0;
}

// The batch commands: permissions as for their single-element forms (reads, writes),
// then the type's walk (op).
using batch_op = int (*bpf_map_ops::*)(bpf_map *, const uapi::batch_attr &, uapi::batch_attr *);

long map_do_batch(batch_op op, bool reads, bool writes, const bpf_attr &attr, void *uattr)
{
	if (attr_tail_nonzero(attr, uapi::end_of_batch))
		return -EINVAL;
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = elem_map(attr.batch.map_fd, &err, &denied);
	if (!map)
		return err;
	if ((reads && (denied & FD_NO_READ)) || (writes && write_denied(map, denied)))
		return -EPERM;
	auto fn = map->ops->*op;
	if (!fn)
		return -ENOTSUPP;
	if (bad_user_ptr(uattr))
		return -EFAULT; // count goes back into the caller's attr
	return fn(map, attr.batch, static_cast<uapi::batch_attr *>(uattr));
}

template <typename T> T load_user(const unsigned char *u, size_t off)
{
	T v;
	memcpy(&v, u + off, sizeof(v));
	return v;
}

// The caller's n readable attr bytes, and zeros after them.
bpf_attr attr_zero_extended(const void *u, size_t n)
{
	bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	if (n)
		memcpy(&attr, u, n);
	return attr;
}

using elem_fn = long (*)(elem_args);

template <elem_fn cmd, size_t end> long elem_command(const unsigned char *u, size_t n);

// An element command's attr shorter than its fields: the missing ones are zero.
template <elem_fn cmd, size_t end>
[[gnu::noinline]] long elem_command_short(const unsigned char *u, size_t n)
{
	bpf_attr attr = attr_zero_extended(u, n);
	return elem_command<cmd, end>(attr.raw, sizeof(attr));
}

// Element commands: the fields are loaded one by one from the caller's attr (n bytes of
// it are readable), and must be followed by zeros up to the kernel's attr size (end is
// where the command's fields end, its CHECK_ATTR). The checks keep no stack frame: each
// command is reached by a tail call, so that a lookup costs few instructions and stores
// and back-to-back lookups overlap their cache misses.
template <elem_fn cmd, size_t end> long elem_command(const unsigned char *u, size_t n)
{
	if (n < sizeof(uapi::elem_attr))
		return elem_command_short<cmd, end>(u, n);
	elem_args e{load_user<uint32_t>(u, offsetof(uapi::elem_attr, map_fd)),
		    load_user<uint64_t>(u, offsetof(uapi::elem_attr, key)),
		    load_user<uint64_t>(u, offsetof(uapi::elem_attr, value)),
		    load_user<uint64_t>(u, offsetof(uapi::elem_attr, flags))};
	bool tail = (end <= offsetof(uapi::elem_attr, value) && e.value) ||
		    (end <= offsetof(uapi::elem_attr, flags) && e.flags);
	tail = tail || mem_nonzero(u + sizeof(uapi::elem_attr), n - sizeof(uapi::elem_attr));
	return tail ? -EINVAL : cmd(e);
}

// Every other command works on a zero-extended copy of the caller's attr.
template <typename Fn> [[gnu::noinline]] long attr_command(const void *uattr, size_t n, Fn cmd)
{
	bpf_attr attr = attr_zero_extended(uattr, n);
	return cmd(attr);
}

// After a command that succeeded: info_len and next_id go back into the caller's attr
// whatever size the caller gave, as the kernel's put_user() does, and fail as it does where
// the attr is not memory (a size of 0 lets a NULL attr through to here).
long put_attr_u32(long ret, void *uattr, size_t off, uint32_t v)
{
	if (ret != 0)
		return ret;
	if (bad_user_ptr(uattr))
		return -EFAULT;
	memcpy(static_cast<unsigned char *>(uattr) + off, &v, sizeof(v));
	return 0;
}

} // namespace

// The dispatcher, as the kernel's __sys_bpf(): the attr's size rules, then one switch over
// the commands bpfmap serves; any other command is EINVAL.
long sys_bpf(int cmd, void *uattr, unsigned int size)
{
	if (size > uapi::BPF_ATTR_MAX_USER_SIZE)
		return -E2BIG;
	auto *u = static_cast<const unsigned char *>(uattr);
	if (size && bad_user_ptr(u))
		return -EFAULT;
	if (size > sizeof(bpf_attr) && mem_nonzero(u + sizeof(bpf_attr), size - sizeof(bpf_attr)))
		return -E2BIG;
	size_t n = std::min<size_t>(size, sizeof(bpf_attr));
	constexpr size_t next_id_off = offsetof(uapi::id_attr, next_id);

	switch (cmd) {
	case uapi::MAP_CREATE:
		return attr_command(u, n, [](bpf_attr &a) { return map_create(a); });
	case uapi::MAP_LOOKUP_ELEM:
		return elem_command<map_lookup_elem, uapi::end_of_elem>(u, n);
	case uapi::MAP_UPDATE_ELEM:
		return elem_command<map_update_elem, uapi::end_of_elem>(u, n);
	case uapi::MAP_DELETE_ELEM:
		return elem_command<map_delete_elem, uapi::end_of_key>(u, n);
	case uapi::MAP_GET_NEXT_KEY:
		return elem_command<map_get_next_key, uapi::end_of_next_key>(u, n);
	case uapi::OBJ_PIN:
		return attr_command(u, n, [](bpf_attr &a) {
			return obj_pin(a.obj, attr_tail_nonzero(a, uapi::end_of_obj));
		});
	case uapi::OBJ_GET:
		return attr_command(u, n, [](bpf_attr &a) {
			return obj_get(a.obj, attr_tail_nonzero(a, uapi::end_of_obj));
		});
	case uapi::MAP_GET_NEXT_ID:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			long ret =
				map_get_next_id(a.id, attr_tail_nonzero(a, uapi::end_of_next_id));
			return put_attr_u32(ret, uattr, next_id_off, a.id.next_id);
		});
	case uapi::MAP_GET_FD_BY_ID:
		return attr_command(u, n, [](bpf_attr &a) {
			return map_get_fd_by_id(a.id,
						attr_tail_nonzero(a, uapi::end_of_open_flags));
		});
	case uapi::OBJ_GET_INFO_BY_FD:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			long ret = obj_get_info_by_fd(a);
			return put_attr_u32(ret, uattr, offsetof(uapi::info_attr, info_len),
					    a.info.info_len);
		});
	case uapi::BTF_LOAD:
		return attr_command(u, n, [uattr, size](bpf_attr &a) {
			return btf_load(a.btf_load, attr_tail_nonzero(a, uapi::end_of_btf_load),
					uattr, size);
		});
	case uapi::BTF_GET_FD_BY_ID:
		return attr_command(u, n, [](bpf_attr &a) {
			return btf_get_fd_by_id(a.id, attr_tail_nonzero(a, uapi::end_of_btf_by_id));
		});
	case uapi::MAP_LOOKUP_AND_DELETE_ELEM:
		return elem_command<map_lookup_and_delete_elem, uapi::end_of_elem>(u, n);
	case uapi::MAP_FREEZE:
		return attr_command(u, n, [](bpf_attr &a) { return map_freeze(a); });
	case uapi::BTF_GET_NEXT_ID:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			long ret =
				btf_get_next_id(a.id, attr_tail_nonzero(a, uapi::end_of_next_id));
			return put_attr_u32(ret, uattr, next_id_off, a.id.next_id);
		});
	case uapi::MAP_LOOKUP_BATCH:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			return map_do_batch(&bpf_map_ops::map_lookup_batch, true, false, a, uattr);
		});
	case uapi::MAP_LOOKUP_AND_DELETE_BATCH:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			return map_do_batch(&bpf_map_ops::map_lookup_and_delete_batch, true, true,
					    a, uattr);
		});
	case uapi::MAP_UPDATE_BATCH:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			return map_do_batch(&bpf_map_ops::map_update_batch, false, true, a, uattr);
		});
	case uapi::MAP_DELETE_BATCH:
		return attr_command(u, n, [uattr](bpf_attr &a) {
			return map_do_batch(&bpf_map_ops::map_delete_batch, false, true, a, uattr);
		});
	default:
		return -EINVAL;
	}
}

bool fd_is_map(int fd)
{
	unsigned denied;
	{
		rcu_guard g;
		if (map_from_fd_cached(fd, &denied))
			return true;
	}
	struct stat st;
	if (file_stat(fd, &st) != 0 || !on_pin_root_fs(st))
		return false;
	rcu_guard g;
	int err;
	return map_from_fd(fd, &err) != nullptr;
}

bool fd_is_bpf_object(int fd)
{
	int saved = errno;
	bool ours = fd_is_map(fd) || btf_fd_id(fd) != 0;
	errno = saved;
	return ours;
}

int map_show_fdinfo(int fd, std::string *out)
{
	rcu_guard g;
	int err;
	bpf_map *map = map_from_fd(fd, &err);
	if (!map)
		return err;
	char buf[512];
	// memlock is what the map holds in shared memory: its whole region.
	snprintf(buf, sizeof(buf),
		 "map_type:\t%u\nkey_size:\t%u\nvalue_size:\t%u\nmax_entries:\t%u\n"
		 "map_flags:\t%#x\nmap_extra:\t%#llx\nmemlock:\t%llu\nmap_id:\t%u\n"
		 "frozen:\t%u\n",
		 map->map_type, map->key_size, map->value_size, map->max_entries, map->map_flags,
		 static_cast<unsigned long long>(map->map_extra),
		 static_cast<unsigned long long>(map->region_size), map->id,
		 map->frozen() ? 1U : 0U);
	*out = buf;
	return 0;
}

} // namespace bpfmap
