//! A node's blob files: content-addressed blobs (a job's module, input or scene bundle,
//! written under a temporary name, checked against their BLAKE3 and renamed) and the outputs
//! it made for consumers (a job's result bundle, a rendered piece), named by a service's key.

use depin_types::Hash;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("the blob's bytes hash to {got}, not {want}")]
    HashMismatch { want: Hash, got: Hash },
    #[error("{got} bytes sent for a blob of {want}")]
    Length { want: u64, got: u64 },
    #[error("no blob {0}")]
    Unknown(Hash),
}

#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

/// A blob being received: appended to a temporary file and hashed as it arrives.
#[derive(Debug)]
pub struct BlobWriter {
    blob: Hash,
    total: u64,
    written: u64,
    file: File,
    temp: PathBuf,
    hasher: blake3::Hasher,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let after = self.written + bytes.len() as u64;
        if after > self.total {
            return Err(BlobError::Length {
                want: self.total,
                got: after,
            });
        }
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written = after;
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.written == self.total
    }
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        for sub in ["blobs", "partial", "results"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // Partial files of a previous run are never resumed.
        for entry in std::fs::read_dir(dir.join("partial"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, blob: &Hash) -> PathBuf {
        self.dir.join("blobs").join(blob.to_string())
    }

    pub fn has(&self, blob: &Hash) -> bool {
        self.path(blob).is_file()
    }

    /// Starts receiving `blob` of `total` bytes; a second writer of the same blob replaces
    /// the first's temporary file.
    pub fn begin(&self, blob: Hash, total: u64) -> Result<BlobWriter, BlobError> {
        let temp = self.dir.join("partial").join(blob.to_string());
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&temp)?;
        Ok(BlobWriter {
            blob,
            total,
            written: 0,
            file,
            temp,
            hasher: blake3::Hasher::new(),
        })
    }

    /// Checks the whole blob against its hash, then makes it durable under its name.
    pub fn finish(&self, mut writer: BlobWriter) -> Result<(), BlobError> {
        if !writer.is_complete() {
            let (want, got) = (writer.total, writer.written);
            self.abort(writer);
            return Err(BlobError::Length { want, got });
        }
        let got = Hash(*writer.hasher.finalize().as_bytes());
        if got != writer.blob {
            let want = writer.blob;
            self.abort(writer);
            return Err(BlobError::HashMismatch { want, got });
        }
        writer.file.flush()?;
        writer.file.sync_all()?;
        std::fs::rename(&writer.temp, self.path(&writer.blob))?;
        Ok(())
    }

    pub fn abort(&self, writer: BlobWriter) {
        let _ = std::fs::remove_file(&writer.temp);
    }

    pub fn remove(&self, blob: &Hash) {
        let _ = std::fs::remove_file(self.path(blob));
    }

    /// Up to `len` bytes of a file from `offset`, and the file's length.
    fn read_range(path: &Path, offset: u64, len: usize) -> Result<(u64, Vec<u8>), BlobError> {
        let mut file = File::open(path)?;
        let total = file.metadata()?.len();
        let len = (len as u64).min(total.saturating_sub(offset));
        let mut bytes = Vec::with_capacity(len as usize);
        file.seek(SeekFrom::Start(offset.min(total)))?;
        file.take(len).read_to_end(&mut bytes)?;
        Ok((total, bytes))
    }

    pub fn read_blob(
        &self,
        blob: &Hash,
        offset: u64,
        len: usize,
    ) -> Result<(u64, Vec<u8>), BlobError> {
        if !self.has(blob) {
            return Err(BlobError::Unknown(*blob));
        }
        Self::read_range(&self.path(blob), offset, len)
    }

    pub fn output_path(&self, key: &Hash) -> PathBuf {
        self.dir.join("results").join(key.to_string())
    }

    /// Keeps an output under `key` (durably: a commitment to it usually follows).
    pub fn put_output(&self, key: &Hash, bytes: &[u8]) -> Result<(), BlobError> {
        let temp = self.dir.join("partial").join(format!("output-{key}"));
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, self.output_path(key))?;
        Ok(())
    }

    pub fn has_output(&self, key: &Hash) -> bool {
        self.output_path(key).is_file()
    }

    pub fn remove_output(&self, key: &Hash) {
        let _ = std::fs::remove_file(self.output_path(key));
    }

    pub fn read_output(
        &self,
        key: &Hash,
        offset: u64,
        len: usize,
    ) -> Result<(u64, Vec<u8>), BlobError> {
        let path = self.output_path(key);
        if !path.is_file() {
            return Err(BlobError::Unknown(*key));
        }
        Self::read_range(&path, offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_kept_only_when_its_bytes_hash_right() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open(dir.path()).expect("open");
        let bytes = vec![3u8; 5000];
        let blob = Hash(*blake3::hash(&bytes).as_bytes());
        let mut w = store.begin(blob, 5000).expect("begin");
        w.write(&bytes[..1000]).expect("part");
        w.write(&bytes[1000..]).expect("part");
        assert!(w.write(b"x").is_err(), "more than the total");
        store.finish(w).expect("finish");
        assert!(store.has(&blob));
        assert_eq!(
            store.read_blob(&blob, 4990, 100).expect("read"),
            (5000, vec![3u8; 10])
        );

        let liar = Hash(*blake3::hash(b"something else").as_bytes());
        let mut w = store.begin(liar, 5000).expect("begin");
        w.write(&bytes).expect("part");
        assert!(matches!(
            store.finish(w),
            Err(BlobError::HashMismatch { .. })
        ));
        assert!(!store.has(&liar));
        assert!(matches!(
            store.read_blob(&liar, 0, 1),
            Err(BlobError::Unknown(_))
        ));
    }
}
