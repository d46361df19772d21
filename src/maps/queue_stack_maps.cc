// BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK.
//
// As in the kernel, a ring of max_entries + 1 value slots in the data area, so that
// head == tail means empty and one slot always stays free. A push writes the slot at head
// and advances head; a queue takes from tail, a stack from head - 1. One shared_lock
// guards head and tail, and every operation, peek included, holds it: a value is never
// read while it is being written.
//
// A holder that dies at any instruction leaves a consistent ring: head and tail are each
// published with one store, after (push) or before (overwrite of the oldest) the value
// copy they cover, so its operation either happened or did not, and the next holder has
// nothing to repair.
//
// The region is untrusted: the ring's size is the handle's own (checked against the
// control block once, at attach), and head and tail are read once each per operation and
// checked against it before they index a slot. A ring whose head or tail is out of range
// was written by someone else: every operation on it gives EFAULT.
#include <cerrno>
#include <cstring>

#include "core/lock.h"
#include "core/map.h"
#include "core/registry.h"
#include "core/shmem.h"

namespace bpfmap {
namespace {

constexpr uint32_t QUEUE_STACK_CREATE_FLAG_MASK = uapi::BPF_F_NUMA_NODE | uapi::BPF_F_ACCESS_MASK;
// The kernel refuses values larger than one kmalloc (4 MiB): user space could not read them.
constexpr uint32_t KMALLOC_MAX_SIZE = 1u << 22;

struct qs_ctl {
	shared_lock lock;
	uint32_t head, tail;
	uint32_t size; // max_entries + 1
};

// Where the ring stands, as the lock holder read it.
struct qs_pos {
	uint32_t head, tail;
};

struct bpf_queue_stack : bpf_map {
	qs_ctl *ctl_ = nullptr;
	uint64_t size = 0; // slots: max_entries + 1
	bool is_stack = false;

	char *slot(uint32_t i) const { return data + static_cast<size_t>(i) * value_size; }
	uint32_t next(uint32_t i) const { return i + 1ull >= size ? 0 : i + 1; }
	uint32_t prev(uint32_t i) const { return i == 0 ? static_cast<uint32_t>(size - 1) : i - 1; }

