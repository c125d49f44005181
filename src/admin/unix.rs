//! The admin listener on a Unix socket (`--admin unix:PATH`): a file only its owner can open.
//!
//! The socket is made with mode 0600 and no moment of a wider one: it is bound inside a new
//! directory of mode 0700 next to `PATH`, given its mode there, and then renamed to `PATH` (a
//! rename within one file system is atomic). It is removed when the listener stops. A socket
//! left at `PATH` by a balancer that was killed is *stale* (connecting to it is refused) and is
//! replaced; a socket that answers belongs to a running balancer, and anything that is not a
//! socket is someone's file: both refuse the start with a message naming `PATH`.
//!
//! A connection thread per client, at most [`super::MAX_ADMIN_CONNECTIONS`] at once, one
//! request each, as on the TCP listener.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long stopping waits for the accepting thread to notice.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// A running admin listener on a Unix socket. Stopping or dropping it removes the socket.
#[derive(Debug)]
pub struct UnixAdmin {
    path: PathBuf,
    /// Device and inode of the socket this listener made, so that stopping removes only it
    /// (never a socket another balancer has put at the path since).
    identity: (u64, u64),
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// Binds a socket of mode 0600 at `path`, replacing a stale one.
///
/// # Errors
/// `path` holds something else, or a live socket, or the directory cannot be written; the
/// message names the path and `--admin`.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let refuse =
        |kind, why: String| io::Error::new(kind, format!("--admin unix:{}: {why}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(refuse(
                    io::ErrorKind::AddrInUse,
                    "another process serves this socket".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| refuse(e.kind(), format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(refuse(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket: refusing to replace it".into(),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.kind(), e.to_string())),
    }
    let dir = private_dir(path);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| refuse(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    let inner = dir.join("s");
    let bound = UnixListener::bind(&inner)
        .and_then(|l| {
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&inner, path)?;
            Ok(l)
        })
        .map_err(|e| refuse(e.kind(), format!("cannot listen: {e}")));
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&dir);
    bound
}

/// The directory the socket is made in: next to `path`, named after it and this process.
fn private_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

impl UnixAdmin {
    /// Serves `listener` (made by [`bind`] at `path`) with `serve`, a thread per connection.
    ///
    /// # Errors
    /// The socket cannot be looked at, or the accepting thread cannot start.
    pub fn start<F>(listener: UnixListener, path: &Path, serve: F) -> io::Result<UnixAdmin>
    where
        F: Fn(&mut UnixStream) + Send + Sync + 'static,
    {
        let meta = std::fs::symlink_metadata(path)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            thread::Builder::new()
                .name("admin-unix".into())
                .spawn(move || accept_loop(&listener, &stopping, Arc::new(serve)))?
        };
        Ok(UnixAdmin {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting (requests being answered finish on their own) and removes the socket.
    pub fn stop(self) {}
}

impl Drop for UnixAdmin {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocked `accept`, which then sees `stopping`. If the path no longer leads
        // to this socket (someone removed or replaced it), nothing can wake it: after
        // `STOP_WAIT` the thread is left to end with the process rather than hang the stop.
        let _ = UnixStream::connect(&self.path);
        if let Some(acceptor) = self.acceptor.take() {
            let deadline = std::time::Instant::now() + STOP_WAIT;
            while !acceptor.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if acceptor.is_finished() {
                let _ = acceptor.join();
            }
        }
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop<F>(listener: &UnixListener, stopping: &AtomicBool, serve: Arc<F>)
where
    F: Fn(&mut UnixStream) + Send + Sync + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            // Out of descriptors, say: do not spin on the error.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let timeout = Some(super::ADMIN_TIMEOUT);
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            continue;
        }
        if open.fetch_add(1, Ordering::SeqCst) >= super::MAX_ADMIN_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            let page =
                crate::http::pages::ErrorPage::new(503, "too many admin connections").bytes();
            let _ = stream.write_all(&page);
            continue;
        }
        let (serve, counted) = (Arc::clone(&serve), Arc::clone(&open));
        let spawned = thread::Builder::new()
            .name("admin-conn".into())
            .spawn(move || {
                serve(&mut stream);
                counted.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A Unix stream and the bytes read from it but not yet used: what [`crate::conn::BufConn`]
/// is for a TCP stream, as much of it as one admin request needs.
#[derive(Debug)]
pub struct UnixConn<'a> {
    stream: &'a mut UnixStream,
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl<'a> UnixConn<'a> {
    /// Wraps `stream`; at most `max` unread bytes are kept.
    pub fn new(stream: &'a mut UnixStream, max: usize) -> UnixConn<'a> {
        UnixConn {
            stream,
            buf: Vec::new(),
            start: 0,
            max,
        }
    }
}

impl super::reading::Source for UnixConn<'_> {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.buf.len() - self.start >= self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read buffer full",
            ));
        }
        let mut chunk = [0u8; 4096];
        let room = (self.max - (self.buf.len() - self.start)).min(chunk.len());
        let n = self.stream.read(&mut chunk[..room])?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-unix-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("admin.sock")
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_file_is_refused() {
        let path = scratch("stale");
        // A socket nobody listens on any more: what a killed balancer leaves.
        drop(UnixListener::bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A live one is refused.
        let err = bind(&path).unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
        let admin = UnixAdmin::start(listener, &path, |s| {
            let _ = s.write_all(b"hi");
        })
        .unwrap();
        let mut answer = String::new();
        UnixStream::connect(&path)
            .unwrap()
            .read_to_string(&mut answer)
            .unwrap();
        assert_eq!(answer, "hi");
        admin.stop();
        assert!(!path.exists(), "removed on stop");
        // A listener whose socket file was removed under it still stops (and promptly).
        let listener = bind(&path).unwrap();
        let admin = UnixAdmin::start(listener, &path, |_| {}).unwrap();
        std::fs::remove_file(&path).unwrap();
        let started = std::time::Instant::now();
        admin.stop();
        assert!(started.elapsed() < Duration::from_secs(3));
        std::fs::write(&path, "not a socket").unwrap();
        let err = bind(&path).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
