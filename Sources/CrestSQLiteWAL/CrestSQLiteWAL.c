// A SQLite VFS shim that writes each transaction's write-ahead log frames in a few `pwrite`s
// instead of two per frame (see include/CrestSQLiteWAL.h). Benchmarks/RESULTS.md has the
// measurements.

#include "CrestSQLiteWAL.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/// Writes gathered before they go to the file at the latest: under 128 KiB, because SQLite's unix
/// VFS writes at most `n & 0x1ffff` bytes per `pwrite` and takes a write of 0 bytes for a full disk
/// (a write of 128 KiB or more fails with SQLITE_FULL). 31 frames of a 4 KiB page; a batch of 25
/// orders is ~40 frames, two writes instead of ~80.
#define BUFFER_CAPACITY 0x1ffff

typedef struct BufferedFile BufferedFile;
struct BufferedFile {
    sqlite3_file base;
    /// The wrapped VFS's file, allocated right after this struct.
    sqlite3_file *real;
    /// Valid until xClose (SQLite's promise): a main database's, to find its log at a barrier.
    const char *name;
    int isLog;
    /// Logs only, from here on. `mutex` guards the buffer: a barrier on another connection of the
    /// same database may write it out.
    pthread_mutex_t mutex;
    unsigned char *buffer;
    sqlite3_int64 bufferOffset;
    int bufferLength;
    /// A write that failed where no error can be returned (a barrier): returned by the next call.
    int deferredError;
    /// This log's writes SQLite asked for and `pwrite`s made for them (guarded by `mutex`).
    long long requested;
    long long written;
    /// The open logs, for barriers (guarded by `openLogsMutex`).
    BufferedFile *nextLog;
};

static sqlite3_vfs *realVFS;
static sqlite3_vfs bufferedVFS;
static pthread_mutex_t openLogsMutex = PTHREAD_MUTEX_INITIALIZER;
static BufferedFile *openLogs;

/// Writes the buffer out. The caller holds `file->mutex`.
static int writeOut(BufferedFile *file) {
    if (file->bufferLength == 0) return SQLITE_OK;
    int length = file->bufferLength;
    file->bufferLength = 0;
    file->written++;
    return file->real->pMethods->xWrite(file->real, file->buffer, length, file->bufferOffset);
}

/// Writes the buffer out and returns any error kept from before. The caller holds `file->mutex`.
static int settle(BufferedFile *file) {
    int rc = writeOut(file);
    if (file->deferredError != SQLITE_OK) {
        if (rc == SQLITE_OK) rc = file->deferredError;
        file->deferredError = SQLITE_OK;
    }
    return rc;
}

/// For the calls that must see the log as written: settles it first (logs only).
static int settleLog(BufferedFile *file) {
    if (!file->isLog) return SQLITE_OK;
    pthread_mutex_lock(&file->mutex);
    int rc = settle(file);
    pthread_mutex_unlock(&file->mutex);
    return rc;
}

/// Whether `log` is the write-ahead log of the main database named `database`.
static int isLogOf(const BufferedFile *log, const char *database) {
    size_t length = strlen(database);
    return strncmp(log->name, database, length) == 0 && strcmp(log->name + length, "-wal") == 0;
}

/// Before a barrier on a main database's shared memory: every open log of that database written
/// out, so that no reader is told of frames whose bytes are not yet in the file.
static void writeOutLogsOf(BufferedFile *database) {
    if (database->name == NULL) return;
    pthread_mutex_lock(&openLogsMutex);
    for (BufferedFile *log = openLogs; log != NULL; log = log->nextLog) {
        if (!isLogOf(log, database->name)) continue;
        pthread_mutex_lock(&log->mutex);
        int rc = writeOut(log);
        if (rc != SQLITE_OK && log->deferredError == SQLITE_OK) log->deferredError = rc;
        pthread_mutex_unlock(&log->mutex);
    }
    pthread_mutex_unlock(&openLogsMutex);
}

