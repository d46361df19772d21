// Scribbling on live maps (issue 18, part 7a): a map's region is a file that anyone holding
// a writable fd can change, so every process must survive any bytes appearing in it at any
// moment. For each served map type, a round creates a fresh map and forks two processes:
//  - the worker inherits the map fd and runs every command the type takes, in a random
//    mix, in a loop: lookup, update (ANY/NOEXIST/EXIST), delete, get_next_key walks,
//    lookup_and_delete, the four batch commands, push/pop/peek, the program-side calls of
//    bpfmap.h (lookup/update/delete, lookup_percpu, push/pop/peek), ring reserve/submit/
//    discard/output/query, a RingConsumer's consume/poll, a UserRingProducer with drain,
//    epoll readiness, mmap of the map fd, OBJ_GET of the map's pin, MAP_GET_FD_BY_ID and
//    OBJ_GET_INFO_BY_FD;
//  - the attacher was forked before the map existed, so it holds no handle of it: it opens
//    the map again and again (OBJ_GET of the pin, MAP_GET_FD_BY_ID), runs a few commands on
//    what it got and closes it, which lets go of its mapping; each open thus attaches to a
//    region whose header and control block were scribbled on (an errno or a working map is
//    fine, a crash is not).
// Meanwhile this process writes random words (zeros, all-ones, small numbers 0..64, random
// 32/64-bit values, the word that is there with a bit flipped or a small number added) at
// random offsets of the map's file, the type's data area and the header page (the file's
// last page) alike, every 2 ms, through pwrite() on the map fd (which is the region file)
// or through a MAP_SHARED mapping of it (each round picks one). Both processes publish
// their progress in a shared anonymous page (calls done, the current call and when it
// started); a round fails when one dies of a signal or exits unasked (crash: the signal,
// the op in progress and a backtrace from the child's own handler), when one call runs for
// more than 1 s (hang: the child prints its backtrace on SIGUSR2, then gets SIGKILL), or
// when a program-side pointer (lookup, ring reserve, consumer record) lies outside the
// map's mappings (oob). Wrong answers are allowed: nothing checks what the calls return.
//
// HeaderAttach (per type) is the deterministic half of the attach path: every 32-bit word of
// the first 1 KiB of the header page (the generic header and the control block) is set in
// turn to 0, ~0, the original with one bit flipped, 1, 64 and a random value (the first
// three only under the sanitizers); after each, a process that never held the map opens it
// (OBJ_GET, MAP_GET_FD_BY_ID) and runs each command once. Then the whole file is restored,
// so that each failure ("header page offset N set to V") names the one word behind it;
// after a failure a new attacher goes on (up to 16 failures per type).
//
// Usage (from the build directory):
//   tests/scribble_test                                   every type, default rounds
//   tests/scribble_test --gtest_filter='*LPM*'            one type (both tests)
//   tests/scribble_test --gtest_filter='*Rounds/HASH'     plain HASH only (not NO_PREALLOC)
//   BPFMAP_SCRIBBLE_ROUNDS=60 tests/scribble_test ...     rounds per type (default 3, 1
//                                                         under the sanitizers)
//   BPFMAP_SCRIBBLE_SEED=1234 BPFMAP_SCRIBBLE_ROUNDS=1    replay a failed round: a failure
//                                                         prints the round's own seed, and
//                                                         round 0 runs with the seed given
//                                                         (timing differs, so a replay hits
//                                                         the same spot only sometimes)
//   BPFMAP_SCRIBBLE_MS=1000                               scribbling time per round (600)
//   BPFMAP_SCRIBBLE_HANG_MS=1000                          how long one call may take (1000,
//                                                         3000 under the sanitizers)
//   BPFMAP_SCRIBBLE_STATS=1                               print calls and failed calls per
//                                                         op after each round (coverage)
//   BPFMAP_SCRIBBLE_DRY=1                                 no scribbling (a baseline: every
//                                                         round must pass then)
//   BPFMAP_SCRIBBLE_FAILURES=path                         also append each failure line there
//   BPFMAP_SCRIBBLE_GDB=1                                 on a hang, also attach gdb to the
//                                                         child for all threads' backtraces
// Every failure prints one line "SCRIBBLE-FAIL type=... kind=crash|hang|exit|oob child=...
// op=<the call in progress> (or after=<the last call>, when the child died between calls)"
// and each test one "SCRIBBLE-SUMMARY type=... crash=... hang=..." line on stderr, which
// scripts/scribble.sh ROUNDS counts per type (the held-out scale: scripts/scribble.sh 60).
// Rounds go on after a failure, so the counts say how often a type fails. Backtraces name
// libbpfmap.so(+offset): `addr2line -f -i -C -e build/libbpfmap.so 0xoffset` gives the
// function and line (in a RelWithDebInfo or Debug build). Under ASan the sanitizer's own
// report shows the faulting line, and the failure reads "sanitizer report (above)".
#include <gtest/gtest.h>

