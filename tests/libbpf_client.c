/* A libbpf client, built against Debian's libbpf-dev and run unmodified twice: on the kernel
 * and under LD_PRELOAD=libbpfmap-preload.so. It prints what it sees (results, errnos, values)
 * in an order that does not depend on the map implementation (hash keys sorted), so the two
 * outputs must be identical. Usage: libbpf_client <pin dir under /sys/fs/bpf> */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ncpus;

static void say(const char *what, long ret)
{
	if (ret < 0)
		printf("%s: error %s\n", what,
		       strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	else
		printf("%s: ok\n", what);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int percpu(enum bpf_map_type t)
{
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY;
}

/* One value in the syscall layout: 8 bytes per CPU for per-CPU maps. */
static void make_value(enum bpf_map_type t, uint32_t key, uint64_t *v)
{
	for (int c = 0; c < (percpu(t) ? ncpus : 1); c++)
		v[c] = key * 1000 + c;
}

static void print_value(enum bpf_map_type t, const uint64_t *v)
{
	for (int c = 0; c < (percpu(t) ? ncpus : 1); c++)
		printf(" %llu", (unsigned long long)v[c]);
	printf("\n");
}

static void exercise(enum bpf_map_type t, const char *tname, const char *pin_dir)
{
	uint64_t v[512], out[512];
	uint32_t k, n, keys[64];
	char label[128], path[256];
	printf("== %s\n", tname);
	int fd = bpf_map_create(t, "client_map", 4, 8, 16, NULL);
	say("create", fd);
	if (fd < 0)
		return;
	for (k = 0; k < 10; k++) {
		make_value(t, k, v);
		snprintf(label, sizeof(label), "update %u", k);
		say(label, bpf_map_update_elem(fd, &k, v, BPF_ANY));
	}
	k = 3;
	say("update 3 NOEXIST", bpf_map_update_elem(fd, &k, v, BPF_NOEXIST));
	k = 99;
	say("update 99", bpf_map_update_elem(fd, &k, v, BPF_ANY));
	k = 3;
	memset(out, 0, sizeof(out));
	say("lookup 3", bpf_map_lookup_elem(fd, &k, out));
	printf("value 3:");
	print_value(t, out);
	k = 42;
	say("lookup 42", bpf_map_lookup_elem(fd, &k, out));

	/* Every key by get_next_key, sorted. */
	n = 0;
	void *cur = NULL;
	while (n < 64 && bpf_map_get_next_key(fd, cur, &keys[n]) == 0) {
		cur = &keys[n];
		n++;
	}
	say("get_next_key end", -1);
	qsort(keys, n, sizeof(keys[0]), cmp_u32);
	printf("keys (%u):", n);
	for (uint32_t i = 0; i < n; i++)
		printf(" %u", keys[i]);
	printf("\n");

	k = 3;
	say("delete 3", bpf_map_delete_elem(fd, &k));
	say("delete 3 again", bpf_map_delete_elem(fd, &k));

	/* Batch: drain with a count below the 10 keys, then sort what came back. A hash map's
	 * batch fails with ENOSPC when one of its 16 buckets holds more keys than the count;
	 * the kernel's and bpfmap's random seeds put the keys differently, so the count must
	 * leave that out (with 4, about one run in 300 per map had a bucket of 5 on one side
	 * only; with 8, a bucket needs 9 of the 10 keys). */
	uint32_t bkeys[64], total = 0, token = 0;
	uint64_t bvals[64 * 64];
	int first = 1, err = 0;
	DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);
	for (;;) {
		uint32_t count = 8;
		err = bpf_map_lookup_batch(
			fd, first ? NULL : &token, &token, bkeys + total,
			(char *)bvals + (size_t)total * 8 * (percpu(t) ? ncpus : 1), &count, &opts);
		first = 0;
		total += count;
		if (err)
			break;
	}
	say("lookup_batch end", err);
	qsort(bkeys, total, sizeof(bkeys[0]), cmp_u32);
	printf("batch keys (%u):", total);
	for (uint32_t i = 0; i < total; i++)
		printf(" %u", bkeys[i]);
	printf("\n");
	uint32_t ukeys[3] = {1, 2, 12};
	uint64_t uvals[3 * 64];
	for (int i = 0; i < 3; i++)
		make_value(t, ukeys[i] + 100, uvals + i * (percpu(t) ? ncpus : 1));
	n = 3;
	say("update_batch", bpf_map_update_batch(fd, ukeys, uvals, &n, &opts));
	printf("update_batch count %u\n", n);
	k = 12;
	say("lookup 12", bpf_map_lookup_elem(fd, &k, out));
	n = 2;
	say("delete_batch", bpf_map_delete_batch(fd, ukeys, &n, &opts));
	printf("delete_batch count %u\n", n);

	/* Pin, get, info, id. */
	snprintf(path, sizeof(path), "%s/%s", pin_dir, tname);
	say("pin", bpf_obj_pin(fd, path));
	int fd2 = bpf_obj_get(path);
	say("obj_get", fd2);
	k = 5;
	say("lookup 5 via pin", bpf_map_lookup_elem(fd2, &k, out));
	printf("value 5:");
	print_value(t, out);
	struct bpf_map_info info;
	uint32_t len = sizeof(info);
	memset(&info, 0, sizeof(info));
	say("info", bpf_obj_get_info_by_fd(fd, &info, &len));
	printf("info type %u key %u value %u max %u flags %u name %s\n", info.type, info.key_size,
	       info.value_size, info.max_entries, info.map_flags, info.name);
	int fd3 = bpf_map_get_fd_by_id(info.id);
	say("get_fd_by_id", fd3);
	k = 6;
	say("lookup 6 via id", bpf_map_lookup_elem(fd3, &k, out));
	printf("value 6:");
	print_value(t, out);

	say("freeze", bpf_map_freeze(fd));
	k = 7;
	say("update after freeze", bpf_map_update_elem(fd, &k, v, BPF_ANY));
	say("lookup after freeze", bpf_map_lookup_elem(fd, &k, out));
	unlink(path);
	close(fd3);
	close(fd2);
	close(fd);
}

/* A map described by BTF, as libbpf makes them: the BTF loaded first, the map created
 * with its type ids; then the ids read back through the map's info and the BTF object. */
static void exercise_btf(void)
{
	printf("== btf\n");
	struct btf *btf = btf__new_empty();
	int u32 = btf__add_int(btf, "unsigned int", 4, 0);
	int pair = btf__add_struct(btf, "pair", 8);
	btf__add_field(btf, "lo", u32, 0, 0);
	btf__add_field(btf, "hi", u32, 32, 0);
	say("btf load", btf__load_into_kernel(btf));
	LIBBPF_OPTS(bpf_map_create_opts, opts, .btf_fd = btf__fd(btf), .btf_key_type_id = u32,
		    .btf_value_type_id = pair);
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "btf_map", 4, 8, 8, &opts);
	say("create with btf", fd);
	opts.btf_value_type_id = u32;
	say("create, value type of the wrong size",
	    bpf_map_create(BPF_MAP_TYPE_HASH, "bad", 4, 8, 8, &opts));
	struct bpf_map_info info = {};
	uint32_t len = sizeof(info);
	say("map info", bpf_obj_get_info_by_fd(fd, &info, &len));
	printf("btf_id set %d key type %u value type %u\n", info.btf_id != 0, info.btf_key_type_id,
	       info.btf_value_type_id);
	struct btf *back = btf__load_from_kernel_by_id(info.btf_id);
	say("btf by id", back ? 0 : -errno);
	if (back) {
		const struct btf_type *t = btf__type_by_id(back, info.btf_value_type_id);
		printf("types %u value %s size %u\n", btf__type_cnt(back),
		       btf__name_by_offset(back, t->name_off), t->size);
		btf__free(back);
	}
	struct bpf_btf_info binfo = {};
	len = sizeof(binfo);
	say("btf info", bpf_obj_get_info_by_fd(btf__fd(btf), &binfo, &len));
	printf("btf size %u kernel_btf %u\n", binfo.btf_size, binfo.kernel_btf);
	close(fd);
	btf__free(btf);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s <pin dir>\n", argv[0]);
		return 2;
	}
	ncpus = libbpf_num_possible_cpus();
	setvbuf(stdout, NULL, _IOLBF, 0);
	exercise(BPF_MAP_TYPE_HASH, "hash", argv[1]);
	exercise(BPF_MAP_TYPE_ARRAY, "array", argv[1]);
	exercise(BPF_MAP_TYPE_PERCPU_HASH, "percpu_hash", argv[1]);
	exercise(BPF_MAP_TYPE_PERCPU_ARRAY, "percpu_array", argv[1]);
	exercise_btf();
	return 0;
}
