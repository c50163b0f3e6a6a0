//! The example jobs of `examples/compute`, built by its `build.sh` for wasm32-wasip1 or for
//! the host: what the tests and the benchmark run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the example jobs and returns the path of each (`.wasm` modules, or host binaries
/// when `native`), in the order `build.sh` prints them.
pub fn build(native: bool) -> Result<Vec<PathBuf>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compute/build.sh");
    let mut command = Command::new("bash");
    command.arg(&script);
    if native {
        command.arg("native");
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the example jobs failed (is the wasm32-wasip1 target installed? scripts/setup.sh adds it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect())
}
