//! A provider's piece store: one file per piece under `pieces/`, and a redb database that
//! holds each piece's size and outboard and the exact bytes in use. Space is accounted in the
//! same transactions that admit and remove pieces, so used and free space are exact without
//! scanning a directory (Storj operators' top complaint), and the capacity limit holds.
//!
//! Crash safety: a piece is first reserved in the database (`pending`), then written and
//! fsynced under a temporary name and renamed, then marked complete in a second transaction;
//! only then is it acknowledged. Removal marks the piece `removing` before deleting the file.
//! On open, unfinished reservations and removals found in the database are rolled back or
//! finished, so `kill -9` at any point loses no acknowledged piece and leaks no space.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_protocol::storage::merkle;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

const PIECES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pieces");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USED: &str = "used_bytes";

#[derive(Debug, Error)]
pub enum PieceStoreError {
    #[error("piece bytes hash to {computed}, not the announced root {root}")]
    RootMismatch { root: String, computed: String },
    #[error("out of space: {needed} bytes needed, {free} of {capacity} free")]
    OutOfSpace {
        needed: u64,
        free: u64,
        capacity: u64,
    },
    #[error("piece {0} is being stored or removed")]
    InProgress(String),
    #[error("unknown piece {0}")]
    UnknownPiece(String),
    #[error("range {offset}+{len} is outside the piece of {size} bytes")]
    Range { offset: u64, len: u64, size: u64 },
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("piece record does not decode: {0}")]
    CorruptRecord(#[source] std::io::Error),
    #[error("database: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("database transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("database table: {0}")]
    Table(#[from] redb::TableError),
    #[error("database storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("database commit: {0}")]
    Commit(#[from] redb::CommitError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
enum PieceStatus {
    Pending,
    Complete,
    Removing,
}

#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
struct PieceMeta {
    size_bytes: u64,
    status: PieceStatus,
    outboard: Vec<[u8; 32]>,
}

/// Pieces on disk with exact accounting.
pub struct PieceStore {
    dir: PathBuf,
    db: Database,
    capacity_bytes: u64,
}

/// A piece being received into a temporary file, hashed as it arrives.
pub struct PieceWriter {
    root: [u8; 32],
    size_bytes: u64,
    tmp: PathBuf,
    file: File,
    tree: merkle::OutboardBuilder,
    written: u64,
}

impl std::fmt::Debug for PieceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PieceWriter({}, {}/{} bytes)",
            hex::encode(self.root),
            self.written,
            self.size_bytes
        )
    }
}

impl PieceWriter {
    /// Appends the next bytes of the piece.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PieceStoreError> {
        let end = self.written + bytes.len() as u64;
        if end > self.size_bytes {
            return Err(PieceStoreError::Range {
                offset: self.written,
                len: bytes.len() as u64,
                size: self.size_bytes,
            });
        }
        self.file.write_all(bytes)?;
        self.tree.update(bytes);
        self.written = end;
        Ok(())
    }

    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

impl std::fmt::Debug for PieceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PieceStore({})", self.dir.display())
    }
}

fn decode_meta(bytes: &[u8]) -> Result<PieceMeta, PieceStoreError> {
    borsh::from_slice(bytes).map_err(PieceStoreError::CorruptRecord)
}

