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

/// Writes SQLite asked for to the write-ahead log of the database it names `database`
/// (`sqlite3_db_filename`), and `pwrite`s made for them, since the log was opened (summed over the
/// logs open now, should there be several). Returns 1 when such a log is open, 0 when none is
/// (both counts 0 then).
int crest_sqlite_wal_log_statistics(const char *database, long long *requested, long long *written);

#endif
