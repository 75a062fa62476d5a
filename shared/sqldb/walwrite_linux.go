//go:build linux && (amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x)

package sqldb

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// One write system call per commit instead of two per page (SQLite, Linux).
//
// SQLite appends a commit to the WAL one frame at a time, each frame in
// two pwrite calls: its 24-byte header, then the page. A one-to-one
// message changes about two pages, so the store paid four system calls
// per message for its WAL alone, measured at 5.8 us of CPU per frame on
// this kind of machine against 0.75 us when 16 frames go in one call.
//
// SQLite's unix VFS lets a program replace the system calls it makes
// (sqlite3_vfs.xSetSystemCall). Here pwrite gathers the frames of a WAL
// file that follow each other and writes them with one call when the
// commit frame's page arrives (its header's "database size" field is not
// zero), or earlier when something else touches the file: any other
// write, read, fstat, ftruncate or close of it writes what is held first.
// SQLite makes frames visible to readers (the wal-index in shared memory)
// only after every frame of the commit is written, so by then they are in
// the file as before: readers in this or another process see nothing
// new. A commit whose gathered write fails fails as one whose frame write
// failed did. What a crash takes is what it took before: frames not yet
// in the file belong to a commit that had not returned.
//
// Frames are held only within one commit: the writer connection runs with
// cache_spill off (OpenSQLite), so SQLite writes no frame to the WAL
// before the commit that ends with them (a spilled, then rolled-back
// frame could otherwise be held past the transaction and written over a
// later one).

var walWrites struct {
	once sync.Once
	ok   bool
	mu   sync.Mutex
	fds  map[int32]*walFD
	// held counts the files with frames held: reads skip the lock while
	// none has (all but the moments inside a commit).
	held atomic.Int32
	// calls and frames count the gathered writes and the frames they
	// carried (tests).
	calls, frames atomic.Int64
	// The replaced calls, to forward to.
	pwrite, pread uintptr
	close         uintptr
	fstat         uintptr
	ftruncate     uintptr
}

// walFD is what is known of one file descriptor SQLite writes.
type walFD struct {
	named      bool   // wal is known
	wal        bool   // the file is a WAL (its name ends in -wal)
	buf        []byte // frames held, to be written at start
	start      int64
	pageNext   bool // the last held write was a frame header: its page comes next
	commitNext bool // ... of a commit frame
}

// maxHeld bounds the bytes held for one file (a commit larger than this
// is written in several calls).
const maxHeld = 4 << 20

const walFrameHeader = 24

type (
	pwriteFn    = func(*libc.TLS, int32, uintptr, sqlite3.Tsize_t, sqlite3.Toff_t) sqlite3.Tssize_t
	closeFn     = func(*libc.TLS, int32) int32
	fstatFn     = func(*libc.TLS, int32, uintptr) int32
	ftruncateFn = func(*libc.TLS, int32, sqlite3.Toff_t) int32
)

// cfunc is a Go function as the transpiled SQLite calls function pointers.
func cfunc[F any](f F) uintptr {
	return *(*uintptr)(unsafe.Pointer(&struct{ f F }{f}))
}

// gofunc is the function at a pointer SQLite holds.
func gofunc[F any](p uintptr) F {
	return *(*F)(unsafe.Pointer(&struct{ p uintptr }{p}))
}

// cptr is the C (SQLite, libc) memory at address p: memory the Go
// collector does not manage, so the address may live in a uintptr.
func cptr(p uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}

// gatherWALWrites installs the replacement system calls in SQLite's unix
// VFS, once per process, before the first database opens. It reports
// whether they are in place (false: SQLite keeps its own).
func gatherWALWrites() bool {
	walWrites.once.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		vfs := sqlite3.Xsqlite3_vfs_find(tls, 0)
		if vfs == 0 {
			return
		}
		v := (*sqlite3.Tsqlite3_vfs)(cptr(vfs))
		if v.FiVersion < 3 || v.FxSetSystemCall == 0 || v.FxGetSystemCall == 0 {
			return
		}
		get := gofunc[func(*libc.TLS, uintptr, uintptr) uintptr](v.FxGetSystemCall)
		set := gofunc[func(*libc.TLS, uintptr, uintptr, uintptr) int32](v.FxSetSystemCall)
		names := []string{"pwrite", "pread", "close", "fstat", "ftruncate"}
		orig := make([]uintptr, len(names))
		cnames := make([]uintptr, len(names))
		defer func() {
			for _, c := range cnames {
				if c != 0 {
					libc.Xfree(tls, c)
				}
			}
		}()
		for i, n := range names {
			c, err := libc.CString(n)
			if err != nil {
				return
			}
			cnames[i] = c
			if orig[i] = get(tls, vfs, c); orig[i] == 0 {
				return
			}
		}
		walWrites.pwrite, walWrites.pread, walWrites.close = orig[0], orig[1], orig[2]
		walWrites.fstat, walWrites.ftruncate = orig[3], orig[4]
		walWrites.fds = make(map[int32]*walFD)
		repl := []uintptr{
			cfunc[pwriteFn](gatherPwrite),
			cfunc[pwriteFn](gatherPread),
			cfunc[closeFn](gatherClose),
			cfunc[fstatFn](gatherFstat),
			cfunc[ftruncateFn](gatherFtruncate),
		}
		for i := range names {
			if set(tls, vfs, cnames[i], repl[i]) != sqlite3.SQLITE_OK {
				// Put back those already replaced: all or none.
				for j := 0; j < i; j++ {
					set(tls, vfs, cnames[j], orig[j])
				}
				return
			}
		}
		walWrites.ok = true
	})
	return walWrites.ok
}

