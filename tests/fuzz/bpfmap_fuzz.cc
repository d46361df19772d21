// libFuzzer target: each input is a little program of bpfmap calls, run in this process
// against a pin root of its own.
//
// The program is a sequence of operations, each an opcode byte and its operands read in a
// fixed order (make_corpus.py writes seeds in the same order; a field past the end of the
// input reads as zero). Operations: create maps of every type with fuzzed attrs; element,
// batch, freeze, info, pin, get, id and BTF commands with fuzzed fields, attr sizes and
// flags, on the fds created, on fds that are not maps and on numbers that are no fd;
// commands that bpfmap does not serve, with raw attrs; the program-side calls of
// bpfmap.h on handles; ring buffer producers, consumers and drains, and epoll sets that
// hold rings; mmap(), mremap(), mprotect() and munmap() of map fds and writes through the
// mappings the kernel would allow; close(), close_range(), dup(), dup2() and dup3().
// Everything an input made is released at its end (records committed, handles put,
// mappings removed, fds closed, pins unlinked), and the id directories must then be empty:
// nothing leaks from one input into the next.
//
// User memory. bpfmap, like the kernel, reads and writes through the caller's pointers; it
// can refuse only NULL and first-page pointers (README, "Known limits"), so every other
// pointer this program passes points into memory it owns and is large enough for what the
// call may touch there:
// - Four buffers of BUF_SIZE bytes each, allocated once, each its own heap block so that
//   ASan's redzone follows its end. A pointer operand is NULL, a first-page address, the
//   start of a buffer, or "tight": the buffer's end minus the bytes the call should touch
//   (computed here from the map's key and value sizes), so that a read or write past
//   them is caught by ASan.
// - Maps with keys over KEY_MAX bytes or values over VALUE_MAX bytes (per-CPU: all CPUs'
//   values) would need larger buffers: such a map is closed as soon as it is created or
//   opened. Creation itself is fuzzed with any sizes, and a file size limit (FSIZE_LIMIT)
//   turns a region too large for the machine into ENOMEM, as the kernel's allocation
//   would fail, instead of filling /dev/shm.
// - Batch counts are clamped so that count elements fit a buffer; BTF, log and info sizes
//   likewise, except sizes so large that bpfmap must refuse them before any copy (the
//   kernel's E2BIG and EINVAL limits).
// - The attr buffer is one page, the most bpfmap reads (larger sizes are E2BIG). A short
//   attr size is a multiple of 8, so that it never cuts a pointer field in two.
// - Program-side calls get pointers valid for the map's key and value sizes (tight ones),
//   as the kernel's verifier guarantees a program's.
// - Pointers nested in user memory (bpf_map_info.hash, bpf_btf_info.btf and .name) are
//   chosen the same way.
//
// Writes into a map's shared memory from outside the API (the scribbling of issue 18) are
// off unless BPFMAP_FUZZ_SCRIBBLE=1: with it, one operation writes input bytes into a live
// map's file, and writes through a ring buffer's mapping may reach its positions and
// record headers (without it, only an mmapable array's values are written that way).
// BPFMAP_FUZZ_TRACE=1 prints each operation and command, for reading a reproducer.
#include "bpfmap_fuzz.h"
#include <algorithm>

namespace bpfmap_fuzz {
namespace {

// ---- Teardown and the leak check.

void remove_entries(const std::string &dir, bool keep_bookkeeping)
{
	DIR *d = opendir(dir.c_str());
	if (!d)
		return;
	while (dirent *ent = readdir(d)) {
		std::string name = ent->d_name;
		if (name == "." || name == "..")
			continue;
		if (keep_bookkeeping && (name == ".bpfmap-ids" || name == ".bpfmap-by-id" ||
					 name == ".bpfmap-btf-by-id" || name == "sub"))
			continue;
		std::string path = dir + "/" + name;
		if (unlink(path.c_str()) != 0 && errno == EISDIR)
			rmdir(path.c_str());
		else if (errno == EISDIR || errno == EPERM)
			rmdir(path.c_str());
	}
	closedir(d);
}

size_t count_entries(const std::string &dir)
{
	DIR *d = opendir(dir.c_str());
	size_t n = 0;
	if (!d)
		return 0;
	while (dirent *ent = readdir(d))
		n += ent->d_name[0] != '.';
	closedir(d);
	return n;
}

// Walk every id, which reaps those nothing holds any more.
void reap_ids(int cmd)
{
	u::bpf_attr a{};
	while (sys(cmd, &a, sizeof(a)) == 0)
		a.id.start_id = a.id.next_id;
}

void teardown(state &st)
{
	while (!st.records.empty())
		commit_record(st, st.records.size() - 1, u::BPF_RB_NO_WAKEUP, true);
	st.consumers.clear();
	st.producers.clear();
	for (handle_entry &h : st.handles)
		bpfmap_map_put(h.map);
	for (mapping_entry &m : st.mappings)
		munmap(m.addr, m.len);
	for (fd_entry &e : st.fds)
		close(e.fd);
	if (st.epfd >= 0)
		close(st.epfd);
	remove_entries(root, true);
	remove_entries(sub_dir, false);
	remove_entries(outside_dir, false);
	reap_ids(u::MAP_GET_NEXT_ID);
	reap_ids(u::BTF_GET_NEXT_ID);
	size_t maps = count_entries(root + "/.bpfmap-by-id");
	size_t btfs = count_entries(root + "/.bpfmap-btf-by-id");
	if (maps || btfs) {
		fprintf(stderr,
			"leak: %zu map ids and %zu BTF ids remain after the input's teardown\n",
			maps, btfs);
		abort();
	}
}

void make_dir(const std::string &path)
{
	if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
		perror(path.c_str());
		exit(1);
	}
}

} // namespace
} // namespace bpfmap_fuzz