#include <execinfo.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bpfmap/ringbuf.hpp"
#include "scribble.h"

namespace scribble {
namespace {

// ---- the parent side: scribbler and watchdog ----

struct child {
	const char *role;
	pid_t pid = -1;
	progress *p = nullptr;
	bool exited = false;
};

struct round_result {
	int crash = 0, hang = 0, exit = 0, oob = 0;
	uint64_t calls = 0;
	std::string report;
	bool failed() const { return crash + hang + exit + oob > 0; }
};

void gdb_backtrace(pid_t pid)
{
	if (!getenv("BPFMAP_SCRIBBLE_GDB"))
		return;
	std::string cmd = "gdb -p " + std::to_string(pid) +
			  " -batch -nx -ex 'thread apply all bt' 2>/dev/null 1>&2";
	(void)!system(cmd.c_str());
}

class watchdog {
public:
	watchdog(const map_case &c, uint64_t seed, round_result &res)
		: c_(c)
		, seed_(seed)
		, res_(res)
	{
	}

	void add(child &ch) { kids_.push_back(&ch); }

	// Looks at each child once: false when one failed (and is gone).
	bool check(bool stopping)
	{
		bool ok = true;
		for (child *ch : kids_) {
			if (ch->exited || ch->pid < 0)
				continue;
			int status;
			pid_t r = waitpid(ch->pid, &status, WNOHANG);
			if (r == ch->pid) {
				ch->exited = true;
				if (WIFSIGNALED(status)) {
					fail(*ch, "crash", res_.crash,
					     std::string("killed by signal ") +
						     std::to_string(WTERMSIG(status)) + " (" +
						     strsignal(WTERMSIG(status)) + ")");
					ok = false;
				} else if (WEXITSTATUS(status) == EXIT_OOB) {
					fail(*ch, "oob", res_.oob,
					     "a returned pointer lies outside the map");
					ok = false;
				} else if (SANITIZED && WEXITSTATUS(status) == 1) {
					// A sanitizer reports a fault itself and exits with 1.
					fail(*ch, "crash", res_.crash, "sanitizer report (above)");
					ok = false;
				} else if (WEXITSTATUS(status) != 0 || !stopping) {
					fail(*ch, "exit", res_.exit,
					     "exited with status " +
						     std::to_string(WEXITSTATUS(status)) +
						     (stopping ? ""
							       : " before it was told to stop"));
					ok = false;
				}
				continue;
			}
			uint64_t start = ch->p->start_ns.load(std::memory_order_acquire);
			uint64_t now = now_ns();
			if (start && now > start && now - start > hang_ns()) {
				fail(*ch, "hang", res_.hang,
				     "one call in progress for " +
					     std::to_string((now - start) / 1000000) + " ms");
				kill(ch->pid, SIGUSR2); // the child prints where it is
				usleep(200000);
				gdb_backtrace(ch->pid);
				kill(ch->pid, SIGKILL);
				waitpid(ch->pid, &status, 0);
				ch->exited = true;
				ok = false;
			}
		}
		return ok;
	}

