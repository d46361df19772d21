#include "core/batch.h"

#include <vector>

#include "core/uaccess.h"

namespace bpfmap {

int batch_check_elem_flags(uint64_t elem_flags)
{
	return elem_flags ? -EINVAL : 0; // unknown bits, or BPF_F_LOCK without a lock
}

namespace {

// The steps every generic walk starts with: flags, an empty request, count zeroed.
// Returns 1 when there is work to do.
int batch_begin(const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	int err = batch_check_elem_flags(attr.elem_flags);
	if (err)
		return err;
	if (!attr.count)
		return 0;
	uattr->count = 0;
	return 1;
}

// The caller's address of element i of an array of size-byte elements.
uint64_t user_elem(uint64_t base, size_t i, size_t size) { return base + i * size; }

} // namespace

int generic_map_lookup_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	int err = batch_begin(attr, uattr);
	if (err <= 0)
		return err;
	const size_t ks = map->key_size, vs = bpf_map_value_size(map);
	std::vector<unsigned char> buf(2 * ks + vs);
	unsigned char *prev = buf.data(), *key = prev + ks, *value = key + ks;
	bool have_prev = false;
	if (attr.in_batch) {
		if ((err = copy_from_user(prev, attr.in_batch, ks)))
			return err;
		have_prev = true;
	}
	uint32_t cp = 0;
	// Keys skipped in a row. A sound map cannot hand out more keys that are gone than it
	// holds; a region scribbled into a cycle of vanished keys could, for ever.
	uint64_t skipped = 0;
	while (cp < attr.count) {
		err = map->ops->map_get_next_key(map, have_prev ? prev : nullptr, key);
		if (err)
			break;
		err = map->ops->map_copy_value(map, key, value, attr.elem_flags);
		if (err && err != -ENOENT)
			return err;
		if (err && ++skipped > 2 * static_cast<uint64_t>(map->max_entries) + 2)
			return -EFAULT;
		if (!err) {
			skipped = 0;
			// A key deleted between the two steps is skipped, as since 6.14.
			if ((err = copy_to_user(user_elem(attr.keys, cp, ks), key, ks)) ||
			    (err = copy_to_user(user_elem(attr.values, cp, vs), value, vs)))
				return err;
			cp++;
		}
		std::swap(prev, key);
		have_prev = true;
	}
	uattr->count = cp;
	if (cp) {
		int e = copy_to_user(attr.out_batch, prev, ks);
		if (e)
			return e;
	}
	return err;
}

int generic_map_update_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	int err = batch_begin(attr, uattr);
	if (err <= 0)
		return err;
	const size_t ks = map->key_size, vs = bpf_map_value_size(map);
	std::vector<unsigned char> buf(ks + vs);
	unsigned char *key = buf.data(), *value = key + ks;
	uint32_t cp;
	for (cp = 0; cp < attr.count; cp++) {
		if ((err = copy_from_user(key, user_elem(attr.keys, cp, ks), ks)) ||
		    (err = copy_from_user(value, user_elem(attr.values, cp, vs), vs)))
			break;
		if ((err = map->ops->map_update_value(map, key, value, attr.elem_flags)))
			break;
	}
	uattr->count = cp;
	return err;
}

int generic_map_delete_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	int err = batch_begin(attr, uattr);
	if (err <= 0)
		return err;
	const size_t ks = map->key_size;
	std::vector<unsigned char> key(ks);
	uint32_t cp;
	for (cp = 0; cp < attr.count; cp++) {
		if ((err = copy_from_user(key.data(), user_elem(attr.keys, cp, ks), ks)))
			break;
		if ((err = map->ops->map_delete_elem(map, key.data())))
			break;
	}
	uattr->count = cp;
	return err;
}

} // namespace bpfmap
