// shared_lock: mutual exclusion across threads and processes, and a holder's death (thread
// exit, SIGKILL at any point, while others sleep on the lock) reported to the next holder.
#include <gtest/gtest.h>

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "core/lock.h"
#include "test_util.h"

using namespace bpfmap;

namespace {

struct shared_page {
	shared_lock lock;
	shared_lock other;
	uint64_t counter; // guarded by lock, plain on purpose
	std::atomic<int> ready;
};

shared_page *map_page()
{
	void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	EXPECT_NE(p, MAP_FAILED);
	auto *s = new (p) shared_page{};
	s->lock.init();
	s->other.init();
	return s;
}

void unmap_page(shared_page *s) { munmap(s, 4096); }

int wait_exit(pid_t pid)
{
	int st = 0;
	waitpid(pid, &st, 0);
	return st;
}

using std::chrono::milliseconds;
using std::chrono::steady_clock;

#ifndef __SANITIZE_THREAD__	       // TSan cannot follow a fork child that keeps running
constexpr uint32_t SELF = 0xfffffffeu; // for fork_locker: the locker's own tid

uint32_t my_tid() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

// Wait up to limit for child pid: its exit code, or -1 if it still ran (then it is
// killed), or 128 + the signal that killed it.
int wait_child(pid_t pid, milliseconds limit)
{
	auto end = steady_clock::now() + limit;
	int st = 0;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (steady_clock::now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// A locker in a child process: it exits 0 if it got the lock reported dead (taken over),
// 1 if reported alive, 2 if that took more than a second.
pid_t fork_locker(shared_lock &l, uint32_t word_first = 0)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (word_first)
			l.word.store(word_first == SELF ? my_tid() : word_first);
		auto t0 = steady_clock::now();
		bool died = l.lock();
		auto dt = steady_clock::now() - t0;
		l.unlock();
		_exit(!died ? 1 : dt > std::chrono::seconds(1) ? 2 : 0);
	}
	return pid;
}
#endif

} // namespace

TEST(Lock, UncontendedHolderIsAlive)
{
	shared_page *s = map_page();
	for (int i = 0; i < 3; i++) {
		lock_guard g(s->lock);
		EXPECT_FALSE(g.owner_died());
	}
	unmap_page(s);
}

TEST(Lock, ThreadsAndProcessesExclude)
{
	shared_page *s = map_page();
	const int per = 20000 * bpfmap::test::SCALE;
	auto work = [&] {
		for (int i = 0; i < per; i++) {
			lock_guard g(s->lock);
			EXPECT_FALSE(g.owner_died());
			s->counter = s->counter + 1;
		}
	};
	std::vector<pid_t> kids;
#ifndef __SANITIZE_THREAD__
	for (int k = 0; k < 2; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			for (int i = 0; i < per; i++) {
				lock_guard g(s->lock);
				if (g.owner_died())
					_exit(2);
				s->counter = s->counter + 1;
			}
			_exit(0);
		}
		kids.push_back(pid);
	}
#endif
	std::vector<std::thread> ts;
	for (int t = 0; t < 3; t++)
		ts.emplace_back(work);
	for (auto &t : ts)
		t.join();
	for (pid_t pid : kids)
		EXPECT_EQ(wait_exit(pid), 0);
	EXPECT_EQ(s->counter, static_cast<uint64_t>(per) * (3 + kids.size()));
	unmap_page(s);
}

// A thread that exits holding two locks, taken around a C library robust mutex so that the
// three share the thread's robust list: the kernel marks both of ours, and the mutex.
TEST(Lock, ThreadExitHoldingLocksIsReported)
{
	shared_page *s = map_page();
	pthread_mutex_t m;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&m, &a);
	std::thread t([&] {
		s->lock.lock();
		pthread_mutex_lock(&m);
		s->other.lock();
		// Unlink from the middle and the head of the list, then take it again.
		pthread_mutex_unlock(&m);
		s->other.unlock();
		pthread_mutex_lock(&m);
		s->other.lock();
	});
	t.join();
	EXPECT_TRUE(s->lock.lock());
	s->lock.unlock();
	EXPECT_FALSE(s->lock.lock());
	s->lock.unlock();
	EXPECT_TRUE(s->other.lock());
	s->other.unlock();
	EXPECT_EQ(pthread_mutex_lock(&m), EOWNERDEAD);
	pthread_mutex_consistent(&m);
	pthread_mutex_unlock(&m);
	pthread_mutex_destroy(&m);
	unmap_page(s);
}