	bool all_exited() const
	{
		for (child *ch : kids_)
			if (!ch->exited && ch->pid >= 0)
				return false;
		return true;
	}

	void kill_all()
	{
		for (child *ch : kids_)
			if (!ch->exited && ch->pid >= 0) {
				kill(ch->pid, SIGKILL);
				waitpid(ch->pid, nullptr, 0);
				ch->exited = true;
			}
	}

private:
	void fail(const child &ch, const char *kind, int &count, const std::string &what)
	{
		count++;
		op o = static_cast<op>(ch.p->op.load());
		// A call in progress, or (when the child died between calls) the last one.
		bool in_call = ch.p->start_ns.load() != 0;
		char line[512];
		snprintf(line, sizeof(line),
			 "SCRIBBLE-FAIL type=%s kind=%s child=%s %s=%s calls=%" PRIu64
			 " seed=%" PRIu64 ": %s\n"
			 "  replay: BPFMAP_SCRIBBLE_SEED=%" PRIu64 " BPFMAP_SCRIBBLE_ROUNDS=1 "
			 "scribble_test --gtest_filter='*/%s'\n",
			 c_.name, kind, ch.role, in_call ? "op" : "after",
			 o < OP_COUNT ? OP_NAMES[o] : "?", ch.p->calls.load(), seed_, what.c_str(),
			 seed_, c_.name);
		fputs(line, stderr);
		res_.report += line + strlen("SCRIBBLE-FAIL ");
		if (const char *path = getenv("BPFMAP_SCRIBBLE_FAILURES"))
			if (FILE *f = fopen(path, "ae")) {
				fputs(line, f);
				fclose(f);
			}
	}

	const map_case &c_;
	uint64_t seed_;
	round_result &res_;
	std::vector<child *> kids_;
};

// Writes random words over the map's file: pwrite() on the map fd, or stores through a
// shared mapping of it made with the raw syscall (the library's mmap() would apply the
// map's own mmap rules).
class scribbler {
public:
	scribbler(int fd, uint64_t seed)
		: fd_(fd)
		, rng_(seed)
	{
		size_ = static_cast<size_t>(lseek(fd, 0, SEEK_END));
		if (rng_() & 1) {
			void *p = reinterpret_cast<void *>(syscall(SYS_mmap, nullptr, size_,
								   PROT_READ | PROT_WRITE,
								   MAP_SHARED, fd, 0));
			if (p != MAP_FAILED)
				mem_ = static_cast<char *>(p);
		}
	}
	~scribbler()
	{
		if (mem_)
			syscall(SYS_munmap, mem_, size_);
	}
	size_t size() const { return size_; }
	const char *how() const { return mem_ ? "mmap" : "pwrite"; }

	// A few words, at offsets weighted towards the header page (the last one), whose
	// control block holds the positions, heads and counts the families index with.
	void scribble()
	{
		for (int n = 1 + rng_() % 3; n > 0; n--)
			one_word();
	}

	void write_at(size_t off, const void *w, size_t len)
	{
		if (off + len > size_)
			return;
		if (mem_)
			memcpy(mem_ + off, w, len); // a racy store, as another process's would be
		else
			(void)!pwrite(fd_, w, len, static_cast<off_t>(off));
	}
	void read_at(size_t off, void *w, size_t len)
	{
		if (off + len > size_)
			memset(w, 0, len);
		else if (mem_)
			memcpy(w, mem_ + off, len);
		else if (pread(fd_, w, len, static_cast<off_t>(off)) != static_cast<ssize_t>(len))
			memset(w, 0, len);
	}

