//! Counts lines, words and bytes of every file under the input directory (or of stdin when
//! there is none), like `wc`, and the ten most frequent words. Prints the report and writes
//! it to `<output>/counts.txt`.
//! Usage: wordcount [INPUT_DIR [OUTPUT_DIR]] (defaults /input and /output, as in the sandbox).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let input = PathBuf::from(args.get(1).map_or("/input", String::as_str));
    let output = PathBuf::from(args.get(2).map_or("/output", String::as_str));
    let mut texts = Vec::new();
    let mut paths = Vec::new();
    if files(&input, &mut paths).is_ok() && !paths.is_empty() {
        paths.sort();
        for p in paths {
            texts.push(std::fs::read(&p).unwrap_or_default());
        }
    } else {
        let mut all = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut all);
        texts.push(all);
    }
    let (mut lines, mut words, mut bytes) = (0u64, 0u64, 0u64);
    let mut frequency: BTreeMap<String, u64> = BTreeMap::new();
    for text in &texts {
        bytes += text.len() as u64;
        lines += text.iter().filter(|b| **b == b'\n').count() as u64;
        for word in String::from_utf8_lossy(text).split_whitespace() {
            words += 1;
            let word: String = word
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect();
            if !word.is_empty() {
                *frequency.entry(word).or_default() += 1;
            }
        }
    }
    let mut top: Vec<(&String, &u64)> = frequency.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut report = format!("{lines} lines {words} words {bytes} bytes\n");
    for (word, count) in top.into_iter().take(10) {
        report.push_str(&format!("{count:>8} {word}\n"));
    }
    print!("{report}");
    let _ = std::fs::write(output.join("counts.txt"), report);
}
