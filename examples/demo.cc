// The point of bpfmap in one run: a process creates a hash map and pins it; a second,
// separately started program opens the pin by path; both write and read the same map.
//
//   bpfmap-demo                 run both halves (the second is exec'd as a new program)
//   bpfmap-demo join <path>     the second half alone, against an existing pin
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "bpfmap/map.hpp"

namespace {

struct flow {
	uint32_t src, dst;
};

using flow_map = bpfmap::TypedMap<flow, uint64_t>;

void dump(const char *who, const flow_map &m)
{
	printf("%s sees:\n", who);
	m.for_each([](const flow &k, uint64_t v) {
		printf("    flow %u -> %u : %llu packets\n", k.src, k.dst,
		       static_cast<unsigned long long>(v));
	});
}

int join(const char *path)
{
	bpfmap::Map m;
	if (int err = bpfmap::Map::open_pinned(path, m)) {
		fprintf(stderr, "[second pid %d] cannot open %s: %s\n", getpid(), path,
			strerror(err));
		return 1;
	}
	flow_map flows;
	flow_map::open(std::move(m), flows);
	printf("[second pid %d] opened the pinned map %s\n", getpid(), path);
	dump("[second] before writing,", flows);
	for (uint32_t i = 0; i < 3; i++)
		flows.update({200 + i, 53}, 1000 + i);
	// Bump a counter the first process wrote, through a pointer into the shared map.
	if (uint64_t *v = flows.lookup_ptr({10, 80}))
		*v += 1;
	printf("[second] added flows 200..202 -> 53 and bumped 10 -> 80\n");
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc == 3 && std::string(argv[1]) == "join")
		return join(argv[2]);

	const char *path = "/sys/fs/bpf/bpfmap-demo";
	flow_map flows;
	if (int err = flow_map::create(bpfmap::MAP_HASH, 1024, flows, 0, "demo_flows")) {
		fprintf(stderr, "create: %s\n", strerror(err));
		return 1;
	}
	for (uint32_t i = 0; i < 3; i++)
		flows.update({10 + i, 80}, 10 * (i + 1));
	bpfmap::MapInfo info;
	flows.map().info(info);
	printf("[first pid %d] created hash map id %u '%s' (key %u B, value %u B, %u entries)\n",
	       getpid(), info.id, info.name.c_str(), info.key_size, info.value_size,
	       info.max_entries);
	unlink(("/dev/shm/bpfmap" + std::string(path + strlen("/sys/fs/bpf"))).c_str());
	if (int err = flows.map().pin(path)) {
		fprintf(stderr, "pin: %s\n", strerror(err));
		return 1;
	}
	printf("[first] wrote flows 10..12 -> 80 and pinned the map at %s\n", path);

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "join", path, static_cast<char *>(nullptr));
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	dump("[first] after the second program exited,", flows);
	auto bumped = flows.lookup({10, 80});
	printf("[first] flow 10 -> 80 is now %llu (was 10): the second program's write is here\n",
	       static_cast<unsigned long long>(bumped.value_or(0)));
	printf("The pin outlives both programs; open it again with: %s join %s\n", argv[0], path);
	return bumped.value_or(0) == 11 ? 0 : 1;
}