impl PieceStore {
    /// Opens (or creates) the store in `dir` with room for `capacity_bytes`, finishing what a
    /// crash interrupted.
    pub fn open(dir: &Path, capacity_bytes: u64) -> Result<PieceStore, PieceStoreError> {
        fs::create_dir_all(dir.join("pieces"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        let db = Database::create(dir.join("pieces.redb"))?;
        let store = PieceStore {
            dir: dir.to_path_buf(),
            db,
            capacity_bytes,
        };
        store.recover()?;
        // Temporary files belong to writes that never got renamed.
        for entry in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(store)
    }

    fn path(&self, root: &[u8; 32]) -> PathBuf {
        let name = hex::encode(root);
        self.dir.join("pieces").join(&name[..2]).join(name)
    }

    fn recover(&self) -> Result<(), PieceStoreError> {
        let mut unfinished = Vec::new();
        {
            let read = self.db.begin_read()?;
            if let Ok(table) = read.open_table(PIECES) {
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let meta = decode_meta(value.value())?;
                    if meta.status != PieceStatus::Complete {
                        unfinished.push((*key.value(), meta));
                    }
                }
            }
        }
        for (root, meta) in unfinished {
            tracing::info!(root = %hex::encode(root), status = ?meta.status, "rolling back an unfinished piece");
            self.forget(&root, meta.size_bytes)?;
        }
        Ok(())
    }

    /// Removes the file, then the record and its bytes from the accounting.
    fn forget(&self, root: &[u8; 32], size_bytes: u64) -> Result<(), PieceStoreError> {
        match fs::remove_file(self.path(root)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let write = self.db.begin_write()?;
        {
            let mut pieces = write.open_table(PIECES)?;
            pieces.remove(root)?;
            let mut meta = write.open_table(META)?;
            let used = meta.get(USED)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(USED, used.saturating_sub(size_bytes))?;
        }
        write.commit()?;
        Ok(())
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes of every piece stored or being stored.
    pub fn used_bytes(&self) -> Result<u64, PieceStoreError> {
        let read = self.db.begin_read()?;
        let Ok(meta) = read.open_table(META) else {
            return Ok(0);
        };
        Ok(meta.get(USED)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn free_bytes(&self) -> Result<u64, PieceStoreError> {
        Ok(self.capacity_bytes.saturating_sub(self.used_bytes()?))
    }

    fn meta(&self, root: &[u8; 32]) -> Result<Option<PieceMeta>, PieceStoreError> {
        let read = self.db.begin_read()?;
        let Ok(table) = read.open_table(PIECES) else {
            return Ok(None);
        };
        match table.get(root)? {
            Some(v) => Ok(Some(decode_meta(v.value())?)),
            None => Ok(None),
        }
    }

    /// Stores a piece whose BLAKE3 hash must be `root`. Returns once it is durable: the
    /// caller may acknowledge it. Storing a piece already held is a no-op.
    pub fn put(&self, root: &[u8; 32], data: &[u8]) -> Result<(), PieceStoreError> {
        let Some(mut writer) = self.begin(root, data.len() as u64)? else {
            return Ok(());
        };
        if let Err(e) = writer.write(data) {
            self.abort(writer);
            return Err(e);
        }
        self.finish(writer)
    }

    /// Starts receiving a piece of `size_bytes` that must hash to `root`: reserves its space
    /// (or refuses) before any byte is taken. `None` when the piece is already held. The
    /// writer must end in [`PieceStore::finish`] or [`PieceStore::abort`]; a crash in
    /// between is rolled back when the store is next opened.
    pub fn begin(
        &self,
        root: &[u8; 32],
        size_bytes: u64,
    ) -> Result<Option<PieceWriter>, PieceStoreError> {
        let write = self.db.begin_write()?;
        {
            let mut pieces = write.open_table(PIECES)?;
            if let Some(existing) = pieces.get(root)? {
                return match decode_meta(existing.value())?.status {
                    PieceStatus::Complete => Ok(None),
                    PieceStatus::Pending | PieceStatus::Removing => {
                        Err(PieceStoreError::InProgress(hex::encode(root)))
                    }
                };
            }
            let mut meta = write.open_table(META)?;
            let used = meta.get(USED)?.map(|v| v.value()).unwrap_or(0);
            let free = self.capacity_bytes.saturating_sub(used);
            if size_bytes > free {
                return Err(PieceStoreError::OutOfSpace {
                    needed: size_bytes,
                    free,
                    capacity: self.capacity_bytes,
                });
            }
            meta.insert(USED, used + size_bytes)?;
            let record = PieceMeta {
                size_bytes,
                status: PieceStatus::Pending,
                outboard: Vec::new(),
            };
            pieces.insert(root, depin_types::encode(&record).as_slice())?;
        }
        write.commit()?;
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("{}.{}", hex::encode(root), hex::encode(nonce)));
        match File::create(&tmp) {
            Ok(file) => Ok(Some(PieceWriter {
                root: *root,
                size_bytes,
                tmp,
                file,
                tree: merkle::OutboardBuilder::new(),
                written: 0,
            })),
            Err(e) => {
                self.forget(root, size_bytes)?;
                Err(e.into())
            }
        }
    }

    /// Makes a fully written piece durable once its bytes hash to its root, then marks it
    /// complete: only then may it be acknowledged. On error the reservation is released.
    pub fn finish(&self, writer: PieceWriter) -> Result<(), PieceStoreError> {
        let PieceWriter {
            root,
            size_bytes,
            tmp,
            file,
            tree,
            written,
        } = writer;
        let fail = |e: PieceStoreError| {
            let _ = fs::remove_file(&tmp);
            self.forget(&root, size_bytes)?;
            Err(e)
        };
        let (_, computed, outboard) = tree.finish();
        if written != size_bytes {
            return fail(PieceStoreError::Range {
                offset: 0,
                len: written,
                size: size_bytes,
            });
        }
        if computed != root {
            return fail(PieceStoreError::RootMismatch {
                root: hex::encode(root),
                computed: hex::encode(computed),
            });
        }
        if let Err(e) = self.install(&root, &tmp, file) {
            return fail(e);
        }
        let write = self.db.begin_write()?;
        {
            let mut pieces = write.open_table(PIECES)?;
            let record = PieceMeta {
                size_bytes,
                status: PieceStatus::Complete,
                outboard,
            };
            pieces.insert(&root, depin_types::encode(&record).as_slice())?;
        }
        write.commit()?;
        Ok(())
    }

    /// Drops a piece being received and releases its space.
    pub fn abort(&self, writer: PieceWriter) {
        let _ = fs::remove_file(&writer.tmp);
        if let Err(e) = self.forget(&writer.root, writer.size_bytes) {
            tracing::warn!(error = %e, "cannot release an aborted piece; it is released on restart");
        }
    }

    /// Fsyncs the temporary file, renames it into place and fsyncs the directory.
    fn install(&self, root: &[u8; 32], tmp: &Path, file: File) -> Result<(), PieceStoreError> {
        file.sync_all()?;
        drop(file);
        let path = self.path(root);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(tmp, &path)?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether a complete piece with this root is held.
    pub fn contains(&self, root: &[u8; 32]) -> Result<bool, PieceStoreError> {
        Ok(self
            .meta(root)?
            .is_some_and(|m| m.status == PieceStatus::Complete))
    }

    fn complete(&self, root: &[u8; 32]) -> Result<PieceMeta, PieceStoreError> {
        self.meta(root)?
            .filter(|m| m.status == PieceStatus::Complete)
            .ok_or_else(|| PieceStoreError::UnknownPiece(hex::encode(root)))
    }

    pub fn size_bytes(&self, root: &[u8; 32]) -> Result<u64, PieceStoreError> {
        Ok(self.complete(root)?.size_bytes)
    }

    /// The piece's outboard (one chaining value per 16 KiB group; empty for small pieces).
    pub fn outboard(&self, root: &[u8; 32]) -> Result<Vec<[u8; 32]>, PieceStoreError> {
        Ok(self.complete(root)?.outboard)
    }

    /// `len` bytes from `offset` of a piece, as stored (the reader verifies them).
    pub fn read_range(
        &self,
        root: &[u8; 32],
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, PieceStoreError> {
        self.check_range(root, offset, len)?;
        let mut buf = Vec::with_capacity(len as usize);
        self.append_range(root, offset, len, &mut buf)?;
        Ok(buf)
    }

    /// Refuses a range that is not inside a complete piece.
    pub fn check_range(
        &self,
        root: &[u8; 32],
        offset: u64,
        len: u64,
    ) -> Result<(), PieceStoreError> {
        let size = self.complete(root)?.size_bytes;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(PieceStoreError::Range { offset, len, size });
        }
        Ok(())
    }

    /// Appends `len` bytes from `offset` of a piece whose range was checked to `out`.
    pub fn append_range(
        &self,
        root: &[u8; 32],
        offset: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), PieceStoreError> {
        let mut file = File::open(self.path(root))?;
        file.seek(SeekFrom::Start(offset))?;
        let start = out.len();
        file.take(len).read_to_end(out)?;
        if (out.len() - start) as u64 != len {
            return Err(PieceStoreError::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        Ok(())
    }

    /// Answers a challenge for chunk `index` from the chunk's 16 KiB group and the outboard,
    /// without reading the rest of the piece.
    pub fn prove_chunk(
        &self,
        root: &[u8; 32],
        index: u64,
    ) -> Result<merkle::ChunkProof, PieceStoreError> {
        let meta = self.complete(root)?;
        let group = index * merkle::CHUNK_BYTES / merkle::GROUP_BYTES;
        let offset = group * merkle::GROUP_BYTES;
        if offset >= meta.size_bytes.max(1) {
            return Err(PieceStoreError::Range {
                offset,
                len: merkle::CHUNK_BYTES,
                size: meta.size_bytes,
            });
        }
        let len = (meta.size_bytes - offset).min(merkle::GROUP_BYTES);
        let bytes = self.read_range(root, offset, len)?;
        merkle::prove_chunk_with_outboard(meta.size_bytes, &meta.outboard, &bytes, index).ok_or(
            PieceStoreError::Range {
                offset,
                len,
                size: meta.size_bytes,
            },
        )
    }

    /// Deletes a piece and returns its space. Unknown pieces are a no-op.
    pub fn remove(&self, root: &[u8; 32]) -> Result<(), PieceStoreError> {
        let Some(mut meta) = self.meta(root)? else {
            return Ok(());
        };
        meta.status = PieceStatus::Removing;
        let write = self.db.begin_write()?;
        {
            let mut pieces = write.open_table(PIECES)?;
            pieces.insert(root, depin_types::encode(&meta).as_slice())?;
        }
        write.commit()?;
        self.forget(root, meta.size_bytes)
    }

    /// Roots of every complete piece.
    pub fn roots(&self) -> Result<Vec<[u8; 32]>, PieceStoreError> {
        let read = self.db.begin_read()?;
        let Ok(table) = read.open_table(PIECES) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            if decode_meta(value.value())?.status == PieceStatus::Complete {
                out.push(*key.value());
            }
        }
        Ok(out)
    }

    /// Re-hashes a piece from disk: `false` when the bytes no longer match the root.
    pub fn verify(&self, root: &[u8; 32]) -> Result<bool, PieceStoreError> {
        self.complete(root)?;
        let mut hasher = blake3::Hasher::new();
        let mut file = File::open(self.path(root))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().as_bytes() == root)
    }

    /// Overwrites one byte of a stored piece: for fault-injection tests only.
    #[doc(hidden)]
    pub fn corrupt_for_tests(&self, root: &[u8; 32], offset: u64) -> Result<(), PieceStoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(root))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&[byte[0] ^ 0xff])?;
        file.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize, seed: u8) -> (Vec<u8>, [u8; 32]) {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        let root = *blake3::hash(&data).as_bytes();
        (data, root)
    }

    #[test]
    fn a_streamed_piece_reserves_first_and_gives_back_on_abort_or_bad_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = PieceStore::open(dir.path(), 100_000).expect("open");
        let (data, root) = piece(70_000, 4);
        let used = || store.used_bytes().expect("used");
        assert!(
            matches!(
                store.begin(&root, 200_000),
                Err(PieceStoreError::OutOfSpace { .. })
            ),
            "refused before a byte is taken"
        );
        let mut writer = store.begin(&root, 70_000).expect("begin").expect("new");
        assert_eq!(used(), 70_000, "reserved up front");
        assert!(matches!(
            store.begin(&root, 70_000),
            Err(PieceStoreError::InProgress(_))
        ));
        writer.write(&data[..20_000]).expect("part");
        store.abort(writer);
        assert_eq!(used(), 0);
        assert!(!store.contains(&root).expect("contains"));

        // Bytes that do not hash to the root, and bytes past the announced size.
        let mut writer = store.begin(&root, 70_000).expect("begin").expect("new");
        writer.write(&data[1..]).expect("part");
        writer.write(&[0]).expect("part");
        assert!(matches!(
            store.finish(writer),
            Err(PieceStoreError::RootMismatch { .. })
        ));
        assert_eq!(used(), 0);
        let mut writer = store.begin(&root, 70_000).expect("begin").expect("new");
        assert!(writer.write(&[0u8; 70_001]).is_err());
        store.abort(writer);
        assert_eq!(used(), 0);

        // In odd-sized parts: stored, with the same outboard as hashing it whole.
        let mut writer = store.begin(&root, 70_000).expect("begin").expect("new");
        for part in data.chunks(9_999) {
            writer.write(part).expect("part");
        }
        store.finish(writer).expect("finish");
        assert!(store.contains(&root).expect("contains"));
        assert_eq!(
            store.outboard(&root).expect("outboard"),
            merkle::outboard(&data)
        );
        assert_eq!(used(), 70_000);
        assert!(
            store.begin(&root, 70_000).expect("begin").is_none(),
            "already held"
        );
        assert!(store.verify(&root).expect("verify"));
        // A short piece is refused at the end too.
        let (short, short_root) = piece(5_000, 6);
        let mut writer = store
            .begin(&short_root, 5_000)
            .expect("begin")
            .expect("new");
        writer.write(&short[..4_000]).expect("part");
        assert!(store.finish(writer).is_err());
        assert_eq!(used(), 70_000);
    }

    #[test]
    fn accounting_is_exact_and_capacity_holds() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = PieceStore::open(dir.path(), 100_000).expect("open");
        let (a, ra) = piece(60_000, 1);
        let (b, rb) = piece(50_000, 2);
        store.put(&ra, &a).expect("put a");
        store.put(&ra, &a).expect("again is a no-op");
        assert_eq!(store.used_bytes().expect("used"), 60_000);
        let full = store.put(&rb, &b);
        assert!(matches!(
            full,
            Err(PieceStoreError::OutOfSpace {
                needed: 50_000,
                free: 40_000,
                ..
            })
        ));
        assert_eq!(
            store.used_bytes().expect("used"),
            60_000,
            "a refused piece takes no space"
        );
        let (_, wrong_root) = piece(10, 9);
        assert!(matches!(
            store.put(&wrong_root, &b[..10]),
            Err(PieceStoreError::RootMismatch { .. })
        ));
        store.remove(&ra).expect("remove");
        assert_eq!(store.used_bytes().expect("used"), 0);
        store.put(&rb, &b).expect("now it fits");
        assert_eq!(store.free_bytes().expect("free"), 50_000);
        assert_eq!(store.roots().expect("roots"), vec![rb]);
        assert_eq!(
            store.read_range(&rb, 100, 5).expect("range"),
            b[100..105].to_vec()
        );
        assert!(matches!(
            store.read_range(&rb, 49_999, 2),
            Err(PieceStoreError::Range { .. })
        ));
        assert!(matches!(
            store.read_range(&ra, 0, 1),
            Err(PieceStoreError::UnknownPiece(_))
        ));
    }