using namespace bpfmap_fuzz;

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	// A pin root of this process's own, under $BPFMAP_FUZZ_TMP (scripts/fuzz.sh removes it).
	const char *tmp = getenv("BPFMAP_FUZZ_TMP");
	std::string base = std::string(tmp && *tmp ? tmp : "/tmp") + "/bpfmap-fuzz-XXXXXX";
	std::vector<char> dir(base.begin(), base.end());
	dir.push_back(0);
	if (!mkdtemp(dir.data())) {
		perror("mkdtemp");
		exit(1);
	}
	root = std::string(dir.data()) + "/root";
	sub_dir = root + "/sub";
	outside_dir = std::string(dir.data()) + "/outside";
	static std::string top = dir.data();
	atexit([] {
		std::string cmd = "rm -rf '" + top + "'";
		if (system(cmd.c_str()) != 0)
			fprintf(stderr, "could not remove %s\n", top.c_str());
	});
	make_dir(root);
	make_dir(sub_dir);
	make_dir(outside_dir);
	setenv("BPFMAP_PIN_ROOT", root.c_str(), 1);
	scribble = getenv("BPFMAP_FUZZ_SCRIBBLE") && atoi(getenv("BPFMAP_FUZZ_SCRIBBLE"));
	trace = getenv("BPFMAP_FUZZ_TRACE") && atoi(getenv("BPFMAP_FUZZ_TRACE"));

	// Regions the machine cannot hold fail with EFBIG, which bpfmap reports as ENOMEM.
	signal(SIGXFSZ, SIG_IGN);
	rlimit fl{FSIZE_LIMIT, FSIZE_LIMIT};
	setrlimit(RLIMIT_FSIZE, &fl);
	// Room for dup() to fds past the fd cache's first chunks.
	rlimit nf;
	if (getrlimit(RLIMIT_NOFILE, &nf) == 0 && nf.rlim_cur < 4096) {
		nf.rlim_cur = std::min<rlim_t>(4096, nf.rlim_max);
		setrlimit(RLIMIT_NOFILE, &nf);
	}

	for (auto &b : bufs)
		b = static_cast<uint8_t *>(calloc(1, BUF_SIZE));
	attr_buf = static_cast<uint8_t *>(calloc(1, ATTR_BUF));
	ncpus = bpfmap_num_possible_cpus();

	devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	dir_fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int p[2];
	if (pipe2(p, O_CLOEXEC) == 0)
		pipe_fd = p[0];
	// A regular file on the pin root's file system that is not a map.
	junk_fd = open(root.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	std::vector<char> junk(2 * PAGE, 'j');
	if (junk_fd < 0 || write(junk_fd, junk.data(), junk.size()) < 0) {
		perror("junk file");
		exit(1);
	}
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	reader in(data, size);
	state st;
	for (int n = 0; n < MAX_OPS && !in.empty(); n++) {
		uint8_t op = in.u8() % 16;
		if (trace)
			fprintf(stderr, "op %d: %d fds, %zu handles, %zu records, %zu mappings\n",
				op, static_cast<int>(st.fds.size()), st.handles.size(),
				st.records.size(), st.mappings.size());
		switch (op) {
		case 0:
		case 1:
			op_create(in, st);
			break;
		case 2:
		case 3:
			op_elem(in, st);
			break;
		case 4:
			op_batch(in, st);
			break;
		case 5:
			op_freeze(in, st);
			break;
		case 6:
			op_info(in, st);
			break;
		case 7:
			op_pin(in, st, in.u8() & 1);
			break;
		case 8:
			op_id(in, st);
			break;
		case 9:
			op_btf(in, st);
			break;
		case 10:
			op_raw(in, st);
			break;
		case 11:
			switch (in.u8() % 4) {
			case 0:
				op_dup(in, st);
				break;
			case 1:
				op_close(in, st);
				break;
			case 2:
				op_dup_over(in, st);
				break;
			default:
				op_close_range(in, st);
				break;
			}
			break;
		case 12:
			op_prog(in, st);
			break;
		case 13:
			op_ring(in, st);
			break;
		case 14:
			op_mmap(in, st);
			break;
		default:
			if (in.u8() & 1)
				op_scribble(in, st);
			else
				op_cxx(in, st);
			break;
		}
	}
	teardown(st);
	return 0;
}
