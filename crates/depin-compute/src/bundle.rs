//! The result bundle a replica keeps for the consumer (exit, fuel, stdout, stderr and output
//! files, checked by the consumer against the outputs hash the replicas agreed on). The
//! input bundle is a folder bundle of `depin-blobs`.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_blobs::folder::{BundleError, malformed, safe_relative};
use depin_protocol::compute::{ExitKind, JobOutcome};
use depin_types::Hash;
use std::path::Path;

pub use depin_blobs::folder::{pack, unpack};

/// Largest result bundle: both streams and every output file, with room for framing.
pub const MAX_RESULT_BYTES: u64 =
    crate::runner::MAX_OUTPUT_BYTES + 2 * crate::runner::MAX_STREAM_BYTES as u64 + (1 << 20);

/// What a replica keeps for the consumer after a run.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ResultBundle {
    pub exit: ExitKind,
    pub fuel_used: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl ResultBundle {
    pub fn outputs_hash(&self) -> Hash {
        crate::runner::outputs_hash(self.exit, &self.stdout, &self.stderr, &self.files)
    }

    /// Whether these are the outputs, exit and fuel the replicas agreed on.
    pub fn matches(&self, accepted: &JobOutcome) -> bool {
        self.exit == accepted.exit
            && self.fuel_used == accepted.fuel_used
            && self.outputs_hash() == accepted.outputs
    }

    pub fn decode(bytes: &[u8]) -> Result<ResultBundle, BundleError> {
        depin_types::decode_bounded(bytes, MAX_RESULT_BYTES as usize)
            .map_err(|e| malformed(format!("result: {e}")))
    }

    /// Writes `stdout`, `stderr`, `exit` and the output files under `files/` into `dir`.
    /// Output file names come from a replica: any that would leave `dir` is refused.
    pub fn write_to(&self, dir: &Path) -> Result<(), BundleError> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("stdout"), &self.stdout)?;
        std::fs::write(dir.join("stderr"), &self.stderr)?;
        std::fs::write(dir.join("exit"), format!("{}\n", exit_text(self.exit)))?;
        for (name, bytes) in &self.files {
            let relative = safe_relative(name)
                .ok_or_else(|| malformed(format!("bad output path {name:?}")))?;
            let path = dir.join("files").join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        Ok(())
    }
}

/// How an exit reads to a person: `exited 0`, `out of fuel`, ...
pub fn exit_text(exit: ExitKind) -> String {
    match exit {
        ExitKind::Exited(code) => format!("exited {code}"),
        ExitKind::OutOfFuel => "out of fuel".into(),
        ExitKind::OutOfMemory => "out of memory".into(),
        ExitKind::Trapped => "trapped".into(),
        ExitKind::InvalidModule => "invalid module".into(),
        ExitKind::DeadlineExceeded => "deadline exceeded".into(),
        ExitKind::Unfetchable => "unfetchable: the module or input never arrived".into(),
        ExitKind::Unrunnable => "unrunnable: the input does not unpack".into(),
        ExitKind::OutputTooLarge => "output too large".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_with_a_hostile_file_name_is_refused() {
        let result = ResultBundle {
            exit: ExitKind::Exited(0),
            fuel_used: 1,
            stdout: b"out".to_vec(),
            stderr: Vec::new(),
            files: vec![("../../evil".into(), b"x".to_vec())],
        };
        let root = tempfile::tempdir().expect("tmp");
        assert!(result.write_to(&root.path().join("out")).is_err());
        assert!(!root.path().join("evil").exists());
    }
}