    #[test]
    fn proofs_come_from_disk_and_corruption_is_caught() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = PieceStore::open(dir.path(), 1 << 30).expect("open");
        for len in [1usize, 1024, 5_000, 40_000, 300_001] {
            let (data, root) = piece(len, len as u8);
            store.put(&root, &data).expect("put");
            let chunks = merkle::chunk_count(len as u64);
            for index in [0, chunks / 2, chunks - 1] {
                let proof = store.prove_chunk(&root, index).expect("prove");
                assert!(merkle::verify_chunk(&root, len as u64, index, &proof));
            }
            assert!(store.verify(&root).expect("verify"));
            store.corrupt_for_tests(&root, 0).expect("corrupt");
            assert!(!store.verify(&root).expect("verify"));
            let proof = store.prove_chunk(&root, 0).expect("prove");
            assert!(!merkle::verify_chunk(&root, len as u64, 0, &proof));
        }
    }

    #[test]
    fn a_crash_mid_write_or_mid_removal_leaks_nothing_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let (kept, rk) = piece(20_000, 3);
        let (torn, rt) = piece(30_000, 4);
        let (gone, rg) = piece(10_000, 5);
        {
            let store = PieceStore::open(dir.path(), 1 << 20).expect("open");
            store.put(&rk, &kept).expect("acknowledged piece");
            store.put(&rg, &gone).expect("piece to remove");
            // A write that reserved its space and left a temporary file, then "crashed".
            let write = store.db.begin_write().expect("write");
            {
                let mut meta = write.open_table(META).expect("meta");
                let used = meta.get(USED).expect("get").map(|v| v.value()).unwrap_or(0);
                meta.insert(USED, used + 30_000).expect("insert");
                let mut pieces = write.open_table(PIECES).expect("pieces");
                let record = PieceMeta {
                    size_bytes: 30_000,
                    status: PieceStatus::Pending,
                    outboard: Vec::new(),
                };
                pieces
                    .insert(&rt, depin_types::encode(&record).as_slice())
                    .expect("insert");
                // A removal that was marked but never finished.
                let mut doomed =
                    decode_meta(pieces.get(&rg).expect("get").expect("present").value())
                        .expect("decode");
                doomed.status = PieceStatus::Removing;
                pieces
                    .insert(&rg, depin_types::encode(&doomed).as_slice())
                    .expect("insert");
            }
            write.commit().expect("commit");
            fs::write(dir.path().join("tmp").join("half-written"), &torn[..100]).expect("tmp");
        }
        let store = PieceStore::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(store.roots().expect("roots"), vec![rk]);
        assert_eq!(store.used_bytes().expect("used"), 20_000);
        assert!(store.verify(&rk).expect("verify"));
        assert!(!store.contains(&rt).expect("contains"));
        assert!(!store.contains(&rg).expect("contains"));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }
}
