#include "syscall/btf_obj.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/btf.h"
#include "core/pin_root.h"
#include "core/region.h"
#include "core/uaccess.h"
#include "syscall/mapid.h"
#include "syscall/objtab.h"

namespace bpfmap {
namespace {

constexpr uint64_t BTF_OBJ_MAGIC = 0x3146544250414d42ULL; // "BMAPBTF1"
constexpr uint32_t LOG_MASK = 0xf;			  // BPF_LOG_LEVEL1|2|STATS|FIXED

// The file: this header, then the blob.
struct btf_obj_header {
	uint64_t magic;
	uint32_t id;
	uint32_t size;
};

int read_header(int fd, btf_obj_header *h)
{
	struct stat st;
	if (file_stat(fd, &st) != 0)
		return -EBADF;
	if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(sizeof(*h)) ||
	    pread(fd, h, sizeof(*h), 0) != static_cast<ssize_t>(sizeof(*h)) ||
	    h->magic != BTF_OBJ_MAGIC || sizeof(*h) + h->size != static_cast<uint64_t>(st.st_size))
		return -EINVAL;
	return 0;
}

// The verifier log of BTF_LOAD: the reason of a failure, NUL-terminated, and its true size
// written back where the caller's attr has room for it.
int finish_log(const uapi::btf_load_attr &attr, void *uattr, unsigned size, const std::string &msg)
{
	if (attr.btf_log_level && attr.btf_log_buf) {
		std::string text = msg.empty() ? "" : msg + "\n";
		size_t n = std::min<size_t>(text.size(), attr.btf_log_size - 1);
		char *buf = static_cast<char *>(user_ptr(attr.btf_log_buf));
		if (bad_user_ptr(buf))
			return -EFAULT;
		memcpy(buf, text.data(), n);
		buf[n] = 0;
		uint32_t true_size = static_cast<uint32_t>(text.size() + 1);
		if (size >= offsetof(uapi::btf_load_attr, btf_log_true_size) + sizeof(uint32_t))
			memcpy(static_cast<char *>(uattr) +
				       offsetof(uapi::btf_load_attr, btf_log_true_size),
			       &true_size, sizeof(true_size));
		if (true_size > attr.btf_log_size && !(attr.btf_log_level & 8))
			return -ENOSPC;
	}
	return 0;
}

// The BTF fds this process made or opened by id, and their objects' ids, so that the close
// of one can reap its id. Never destroyed: fds are still closed at exit.
struct btf_fd_table {
	std::mutex lock;
	std::map<int, uint32_t> ids;
	std::atomic<bool> any{false}; // lets close() of every other fd skip the lock
};

btf_fd_table &btf_fds()
{
	static auto &t = *new btf_fd_table;
	return t;
}

long remember_fd(long fd, uint32_t id)
{
	if (fd < 0)
		return fd;
	btf_fd_table &t = btf_fds();
	std::lock_guard<std::mutex> g(t.lock);
	t.ids[static_cast<int>(fd)] = id;
	t.any.store(true, std::memory_order_relaxed);
	return fd;
}

// Forget fds first..last, closing them first if close is set; then reap their ids.
void forget_fds(int first, int last, bool close)
{
	btf_fd_table &t = btf_fds();
	if (!t.any.load(std::memory_order_relaxed))
		return;
	std::vector<uint32_t> ids;
	{
		std::lock_guard<std::mutex> g(t.lock);
		for (auto it = t.ids.lower_bound(first); it != t.ids.end() && it->first <= last;) {
			if (close)
				syscall(SYS_close, it->first);
			ids.push_back(it->second);
			it = t.ids.erase(it);
		}
		t.any.store(!t.ids.empty(), std::memory_order_relaxed);
	}
	for (uint32_t id : ids)
		id_reap(id_table::btf, id);
}

// A new BTF object holding blob; its read-only fd or -errno.
long btf_create(const uint8_t *blob, uint32_t size)
{
	int fd = pin_root_tmpfile();
	if (fd < 0)
		return fd == -EACCES ? fd : -ENOMEM;
	btf_obj_header h{BTF_OBJ_MAGIC, next_btf_id(), size};
	if (pwrite(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)) ||
	    pwrite(fd, blob, size, sizeof(h)) != static_cast<ssize_t>(size)) {
		close(fd);
		return -ENOMEM;
	}
	// The caller's fd is read-only, as the kernel's BTF fds are.
	int ro = region_reopen(fd, O_RDONLY);
	close(fd);
	if (ro < 0)
		return -ENOMEM;
	id_publish(id_table::btf, ro, h.id);
	return remember_fd(ro, h.id);
}

} // namespace

