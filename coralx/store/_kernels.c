/* coralx's two decode loops in C: join byte planes into elements, and join a delta's byte
 * planes, undo its zigzag map and add its base, in one pass. (At the end: the two encode
 * loops; fsync by path in one call, for a batch and for one file; and syncfs, where a commit
 * makes its whole batch of chunk files durable at once.)
 *
 * numpy does the same in about a dozen whole-array passes (shifts, ors, casts, each through
 * the cache); one loop that the compiler vectorises is 1.4-2.9 times faster on real
 * checkpoints (measured in docs/architecture.md). No library offers these loops (the byte-shuffle codecs of blosc2
 * and numcodecs were measured slower than coralx's numpy planes), so they are written here,
 * small enough to read at a glance. coralx/store/kernels.py loads the library with ctypes and
 * falls back to numpy when it is not built; the tests check both give the same bytes.
 *
 * Layout: ``planes`` holds ``width`` planes of ``n`` bytes each (byte 0 of every element,
 * then byte 1, ...); elements are little-endian unsigned integers of ``width`` bytes. A
 * delta's element is zigzag-mapped: z = (d << 1) ^ (d >> (bits - 1)) of the wrapping
 * difference d = new - base; so new = base + ((z >> 1) ^ -(z & 1)), wrapping.
 * ``base`` may be ``out`` itself (the delta is added in place). Every function takes its
 * inputs, then its output, then ``n``, the number of elements, and reads and writes exactly
 * the bytes that says; the Python side checks the sizes first.
 */
#if defined(__linux__)
#define _GNU_SOURCE 1 /* syncfs, sync_file_range */
#endif
#include <stddef.h>
#include <stdint.h>
#if defined(__linux__)
#include <sys/vfs.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#define CX_POSIX 1
#endif

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define CX_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CX_CLONES
#endif

CX_CLONES void cx_join2(const uint8_t *planes, uint16_t *out, size_t n) {
    const uint8_t *p0 = planes, *p1 = planes + n;
    for (size_t i = 0; i < n; i++) out[i] = (uint16_t)(p0[i] | ((unsigned)p1[i] << 8));
}

CX_CLONES void cx_join4(const uint8_t *planes, uint32_t *out, size_t n) {
    const uint8_t *p0 = planes, *p1 = planes + n, *p2 = planes + 2 * n, *p3 = planes + 3 * n;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)p0[i] | ((uint32_t)p1[i] << 8) | ((uint32_t)p2[i] << 16) |
                 ((uint32_t)p3[i] << 24);
}

CX_CLONES void cx_join8(const uint8_t *planes, uint64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (int b = 0; b < 8; b++) v |= (uint64_t)planes[(size_t)b * n + i] << (8 * b);
        out[i] = v;
    }
}

CX_CLONES void cx_join2_delta(const uint8_t *planes, const uint16_t *base, uint16_t *out,
                              size_t n) {
    const uint8_t *p0 = planes, *p1 = planes + n;
    for (size_t i = 0; i < n; i++) {
        uint16_t z = (uint16_t)(p0[i] | ((unsigned)p1[i] << 8));
        out[i] = (uint16_t)(base[i] + ((z >> 1) ^ (uint16_t)(0u - (z & 1u))));
    }
}

CX_CLONES void cx_join4_delta(const uint8_t *planes, const uint32_t *base, uint32_t *out,
                              size_t n) {
    const uint8_t *p0 = planes, *p1 = planes + n, *p2 = planes + 2 * n, *p3 = planes + 3 * n;
    for (size_t i = 0; i < n; i++) {
        uint32_t z = (uint32_t)p0[i] | ((uint32_t)p1[i] << 8) | ((uint32_t)p2[i] << 16) |
                     ((uint32_t)p3[i] << 24);
        out[i] = base[i] + ((z >> 1) ^ (0u - (z & 1u)));
    }
}

CX_CLONES void cx_join8_delta(const uint8_t *planes, const uint64_t *base, uint64_t *out,
                              size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = 0;
        for (int b = 0; b < 8; b++) z |= (uint64_t)planes[(size_t)b * n + i] << (8 * b);
        out[i] = base[i] + ((z >> 1) ^ (0u - (z & 1u)));
    }
}

/* Encoding: the reverse. ``cx_splitW`` cuts elements into byte planes; ``cx_splitW_delta``
 * takes the wrapping difference to ``base``, zigzag-maps it and cuts it into byte planes.
 * Both work in blocks of CX_BLOCK elements, one plane after another, so that each loop is a
 * plain narrowing store the compiler vectorises. */
#define CX_BLOCK 256

