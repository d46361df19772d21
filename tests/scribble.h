// What both sides of the scribbling test (scribble_test.cc) share: the map types it runs on,
// the ops its children make, and the page where the children publish their progress.
// The children themselves are in scribble_child.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <ostream>
#include <time.h>

#include "test_util.h"

namespace scribble {

using namespace bpfmap::test;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool SANITIZED = true;
#else
inline constexpr bool SANITIZED = false;
#endif

constexpr size_t PAGE = 4096;
constexpr uint64_t SECOND_NS = 1000000000ull;
constexpr int EXIT_OOB = 3; // a child's exit code: a pointer outside the map

struct map_case {
	const char *name;
	uint32_t type, key_size, value_size, max_entries, flags;
	uint64_t extra;
};

inline const map_case CASES[] = {
	{"HASH", u::MAP_TYPE_HASH, 8, 16, 64, 0, 0},
	{"HASH_NO_PREALLOC", u::MAP_TYPE_HASH, 8, 16, 64, u::BPF_F_NO_PREALLOC, 0},
	{"PERCPU_HASH", u::MAP_TYPE_PERCPU_HASH, 8, 16, 64, 0, 0},
	{"LRU_HASH", u::MAP_TYPE_LRU_HASH, 8, 16, 64, 0, 0},
	{"LRU_HASH_NO_COMMON_LRU", u::MAP_TYPE_LRU_HASH, 8, 16, 64, u::BPF_F_NO_COMMON_LRU, 0},
	{"LRU_PERCPU_HASH", u::MAP_TYPE_LRU_PERCPU_HASH, 8, 16, 64, 0, 0},
	{"ARRAY", u::MAP_TYPE_ARRAY, 4, 16, 64, 0, 0},
	{"ARRAY_MMAPABLE", u::MAP_TYPE_ARRAY, 4, 16, 512, u::BPF_F_MMAPABLE, 0},
	{"PERCPU_ARRAY", u::MAP_TYPE_PERCPU_ARRAY, 4, 16, 64, 0, 0},
	{"LPM_TRIE", u::MAP_TYPE_LPM_TRIE, 8, 8, 64, u::BPF_F_NO_PREALLOC, 0},
	{"QUEUE", u::MAP_TYPE_QUEUE, 0, 8, 64, 0, 0},
	{"STACK", u::MAP_TYPE_STACK, 0, 8, 64, 0, 0},
	{"BLOOM_FILTER", u::MAP_TYPE_BLOOM_FILTER, 0, 8, 64, 0, 3},
	{"RINGBUF", u::MAP_TYPE_RINGBUF, 0, 0, 4 * PAGE, 0, 0},
	{"USER_RINGBUF", u::MAP_TYPE_USER_RINGBUF, 0, 0, 4 * PAGE, 0, 0},
};

// gtest prints a parameter by its name.
inline void PrintTo(const map_case &c, std::ostream *os) { *os << c.name; }

enum family { KEYED, KEYLESS, RING, USER_RING };

inline family family_of(const map_case &c)
{
	switch (c.type) {
	case u::MAP_TYPE_QUEUE:
	case u::MAP_TYPE_STACK:
	case u::MAP_TYPE_BLOOM_FILTER:
		return KEYLESS;
	case u::MAP_TYPE_RINGBUF:
		return RING;
	case u::MAP_TYPE_USER_RINGBUF:
		return USER_RING;
	default:
		return KEYED;
	}
}

inline bool percpu(const map_case &c)
{
	return c.type == u::MAP_TYPE_PERCPU_HASH || c.type == u::MAP_TYPE_LRU_PERCPU_HASH ||
	       c.type == u::MAP_TYPE_PERCPU_ARRAY;
}

// What a child is doing; the names go into failure reports.
// clang-format off
#define OPS(X)                                                                                     \
	X(IDLE) X(LOOKUP) X(UPDATE_ANY) X(UPDATE_NOEXIST) X(UPDATE_EXIST) X(DELETE)              \
	X(GET_NEXT_KEY) X(LOOKUP_AND_DELETE) X(LOOKUP_BATCH) X(LOOKUP_AND_DELETE_BATCH)           \
	X(UPDATE_BATCH) X(DELETE_BATCH) X(PROG_LOOKUP) X(PROG_LOOKUP_PERCPU) X(PROG_UPDATE)       \
	X(PROG_DELETE) X(PUSH) X(PUSH_EXIST) X(PEEK) X(POP) X(PROG_PUSH) X(PROG_POP)              \
	X(PROG_PEEK) X(RB_RESERVE) X(RB_SUBMIT) X(RB_DISCARD) X(RB_OUTPUT) X(RB_QUERY)            \
	X(RB_CONSUMER_OPEN) X(RB_CONSUME) X(RB_POLL) X(EPOLL_ADD) X(EPOLL_WAIT) X(URB_OPEN)       \
	X(URB_RESERVE) X(URB_SUBMIT) X(URB_DISCARD) X(URB_DRAIN) X(MMAP) X(MMAP_ACCESS)           \
	X(MAP_GET) X(OBJ_GET) X(GET_FD_BY_ID) X(INFO) X(CLOSE) X(FREE_HANDLES)
// clang-format on
#define OP_ENUM(n) OP_##n,
#define OP_NAME(n) #n,
enum op : uint32_t { OPS(OP_ENUM) OP_COUNT };
inline const char *const OP_NAMES[] = {OPS(OP_NAME)};

// A child's progress, in a page both processes map.
struct progress {
	std::atomic<uint64_t> calls;
	std::atomic<uint64_t> start_ns; // when the current call started; 0 between calls
	std::atomic<uint32_t> op;
	std::atomic<uint32_t> ready;
	// Per op: calls, and those that failed (an errno, NULL) where the call says.
	std::atomic<uint32_t> op_calls[OP_COUNT], op_errors[OP_COUNT];
};

struct shared_page {
	progress worker, attacher;
	std::atomic<uint32_t> go, stop;
	// HeaderAttach's handshake: the parent bumps seq after scribbling a word, the attacher
	// sets done to seq when it has tried the map.
	std::atomic<uint32_t> seq, done;
	uint32_t map_id;
	char pin[256];
};
static_assert(sizeof(shared_page) <= PAGE);

inline uint64_t now_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

inline uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

inline uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, nullptr, 0) : dflt;
}

// How long one call may take: the second, three under the sanitizers, which slow
// every call several times over.
inline uint64_t hang_ns()
{
	static const uint64_t ns =
		env_u64("BPFMAP_SCRIBBLE_HANG_MS", SANITIZED ? 3000 : 1000) * 1000000;
	return ns;
}

// The two children of a round (scribble_child.cc); each runs until sh->stop, then _exit(0).
// The worker runs every command of the type on fd in a random mix; the attacher opens the
// map anew again and again (once_per_seq: once each time sh->seq moves). inherited_fd: the
// parent's fd of the map, if it had one at the fork; closing it drops the handle inherited
// with it, so that the attacher holds none.
[[noreturn]] void worker_main(const map_case &c, int fd, shared_page *sh, uint64_t seed);
[[noreturn]] void attacher_main(const map_case &c, shared_page *sh, uint64_t seed,
				bool once_per_seq, int inherited_fd = -1);

} // namespace scribble