// flushLocked writes what is held for fd. On failure the frames are
// dropped (their commit fails) and errno is set.
func flushLocked(tls *libc.TLS, fd int32, st *walFD) bool {
	if len(st.buf) == 0 {
		return true
	}
	buf, off := st.buf, st.start
	st.buf, st.pageNext, st.commitNext = st.buf[:0], false, false
	walWrites.held.Add(-1)
	walWrites.calls.Add(1)
	pw := gofunc[pwriteFn](walWrites.pwrite)
	for len(buf) > 0 {
		n := pw(tls, fd, uintptr(unsafe.Pointer(&buf[0])), sqlite3.Tsize_t(len(buf)), off)
		if n < 0 {
			if *(*int32)(cptr(libc.X__errno_location(tls))) == int32(syscall.EINTR) {
				continue
			}
			return false
		}
		if n == 0 {
			*(*int32)(cptr(libc.X__errno_location(tls))) = int32(syscall.ENOSPC)
			return false
		}
		buf, off = buf[n:], off+int64(n)
	}
	return true
}

// isWAL reports whether fd is open on a WAL file.
func isWAL(fd int32) bool {
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	return err == nil && strings.HasSuffix(name, "-wal")
}

func gatherPwrite(tls *libc.TLS, fd int32, p uintptr, n sqlite3.Tsize_t, off sqlite3.Toff_t) sqlite3.Tssize_t {
	walWrites.mu.Lock()
	held, ok := gatherLocked(tls, fd, p, n, off)
	walWrites.mu.Unlock()
	if !ok {
		return -1
	}
	if held {
		return sqlite3.Tssize_t(n)
	}
	return gofunc[pwriteFn](walWrites.pwrite)(tls, fd, p, n, off)
}

// gatherLocked holds the write (held) when it is a WAL frame's header or
// page that follows what is held, writing all of it once a commit frame is
// complete; otherwise it writes what is held, and the caller writes this
// one itself. ok is false, with errno set, when a write failed.
func gatherLocked(tls *libc.TLS, fd int32, p uintptr, n sqlite3.Tsize_t, off sqlite3.Toff_t) (held, ok bool) {
	st := walWrites.fds[fd]
	if st == nil {
		st = &walFD{}
		walWrites.fds[fd] = st
	}
	if !st.named && n == walFrameHeader {
		// Only WAL files get 24-byte writes: look at the name once.
		st.named, st.wal = true, isWAL(fd)
	}
	if !st.wal {
		return false, true
	}
	contiguous := len(st.buf) == 0 || off == st.start+int64(len(st.buf))
	switch {
	case contiguous && !st.pageNext && n == walFrameHeader:
		if len(st.buf) == 0 {
			st.start = off
			walWrites.held.Add(1)
		}
		walWrites.frames.Add(1)
		hdr := libc.GoBytes(p, int(n))
		st.buf = append(st.buf, hdr...)
		st.pageNext = true
		st.commitNext = hdr[4]|hdr[5]|hdr[6]|hdr[7] != 0
		return true, true
	case contiguous && st.pageNext && len(st.buf) > 0:
		st.buf = append(st.buf, libc.GoBytes(p, int(n))...)
		st.pageNext = false
		if st.commitNext || len(st.buf) >= maxHeld {
			return true, flushLocked(tls, fd, st)
		}
		return true, true
	}
	return false, flushLocked(tls, fd, st)
}

// flushFD writes what is held for fd before another call on it; false
// with errno set when that fails.
func flushFD(tls *libc.TLS, fd int32) bool {
	if walWrites.held.Load() == 0 {
		return true
	}
	walWrites.mu.Lock()
	defer walWrites.mu.Unlock()
	if st := walWrites.fds[fd]; st != nil {
		return flushLocked(tls, fd, st)
	}
	return true
}

func gatherPread(tls *libc.TLS, fd int32, p uintptr, n sqlite3.Tsize_t, off sqlite3.Toff_t) sqlite3.Tssize_t {
	if !flushFD(tls, fd) {
		return -1
	}
	return gofunc[pwriteFn](walWrites.pread)(tls, fd, p, n, off)
}

func gatherFstat(tls *libc.TLS, fd int32, buf uintptr) int32 {
	if !flushFD(tls, fd) {
		return -1
	}
	return gofunc[fstatFn](walWrites.fstat)(tls, fd, buf)
}

func gatherFtruncate(tls *libc.TLS, fd int32, size sqlite3.Toff_t) int32 {
	if !flushFD(tls, fd) {
		return -1
	}
	return gofunc[ftruncateFn](walWrites.ftruncate)(tls, fd, size)
}

func gatherClose(tls *libc.TLS, fd int32) int32 {
	walWrites.mu.Lock()
	if st := walWrites.fds[fd]; st != nil {
		flushLocked(tls, fd, st) // a failure here is the close's: SQLite ignores both
		delete(walWrites.fds, fd)
	}
	walWrites.mu.Unlock()
	return gofunc[closeFn](walWrites.close)(tls, fd)
}
