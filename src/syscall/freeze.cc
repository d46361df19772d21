// MAP_FREEZE's lock against writable mappings in any process (see freeze.h).
#include "syscall/freeze.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/map.h"
#include "core/region.h"

namespace bpfmap {
namespace {

// Far past any region's end, so no read or write of the file ever meets it.
constexpr off_t WRITE_LOCK_BYTE = off_t{1} << 62;

int lock_byte(int fd, short type, int cmd)
{
	struct flock fl {};
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = WRITE_LOCK_BYTE;
	fl.l_len = 1;
	return fcntl(fd, cmd, &fl) == 0 ? 0 : -errno;
}

// Our own descriptions are closed with the raw syscall: the interposed close() takes locks
// that callers of freeze_hold() may hold.
void close_own(int fd) { syscall(SYS_close, fd); }

// A description of the map's file that no one else shares, so its lock is ours alone.
// When the file cannot be opened anew (an fd received from a process of another user),
// a duplicate of fd serves: the lock then lives as long as our duplicate.
int private_description(int fd, int mode)
{
	int nfd = file_reopen(fd, mode);
	return nfd >= 0 ? nfd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

} // namespace

int freeze_hold(int fd)
{
	int lfd = private_description(fd, O_RDONLY);
	if (lfd < 0)
		return -errno;
	int err;
	do
		err = lock_byte(lfd, F_RDLCK, F_OFD_SETLKW);
	while (err == -EINTR);
	if (err) {
		close_own(lfd);
		return err;
	}
	return lfd;
}

void freeze_release(int hold) { close_own(hold); }

int map_freeze_exclusive(int fd, bpf_map *map)
{
	// The write lock conflicts with every writable mapping's read lock, ours included,
	// since it is taken on a description of its own.
	int lfd = file_reopen(fd, O_RDWR);
	bool own = lfd >= 0;
	if (!own)
		lfd = fd;
	int err = lock_byte(lfd, F_WRLCK, F_OFD_SETLK);
	if (err) {
		if (own)
			close_own(lfd);
		return err == -EAGAIN || err == -EACCES ? -EBUSY : err;
	}
	uint32_t was = 0;
	// A frozen map's fds have lost their write permission, so a second freeze is EPERM.
	err = map->hdr->frozen.compare_exchange_strong(was, 1, std::memory_order_acq_rel) ? 0
											  : -EPERM;
	if (own)
		close_own(lfd);
	else
		lock_byte(lfd, F_UNLCK, F_OFD_SETLK);
	return err;
}

} // namespace bpfmap
