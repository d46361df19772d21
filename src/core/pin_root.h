// The pin root: the directory that stands in for bpffs. Pins, the id counters and the id
// directories live there, and new map and BTF files are made there.
//
// It is a trust boundary (DESIGN.md): whoever can write the directory can replace a pin
// with a file of their own. So the root must belong to the caller:
//   - a directory, not a symlink, owned by the caller's effective uid and writable by
//     nobody else; or
//   - a group directory set up for sharing on purpose: setgid, group-writable, not
//     writable by others, and either the caller's own or owned by a group the caller is in.
// Anything else is refused with EACCES and one message on stderr, and nothing is made
// there. The root is opened and checked afresh for each use, and every path below it is
// reached through that open directory, never through a symlink and never leaving it.
#pragma once

#include <string>
#include <sys/types.h>

namespace bpfmap {

// The configured path: $BPFMAP_PIN_ROOT, else /dev/shm/bpfmap-<euid> (one per user).
const std::string &pin_root();

// The pin root, opened and checked for one use (a pin, an id lookup, a new map file).
class root_dir {
public:
	root_dir();
	~root_dir();
	root_dir(const root_dir &) = delete;
	root_dir &operator=(const root_dir &) = delete;

	// 0, or -errno when the root cannot be used (-EACCES when it is not safe).
	int error() const { return err_; }
	int fd() const { return fd_; }

	// A path that reaches rel (relative to the root; empty for the root itself) through
	// this open directory, for calls that take only a path.
	std::string path(const std::string &rel) const;

	// Open rel below the root (open_beneath()). The fd, or -errno.
	int open(const std::string &rel, int flags, mode_t mode = 0) const;

	// The directory holding rel, opened below the root (O_PATH), for the *at() calls
	// that act on rel's last component, which goes to *base ("" for the root itself):
	// the fd, or -errno.
	int open_parent(const std::string &rel, std::string *base) const;

private:
	int fd_ = -1;
	int err_ = 0;
};

// Open rel below directory dir_fd with openat2's RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS:
// a symlink anywhere on the way, or a ".." that leaves dir_fd, fails. The fd (close-on-
// exec), or -errno.
int open_beneath(int dir_fd, const std::string &rel, int flags, mode_t mode = 0);

// A new unnamed file (O_TMPFILE) in the pin root, read-write and close-on-exec, with the
// lowest free fd number, as the kernel gives a new object's fd: the fd or -errno.
int pin_root_tmpfile();

// Whether a directory with this owner, group and mode may serve as the caller's pin root
// (the rules above). why receives the reason when it may not.
bool root_dir_safe(uid_t owner, gid_t group, mode_t mode, const char **why);

} // namespace bpfmap