#ifndef __SANITIZE_THREAD__ // TSan cannot follow a fork child that keeps running
// A process killed at a random point of a lock/unlock loop: the lock is never wedged, and
// is reported dead exactly when the child held it (or was between taking and linking it).
TEST(Lock, KilledHolderNeverWedges)
{
	shared_page *s = map_page();
	int died = 0;
	for (int round = 0; round < 40; round++) {
		s->ready = 0;
		pid_t pid = fork();
		if (pid == 0) {
			for (uint64_t i = 0;; i++) {
				lock_guard g(s->lock);
				s->counter++;
				s->ready = 1;
			}
		}
		while (!s->ready)
			std::this_thread::yield();
		usleep(100 + (round * 37) % 500);
		kill(pid, SIGKILL);
		wait_exit(pid);
		// The kernel has marked the word if the child held it (or was taking or
		// releasing it): it names no dead thread.
		uint32_t w = s->lock.word.load();
		EXPECT_TRUE(w == 0 || w == FUTEX_OWNER_DIED) << std::hex << w;
		// Bounded: a dead holder's lock comes back at once, reported dead exactly
		// when it was marked.
		auto t0 = std::chrono::steady_clock::now();
		bool d = s->lock.lock();
		EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
		EXPECT_EQ(d, w == FUTEX_OWNER_DIED) << "round " << round;
		died += d;
		s->lock.unlock();
		EXPECT_FALSE(s->lock.lock());
		s->lock.unlock();
	}
	// The child holds the lock for all but a few instructions of each loop.
	EXPECT_GT(died, 20);
	std::printf("holder died holding the lock in %d of 40 kills\n", died);
	unmap_page(s);
}

// Waiters asleep on a lock whose holder is killed take it over.
TEST(Lock, SleepersWakeWhenHolderDies)
{
	shared_page *s = map_page();
	pid_t pid = fork();
	if (pid == 0) {
		s->lock.lock();
		s->ready = 1;
		pause();
		_exit(0);
	}
	while (!s->ready)
		std::this_thread::yield();
	std::atomic<int> got{0}, dead{0};
	std::vector<std::thread> ts;
	for (int t = 0; t < 3; t++)
		ts.emplace_back([&] {
			bool d = s->lock.lock();
			dead += d;
			got++;
			s->lock.unlock();
		});
	usleep(50 * 1000); // long enough for all three to be asleep
	EXPECT_EQ(got.load(), 0);
	kill(pid, SIGKILL);
	wait_exit(pid);
	for (auto &t : ts)
		t.join();
	EXPECT_EQ(got.load(), 3);
	EXPECT_EQ(dead.load(), 1);
	unmap_page(s);
}
#endif

// A sibling thread that holds the lock far longer than a waiter waits before it checks
// the holder (lock.cc FIRST_CHECK_NS, RECHECK_NS): the waiter waits, and is not told of a
// death.
TEST(Lock, LongHoldIsNotTakenOver)
{
	shared_page *s = map_page();
	s->ready = 0;
	std::thread holder([&] {
		lock_guard g(s->lock);
		s->ready = 1;
		usleep(300 * 1000);
		s->counter = 1;
	});
	while (!s->ready)
		std::this_thread::yield();
	EXPECT_FALSE(s->lock.lock());
	EXPECT_EQ(s->counter, 1u);
	s->lock.unlock();
	holder.join();
	unmap_page(s);
}

// Threads racing for a word that names no thread (a scribble): one of them takes it over
// and is told so; they exclude each other throughout.
TEST(Lock, GarbageWordIsTakenOverOnce)
{
	shared_page *s = map_page();
	s->lock.word.store(0xffffffffu);
	const int per = 2000 * bpfmap::test::SCALE;
	std::atomic<int> died{0};
	std::vector<std::thread> ts;
	for (int t = 0; t < 4; t++)
		ts.emplace_back([&] {
			for (int i = 0; i < per; i++) {
				lock_guard g(s->lock);
				died += g.owner_died();
				s->counter = s->counter + 1;
			}
		});
	for (auto &t : ts)
		t.join();
	EXPECT_EQ(died.load(), 1);
	EXPECT_EQ(s->counter, 4u * per);
	unmap_page(s);
}

