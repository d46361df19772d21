/*
 * The C interface, include/bpfmap/bpfmap.h, used from C: this file is compiled as C11 with
 * -pedantic, so the header must stay C. It makes the calls a C program makes: a hash map
 * created through bpfmap_bpf() with the kernel's union bpf_attr, the element commands, the
 * program-side helpers, a pin and an OBJ_GET of it. Any result that is not the expected one
 * prints what and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/bpf.h>

#include <bpfmap/bpfmap.h>

static int failures;

#define CHECK(cond, ...)                                                                \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "c_api_test:%d: %s failed: ", __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                   \
			fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno));   \
			failures++;                                                     \
		}                                                                       \
	} while (0)

struct flow {
	uint32_t src, dst;
};

static uint64_t ptr(const void *p) { return (uint64_t)(uintptr_t)p; }

static long elem_cmd(int cmd, int fd, const void *key, void *value, uint64_t flags)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)fd;
	a.key = ptr(key);
	a.value = ptr(value);
	a.flags = flags;
	return bpfmap_bpf(cmd, &a, sizeof(a));
}

/* get_next_key names its output next_key, in the same place as value. */
static long next_key(int fd, const void *key, void *next)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)fd;
	a.key = ptr(key);
	a.next_key = ptr(next);
	return bpfmap_bpf(BPF_MAP_GET_NEXT_KEY, &a, sizeof(a));
}

static int create_hash(void)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_HASH;
	a.key_size = sizeof(struct flow);
	a.value_size = sizeof(uint64_t);
	a.max_entries = 16;
	strncpy(a.map_name, "c_flows", sizeof(a.map_name) - 1);
	return (int)bpfmap_bpf(BPF_MAP_CREATE, &a, sizeof(a));
}

/* A pin root of this test's own: a fresh 0700 directory, removed at the end. */
static char pin_root[] = "/dev/shm/bpfmap-c-test-XXXXXX";

