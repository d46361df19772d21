#include "core/lock.h"

#include <cerrno>
#include <cstdlib>

namespace bpfmap {

void shared_lock::init()
{
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&mutex, &attr);
	pthread_mutexattr_destroy(&attr);
}

bool shared_lock::lock()
{
	int err = pthread_mutex_lock(&mutex);
	if (err == EOWNERDEAD) {
		// The previous holder died; what it guarded is consistent by construction.
		pthread_mutex_consistent(&mutex);
		return true;
	}
	// ENOTRECOVERABLE cannot happen: we always mark the mutex consistent above.
	if (err != 0)
		abort();
	return false;
}

} // namespace bpfmap