	uint64_t value(uint64_t old)
	{
		switch (rng_() % 7) {
		case 0:
			return 0;
		case 1:
			return ~0ull;
		case 2:
			return rng_() % 65;
		case 3:
			return static_cast<uint32_t>(rng_());
		case 4:
			return rng_();
		case 5:
			return old ^ (1ull << (rng_() % 64));
		default:
			return old + 1 + rng_() % 64;
		}
	}

private:
	void one_word()
	{
		size_t hdr = size_ - PAGE, off;
		unsigned where = rng_() % 10;
		if (where < 1)
			off = hdr + rng_() % 256; // the generic header
		else if (where < 4)
			off = hdr + 256 + rng_() % 768; // the control block
		else if (where < 5)
			off = hdr + rng_() % PAGE;
		else
			off = rng_() % size_;
		size_t len = rng_() % 3 ? 8 : 4;
		if (rng_() % 8)
			off &= ~(len - 1);
		off = std::min(off, size_ - len);
		uint64_t old = 0;
		read_at(off, &old, len);
		uint64_t v = value(old);
		write_at(off, &v, len);
	}

	int fd_;
	std::mt19937_64 rng_;
	size_t size_ = 0;
	char *mem_ = nullptr;
};

// Calls and failed calls per op and child: what a round covered.
void print_stats(const map_case &c, const shared_page &sh)
{
	fprintf(stderr, "%s: op (worker calls/failed, attacher calls/failed)\n", c.name);
	for (unsigned o = 1; o < OP_COUNT; o++) {
		const progress &w = sh.worker, &a = sh.attacher;
		if (w.op_calls[o] || a.op_calls[o])
			fprintf(stderr, "  %-24s %8u/%-8u %8u/%-8u\n", OP_NAMES[o],
				w.op_calls[o].load(), w.op_errors[o].load(), a.op_calls[o].load(),
				a.op_errors[o].load());
	}
}

// The progress page, between two inaccessible pages: mmap() tends to place the map's region
// right next to it, and a write past the region's end must fault, not change the
// children's progress (a worker once read a stop it was never sent).
shared_page *shared_page_new()
{
	void *p =
		mmap(nullptr, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return nullptr;
	char *mid = static_cast<char *>(p) + PAGE;
	mprotect(p, PAGE, PROT_NONE);
	mprotect(mid + PAGE, PAGE, PROT_NONE);
	return new (mid) shared_page();
}

void shared_page_free(shared_page *sh) { munmap(reinterpret_cast<char *>(sh) - PAGE, 3 * PAGE); }

int create_map(const map_case &c)
{
	return map_create(c.type, c.key_size, c.value_size, c.max_entries, c.flags, "scribble",
			  c.extra);
}

uint32_t map_id_of(int fd)
{
	u::bpf_attr a{};
	u::bpf_map_info info{};
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = ptr(&info);
	return sys(u::OBJ_GET_INFO_BY_FD, a) == 0 ? info.id : 0;
}

long pin(int fd, const char *path)
{
	u::bpf_attr a{};
	a.obj.pathname = ptr(path);
	a.obj.bpf_fd = fd;
	return sys(u::OBJ_PIN, a);
}

// A new map with some contents, before anyone scribbles.
void populate(const map_case &c, int fd)
{
	std::vector<char> v(static_cast<size_t>(bpfmap_num_possible_cpus()) * 16 + 64, 7);
	switch (family_of(c)) {
	case KEYED:
		for (uint32_t i = 0; i < c.max_entries; i++) {
			uint64_t k = i;
			if (c.type == u::MAP_TYPE_LPM_TRIE) {
				uint32_t lk[2] = {24, __builtin_bswap32(0x0a000000u | (i << 8))};
				memcpy(&k, lk, 8);
			}
			update(fd, &k, v.data());
		}
		break;
	case KEYLESS:
		for (uint32_t i = 0; i < c.max_entries / 2; i++)
			update(fd, nullptr, v.data());
		break;
	default:
		break;
	}
}

std::string pin_path(const map_case &c, int round)
{
	return private_pin_root() + "/scribble-" + c.name + "-" + std::to_string(getpid()) + "-" +
	       std::to_string(round);
}

round_result run_round(const map_case &c, int round, uint64_t seed, uint64_t ms)
{
	round_result res;
	shared_page *sh = shared_page_new();
	if (!sh) {
		res.exit++;
		res.report = "no shared page";
		return res;
	}
	std::mt19937_64 rng(seed);
	child att{"attacher"}, wrk{"worker"};
	att.p = &sh->attacher;
	wrk.p = &sh->worker;
	fflush(nullptr);
	// The attacher comes first: it must hold no handle of the map.
	uint64_t att_seed = rng(), wrk_seed = rng(), scr_seed = rng();
	att.pid = fork();
	if (att.pid == 0)
		attacher_main(c, sh, att_seed, false);
	int fd = create_map(c);
	watchdog dog(c, seed, res);
	dog.add(att);
	if (fd < 0) {
		res.exit++;
		res.report = "map create failed: " + std::to_string(fd);
		sh->stop.store(1);
		dog.kill_all();
		return res;
	}
	populate(c, fd);
	std::string path = pin_path(c, round);
	pin(fd, path.c_str());
	snprintf(sh->pin, sizeof(sh->pin), "%s", path.c_str());
	sh->map_id = map_id_of(fd);
	wrk.pid = fork();
	if (wrk.pid == 0)
		worker_main(c, fd, sh, wrk_seed);
	dog.add(wrk);
	sh->go.store(1);
	{
		scribbler s(fd, scr_seed);
		uint64_t end = now_ns() + ms * 1000000;
		bool ok = true;
		bool dry = getenv("BPFMAP_SCRIBBLE_DRY");
		while (ok && now_ns() < end) {
			if (!dry)
				s.scribble();
			usleep(2000);
			ok = dog.check(false);
		}
		sh->stop.store(1);
		// Calls in flight must still end within the limit; the children then exit.
		uint64_t give_up = now_ns() + 3 * hang_ns();
		while (!dog.all_exited() && now_ns() < give_up) {
			dog.check(true);
			usleep(1000);
		}
		if (!dog.all_exited()) {
			res.hang++;
			res.report += "a child did not exit within 3 s of the stop\n";
		}
		dog.kill_all();
	}
	res.calls = sh->worker.calls.load() + sh->attacher.calls.load();
	if (getenv("BPFMAP_SCRIBBLE_STATS"))
		print_stats(c, *sh);
	unlink(path.c_str());
	close(fd);
	shared_page_free(sh);
	return res;
}

uint64_t base_seed()
{
	static const uint64_t s =
		env_u64("BPFMAP_SCRIBBLE_SEED", 0) ?: splitmix(now_ns() ^ getpid());
	return s;
}

int default_rounds() { return SANITIZED ? 1 : 3; }

// ThreadSanitizer sees no race between processes, and every process here runs one thread:
// under it this test would only be slow.
class Scribble : public testing::TestWithParam<map_case> {
protected:
	void SetUp() override
	{
#if defined(__SANITIZE_THREAD__)
		GTEST_SKIP() << "single-threaded processes racing through shared memory: nothing "
				"for TSan";
#endif
	}
};

TEST_P(Scribble, Rounds)
{
	const map_case &c = GetParam();
	int rounds = static_cast<int>(env_u64("BPFMAP_SCRIBBLE_ROUNDS", default_rounds()));
	uint64_t ms = env_u64("BPFMAP_SCRIBBLE_MS", 600);
	round_result total;
	int failed_rounds = 0;
	for (int r = 0; r < rounds; r++) {
		// Round 0 runs with the seed given, so that a failed round replays alone.
		uint64_t seed =
			r == 0 ? base_seed() : splitmix(base_seed() + r * 0x9e3779b97f4a7c15ull);
		round_result res = run_round(c, r, seed, ms);
		total.crash += res.crash;
		total.hang += res.hang;
		total.exit += res.exit;
		total.oob += res.oob;
		total.calls += res.calls;
		if (res.failed()) {
			failed_rounds++;
			ADD_FAILURE() << "round " << r << " (seed " << seed << "):\n" << res.report;
		}
	}
	fprintf(stderr,
		"SCRIBBLE-SUMMARY type=%s rounds=%d failed=%d crash=%d hang=%d exit=%d oob=%d "
		"calls=%" PRIu64 "\n",
		c.name, rounds, failed_rounds, total.crash, total.hang, total.exit, total.oob,
		total.calls);
}

// One word of the header page at a time, then a process that never held the map opens it.
TEST_P(Scribble, HeaderAttach)
{
	const map_case &c = GetParam();
	uint64_t seed = base_seed();
	shared_page *sh = shared_page_new();
	ASSERT_NE(sh, nullptr);
	round_result res;
	child att{"attacher"};
	att.p = &sh->attacher;
	int fd = -1;
	auto spawn = [&] {
		fflush(nullptr);
		att.exited = false;
		att.p->start_ns.store(0);
		att.pid = fork();
		if (att.pid == 0)
			attacher_main(c, sh, seed + att.p->calls.load(), true, fd);
	};
	spawn();
	watchdog dog(c, seed, res);
	dog.add(att);
	fd = create_map(c);
	ASSERT_GE(fd, 0);
	populate(c, fd);
	std::string path = pin_path(c, 999);
	ASSERT_EQ(pin(fd, path.c_str()), 0);
	snprintf(sh->pin, sizeof(sh->pin), "%s", path.c_str());
	sh->map_id = map_id_of(fd);
	sh->go.store(1);
	scribbler s(fd, seed);
	size_t hdr = s.size() - PAGE;
	// Each try starts from the map as it was: a failure then names the one word that
	// caused it, not what an earlier try left behind.
	std::vector<char> snapshot(s.size());
	s.read_at(0, snapshot.data(), snapshot.size());
	std::mt19937_64 rng(seed);
	uint32_t seq = 0;
	unsigned tries = 0, failures = 0;
	// A failure is reported and the next word tried with a new attacher (which never held
	// the map either: it is forked from this process, which holds the map's fd but makes no
	// calls on it, and drops what it inherited first).
	for (size_t off = hdr; failures < 16 && off < hdr + 1024; off += 4) {
		uint32_t orig;
		s.read_at(off, &orig, 4);
		uint32_t vals[] = {0, ~0u, orig ^ (1u << (rng() % 32)),
				   1, 64,  static_cast<uint32_t>(rng())};
		// Under the sanitizers (each try several times slower) the first three only.
		for (size_t i = 0; i < (SANITIZED ? 3 : std::size(vals)); i++) {
			uint32_t v = vals[i];
			if (v == orig)
				continue;
			s.write_at(off, &v, 4);
			sh->seq.store(++seq);
			tries++;
			bool ok = true;
			while (ok && sh->done.load() != seq) {
				usleep(20);
				ok = dog.check(false);
			}
			s.write_at(0, snapshot.data(), snapshot.size());
			if (!ok) {
				char at[96];
				snprintf(at, sizeof(at), "  (header page offset %zu set to %#x)\n",
					 off - hdr, v);
				fputs(at, stderr);
				res.report += at;
				failures++;
				spawn();
			}
		}
	}
	sh->stop.store(1);
	uint64_t give_up = now_ns() + 3 * hang_ns();
	while (!dog.all_exited() && now_ns() < give_up) {
		dog.check(true);
		usleep(1000);
	}
	dog.kill_all();
	unlink(path.c_str());
	close(fd);
	EXPECT_FALSE(res.failed()) << res.report;
	fprintf(stderr,
		"SCRIBBLE-SUMMARY type=%s header-attach tries=%u crash=%d hang=%d exit=%d oob=%d\n",
		c.name, tries, res.crash, res.hang, res.exit, res.oob);
	shared_page_free(sh);
}

INSTANTIATE_TEST_SUITE_P(Types, Scribble, testing::ValuesIn(CASES),
			 [](const testing::TestParamInfo<map_case> &i) {
				 return std::string(i.param.name);
			 });
} // namespace
} // namespace scribble
