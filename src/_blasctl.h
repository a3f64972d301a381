/* The thread count of the BLAS the engine calls (SciPy's OpenBLAS), read and set from C.
 *
 * Inside the engine's parallel passes every thread calls BLAS, which must then run
 * single-threaded: an OpenBLAS with two threads of its own, called from two engine threads,
 * would put four busy threads on two cores. The Python layer limits BLAS with threadpoolctl
 * around a fit (mlpcore/_threads.py); the engine checks it again itself, so that a direct
 * caller of train_epoch cannot oversubscribe either: if the count is above 1 when a parallel
 * segment starts, it is set to 1 for the segment and restored after.
 *
 * The library is the one that holds the gemm the engine calls (found with dladdr from a
 * function pointer of scipy.linalg.cython_blas), and its symbols are looked up with every
 * prefix and suffix OpenBLAS builds use ("scipy_" prefix, "64_" suffix), as threadpoolctl
 * does. With another BLAS (MKL, reference BLAS) nothing is found: get returns -1 and set
 * does nothing, and only threadpoolctl's limit applies.
 */
#ifndef MLPCORE_BLASCTL_H
#define MLPCORE_BLASCTL_H

#include <stdio.h>

typedef int (*mlpcore_get_threads_fn)(void);
typedef void (*mlpcore_set_threads_fn)(int);

static mlpcore_get_threads_fn mlpcore_blas_get = NULL;
static mlpcore_set_threads_fn mlpcore_blas_set = NULL;

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>

/* Find the OpenBLAS holding the function at address `fn`; returns 1 when found. */
static int mlpcore_blas_find(void *fn)
{
    static const char *prefixes[] = {"", "scipy_"};
    static const char *suffixes[] = {"", "64_", "_64"};
    char name[96];
    Dl_info info;
    void *lib;
    if (fn == NULL || !dladdr(fn, &info) || info.dli_fname == NULL)
        return 0;
    lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        return 0;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++) {
            void *get, *set;
            snprintf(name, sizeof name, "%sopenblas_get_num_threads%s", prefixes[i], suffixes[j]);
            get = dlsym(lib, name);
            snprintf(name, sizeof name, "%sopenblas_set_num_threads%s", prefixes[i], suffixes[j]);
            set = dlsym(lib, name);
            if (get != NULL && set != NULL) {
                mlpcore_blas_get = (mlpcore_get_threads_fn)get;
                mlpcore_blas_set = (mlpcore_set_threads_fn)set;
                return 1;  /* the handle stays open: the library is loaded for good anyway */
            }
        }
    }
    dlclose(lib);
    return 0;
}
#else
static int mlpcore_blas_find(void *fn) { (void)fn; return 0; }
#endif

static inline int mlpcore_blas_get_threads(void)
{
    return mlpcore_blas_get != NULL ? mlpcore_blas_get() : -1;
}

static inline void mlpcore_blas_set_threads(int n)
{
    if (mlpcore_blas_set != NULL)
        mlpcore_blas_set(n);
}

#endif
