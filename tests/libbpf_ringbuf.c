// libbpf's own ring buffer consumer (ring_buffer__new, __poll, __consume, __epoll_fd),
// unmodified, reading a bpfmap ring buffer under the preload library. A child process
// produces through bpfmap's program-side calls (found with dlsym: the preload library
// carries them), in bursts with pauses, so the consumer must sleep in epoll and be woken.
// Then libbpf's user ring buffer producer (user_ring_buffer__new, __reserve_blocking,
// __submit, __discard) feeds a bpfmap user ring that a child drains with the program-side
// drain call; the producer must wait for room.
// Prints what arrived; exits 0 only if every record arrived once, intact, in order.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#define RECORDS 20000
#define BURST 500

struct state {
	uint32_t next;
	int bad;
};

static int on_record(void *ctx, void *data, size_t size)
{
	struct state *st = ctx;
	uint32_t seq;
	if (size < 4) {
		st->bad++;
		return 0;
	}
	memcpy(&seq, data, 4);
	if (seq != st->next || size != 4 + seq % 97)
		st->bad++;
	for (size_t i = 4; i < size; i++)
		if (((unsigned char *)data)[i] != (unsigned char)(seq ^ i))
			st->bad++;
	st->next = seq + 1;
	return 0;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

typedef void *(*map_get_fn)(int);
typedef long (*output_fn)(void *, const void *, uint64_t, uint64_t);

static int produce(int fd)
{
	map_get_fn map_get = (map_get_fn)dlsym(RTLD_DEFAULT, "bpfmap_map_get");
	output_fn output = (output_fn)dlsym(RTLD_DEFAULT, "bpfmap_ringbuf_output");
	if (!map_get || !output)
		return 2;
	void *m = map_get(fd);
	if (!m)
		return 3;
	unsigned char buf[4 + 97];
	for (uint32_t seq = 0; seq < RECORDS; seq++) {
		size_t n = 4 + seq % 97;
		memcpy(buf, &seq, 4);
		for (size_t i = 4; i < n; i++)
			buf[i] = (unsigned char)(seq ^ i);
		while (output(m, buf, n, 0) == -EAGAIN)
			usleep(100);
		if (seq % BURST == BURST - 1)
			usleep(2000); // the consumer catches up and goes to sleep
	}
	return 0;
}

#define USER_RECORDS 20000

typedef long (*drain_cb)(const void *, uint64_t, void *);
typedef long (*drain_fn)(void *, drain_cb, void *, uint64_t);

struct drain_state {
	uint32_t next; // the next seq the producer did not discard
	int bad;
};

static uint32_t next_kept(uint32_t seq)
{
	while (seq < USER_RECORDS && seq % 7 == 3)
		seq++;
	return seq;
}

static long on_user_record(const void *data, uint64_t size, void *ctx)
{
	struct drain_state *st = ctx;
	uint32_t seq;
	memcpy(&seq, data, 4);
	if (seq != st->next || size != 4 + seq % 61)
		st->bad++;
	for (uint64_t i = 4; i < size; i++)
		if (((const unsigned char *)data)[i] != (unsigned char)(seq + i))
			st->bad++;
	st->next = next_kept(seq + 1);
	return 0;
}

static int drain_child(int fd)
{
	map_get_fn map_get = (map_get_fn)dlsym(RTLD_DEFAULT, "bpfmap_map_get");
	drain_fn drain = (drain_fn)dlsym(RTLD_DEFAULT, "bpfmap_user_ringbuf_drain");
	void *m = map_get ? map_get(fd) : NULL;
	if (!m || !drain)
		return 2;
	struct drain_state st = {next_kept(0), 0};
	for (int idle = 0; st.next < USER_RECORDS && idle < 5000;) {
		long n = drain(m, on_user_record, &st, 0);
		if (n < 0)
			return 3;
		idle = n ? 0 : idle + 1;
		if (!n)
			usleep(1000);
	}
	return st.next == USER_RECORDS && st.bad == 0 ? 0 : 4;
}

static int user_ring_test(void)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_USER_RINGBUF, "urb", 0, 0, 16 * 1024, NULL);
	if (fd < 0) {
		printf("create user ring: %s\n", strerror(errno));
		return 1;
	}
	struct user_ring_buffer *urb = user_ring_buffer__new(fd, NULL);
	if (!urb) {
		printf("user_ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(drain_child(fd));
	int waits = 0;
	for (uint32_t seq = 0; seq < USER_RECORDS; seq++) {
		uint32_t n = 4 + seq % 61;
		unsigned char *rec = user_ring_buffer__reserve(urb, n);
		if (!rec) {
			waits++;
			rec = user_ring_buffer__reserve_blocking(urb, n, 5000);
		}
		if (!rec) {
			printf("reserve %u: %s\n", seq, strerror(errno));
			return 1;
		}
		memcpy(rec, &seq, 4);
		for (uint32_t i = 4; i < n; i++)
			rec[i] = (unsigned char)(seq + i);
		if (seq % 7 == 3)
			user_ring_buffer__discard(urb, rec);
		else
			user_ring_buffer__submit(urb, rec);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	fprintf(stderr, "%d blocking reserves\n", waits);
	printf("user ring: %d records produced, drainer exit %d\n", USER_RECORDS, code);
	user_ring_buffer__free(urb);
	close(fd);
	return code == 0 && waits > 0 ? 0 : 1;
}

int main(void)
{
	if (!dlsym(RTLD_DEFAULT, "bpfmap_ringbuf_output")) {
		printf("SKIP: not under the bpfmap preload (no user-space producer for a kernel "
		       "ring)\n");
		return 77;
	}
	int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "rb", 0, 0, 64 * 1024, NULL);
	if (fd < 0) {
		printf("create: %s\n", strerror(errno));
		return 1;
	}
	// Consumers come and go without leaking what stands in for the ring in their epoll set.
	int fds_before = count_fds();
	for (int i = 0; i < 50; i++) {
		struct ring_buffer *tmp = ring_buffer__new(fd, on_record, NULL, NULL);
		if (!tmp) {
			printf("ring_buffer__new: %s\n", strerror(errno));
			return 1;
		}
		ring_buffer__free(tmp);
	}
	if (count_fds() != fds_before) {
		printf("fds: %d before 50 consumers came and went, %d after\n", fds_before,
		       count_fds());
		return 1;
	}
	struct state st = {0, 0};
	struct ring_buffer *rb = ring_buffer__new(fd, on_record, &st, NULL);
	if (!rb) {
		printf("ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(produce(fd));
	int polls = 0, sleeps = 0;
	// Half through ring_buffer__poll, half through our own epoll_wait on its epoll fd.
	while (st.next < RECORDS / 2 && polls < 100000) {
		int n = ring_buffer__poll(rb, 1000);
		if (n < 0) {
			printf("ring_buffer__poll: %d\n", n);
			return 1;
		}
		polls++;
		sleeps += n == 0;
	}
	int epfd = ring_buffer__epoll_fd(rb);
	while (st.next < RECORDS && polls < 200000) {
		struct epoll_event ev;
		int n = epoll_wait(epfd, &ev, 1, 1000);
		if (n < 0) {
			printf("epoll_wait: %s\n", strerror(errno));
			return 1;
		}
		if (n == 1 && ev.data.fd != 0) {
			printf("epoll_wait: data %d, not the ring's index 0\n", ev.data.fd);
			return 1;
		}
		if (ring_buffer__consume(rb) < 0)
			return 1;
		polls++;
	}
	int status = 0;
	waitpid(pid, &status, 0);
	ring_buffer__consume(rb);
	fprintf(stderr, "%d waits\n", polls);
	printf("received %u of %d records, %d bad, producer exit %d\n", st.next, RECORDS, st.bad,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	ring_buffer__free(rb);
	close(fd);
	if (st.next != RECORDS || st.bad != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	return user_ring_test();
}