long btf_load(const uapi::btf_load_attr &attr, bool bad_tail, void *uattr, unsigned size)
{
	if (bad_tail || (attr.btf_flags & ~uapi::BPF_F_TOKEN_FD))
		return -EINVAL;
	if (attr.btf_flags & uapi::BPF_F_TOKEN_FD)
		return no_token_errno(attr.btf_token_fd);
	if (attr.btf_size > btf::MAX_SIZE)
		return -E2BIG;
	bool has_buf = attr.btf_log_buf != 0;
	if (has_buf != (attr.btf_log_size != 0) || (has_buf && !attr.btf_log_level) ||
	    (attr.btf_log_level & ~LOG_MASK) || attr.btf_log_size > (UINT32_MAX >> 2))
		return -EINVAL;
	const auto *ublob = static_cast<const uint8_t *>(user_ptr(attr.btf));
	if (attr.btf_size && bad_user_ptr(ublob))
		return -EFAULT;
	std::vector<uint8_t> blob(ublob, ublob + attr.btf_size);
	btf::view v;
	std::string why;
	int err = v.parse(blob.data(), blob.size(), &why);
	if (int log_err = finish_log(attr, uattr, size, why))
		err = log_err;
	if (err)
		return err;
	return btf_create(blob.data(), attr.btf_size);
}

long btf_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail)
{
	if (bad_tail || (attr.open_flags & ~uapi::BPF_F_TOKEN_FD))
		return -EINVAL;
	if (attr.open_flags & uapi::BPF_F_TOKEN_FD)
		return no_token_errno(attr.fd_by_id_token_fd);
	return remember_fd(id_open(id_table::btf, attr.map_id, O_RDONLY), attr.map_id);
}

long btf_get_next_id(uapi::id_attr &attr, bool bad_tail)
{
	if (bad_tail || attr.start_id >= INT32_MAX)
		return -EINVAL;
	return id_get_next(id_table::btf, attr);
}

int btf_from_fd(int fd, uint32_t *id, std::vector<uint8_t> *blob)
{
	btf_obj_header h;
	int err = read_header(fd, &h);
	if (err)
		return err;
	blob->resize(h.size);
	if (pread(fd, blob->data(), h.size, sizeof(h)) != static_cast<ssize_t>(h.size))
		return -EINVAL;
	*id = h.id;
	return 0;
}

uint32_t btf_fd_id(int fd)
{
	btf_obj_header h;
	struct stat st;
	if (file_stat(fd, &st) != 0 || !on_pin_root_fs(st))
		return 0;
	return read_header(fd, &h) == 0 ? h.id : 0;
}

long btf_get_info(int fd, uapi::info_attr &attr)
{
	uint32_t id;
	std::vector<uint8_t> blob;
	int err = btf_from_fd(fd, &id, &blob);
	if (err)
		return err == -EBADF ? -EBADFD : err;
	uint32_t len = attr.info_len;
	uapi::bpf_btf_info info{};
	if ((err = info_copy_in(attr.info, &len, sizeof(info), &info, sizeof(info))))
		return err;
	info.id = id;
	uint32_t copy = std::min<uint32_t>(info.btf_size, static_cast<uint32_t>(blob.size()));
	if (copy && (err = copy_to_user(info.btf, blob.data(), copy)))
		return err;
	info.btf_size = static_cast<uint32_t>(blob.size());
	info.kernel_btf = 0;
	// A loaded BTF object has no name; a name buffer gets the empty string.
	if (!info.name != !info.name_len)
		return -EINVAL;
	long ret = 0;
	if (info.name) {
		char nul = 0;
		if ((err = copy_to_user(info.name, &nul, 1)))
			return err;
	}
	info.name_len = 0;
	if (len)
		memcpy(user_ptr(attr.info), &info, len);
	attr.info_len = len;
	return ret;
}

void btf_fds_closed(int first, int last) { forget_fds(first, last, false); }

void btf_fds_release() { forget_fds(0, INT32_MAX, true); }

} // namespace bpfmap
