// libbpfmap-preload.so: run an unmodified libbpf program (or bpftool) on bpfmap.
//
// libbpf issues every bpf command as syscall(__NR_bpf, cmd, attr, size) through glibc's
// syscall(). This library, loaded first with LD_PRELOAD, takes that call: the map
// commands are served by bpfmap_bpf(); every other command, and every other system call,
// goes on to the kernel. The fd hooks of the bpfmap library itself (close, dup, mmap) come
// along, since this library contains it whole.
//
// Environment:
//   BPFMAP_TRACE=1   one line on stderr per bpf command: the command, who served it, result
//   BPFMAP_STRICT=1  a bpf command bpfmap does not serve fails with EINVAL instead of going
//                    to the kernel
//   BPFMAP_PIN_ROOT  where pins live (see bpfmap.h)
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfmap/bpfmap.h"
#include "interpose/interpose.h"
#include "syscall/syscall.h"
#include "uapi/bpf_uapi.h"

namespace {

namespace u = bpfmap::uapi;

bool env_flag(const char *name)
{
	const char *v = getenv(name);
	return v && *v && strcmp(v, "0") != 0;
}

using syscall_fn = long (*)(long, ...);

syscall_fn real_syscall()
{
	static syscall_fn fn = reinterpret_cast<syscall_fn>(dlsym(RTLD_NEXT, "syscall"));
	return fn;
}

// The fd a command names, when the command is about an existing object.
bool names_fd(int cmd, const void *attr, unsigned size, int *fd)
{
	uint32_t v;
	size_t off;
	switch (cmd) {
	case u::OBJ_PIN:
		off = offsetof(u::obj_attr, bpf_fd);
		break;
	case u::OBJ_GET_INFO_BY_FD:
		off = offsetof(u::info_attr, bpf_fd);
		break;
	default:
		return false;
	}
	if (!attr || size < off + sizeof(v))
		return false;
	memcpy(&v, static_cast<const char *>(attr) + off, sizeof(v));
	*fd = static_cast<int>(v);
	return true;
}

// Whether bpfmap serves this call; the rest goes to the kernel.
bool served(int cmd, const void *attr, unsigned size)
{
	switch (cmd) {
	case u::MAP_CREATE:
	case u::MAP_LOOKUP_ELEM:
	case u::MAP_UPDATE_ELEM:
	case u::MAP_DELETE_ELEM:
	case u::MAP_GET_NEXT_KEY:
	case u::OBJ_GET:
	case u::MAP_GET_NEXT_ID:
	case u::MAP_GET_FD_BY_ID:
	case u::MAP_LOOKUP_AND_DELETE_ELEM:
	case u::MAP_FREEZE:
	case u::MAP_LOOKUP_BATCH:
	case u::MAP_LOOKUP_AND_DELETE_BATCH:
	case u::MAP_UPDATE_BATCH:
	case u::MAP_DELETE_BATCH:
	case u::BTF_LOAD:
	case u::BTF_GET_FD_BY_ID:
	case u::BTF_GET_NEXT_ID:
		return true;
	case u::OBJ_PIN:
	case u::OBJ_GET_INFO_BY_FD: {
		int fd;
		return !names_fd(cmd, attr, size, &fd) || bpfmap::fd_is_bpf_object(fd);
	}
	default:
		return false;
	}
}

// libbpf learns that the kernel takes object names (every kernel since 4.15 does) only by
// loading a socket filter of two instructions, "r0 = 0; exit"; if that fails it creates
// every map without its name. Where the kernel takes no programs (no privilege, no bpf),
// bpfmap answers that one shape of program with an fd of its own: it can be closed, and
// every use of it as a program fails, as bpfmap runs no programs.
constexpr uint32_t PROG_TYPE_SOCKET_FILTER = 1;
constexpr size_t PROG_NAME_END = 64; // offsetofend(union bpf_attr, prog_name)

bool is_name_probe(int cmd, const void *attr, unsigned size)
{
	if (cmd != u::PROG_LOAD || !attr || size < PROG_NAME_END)
		return false;
	struct {
		uint32_t prog_type, insn_cnt;
		uint64_t insns;
	} head;
	memcpy(&head, attr, sizeof(head));
	if (head.prog_type != PROG_TYPE_SOCKET_FILTER || head.insn_cnt != 2 || !head.insns)
		return false;
	uint64_t insn[2];
	memcpy(insn, reinterpret_cast<const void *>(static_cast<uintptr_t>(head.insns)),
	       sizeof(insn));
	constexpr uint64_t MOV_R0_IMM = 0xb7, EXIT = 0x95; // code byte, dst r0, off 0
	return (insn[0] & 0xffffffff) == MOV_R0_IMM && insn[1] == EXIT;
}

long name_probe_fd()
{
	int fd = memfd_create("bpfmap-name-probe", MFD_CLOEXEC);
	return fd < 0 ? -1 : fd;
}

long bpf_call(int cmd, void *attr, unsigned size)
{
	static const bool trace = env_flag("BPFMAP_TRACE"), strict = env_flag("BPFMAP_STRICT");
	const char *by;
	long ret;
	if (served(cmd, attr, size)) {
		by = "bpfmap";
		ret = bpfmap_bpf(cmd, static_cast<union bpf_attr *>(attr), size);
	} else if (strict) {
		by = "refused (strict)";
		errno = EINVAL;
		ret = -1;
	} else {
		by = "kernel";
		ret = real_syscall()(SYS_bpf, cmd, attr, size);
	}
	if (ret < 0 && is_name_probe(cmd, attr, size)) {
		by = "bpfmap (libbpf's name probe)";
		ret = name_probe_fd();
	}
	if (trace) {
		int saved = errno;
		if (ret < 0)
			fprintf(stderr, "bpfmap-preload: bpf(cmd %d, size %u) by %s = -1 %s\n", cmd,
				size, by, strerrorname_np(saved) ? strerrorname_np(saved) : "?");
		else
			fprintf(stderr, "bpfmap-preload: bpf(cmd %d, size %u) by %s = %ld\n", cmd,
				size, by, ret);
		errno = saved;
	}
	return ret;
}

} // namespace

extern "C" BPFMAP_INTERPOSE long syscall(long number, ...)
{
	va_list ap;
	va_start(ap, number);
	long a[6];
	for (long &x : a)
		x = va_arg(ap, long);
	va_end(ap);
	if (number == SYS_bpf)
		return bpf_call(static_cast<int>(a[0]), reinterpret_cast<void *>(a[1]),
				static_cast<unsigned>(a[2]));
	return real_syscall()(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
