// bpfmap_bpf(): the bpf(2) map commands as a C function, with the kernel's contract of -1
// and errno on failure.
#include <cerrno>

#include "bpfmap/bpfmap.h"
#include "syscall/syscall.h"

extern "C" long bpfmap_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
	long ret = bpfmap::sys_bpf(cmd, attr, size);
	if (ret < 0) {
		errno = static_cast<int>(-ret);
		return -1;
	}
	return ret;
}
