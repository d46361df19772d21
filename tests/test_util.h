// Helpers shared by the tests: raw bpf() calls on bpfmap with the kernel's attr layout.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "bpfmap/bpfmap.h"
#include "hex.h"
#include "uapi/bpf_uapi.h"

namespace bpfmap::test {

namespace u = bpfmap::uapi;

// Iteration counts of stress loops, scaled down under the sanitizers, which slow
// everything by 5-20x.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int SCALE = 1;
#else
inline constexpr int SCALE = 5;
#endif

inline uint64_t ptr(const void *p) { return reinterpret_cast<uintptr_t>(p); }

// Returns the call's result; -errno on failure (so tests can compare with -EXXX).
inline long sys(int cmd, u::bpf_attr &attr, unsigned size = sizeof(u::bpf_attr))
{
	long r = bpfmap_bpf(cmd, reinterpret_cast<union bpf_attr *>(&attr), size);
	return r < 0 ? -errno : r;
}

inline int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t max, uint32_t flags = 0,
		      const char *name = "", uint64_t map_extra = 0)
{
	u::bpf_attr a{};
	a.map_create.map_type = type;
	a.map_create.key_size = key;
	a.map_create.value_size = value;
	a.map_create.max_entries = max;
	a.map_create.map_flags = flags;
	a.map_create.map_extra = map_extra;
	strncpy(a.map_create.map_name, name, sizeof(a.map_create.map_name) - 1);
	return static_cast<int>(sys(u::MAP_CREATE, a));
}

inline long elem(int cmd, int fd, const void *key, const void *value, uint64_t flags = 0)
{
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(fd);
	a.elem.key = ptr(key);
	a.elem.value = ptr(value);
	a.elem.flags = flags;
	return sys(cmd, a);
}

inline long lookup(int fd, const void *k, void *v) { return elem(u::MAP_LOOKUP_ELEM, fd, k, v); }
inline long update(int fd, const void *k, const void *v, uint64_t f = 0)
{
	return elem(u::MAP_UPDATE_ELEM, fd, k, v, f);
}
inline long del(int fd, const void *k) { return elem(u::MAP_DELETE_ELEM, fd, k, nullptr); }
inline long next_key(int fd, const void *k, void *n) { return elem(u::MAP_GET_NEXT_KEY, fd, k, n); }

// A pin root of the test's own, so tests never see each other's pins. It goes when the
// process that made it exits (not when a forked child does).
inline std::string &private_pin_root()
{
	static std::string root;
	return root;
}

inline pid_t &private_pin_root_owner()
{
	static pid_t owner = 0;
	return owner;
}

inline void remove_private_pin_root()
{
	if (getpid() != private_pin_root_owner() || private_pin_root().empty())
		return;
	std::error_code ec;
	std::filesystem::remove_all(private_pin_root(), ec);
}

inline void use_private_pin_root()
{
	if (private_pin_root().empty()) {
		char tmpl[] = "/dev/shm/bpfmap-test-XXXXXX";
		if (mkdtemp(tmpl)) {
			private_pin_root() = tmpl;
			private_pin_root_owner() = getpid();
			atexit(remove_private_pin_root);
		}
	}
	setenv("BPFMAP_PIN_ROOT", private_pin_root().c_str(), 1);
}

} // namespace bpfmap::test

namespace bpfmap::test {
// Every test binary gets its own pin root before its first bpfmap call.
inline const bool private_pin_root_ready = (use_private_pin_root(), true);
} // namespace bpfmap::test
