//! Files a test writes: a directory of its own, files replaced by rename.

use std::path::PathBuf;

/// A directory of its own for one test's files, removed when dropped.
pub struct Dir(PathBuf);

impl Dir {
    /// A new empty directory under the system's temporary directory, named after `test`.
    pub fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("lb-file-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// The backends file's path (`backends.txt`).
    pub fn file(&self) -> PathBuf {
        self.path("backends.txt")
    }

    /// The path of the file `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` as the backends file the way writers do: a new file, renamed over the
    /// old one, so a reader sees the old or the new file and never half of one.
    pub fn write(&self, text: &str) {
        self.write_as("backends.txt", text);
    }

    /// Writes `text` as the file `name`, by rename as [`Dir::write`] does.
    pub fn write_as(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
