/*
 * bpfmap: the Linux kernel's BPF maps in user space, shared between processes.
 *
 * Conventions of this C interface:
 *  1. bpfmap_bpf() is the bpf(2) system call for map commands: the kernel's union bpf_attr
 *     (from <linux/bpf.h>, any version: shorter and longer attrs work as with the kernel),
 *     the kernel's enum values, and its result: a value >= 0, or -1 with errno set to
 *     exactly what the kernel sets for the same call.
 *  2. Map fds are real file descriptors owned by the caller: close() releases them,
 *     dup() and fork() share them, exec() closes them (they are O_CLOEXEC, as the
 *     kernel's are). A map lives while an fd, a mapping or a pin holds it.
 *  3. The program-side calls (bpfmap_map_*) are what an eBPF VM registers as helpers.
 *     They take an opaque struct bpfmap_map handle from bpfmap_map_get(fd) and return
 *     0 or a negative errno, like the kernel's helpers. A handle stays valid until
 *     bpfmap_map_put(), whatever happens to the fd it came from.
 *  4. Nothing here throws, and no call keeps a pointer the caller passed in.
 *  5. Pins live under $BPFMAP_PIN_ROOT (default /dev/shm/bpfmap-<euid>); a pin path under
 *     /sys/fs/bpf is taken to mean the same path under the pin root.
 */
#ifndef BPFMAP_BPFMAP_H
#define BPFMAP_BPFMAP_H

#include <stdint.h>

#define BPFMAP_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

union bpf_attr;

/* The bpf(2) system call, served in user space. */
BPFMAP_API long bpfmap_bpf(int cmd, union bpf_attr *attr, unsigned int size);

/* Program-side ABI. */
struct bpfmap_map;

/* A handle for the map behind fd, or NULL with errno EBADF / EINVAL. */
BPFMAP_API struct bpfmap_map *bpfmap_map_get(int fd);
BPFMAP_API void bpfmap_map_put(struct bpfmap_map *map);

/* A pointer to the value stored for key, or NULL; like bpf_map_lookup_elem(). For a
 * per-CPU map, the value of the CPU the caller runs on (sched_getcpu()).
 * The pointer stays inside the map for as long as the map handle is held, and reads there
 * what the map holds: an update of the same key (from either ABI) in a HASH, PERCPU_HASH or
 * LPM_TRIE map rewrites the value in place, so later reads see the new value, and a read during
 * the rewrite may see a mix of old and new bytes. (The kernel's HASH update instead
 * publishes a new element and frees the old one for reuse, so a kernel pointer may keep
 * the old value or see another key's: a program may rely on neither.) After a delete,
 * or an LRU map's update or eviction, the element may be reused for another key, as in
 * the kernel's preallocated maps. Syscall lookups never return a mix. */
BPFMAP_API void *bpfmap_map_lookup_elem(struct bpfmap_map *map, const void *key);
/* Like bpf_map_lookup_percpu_elem(): CPU number cpu's value in a per-CPU map, or NULL (also
 * for a CPU that is not possible, and for maps that are not per-CPU). */
BPFMAP_API void *bpfmap_map_lookup_percpu_elem(struct bpfmap_map *map, const void *key,
					       uint32_t cpu);
/* Many keys at once: n keys packed key_size bytes apart at keys. out_ptrs[i] gets what
 * bpfmap_map_lookup_elem(map, key i) returns (a value pointer, or NULL; for a per-CPU map,
 * into the value of the CPU the caller runs on as the call starts); the hash maps look the
 * keys up with their cache misses overlapped, every other map type one by one. Returns
 * how many keys were found (0 for n = 0), or -EINVAL, writing nothing, for a NULL map, or a
 * NULL keys or out_ptrs with n > 0. Like n single lookups, not one snapshot: an update that
 * runs meanwhile may be seen by some keys and not by others. */
BPFMAP_API long bpfmap_map_lookup_multi(struct bpfmap_map *map, const void *keys, uint32_t n,
					void **out_ptrs);
/* The CPUs a per-CPU value has a slot for (as /sys/devices/system/cpu/possible lists them).
 * Syscall commands on a per-CPU map copy round_up(value_size, 8) bytes for each. */