// Links of a held lock overwritten in the region (they live there, next to the word) are
// never written through, in or out of order, and the thread's robust list still works
// afterwards: locks it dies holding are marked by the kernel.
TEST(Lock, OverwrittenListLinksAreNotFollowed)
{
	shared_page *s = map_page();
	auto *junk = reinterpret_cast<robust_link *>(0xdead0000ul);
	std::thread t([&] {
		s->lock.lock();
		s->lock.link.next = s->lock.prev = junk;
		s->lock.unlock();
		// Out of order, both overwritten.
		s->lock.lock();
		s->other.lock();
		s->lock.link.next = s->lock.prev = junk;
		s->other.link.next = s->other.prev = junk;
		s->lock.unlock();
		s->other.unlock();
		// In order, the outer one overwritten.
		s->lock.lock();
		s->other.lock();
		s->lock.link.next = junk;
		s->other.unlock();
		s->lock.unlock();
		s->lock.lock();
		s->other.lock();
	});
	t.join();
	EXPECT_EQ(s->lock.word.load(), static_cast<uint32_t>(FUTEX_OWNER_DIED));
	EXPECT_EQ(s->other.word.load(), static_cast<uint32_t>(FUTEX_OWNER_DIED));
	EXPECT_TRUE(s->lock.lock());
	EXPECT_TRUE(s->other.lock());
	s->other.unlock();
	s->lock.unlock();
	unmap_page(s);
}

// Overwritten around a C library robust mutex: the mutex keeps its place on the list.
TEST(Lock, OverwrittenLinkAroundCLibraryMutex)
{
	shared_page *s = map_page();
	pthread_mutex_t m;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&m, &a);
	std::thread t([&] {
		pthread_mutex_lock(&m);
		s->lock.lock();
		s->lock.link.next = reinterpret_cast<robust_link *>(0xdead0000ul);
		s->lock.unlock();
		s->other.lock();
	});
	t.join();
	EXPECT_TRUE(s->other.lock());
	s->other.unlock();
	EXPECT_EQ(pthread_mutex_lock(&m), EOWNERDEAD);
	pthread_mutex_consistent(&m);
	pthread_mutex_unlock(&m);
	pthread_mutex_destroy(&m);
	unmap_page(s);
}

// Several locks held at once, released in either order; a thread that dies holding them
// has each one marked by the kernel.
TEST(Lock, ManyLocksHeldAtOnce)
{
	constexpr int N = 20;
	auto *locks = static_cast<shared_lock *>(mmap(nullptr, N * sizeof(shared_lock),
						      PROT_READ | PROT_WRITE,
						      MAP_SHARED | MAP_ANONYMOUS, -1, 0));
	ASSERT_NE(locks, MAP_FAILED);
	for (int i = 0; i < N; i++)
		locks[i].init();
	for (int i = 0; i < N; i++)
		EXPECT_FALSE(locks[i].lock());
	for (int i = N; i-- > 0;)
		locks[i].unlock();
	for (int i = 0; i < N; i++)
		EXPECT_FALSE(locks[i].lock());
	for (int i = 0; i < N; i++)
		locks[i].unlock();
	std::thread t([&] {
		for (int i = 0; i < N; i++)
			locks[i].lock();
	});
	t.join();
	for (int i = 0; i < N; i++) {
		EXPECT_EQ(locks[i].word.load(), static_cast<uint32_t>(FUTEX_OWNER_DIED)) << i;
		EXPECT_TRUE(locks[i].lock()) << i;
		locks[i].unlock();
	}
	munmap(locks, N * sizeof(shared_lock));
}

// More locks than the kernel walks on a robust list (a hash table audit takes up to 1024):
// all are released, and a thread that dies holding them all has every one reported dead,
// those the kernel did not mark by the waiters' check, within a second or so.
TEST(Lock, MoreLocksThanTheKernelWalks)
{
	constexpr int N = ROBUST_LIST_LIMIT + 50;
	size_t len = N * sizeof(shared_lock);
	auto *locks = static_cast<shared_lock *>(
		mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
	ASSERT_NE(locks, MAP_FAILED);
	for (int i = 0; i < N; i++)
		locks[i].init();
	for (int i = 0; i < N; i++)
		EXPECT_FALSE(locks[i].lock());
	for (int i = N; i-- > 0;)
		locks[i].unlock();
	std::thread t([&] {
		for (int i = 0; i < N; i++)
			locks[i].lock();
	});
	t.join();
	auto t0 = steady_clock::now();
	for (int i = 0; i < N; i++) {
		EXPECT_TRUE(locks[i].lock()) << i;
		locks[i].unlock();
	}
	EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(3));
	munmap(locks, len);
}

