//! Folder bundles: a file or a folder packed deterministically into one blob, so its BLAKE3
//! names it (a compute job's input, a render job's scene and assets), and unpacked with
//! every path kept inside the destination and every length bounded.

use depin_types::Hash;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8; 13] = b"depinbundle1\n";
/// Most files in an input bundle.
pub const MAX_ENTRIES: u32 = 100_000;
/// Longest relative path in an input bundle.
pub const MAX_PATH_BYTES: usize = 1024;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an input bundle: {0}")]
    Malformed(String),
    #[error("{0} is neither a file nor a folder")]
    NotAFileOrFolder(PathBuf),
    #[error("an input holds at most {MAX_ENTRIES} files")]
    TooManyFiles,
    #[error("path {0:?} cannot go in a bundle (not UTF-8, or longer than {MAX_PATH_BYTES} bytes)")]
    BadPath(PathBuf),
}

pub fn malformed(what: impl Into<String>) -> BundleError {
    BundleError::Malformed(what.into())
}

/// Hashes what is written through it and counts the bytes.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files of `source` (a file, or every regular file under a folder) by bundle path,
/// sorted so the same tree always packs to the same bytes. Symbolic links are not followed.
fn list_files(source: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let meta = std::fs::metadata(source)?;
    if meta.is_file() {
        let name = source
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BundleError::BadPath(source.to_path_buf()))?;
        return Ok(vec![(name.to_string(), source.to_path_buf())]);
    }
    if !meta.is_dir() {
        return Err(BundleError::NotAFileOrFolder(source.to_path_buf()));
    }
    let mut files = Vec::new();
    let mut folders = vec![source.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(source)
                    .ok()
                    .and_then(|p| p.to_str())
                    .filter(|p| p.len() <= MAX_PATH_BYTES)
                    .ok_or_else(|| BundleError::BadPath(path.clone()))?
                    .replace(std::path::MAIN_SEPARATOR, "/");
                files.push((relative, path));
                if files.len() > MAX_ENTRIES as usize {
                    return Err(BundleError::TooManyFiles);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Packs a file or folder into `out`; returns the bundle's BLAKE3 and length.
pub fn pack(source: &Path, out: impl Write) -> Result<(Hash, u64), BundleError> {
    let files = list_files(source)?;
    let mut out = Hashing {
        inner: std::io::BufWriter::new(out),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    out.write_all(MAGIC)?;
    out.write_all(&(files.len() as u32).to_le_bytes())?;
    for (name, path) in &files {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        out.write_all(&(name.len() as u16).to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        let copied = std::io::copy(&mut (&mut file).take(len), &mut out)?;
        if copied != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was packed", path.display()),
            )
            .into());
        }
    }
    out.flush()?;
    Ok((Hash(*out.hasher.finalize().as_bytes()), out.bytes))
}

fn read_array<const N: usize>(r: &mut impl Read) -> Result<[u8; N], BundleError> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)
        .map_err(|_| malformed("it ends in the middle of an entry"))?;
    Ok(buf)
}

/// A bundle path as a safe relative path: plain components only, no `..`, no root.
pub fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.contains('\0') {
        return None;
    }
    let path = Path::new(name);
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| path.to_path_buf())
}

