//! Key files: create (mode 0600, never overwritten), show, export to and import from a 24-word
//! BIP39 mnemonic.

use crate::output::Printer;
use anyhow::Context;
use clap::Subcommand;
use depin_node::config::{read_key_file, write_key_file};
use depin_types::Keypair;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest mnemonic text read from stdin (24 words of at most 8 letters fit easily).
const MAX_MNEMONIC_BYTES: u64 = 4096;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key and write it to a new file readable only by you (mode 0600).
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// The address of a key file.
    Show { file: PathBuf },
    /// Print the 24 words that restore a key file. Anyone with them controls the account.
    ExportMnemonic { file: PathBuf },
    /// Restore a key file from its 24 words (from --words, or from stdin).
    ImportMnemonic {
        #[arg(long)]
        out: PathBuf,
        /// The words, space separated; read from stdin when left out.
        #[arg(long)]
        words: Option<String>,
    },
}

pub fn run(out: Printer, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::New { out: path } => {
            let key = Keypair::generate().context("cannot generate a key")?;
            write_new_key(out, &path, &key)
        }
        KeyCommand::Show { file } => {
            let key = read_key(&file)?;
            out.emit(
                &json!({ "address": key.address(), "key_file": file }),
                || Ok(key.address().to_string()),
            )
        }
        KeyCommand::ExportMnemonic { file } => {
            let key = read_key(&file)?;
            let words = key.to_mnemonic();
            if !out.json {
                eprintln!("anyone with these words controls {}", key.address());
            }
            out.emit(
                &json!({ "address": key.address(), "mnemonic": words }),
                || Ok(words.clone()),
            )
        }
        KeyCommand::ImportMnemonic { out: path, words } => {
            let words = match words {
                Some(words) => words,
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .take(MAX_MNEMONIC_BYTES)
                        .read_to_string(&mut text)
                        .context("cannot read the mnemonic from stdin")?;
                    text
                }
            };
            let normalized = words.split_whitespace().collect::<Vec<_>>().join(" ");
            let key = Keypair::from_mnemonic(&normalized).context("cannot restore the key")?;
            write_new_key(out, &path, &key)
        }
    }
}

/// Reads a key file. (The config error names the file already, so no extra context.)
pub fn read_key(path: &Path) -> anyhow::Result<Keypair> {
    read_key_file(path).map_err(|e| anyhow::anyhow!("cannot use key file {e}"))
}

/// Writes a new key file, mode 0600; never overwrites.
pub fn write_key(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    write_key_file(path, key).map_err(|e| anyhow::anyhow!("cannot write key file {e}"))
}

fn write_new_key(out: Printer, path: &Path, key: &Keypair) -> anyhow::Result<()> {
    write_key(path, key)?;
    out.emit(
        &json!({ "address": key.address(), "key_file": path }),
        || Ok(key.address().to_string()),
    )
}
