//! The file the B+tree lives in, behind a small trait.
//!
//! All writes, length changes and syncs of the database go through
//! [`StorageIo`], so tests can record them, simulate a crash at any point or
//! make a sync fail. Reads go through the memory map of [`StorageIo::file`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

#[allow(clippy::len_without_is_empty)]
pub trait StorageIo: Send + Sync + 'static {
    /// The underlying file: mapped for reads and locked against other
    /// processes.
    fn file(&self) -> &File;

    fn len(&self) -> io::Result<u64> {
        Ok(self.file().metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file().read_exact_at(buf, off)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file().write_all_at(buf, off)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file().set_len(len)
    }

    /// fdatasync: makes every completed write durable.
    fn sync_data(&self) -> io::Result<()> {
        self.file().sync_data()
    }
}

/// The plain file backend.
pub struct FileIo(pub File);

impl StorageIo for FileIo {
    fn file(&self) -> &File {
        &self.0
    }
}