	// Head and tail, each read once; false when either is past the ring.
	bool read_pos(qs_pos *p) const
	{
		p->head = __atomic_load_n(&ctl_->head, __ATOMIC_RELAXED);
		p->tail = __atomic_load_n(&ctl_->tail, __ATOMIC_RELAXED);
		return __builtin_expect(p->head < size && p->tail < size, 1);
	}
};

bpf_queue_stack *qs_of(bpf_map *map) { return static_cast<bpf_queue_stack *>(map); }

int queue_stack_map_alloc_check(const uapi::map_create_attr &attr)
{
	if (attr.max_entries == 0 || attr.key_size != 0 || attr.value_size == 0 ||
	    (attr.map_flags & ~QUEUE_STACK_CREATE_FLAG_MASK))
		return -EINVAL;
	if (attr.value_size > KMALLOC_MAX_SIZE)
		return -E2BIG;
	return 0;
}

int queue_stack_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	*size = (static_cast<size_t>(attr.max_entries) + 1) * attr.value_size;
	return 0;
}

bpf_map *queue_map_alloc() { return new bpf_queue_stack; }

bpf_map *stack_map_alloc()
{
	auto *qs = new bpf_queue_stack;
	qs->is_stack = true;
	return qs;
}

void queue_stack_map_init(bpf_map *map)
{
	auto *c = map->ctl<qs_ctl>();
	c->lock.init();
	c->head = c->tail = 0;
	c->size = map->max_entries + 1;
}

// The ring's size is the handle's; the shared copy must agree with it, and head and tail
// must be in the ring, or the region is not a queue this process made.
int queue_stack_map_attach(bpf_map *map)
{
	bpf_queue_stack *qs = qs_of(map);
	qs->ctl_ = map->ctl<qs_ctl>();
	qs->size = static_cast<uint64_t>(map->max_entries) + 1;
	qs_pos p;
	if (__atomic_load_n(&qs->ctl_->size, __ATOMIC_RELAXED) != static_cast<uint32_t>(qs->size) ||
	    !qs->read_pos(&p))
		return -EINVAL;
	return 0;
}

int queue_stack_get(bpf_map *map, void *value, bool remove)
{
	bpf_queue_stack *qs = qs_of(map);
	lock_guard g(qs->ctl_->lock);
	qs_pos p;
	int err = !qs->read_pos(&p) ? -EFAULT : p.head == p.tail ? -ENOENT : 0;
	if (err) {
		memset(value, 0, map->value_size);
		return err;
	}
	// The oldest value (queue) or the newest (stack).
	uint32_t i = qs->is_stack ? qs->prev(p.head) : p.tail;
	copy_from_shared(value, qs->slot(i), map->value_size);
	if (remove) {
		if (qs->is_stack)
			qs->ctl_->head = i;
		else
			qs->ctl_->tail = qs->next(i);
	}
	return 0;
}

int queue_stack_map_peek_elem(bpf_map *map, void *value)
{
	return queue_stack_get(map, value, false);
}

int queue_stack_map_pop_elem(bpf_map *map, void *value)
{
	return queue_stack_get(map, value, true);
}

// BPF_EXIST makes room in a full map by dropping the oldest value; BPF_NOEXIST means nothing.
int queue_stack_map_push_elem(bpf_map *map, const void *value, uint64_t flags)
{
	if ((flags & uapi::BPF_NOEXIST) || flags > uapi::BPF_EXIST)
		return -EINVAL;
	bpf_queue_stack *qs = qs_of(map);
	qs_ctl *c = qs->ctl_;
	lock_guard g(c->lock);
	qs_pos p;
	if (!qs->read_pos(&p))
		return -EFAULT;
	if (qs->next(p.head) == p.tail) {
		if (flags != uapi::BPF_EXIST)
			return -E2BIG;
		c->tail = qs->next(p.tail);
	}
	copy_to_shared(qs->slot(p.head), value, map->value_size);
	c->head = qs->next(p.head);
	return 0;
}

// The syscall's lookup and update of a queue or stack are peek and push.
int queue_stack_map_copy_value(bpf_map *map, const void *, void *value, uint64_t)
{
	return queue_stack_map_peek_elem(map, value);
}

int queue_stack_map_update_value(bpf_map *map, const void *, const void *value, uint64_t flags)
{
	return queue_stack_map_push_elem(map, value, flags);
}

// Programs use push, pop and peek; the keyed calls answer as the kernel's do.
void *queue_stack_map_lookup_elem(bpf_map *, const void *) { return nullptr; }

int queue_stack_map_update_elem(bpf_map *, const void *, const void *, uint64_t) { return -EINVAL; }

int queue_stack_map_delete_elem(bpf_map *, const void *) { return -EINVAL; }

int queue_stack_map_get_next_key(bpf_map *, const void *, void *) { return -EINVAL; }

} // namespace

const bpf_map_ops queue_map_ops = {
	.map_alloc_check = queue_stack_map_alloc_check,
	.map_mem_size = queue_stack_map_mem_size,
	.map_alloc = queue_map_alloc,
	.map_init = queue_stack_map_init,
	.map_attach = queue_stack_map_attach,
	.map_lookup_elem = queue_stack_map_lookup_elem,
	.map_copy_value = queue_stack_map_copy_value,
	.map_update_elem = queue_stack_map_update_elem,
	.map_update_value = queue_stack_map_update_value,
	.map_delete_elem = queue_stack_map_delete_elem,
	.map_get_next_key = queue_stack_map_get_next_key,
	.map_push_elem = queue_stack_map_push_elem,
	.map_pop_elem = queue_stack_map_pop_elem,
	.map_peek_elem = queue_stack_map_peek_elem,
};

const bpf_map_ops stack_map_ops = {
	.map_alloc_check = queue_stack_map_alloc_check,
	.map_mem_size = queue_stack_map_mem_size,
	.map_alloc = stack_map_alloc,
	.map_init = queue_stack_map_init,
	.map_attach = queue_stack_map_attach,
	.map_lookup_elem = queue_stack_map_lookup_elem,
	.map_copy_value = queue_stack_map_copy_value,
	.map_update_elem = queue_stack_map_update_elem,
	.map_update_value = queue_stack_map_update_value,
	.map_delete_elem = queue_stack_map_delete_elem,
	.map_get_next_key = queue_stack_map_get_next_key,
	.map_push_elem = queue_stack_map_push_elem,
	.map_pop_elem = queue_stack_map_pop_elem,
	.map_peek_elem = queue_stack_map_peek_elem,
};

} // namespace bpfmap