BPFMAP_API uint32_t bpfmap_num_possible_cpus(void);
/* Like the bpf_map_update_elem() helper: 0 or -errno (flags BPF_ANY/NOEXIST/EXIST). On a
 * per-CPU map it writes the value of the CPU the caller runs on; a new key gets zeros for
 * every other CPU, as in the kernel.
 * Per-CPU maps and preemption: in the kernel nothing else runs on a CPU while a program
 * updates that CPU's value; here a thread can be preempted mid-update and another thread
 * run on the same CPU. bpfmap guarantees that updates (from either ABI) of one CPU's value
 * never interleave and that syscall lookups never return a half-written CPU value: each
 * CPU value is written under a lock. Stores through a pointer from a lookup are not
 * covered (they are not in the kernel either), and a thread that moves to another CPU
 * between lookup and store writes the old CPU's value.
 * Update and delete on a map created with BPF_F_RDONLY_PROG return -EACCES, the errno with
 * which the kernel's verifier refuses a program that writes such a map. The kernel lets a
 * program look up a BPF_F_WRONLY_PROG map and only write through the pointer; bpfmap cannot
 * police accesses through a pointer, so lookup is served for both. */
BPFMAP_API long bpfmap_map_update_elem(struct bpfmap_map *map, const void *key, const void *value,
				       uint64_t flags);
/* Like the bpf_map_delete_elem() helper: 0 or -errno. */
BPFMAP_API long bpfmap_map_delete_elem(struct bpfmap_map *map, const void *key);

/* Queue, stack and bloom filter maps, like the helpers of the same names: 0 or -errno.
 * push: flags 0 (BPF_ANY) or, for a queue or stack, BPF_EXIST, which drops the oldest value
 * of a full map to make room (else -E2BIG). pop (queue and stack) and peek copy value_size
 * bytes out, or zero them and return -ENOENT when the map is empty; a bloom filter's peek
 * reads the value and answers 0 (maybe present) or -ENOENT (certainly absent). Other map
 * types, and pop on a bloom filter: -EINVAL (the kernel's verifier refuses such programs).
 * push and pop on a BPF_F_RDONLY_PROG map: -EACCES. */
BPFMAP_API long bpfmap_map_push_elem(struct bpfmap_map *map, const void *value, uint64_t flags);
BPFMAP_API long bpfmap_map_pop_elem(struct bpfmap_map *map, void *value);
BPFMAP_API long bpfmap_map_peek_elem(struct bpfmap_map *map, void *value);

/* Ring buffers (BPF_MAP_TYPE_RINGBUF), like the helpers of the same names. reserve returns
 * size bytes of a new record, or NULL (flags not 0, no room, not a ring buffer); the record
 * must then be submitted or discarded exactly once, by any thread of this process. output
 * copies size bytes in one call: 0, -EAGAIN when there is no room, -EINVAL for bad flags
 * or another map type. flags of submit, discard and output: BPF_RB_NO_WAKEUP (wake no
 * consumer), BPF_RB_FORCE_WAKEUP (wake them all), else the kernel's rule: wake the
 * consumers only when they have read everything before this record. query: BPF_RB_AVAIL_DATA,
 * BPF_RB_RING_SIZE, BPF_RB_CONS_POS or BPF_RB_PROD_POS; 0 for anything else. */
BPFMAP_API void *bpfmap_ringbuf_reserve(struct bpfmap_map *map, uint64_t size, uint64_t flags);
BPFMAP_API void bpfmap_ringbuf_submit(void *data, uint64_t flags);
BPFMAP_API void bpfmap_ringbuf_discard(void *data, uint64_t flags);
BPFMAP_API long bpfmap_ringbuf_output(struct bpfmap_map *map, const void *data, uint64_t size,
				      uint64_t flags);
BPFMAP_API uint64_t bpfmap_ringbuf_query(struct bpfmap_map *map, uint64_t flags);

/* User ring buffers (BPF_MAP_TYPE_USER_RINGBUF), like bpf_user_ringbuf_drain(): callback runs
 * for each record user space submitted, oldest first, until it returns nonzero (that
 * record is consumed too) or 128 Ki records have run. Returns how many records it drained
 * (discarded records are skipped and not counted) or -errno: -EINVAL for bad flags, for a
 * record header past producer_pos, or another map type; -E2BIG for a record larger than
 * the ring (or than 16 MiB - 1); -EBUSY while another thread drains the ring. Producers
 * waiting for room are woken as flags say (BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP, else
 * when at least one record was drained). */
BPFMAP_API long bpfmap_user_ringbuf_drain(struct bpfmap_map *map,
					  long (*callback)(const void *data, uint64_t size,
							   void *ctx),
					  void *ctx, uint64_t flags);

#ifdef __cplusplus
}
#endif

#endif /* BPFMAP_BPFMAP_H */
