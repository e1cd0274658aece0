#ifndef CREST_SQLITE_WAL_H
#define CREST_SQLITE_WAL_H

/// Installs, once per process, a SQLite VFS that wraps the default one and becomes the default:
/// it gathers the consecutive writes SQLite makes to a write-ahead log (a 24-byte frame header and
/// a page, one `pwrite` each) into a buffer of under 128 KiB, written with one `pwrite` when full
/// and before anything that must see the file as written — a sync, a read, a truncation, the file's size, a file control,
/// its close, and the shared-memory barrier SQLite passes before it tells readers of new frames.
/// Nothing SQLite relies on changes: a write was never durable before its sync, and no reader
/// learns of a frame before its bytes are in the file. Every other file passes straight through.
/// Returns SQLITE_OK, or the error that kept it from being installed.
int crest_sqlite_wal_install(void);

/// Writes to write-ahead logs SQLite asked for, and `pwrite`s made for them, since the process
/// started (both counted only once installed).
void crest_sqlite_wal_statistics(long long *requested, long long *written);

#endif