// MARK: The file's methods

static int bufferedClose(sqlite3_file *base) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = SQLITE_OK;
    if (file->isLog) {
        pthread_mutex_lock(&openLogsMutex);
        for (BufferedFile **link = &openLogs; *link != NULL; link = &(*link)->nextLog) {
            if (*link == file) {
                *link = file->nextLog;
                break;
            }
        }
        pthread_mutex_unlock(&openLogsMutex);
        rc = settleLog(file);
        free(file->buffer);
        pthread_mutex_destroy(&file->mutex);
    }
    int closed = file->real->pMethods->xClose(file->real);
    return rc != SQLITE_OK ? rc : closed;
}

static int bufferedRead(sqlite3_file *base, void *data, int amount, sqlite3_int64 offset) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = settleLog(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xRead(file->real, data, amount, offset);
}

static int bufferedWrite(sqlite3_file *base, const void *data, int amount, sqlite3_int64 offset) {
    BufferedFile *file = (BufferedFile *)base;
    if (!file->isLog) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    pthread_mutex_lock(&file->mutex);
    file->requested++;
    int rc = SQLITE_OK;
    sqlite3_int64 end = file->bufferOffset + file->bufferLength;
    if (file->bufferLength > 0 && offset >= file->bufferOffset && offset + amount <= end) {
        // A frame of this transaction written again (SQLite rewrites a page in place).
        memcpy(file->buffer + (offset - file->bufferOffset), data, (size_t)amount);
    } else if (file->bufferLength > 0 && offset == end && file->bufferLength + amount <= BUFFER_CAPACITY) {
        memcpy(file->buffer + file->bufferLength, data, (size_t)amount);
        file->bufferLength += amount;
    } else {
        rc = settle(file);
        if (rc == SQLITE_OK) {
            if (file->buffer == NULL && amount <= BUFFER_CAPACITY) file->buffer = malloc(BUFFER_CAPACITY);
            if (file->buffer == NULL || amount > BUFFER_CAPACITY) {
                file->written++;
                rc = file->real->pMethods->xWrite(file->real, data, amount, offset);
            } else {
                memcpy(file->buffer, data, (size_t)amount);
                file->bufferOffset = offset;
                file->bufferLength = amount;
            }
        }
    }
    pthread_mutex_unlock(&file->mutex);
    return rc;
}

static int bufferedTruncate(sqlite3_file *base, sqlite3_int64 size) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = settleLog(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xTruncate(file->real, size);
}

static int bufferedSync(sqlite3_file *base, int flags) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = settleLog(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xSync(file->real, flags);
}

static int bufferedFileSize(sqlite3_file *base, sqlite3_int64 *size) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = settleLog(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xFileSize(file->real, size);
}

static int bufferedLock(sqlite3_file *base, int lock) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xLock(file->real, lock);
}

static int bufferedUnlock(sqlite3_file *base, int lock) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xUnlock(file->real, lock);
}

static int bufferedCheckReservedLock(sqlite3_file *base, int *reserved) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xCheckReservedLock(file->real, reserved);
}

static int bufferedFileControl(sqlite3_file *base, int op, void *argument) {
    BufferedFile *file = (BufferedFile *)base;
    int rc = settleLog(file);
    if (rc != SQLITE_OK) return rc;
    if (op == SQLITE_FCNTL_VFSNAME && argument != NULL) {
        // SQLite's own shims name themselves in front of the VFS beneath.
        rc = file->real->pMethods->xFileControl(file->real, op, argument);
        if (rc == SQLITE_OK) {
            char *beneath = *(char **)argument;
            *(char **)argument = sqlite3_mprintf("%s/%z", bufferedVFS.zName, beneath);
        }
        return rc;
    }
    return file->real->pMethods->xFileControl(file->real, op, argument);
}

static int bufferedSectorSize(sqlite3_file *base) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xSectorSize(file->real);
}

