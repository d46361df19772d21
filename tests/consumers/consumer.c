/*
 * A program built against an installed bpfmap only (tests/install_test.sh): through the C
 * interface it creates a hash map, updates and looks up a key, pins the map under
 * $BPFMAP_PIN_ROOT and opens the pin again. Prints one line and exits 0 when all of it works.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpfmap/bpfmap.h>

static long bpf(int cmd, union bpf_attr *attr) { return bpfmap_bpf(cmd, attr, sizeof(*attr)); }

static int fail(const char *what)
{
	fprintf(stderr, "consumer: %s: %s\n", what, strerror(errno));
	return 1;
}

static long lookup(int fd, uint32_t key, uint64_t *value)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = fd;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)value;
	return bpf(BPF_MAP_LOOKUP_ELEM, &attr);
}

int main(int argc, char **argv)
{
	const char *pin = argc > 1 ? argv[1] : "/sys/fs/bpf/consumer";
	uint32_t key = 7;
	uint64_t value = 42, got = 0;
	union bpf_attr attr;
	int fd, pinned_fd;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_HASH;
	attr.key_size = sizeof(key);
	attr.value_size = sizeof(value);
	attr.max_entries = 16;
	fd = (int)bpf(BPF_MAP_CREATE, &attr);
	if (fd < 0)
		return fail("BPF_MAP_CREATE");

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = fd;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&value;
	attr.flags = BPF_NOEXIST;
	if (bpf(BPF_MAP_UPDATE_ELEM, &attr))
		return fail("BPF_MAP_UPDATE_ELEM");
	if (lookup(fd, key, &got))
		return fail("BPF_MAP_LOOKUP_ELEM");
	if (got != value) {
		fprintf(stderr, "consumer: looked up %llu, wrote %llu\n", (unsigned long long)got,
			(unsigned long long)value);
		return 1;
	}

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (uintptr_t)pin;
	attr.bpf_fd = fd;
	if (bpf(BPF_OBJ_PIN, &attr))
		return fail("BPF_OBJ_PIN");
	close(fd);

	memset(&attr, 0, sizeof(attr));
	attr.pathname = (uintptr_t)pin;
	pinned_fd = (int)bpf(BPF_OBJ_GET, &attr);
	if (pinned_fd < 0)
		return fail("BPF_OBJ_GET");
	got = 0;
	if (lookup(pinned_fd, key, &got))
		return fail("BPF_MAP_LOOKUP_ELEM through the pin");
	if (got != value) {
		fprintf(stderr, "consumer: the pin gave %llu, wrote %llu\n",
			(unsigned long long)got, (unsigned long long)value);
		return 1;
	}
	close(pinned_fd);
	printf("consumer: key %u -> %llu, pinned at %s and opened again\n", key,
	       (unsigned long long)got, pin);
	return 0;
}
