/* lockcount: an LD_PRELOAD library for tests that counts the locks tern's
 * worker threads take (pthread mutexes, rwlocks, semaphores and condition
 * waits; libuv's uv_mutex_* and friends go through them). At exit it writes
 * to $LOCKCOUNT_OUT:
 *
 *     workers N        locks taken on threads named "tern-worker-*"
 *     all N            locks taken on any thread (shows the interposition works)
 *     site ADDR SYMBOL N   up to 16 distinct callers of worker locks
 *
 * Only the counting is done here; the real functions are found with
 * dlsym(RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define MAX_SITES 16

static atomic_ulong n_workers, n_all;
static struct {
    _Atomic(void *) addr;
    atomic_ulong n;
} sites[MAX_SITES];
static _Thread_local int is_worker = -1;

static void count(void *caller)
{
    atomic_fetch_add_explicit(&n_all, 1, memory_order_relaxed);
    if (is_worker < 0) {
        char name[17] = "";
        prctl(PR_GET_NAME, name, 0, 0, 0);
        if (strncmp(name, "tern-worker-", 12) != 0)
            return; /* named later: ask again next time */
        is_worker = 1;
    }
    atomic_fetch_add_explicit(&n_workers, 1, memory_order_relaxed);
    for (int i = 0; i < MAX_SITES; i++) {
        void *have = atomic_load(&sites[i].addr);
        if (have == NULL) {
            atomic_compare_exchange_strong(&sites[i].addr, &have, caller);
            have = atomic_load(&sites[i].addr);
        }
        if (have == caller) {
            atomic_fetch_add(&sites[i].n, 1);
            return;
        }
    }
}

#define REAL(name, ret, ...)                                                                                           \
    static ret (*real_##name)(__VA_ARGS__);                                                                            \
    if (real_##name == NULL)                                                                                           \
        real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

int pthread_mutex_lock(pthread_mutex_t *m)
{
    REAL(pthread_mutex_lock, int, pthread_mutex_t *)
    count(__builtin_return_address(0));
    return real_pthread_mutex_lock(m);
}

int pthread_mutex_trylock(pthread_mutex_t *m)
{
    REAL(pthread_mutex_trylock, int, pthread_mutex_t *)
    count(__builtin_return_address(0));
    return real_pthread_mutex_trylock(m);
}

int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    REAL(pthread_rwlock_rdlock, int, pthread_rwlock_t *)
    count(__builtin_return_address(0));
    return real_pthread_rwlock_rdlock(l);
}

int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    REAL(pthread_rwlock_wrlock, int, pthread_rwlock_t *)
    count(__builtin_return_address(0));
    return real_pthread_rwlock_wrlock(l);
}

int sem_wait(sem_t *s)
{
    REAL(sem_wait, int, sem_t *)
    count(__builtin_return_address(0));
    return real_sem_wait(s);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("LOCKCOUNT_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f == NULL)
        return;
    fprintf(f, "workers %lu\nall %lu\n", atomic_load(&n_workers), atomic_load(&n_all));
    for (int i = 0; i < MAX_SITES; i++) {
        void *a = atomic_load(&sites[i].addr);
        Dl_info di;
        if (a == NULL)
            break;
        const char *sym = dladdr(a, &di) && di.dli_sname ? di.dli_sname : "?";
        fprintf(f, "site %p %s %lu\n", a, sym, atomic_load(&sites[i].n));
    }
    fclose(f);
}