static int bufferedDeviceCharacteristics(sqlite3_file *base) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xDeviceCharacteristics(file->real);
}

static int bufferedShmMap(sqlite3_file *base, int region, int size, int extend, void volatile **memory) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xShmMap(file->real, region, size, extend, memory);
}

static int bufferedShmLock(sqlite3_file *base, int offset, int n, int flags) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xShmLock(file->real, offset, n, flags);
}

static void bufferedShmBarrier(sqlite3_file *base) {
    BufferedFile *file = (BufferedFile *)base;
    writeOutLogsOf(file);
    file->real->pMethods->xShmBarrier(file->real);
}

static int bufferedShmUnmap(sqlite3_file *base, int deleteFlag) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xShmUnmap(file->real, deleteFlag);
}

static int bufferedFetch(sqlite3_file *base, sqlite3_int64 offset, int amount, void **pointer) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xFetch(file->real, offset, amount, pointer);
}

static int bufferedUnfetch(sqlite3_file *base, sqlite3_int64 offset, void *pointer) {
    BufferedFile *file = (BufferedFile *)base;
    return file->real->pMethods->xUnfetch(file->real, offset, pointer);
}

/// One table per version of the wrapped file's methods: SQLite calls no method past a file's
/// version, so a wrapped file without shared memory (or memory maps) is never asked for them.
#define BUFFERED_METHODS(version)                                                                  \
    {                                                                                              \
        version, bufferedClose, bufferedRead, bufferedWrite, bufferedTruncate, bufferedSync,       \
            bufferedFileSize, bufferedLock, bufferedUnlock, bufferedCheckReservedLock,             \
            bufferedFileControl, bufferedSectorSize, bufferedDeviceCharacteristics, bufferedShmMap, \
            bufferedShmLock, bufferedShmBarrier, bufferedShmUnmap, bufferedFetch, bufferedUnfetch  \
    }
static const sqlite3_io_methods bufferedMethods[3] = {BUFFERED_METHODS(1), BUFFERED_METHODS(2), BUFFERED_METHODS(3)};

// MARK: The VFS's methods

static int bufferedOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *base, int flags, int *outFlags) {
    (void)vfs;
    BufferedFile *file = (BufferedFile *)base;
    memset(file, 0, sizeof(*file));
    file->real = (sqlite3_file *)&file[1];
    int rc = realVFS->xOpen(realVFS, name, file->real, flags, outFlags);
    const sqlite3_io_methods *methods = file->real->pMethods;
    if (methods == NULL) return rc;  // nothing opened: SQLite will not call xClose
    int version = methods->iVersion < 1 ? 1 : (methods->iVersion > 3 ? 3 : methods->iVersion);
    file->base.pMethods = &bufferedMethods[version - 1];
    file->name = (flags & SQLITE_OPEN_MAIN_DB) ? name : NULL;
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && name != NULL) {
        file->isLog = 1;
        file->name = name;
        pthread_mutex_init(&file->mutex, NULL);
        pthread_mutex_lock(&openLogsMutex);
        file->nextLog = openLogs;
        openLogs = file;
        pthread_mutex_unlock(&openLogsMutex);
    }
    return rc;
}

static int bufferedDelete(sqlite3_vfs *vfs, const char *name, int syncDirectory) {
    (void)vfs;
    return realVFS->xDelete(realVFS, name, syncDirectory);
}

static int bufferedAccess(sqlite3_vfs *vfs, const char *name, int flags, int *result) {
    (void)vfs;
    return realVFS->xAccess(realVFS, name, flags, result);
}

static int bufferedFullPathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return realVFS->xFullPathname(realVFS, name, size, out);
}

static void *bufferedDlOpen(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return realVFS->xDlOpen(realVFS, name);
}

static void bufferedDlError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    realVFS->xDlError(realVFS, size, message);
}

