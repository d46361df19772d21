// close(), dup2() and dup3() are interposed so that the fd cache in objtab.cc never
// outlives the fd it describes: after the real call, the entry for the fd that was closed
// or replaced is dropped. Everything else passes straight to the kernel.
#include <cerrno>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfmap/bpfmap.h"
#include "syscall/objtab.h"

extern "C" {

BPFMAP_API int close(int fd)
{
	long ret = syscall(SYS_close, fd);
	bpfmap::fd_forget(fd);
	return static_cast<int>(ret);
}

BPFMAP_API int dup3(int oldfd, int newfd, int flags)
{
	long ret = syscall(SYS_dup3, oldfd, newfd, flags);
	if (ret >= 0)
		bpfmap::fd_forget(newfd);
	return static_cast<int>(ret);
}

BPFMAP_API int dup2(int oldfd, int newfd)
{
	if (oldfd == newfd) // dup3 refuses this case; dup2 checks the fd and returns it
		return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;
	return dup3(oldfd, newfd, 0);
}

} // extern "C"