#define CX_SPLIT(W, T, ST)                                                                   \
    CX_CLONES void cx_split##W(const T *x, uint8_t *planes, size_t n) {                      \
        for (int b = 0; b < W; b++) {                                                        \
            uint8_t *p = planes + (size_t)b * n;                                             \
            for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(x[i] >> (8 * b));                \
        }                                                                                    \
    }                                                                                        \
    CX_CLONES void cx_split##W##_delta(const T *x, const T *base, uint8_t *planes, size_t n) { \
        T z[CX_BLOCK];                                                                       \
        for (size_t s = 0; s < n; s += CX_BLOCK) {                                           \
            size_t k = n - s < CX_BLOCK ? n - s : CX_BLOCK;                                  \
            for (size_t j = 0; j < k; j++) {                                                 \
                T d = (T)(x[s + j] - base[s + j]);                                           \
                z[j] = (T)((T)(d << 1) ^ (T)((ST)d >> (8 * W - 1)));                         \
            }                                                                                \
            for (int b = 0; b < W; b++) {                                                    \
                uint8_t *p = planes + (size_t)b * n + s;                                     \
                for (size_t j = 0; j < k; j++) p[j] = (uint8_t)(z[j] >> (8 * b));            \
            }                                                                                \
        }                                                                                    \
    }

CX_SPLIT(2, uint16_t, int16_t)
CX_SPLIT(4, uint32_t, int32_t)
CX_SPLIT(8, uint64_t, int64_t)

/* fsync each of ``n`` files or folders by path, in one call: the records' background syncer
 * (coralx/records/sync.py) hands its batch here, so the thread does not take the GIL back
 * after every open, fsync and close (thousands per second of short runs, each a switch away
 * from the training loop). A path that cannot be opened (removed or renamed since it was
 * queued) is skipped, as its replacement was queued on its own. Returns the number of
 * fsyncs that failed, or -1 where there is no POSIX fsync. */
int cx_fsync_paths(const char *const *paths, size_t n) {
#ifdef CX_POSIX
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (fsync(fd) != 0) failed++;
        close(fd);
    }
    return failed;
#else
    (void)paths;
    (void)n;
    return -1;
#endif
}

#ifdef CX_POSIX
/* Open ``path``, call ``fn`` on it and close it: 0, or the errno of the step that failed. */
static int cx_on_path(const char *path, int (*fn)(int)) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = fn(fd) != 0 ? errno : 0;
    close(fd);
    return err;
}
#endif

/* fsync one file (or folder) by path: open, fsync and close in one call, so the calling
 * thread releases and takes back the GIL once, not three times (the chunk store's I/O
 * threads fsync every chunk file and folder of a commit this way). Returns 0, or the errno
 * of the step that failed (ENOSYS where there is no POSIX fsync). */
int cx_fsync_one(const char *path) {
#ifdef CX_POSIX
    return cx_on_path(path, fsync);
#else
    (void)path;
    return ENOSYS;
#endif
}

/* Whether ``path`` lies on a local file system whose syncfs writes every file's data and
 * metadata and flushes the device's cache, as fsync does for one file: ext2/3/4, XFS, Btrfs
 * (tmpfs has nothing to write). Elsewhere (network and FUSE file systems, whose syncfs may
 * not reach the server, and systems other than Linux) the caller fsyncs each file. Returns 1
 * or 0. */
int cx_syncfs_trusted(const char *path) {
#if defined(__linux__)
    struct statfs st;
    if (statfs(path, &st) != 0) return 0;
    switch ((unsigned long)st.f_type) {
    case 0xEF53UL:     /* ext2, ext3, ext4 */
    case 0x58465342UL: /* XFS */
    case 0x9123683EUL: /* Btrfs */
    case 0x01021994UL: /* tmpfs */
        return 1;
    default:
        return 0;
    }
#else
    (void)path;
    return 0;
#endif
}

/* syncfs on the file system holding ``path`` (a folder): one call makes every file written
 * there durable, where a commit's chunk files took an fsync each, and their folders another
 * (about two hundred for a bfloat16 checkpoint; each flushes the device's cache). Linux
 * reports writeback errors to syncfs since 5.8. Returns 0, or the errno of the step that
 * failed (ENOSYS where there is no syncfs). */
int cx_syncfs(const char *path) {
#if defined(__linux__)
    return cx_on_path(path, syncfs);
#else
    (void)path;
    return ENOSYS;
#endif
}

/* Start writing a file's dirty pages to the disk without waiting for them (sync_file_range
 * with SYNC_FILE_RANGE_WRITE), so the disk works while the next chunks are encoded; the
 * commit's syncfs then waits for what is left. It makes nothing durable by itself. Returns 0
 * or the errno (ENOSYS where there is no such call). */
int cx_start_writeback(int fd) {
#if defined(__linux__)
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0 ? errno : 0;
#else
    (void)fd;
    return ENOSYS;
#endif
}

/* The version of this file's interface; kernels.py refuses a library of another. */
int cx_kernels_version(void) { return 6; }