static void (*bufferedDlSym(sqlite3_vfs *vfs, void *library, const char *symbol))(void) {
    (void)vfs;
    return realVFS->xDlSym(realVFS, library, symbol);
}

static void bufferedDlClose(sqlite3_vfs *vfs, void *library) {
    (void)vfs;
    realVFS->xDlClose(realVFS, library);
}

static int bufferedRandomness(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return realVFS->xRandomness(realVFS, size, out);
}

static int bufferedSleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    return realVFS->xSleep(realVFS, microseconds);
}

static int bufferedCurrentTime(sqlite3_vfs *vfs, double *now) {
    (void)vfs;
    return realVFS->xCurrentTime(realVFS, now);
}

static int bufferedGetLastError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    return realVFS->xGetLastError ? realVFS->xGetLastError(realVFS, size, message) : 0;
}

static int bufferedCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    (void)vfs;
    return realVFS->xCurrentTimeInt64(realVFS, now);
}

static int bufferedSetSystemCall(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr call) {
    (void)vfs;
    return realVFS->xSetSystemCall(realVFS, name, call);
}

static sqlite3_syscall_ptr bufferedGetSystemCall(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return realVFS->xGetSystemCall(realVFS, name);
}

static const char *bufferedNextSystemCall(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return realVFS->xNextSystemCall(realVFS, name);
}

static int installResult = SQLITE_OK;
static pthread_once_t installOnce = PTHREAD_ONCE_INIT;

static void install(void) {
    installResult = sqlite3_initialize();
    if (installResult != SQLITE_OK) return;
    realVFS = sqlite3_vfs_find(NULL);
    if (realVFS == NULL) {
        installResult = SQLITE_ERROR;
        return;
    }
    bufferedVFS = (sqlite3_vfs){
        .iVersion = realVFS->iVersion < 3 ? realVFS->iVersion : 3,
        .szOsFile = (int)sizeof(BufferedFile) + realVFS->szOsFile,
        .mxPathname = realVFS->mxPathname,
        .zName = "crest-wal",
        .xOpen = bufferedOpen,
        .xDelete = bufferedDelete,
        .xAccess = bufferedAccess,
        .xFullPathname = bufferedFullPathname,
        .xDlOpen = realVFS->xDlOpen ? bufferedDlOpen : NULL,
        .xDlError = realVFS->xDlError ? bufferedDlError : NULL,
        .xDlSym = realVFS->xDlSym ? bufferedDlSym : NULL,
        .xDlClose = realVFS->xDlClose ? bufferedDlClose : NULL,
        .xRandomness = bufferedRandomness,
        .xSleep = bufferedSleep,
        .xCurrentTime = bufferedCurrentTime,
        .xGetLastError = bufferedGetLastError,
        .xCurrentTimeInt64 = realVFS->iVersion >= 2 ? bufferedCurrentTimeInt64 : NULL,
        .xSetSystemCall = realVFS->iVersion >= 3 ? bufferedSetSystemCall : NULL,
        .xGetSystemCall = realVFS->iVersion >= 3 ? bufferedGetSystemCall : NULL,
        .xNextSystemCall = realVFS->iVersion >= 3 ? bufferedNextSystemCall : NULL,
    };
    installResult = sqlite3_vfs_register(&bufferedVFS, 1);
}

int crest_sqlite_wal_install(void) {
    pthread_once(&installOnce, install);
    return installResult;
}

int crest_sqlite_wal_log_statistics(const char *database, long long *requested, long long *written) {
    int found = 0;
    *requested = 0;
    *written = 0;
    pthread_mutex_lock(&openLogsMutex);
    for (BufferedFile *log = openLogs; log != NULL; log = log->nextLog) {
        if (!isLogOf(log, database)) continue;
        pthread_mutex_lock(&log->mutex);
        *requested += log->requested;
        *written += log->written;
        pthread_mutex_unlock(&log->mutex);
        found = 1;
    }
    pthread_mutex_unlock(&openLogsMutex);
    return found;
}