#ifndef __SANITIZE_THREAD__
// A lock word that names no thread that could unlock it, as a scribble over the region
// leaves it, is taken over within a second and reported as a dead holder: a number no
// thread can have, the locker itself, a thread that is gone, a live process that does not
// map the lock, init.
TEST(Lock, WordNamingNoHolderIsTakenOver)
{
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	wait_exit(gone);
	pid_t stranger = fork(); // forked before the page is mapped: it cannot hold the lock
	if (stranger == 0) {
		pause();
		_exit(0);
	}
	shared_page *s = map_page();
	// init: in a container we may not read its memory map even as root; it is then taken
	// over after lock.cc's UNDECIDED_NS.
	std::vector<uint32_t> words = {0xffffffffu,
				       0x3fffffffu,
				       1u << 22,
				       SELF,
				       static_cast<uint32_t>(gone),
				       static_cast<uint32_t>(stranger),
				       FUTEX_OWNER_DIED | static_cast<uint32_t>(gone),
				       1};
	for (uint32_t w : words) {
		s->lock.init();
		pid_t pid = fork_locker(s->lock, w);
		EXPECT_EQ(wait_child(pid, milliseconds(5000)), 0) << "word " << std::hex << w;
		EXPECT_EQ(s->lock.word.load(), 0u);
	}
	kill(stranger, SIGKILL);
	wait_exit(stranger);
	unmap_page(s);
}

// A live thread of another process that holds the lock (it is on its robust list) and
// never unlocks it is waited on, not taken over, also past the waiters' checks; once it
// is killed the lock comes back reported dead.
TEST(Lock, LiveHolderIsWaitedOnUntilItDies)
{
	shared_page *s = map_page();
	s->ready = 0;
	pid_t holder = fork();
	if (holder == 0) {
		s->lock.lock();
		s->ready = 1;
		pause();
		_exit(0);
	}
	while (!s->ready)
		std::this_thread::yield();
	pid_t locker = fork_locker(s->lock);
	usleep(1500 * 1000);
	int st = 0;
	EXPECT_EQ(waitpid(locker, &st, WNOHANG), 0) << "lock taken from a live holder";
	kill(holder, SIGKILL);
	wait_exit(holder);
	// It waited 1.5 s (exit 2): what matters is that it ends, told of the death.
	EXPECT_EQ(wait_child(locker, milliseconds(3000)), 2);
	unmap_page(s);
}

// A live process that maps the lock but does not hold it (its tid was written there, as a
// scribble that adds to or flips a bit of a sharer's tid may do): the lock is not on its
// robust list, so it is taken over within a second. The locker forks that process itself:
// reading another process's robust list takes ptrace rights, which Yama grants a parent.
TEST(Lock, LiveSharerNotHoldingIsTakenOver)
{
	shared_page *s = map_page();
	for (bool self_parent : {false, true}) {
		s->lock.init();
		s->ready = 0;
		pid_t locker = fork();
		if (locker == 0) {
			uint32_t named = static_cast<uint32_t>(getppid());
			pid_t sharer = 0;
			if (!self_parent) {
				sharer = fork();
				if (sharer == 0) {
					pause();
					_exit(0);
				}
				named = static_cast<uint32_t>(sharer);
			}
			s->lock.word.store(named);
			auto t0 = steady_clock::now();
			bool died = s->lock.lock();
			auto dt = steady_clock::now() - t0;
			s->lock.unlock();
			if (sharer) {
				kill(sharer, SIGKILL);
				waitpid(sharer, nullptr, 0);
			}
			_exit(!died ? 1 : dt > std::chrono::seconds(1) ? 2 : 0);
		}
		EXPECT_EQ(wait_child(locker, milliseconds(5000)), 0)
			<< (self_parent ? "word names the test process"
					: "word names the locker's child");
	}
	unmap_page(s);
}
#endif
