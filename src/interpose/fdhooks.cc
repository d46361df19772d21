// close(), close_range(), closefrom(), dup2() and dup3(), interposed so that the fd cache in
// objtab.cc never outlives the fd it describes: after the real call, what this process kept
// about the fd that was closed or replaced (its map handle, BTF object, mapping holds, epoll
// watches, wait queue sleepers) is dropped. The mmap family is in map_mmap.cc.
#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfmap/bpfmap.h"
#include "core/waitq.h"
#include "interpose/interpose.h"
#include "syscall/btf_obj.h"
#include "syscall/objtab.h"
#include "syscall/syscall.h"

namespace {

// The caller sees the errno of the call it made; dropping our cache entry (which may unmap
// a region and reap an id) must not change it.
struct errno_keeper {
	int saved = errno;
	~errno_keeper() { errno = saved; }
};

// fds first..last were closed or replaced: drop what this process kept about them.
void forget_closed(int first, int last)
{
	bpfmap::fds_forget(first, last);
	bpfmap::btf_fds_closed(first, last);
	bpfmap::map_mmap_fds_closed(first, last);
	bpfmap::ring_epoll_fds_closed(first, last);
	bpfmap::waitq_fds_closed(first, last);
}

} // namespace

extern "C" {

BPFMAP_INTERPOSE int close(int fd)
{
	long ret = syscall(SYS_close, fd);
	errno_keeper k;
	forget_closed(fd, fd);
	return static_cast<int>(ret);
}

BPFMAP_INTERPOSE int dup3(int oldfd, int newfd, int flags)
{
	long ret = syscall(SYS_dup3, oldfd, newfd, flags);
	errno_keeper k;
	if (ret >= 0)
		forget_closed(newfd, newfd);
	return static_cast<int>(ret);
}

BPFMAP_INTERPOSE int close_range(unsigned int first, unsigned int last, int flags)
{
	long ret = syscall(SYS_close_range, first, last, flags);
	errno_keeper k;
	if (ret == 0 && !(flags & CLOSE_RANGE_CLOEXEC) && first <= INT_MAX)
		forget_closed(static_cast<int>(first),
			      last > INT_MAX ? INT_MAX : static_cast<int>(last));
	return static_cast<int>(ret);
}

BPFMAP_INTERPOSE void closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	if (syscall(SYS_close_range, lowfd, ~0U, 0) == 0) {
		errno_keeper k;
		forget_closed(lowfd, INT_MAX);
		return;
	}
	for (int fd = lowfd; fd < sysconf(_SC_OPEN_MAX); fd++) // kernels before close_range
		close(fd);
}

BPFMAP_INTERPOSE int dup2(int oldfd, int newfd)
{
	if (oldfd == newfd) // dup3 refuses this case; dup2 checks the fd and returns it
		return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;
	return dup3(oldfd, newfd, 0);
}

} // extern "C"