/// Unpacks a bundle of `total` bytes into the empty folder `dest`. Every length is checked
/// against what is left, and every path must stay inside `dest`.
pub fn unpack(bundle: impl Read, total: u64, dest: &Path) -> Result<(), BundleError> {
    let mut r = std::io::BufReader::new(bundle).take(total);
    let magic: [u8; 13] = read_array(&mut r)?;
    if &magic != MAGIC {
        return Err(malformed("wrong magic"));
    }
    let count = u32::from_le_bytes(read_array(&mut r)?);
    if count > MAX_ENTRIES {
        return Err(BundleError::TooManyFiles);
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count {
        let name_len = u16::from_le_bytes(read_array(&mut r)?) as usize;
        if name_len > MAX_PATH_BYTES {
            return Err(malformed("a path is too long"));
        }
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)
            .map_err(|_| malformed("it ends in a path"))?;
        let name = String::from_utf8(name).map_err(|_| malformed("a path is not UTF-8"))?;
        let relative =
            safe_relative(&name).ok_or_else(|| malformed(format!("bad path {name:?}")))?;
        if !seen.insert(name.clone()) {
            return Err(malformed(format!("{name:?} appears twice")));
        }
        let len = u64::from_le_bytes(read_array(&mut r)?);
        if len > r.limit() {
            return Err(malformed(format!("{name:?} is longer than the bundle")));
        }
        let path = dest.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        let copied = std::io::copy(&mut (&mut r).take(len), &mut file)?;
        if copied != len {
            return Err(malformed("it ends in a file"));
        }
    }
    if r.limit() != 0 {
        return Err(malformed("bytes after the last file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_packs_to_the_same_bytes_and_unpacks_to_the_same_tree() {
        let src = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(src.path().join("b/c")).expect("mkdir");
        std::fs::write(src.path().join("a.txt"), b"alpha").expect("write");
        std::fs::write(src.path().join("b/c/d.bin"), vec![7u8; 100_000]).expect("write");
        std::fs::write(src.path().join("b/empty"), b"").expect("write");
        let mut first = Vec::new();
        let (hash, len) = pack(src.path(), &mut first).expect("pack");
        let mut second = Vec::new();
        assert_eq!(pack(src.path(), &mut second).expect("pack"), (hash, len));
        assert_eq!(first, second);
        assert_eq!(len, first.len() as u64);
        assert_eq!(hash, Hash(*blake3::hash(&first).as_bytes()));

        let dest = tempfile::tempdir().expect("tmp");
        unpack(first.as_slice(), len, dest.path()).expect("unpack");
        assert_eq!(
            std::fs::read(dest.path().join("a.txt")).expect("a"),
            b"alpha"
        );
        assert_eq!(
            std::fs::read(dest.path().join("b/c/d.bin")).expect("d"),
            vec![7u8; 100_000]
        );
        assert!(dest.path().join("b/empty").is_file());

        // A single file packs under its own name.
        let mut one = Vec::new();
        let (_, one_len) = pack(&src.path().join("a.txt"), &mut one).expect("pack file");
        let dest = tempfile::tempdir().expect("tmp");
        unpack(one.as_slice(), one_len, dest.path()).expect("unpack");
        assert_eq!(
            std::fs::read(dest.path().join("a.txt")).expect("a"),
            b"alpha"
        );
    }

    fn entry(name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
        out
    }

    fn bundle(count: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&count.to_le_bytes());
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn hostile_bundles_are_refused_and_write_nothing_outside() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("junk", b"not a bundle at all".to_vec()),
            ("escape", bundle(1, &[entry("../evil", b"x")])),
            ("absolute", bundle(1, &[entry("/etc/evil", b"x")])),
            ("dot", bundle(1, &[entry("./a/../../evil", b"x")])),
            ("twice", bundle(2, &[entry("a", b"x"), entry("a", b"y")])),
            ("count lies", bundle(3, &[entry("a", b"x")])),
            ("too many", bundle(MAX_ENTRIES + 1, &[])),
            ("trailing", {
                let mut b = bundle(1, &[entry("a", b"x")]);
                b.push(0);
                b
            }),
            ("long file", {
                let mut b = bundle(1, &[entry("a", b"x")]);
                let at = b.len() - 9;
                b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            }),
        ];
        for (what, bytes) in cases {
            let root = tempfile::tempdir().expect("tmp");
            let dest = root.path().join("in");
            std::fs::create_dir(&dest).expect("mkdir");
            let result = unpack(bytes.as_slice(), bytes.len() as u64, &dest);
            assert!(result.is_err(), "{what} was accepted");
            assert!(!root.path().join("evil").exists(), "{what} escaped");
        }
    }
}