static void use_private_pin_root(void)
{
	if (!mkdtemp(pin_root)) {
		perror("mkdtemp");
		exit(1);
	}
	setenv("BPFMAP_PIN_ROOT", pin_root, 1);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_private_pin_root(void)
{
	if (nftw(pin_root, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "c_api_test: could not remove %s: %s\n", pin_root, strerror(errno));
}

/* Syscall side: update, lookup (the bytes), get_next_key, delete. */
static void syscall_calls(int fd)
{
	struct flow k = {10, 80}, k2 = {11, 80}, next;
	uint64_t v = 0x1122334455667788ull, v2 = 7, out = 0;

	CHECK(elem_cmd(BPF_MAP_UPDATE_ELEM, fd, &k, &v, BPF_NOEXIST) == 0, "update");
	CHECK(elem_cmd(BPF_MAP_UPDATE_ELEM, fd, &k, &v, BPF_NOEXIST) == -1 && errno == EEXIST,
	      "update of an existing key with BPF_NOEXIST");
	CHECK(elem_cmd(BPF_MAP_UPDATE_ELEM, fd, &k2, &v2, BPF_ANY) == 0, "second update");
	CHECK(elem_cmd(BPF_MAP_LOOKUP_ELEM, fd, &k, &out, 0) == 0, "lookup");
	CHECK(memcmp(&out, &v, sizeof(v)) == 0, "lookup bytes %llx, want %llx",
	      (unsigned long long)out, (unsigned long long)v);

	/* A NULL key gives the first key; the two keys come out once each, then ENOENT. */
	int seen = 0;
	CHECK(next_key(fd, NULL, &next) == 0, "get_next_key(NULL)");
	for (int i = 0; i < 2; i++) {
		seen |= next.src == 10 ? 1 : next.src == 11 ? 2 : 4;
		if (i == 0)
			CHECK(next_key(fd, &next, &next) == 0, "get_next_key");
	}
	CHECK(seen == 3, "keys seen by get_next_key: mask %d, want 3", seen);
	CHECK(next_key(fd, &next, &next) == -1 && errno == ENOENT,
	      "get_next_key past the last key");

	CHECK(elem_cmd(BPF_MAP_DELETE_ELEM, fd, &k2, NULL, 0) == 0, "delete");
	CHECK(elem_cmd(BPF_MAP_DELETE_ELEM, fd, &k2, NULL, 0) == -1 && errno == ENOENT,
	      "delete of a deleted key");
	CHECK(elem_cmd(BPF_MAP_LOOKUP_ELEM, fd, &k2, &out, 0) == -1 && errno == ENOENT,
	      "lookup of a deleted key");
}

/* Program side: a handle, lookup through a pointer, update, delete, put. */
static void program_calls(int fd)
{
	struct flow k = {10, 80}, k3 = {12, 80};
	uint64_t v3 = 30, out = 0;

	struct bpfmap_map *m = bpfmap_map_get(fd);
	CHECK(m != NULL, "bpfmap_map_get");
	if (!m)
		return;
	uint64_t *p = bpfmap_map_lookup_elem(m, &k);
	CHECK(p && *p == 0x1122334455667788ull, "bpfmap_map_lookup_elem");
	if (p)
		*p += 1; /* a store through the pointer is the map's value */
	CHECK(bpfmap_map_update_elem(m, &k3, &v3, BPF_NOEXIST) == 0, "bpfmap_map_update_elem");
	CHECK(bpfmap_map_update_elem(m, &k3, &v3, BPF_NOEXIST) == -EEXIST,
	      "bpfmap_map_update_elem of an existing key with BPF_NOEXIST");
	CHECK(elem_cmd(BPF_MAP_LOOKUP_ELEM, fd, &k3, &out, 0) == 0 && out == 30,
	      "syscall lookup of the program's update: %llu", (unsigned long long)out);
	CHECK(elem_cmd(BPF_MAP_LOOKUP_ELEM, fd, &k, &out, 0) == 0 && out == 0x1122334455667789ull,
	      "syscall lookup after a store through the pointer: %llx", (unsigned long long)out);
	CHECK(bpfmap_map_delete_elem(m, &k3) == 0, "bpfmap_map_delete_elem");
	CHECK(bpfmap_map_delete_elem(m, &k3) == -ENOENT, "bpfmap_map_delete_elem of a deleted key");
	CHECK(bpfmap_map_lookup_elem(m, &k3) == NULL, "bpfmap_map_lookup_elem of a deleted key");

	/* Many keys at once: a present key, a deleted one, the present one again. */
	struct flow keys[3] = {k, k3, k};
	void *ptrs[3] = {NULL, NULL, NULL};
	CHECK(bpfmap_map_lookup_multi(m, keys, 3, ptrs) == 2, "bpfmap_map_lookup_multi");
	CHECK(ptrs[0] == bpfmap_map_lookup_elem(m, &k) && ptrs[1] == NULL && ptrs[2] == ptrs[0],
	      "bpfmap_map_lookup_multi's pointers");
	CHECK(bpfmap_map_lookup_multi(m, NULL, 0, NULL) == 0, "bpfmap_map_lookup_multi of no key");
	CHECK(bpfmap_map_lookup_multi(m, NULL, 1, ptrs) == -EINVAL,
	      "bpfmap_map_lookup_multi without keys");
	CHECK(bpfmap_map_lookup_multi(NULL, keys, 1, ptrs) == -EINVAL,
	      "bpfmap_map_lookup_multi without a map");
	bpfmap_map_put(m);
	CHECK(bpfmap_map_get(-1) == NULL && errno == EBADF, "bpfmap_map_get(-1)");
}

/* A pin, and an OBJ_GET of it that sees the same map. */
static void pin_calls(int fd)
{
	const char *path = "/sys/fs/bpf/c_api_test";
	union bpf_attr a;
	struct flow k = {10, 80};
	uint64_t out = 0;

	memset(&a, 0, sizeof(a));
	a.pathname = ptr(path);
	a.bpf_fd = (uint32_t)fd;
	CHECK(bpfmap_bpf(BPF_OBJ_PIN, &a, sizeof(a)) == 0, "BPF_OBJ_PIN %s", path);

	memset(&a, 0, sizeof(a));
	a.pathname = ptr(path);
	int got = (int)bpfmap_bpf(BPF_OBJ_GET, &a, sizeof(a));
	CHECK(got >= 0, "BPF_OBJ_GET %s", path);
	if (got < 0)
		return;
	CHECK(got != fd, "BPF_OBJ_GET gave the pinned fd itself");
	CHECK(elem_cmd(BPF_MAP_LOOKUP_ELEM, got, &k, &out, 0) == 0 && out == 0x1122334455667789ull,
	      "lookup through the OBJ_GET fd: %llx", (unsigned long long)out);

	struct bpf_map_info info;
	memset(&info, 0, sizeof(info));
	memset(&a, 0, sizeof(a));
	a.info.bpf_fd = (uint32_t)got;
	a.info.info_len = sizeof(info);
	a.info.info = ptr(&info);
	CHECK(bpfmap_bpf(BPF_OBJ_GET_INFO_BY_FD, &a, sizeof(a)) == 0, "BPF_OBJ_GET_INFO_BY_FD");
	CHECK(info.type == BPF_MAP_TYPE_HASH && info.key_size == sizeof(struct flow) &&
		      info.value_size == sizeof(uint64_t) && info.max_entries == 16 &&
		      strcmp(info.name, "c_flows") == 0,
	      "info of the OBJ_GET map: type %u key %u value %u max %u name '%s'", info.type,
	      info.key_size, info.value_size, info.max_entries, info.name);
	close(got);
}

int main(void)
{
	use_private_pin_root();
	int fd = create_hash();
	CHECK(fd >= 0, "BPF_MAP_CREATE of a hash map");
	if (fd >= 0) {
		syscall_calls(fd);
		program_calls(fd);
		pin_calls(fd);
		close(fd);
	}
	remove_private_pin_root();
	if (failures) {
		fprintf(stderr, "c_api_test: %d checks failed\n", failures);
		return 1;
	}
	printf("c_api_test: all checks passed\n");
	return 0;
}
