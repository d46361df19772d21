// mem_report: what a full map costs in memory, bpfmap against the kernel.
//
// For each config a bpfmap map and a kernel map are created with the same attributes and
// filled to max_entries with the same keys. bpfmap's cost is the size of its pinned file
// (everything the map holds lives there; st_blocks says how much of it is backed), the
// kernel's is the "memlock" its fdinfo reports, which is what it charges for the map.
// Output: one row per config, and the ratio bpfmap / kernel.
//
//   mem_report [--entries=N]   (default 1000000)
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <linux/bpf.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "kernel_prog.h"

namespace {

using create_fn = long (*)(int, union bpf_attr *, unsigned);

struct config {
	uint32_t type;
	const char *name;
	uint32_t key_size, value_size;
};

long create(create_fn fn, const config &c, uint32_t entries)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = c.type;
	a.key_size = c.key_size;
	a.value_size = c.value_size;
	a.max_entries = entries;
	return fn(BPF_MAP_CREATE, &a, sizeof(a));
}

// Fill fd with keys 0..entries-1 (spread over the key's first word), or return false.
bool fill(create_fn fn, long fd, const config &c, uint32_t entries)
{
	// A per-CPU map's syscall value holds one 8-byte-aligned value per possible CPU.
	size_t vbytes = c.type == BPF_MAP_TYPE_PERCPU_HASH
				? (c.value_size + 7) / 8 * 8 * bpfmap_num_possible_cpus()
				: c.value_size;
	std::vector<unsigned char> key(c.key_size), value(vbytes, 0x5a);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	a.key = reinterpret_cast<uintptr_t>(key.data());
	a.value = reinterpret_cast<uintptr_t>(value.data());
	for (uint32_t i = 0; i < entries; i++) {
		uint32_t k = c.type == BPF_MAP_TYPE_ARRAY ? i : i * 2654435761u;
		memcpy(key.data(), &k, 4);
		if (fn(BPF_MAP_UPDATE_ELEM, &a, sizeof(a)) != 0)
			return false;
	}
	return true;
}

long kernel_memlock(long fd)
{
	std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("memlock:", 0) == 0)
			return std::atol(line.c_str() + 8);
	return -1;
}

// The pinned file's size and the bytes backing it, or false.
bool pinned_size(long fd, const std::string &root, struct stat *st)
{
	std::string path = "/sys/fs/bpf/mem_report";
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.bpf_fd = static_cast<uint32_t>(fd);
	a.pathname = reinterpret_cast<uintptr_t>(path.c_str());
	if (bpfmap_bpf(BPF_OBJ_PIN, &a, sizeof(a)) != 0)
		return false;
	std::string file = root + "/mem_report";
	bool ok = stat(file.c_str(), st) == 0;
	unlink(file.c_str());
	return ok;
}

void report(const config &c, uint32_t entries, const std::string &root)
{
	double mb = 1e6;
	printf("%-12s %8u k%uv%-4u", c.name, entries, c.key_size, c.value_size);
	long ufd = create(bpfmap_bpf, c, entries);
	struct stat st {};
	if (ufd < 0 || !fill(bpfmap_bpf, ufd, c, entries) || !pinned_size(ufd, root, &st)) {
		printf(" bpfmap failed: %s\n", strerror(errno));
		return;
	}
	close(static_cast<int>(ufd));
	printf(" %9.1f %9.1f", st.st_size / mb, st.st_blocks * 512.0 / mb);
	long kfd = create(kernel_prog::kernel_bpf, c, entries);
	long memlock = kfd >= 0 && fill(kernel_prog::kernel_bpf, kfd, c, entries)
			       ? kernel_memlock(kfd)
			       : -1;
	if (kfd >= 0)
		close(static_cast<int>(kfd));
	if (memlock <= 0)
		printf("   (kernel: %s)\n", kfd < 0 ? strerror(errno) : "no memlock in fdinfo");
	else
		printf(" %9.1f %6.2f\n", memlock / mb, static_cast<double>(st.st_size) / memlock);
}

} // namespace

int main(int argc, char **argv)
{
	uint32_t entries = 1000000;
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "--entries=", 10) == 0)
			entries = static_cast<uint32_t>(atol(argv[i] + 10));
	// A private pin root, so that the report never touches a user's pins.
	char root[] = "/tmp/mem_report.XXXXXX";
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	setenv("BPFMAP_PIN_ROOT", root, 1);
	const config configs[] = {
		{BPF_MAP_TYPE_HASH, "HASH", 4, 8},
		{BPF_MAP_TYPE_HASH, "HASH", 16, 64},
		{BPF_MAP_TYPE_LRU_HASH, "LRU_HASH", 4, 8},
		{BPF_MAP_TYPE_PERCPU_HASH, "PERCPU_HASH", 4, 8},
		{BPF_MAP_TYPE_ARRAY, "ARRAY", 4, 8},
	};
	printf("%-12s %8s %-6s %9s %9s %9s %6s\n", "type", "entries", "kv", "file_MB", "backed_MB",
	       "kernel_MB", "ratio");
	for (const config &c : configs)
		report(c, entries, root);
	rmdir(root);
	return 0;
}
