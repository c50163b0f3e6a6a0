//! Progress of long transfers on stderr: a bar redrawn in place on a terminal, and a plain
//! line at every tenth otherwise (logs, CI), so stdout stays one result or one JSON object.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REDRAW: Duration = Duration::from_millis(100);
const BAR_CELLS: u64 = 30;

#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    total: u64,
    done: AtomicU64,
    started: Instant,
    terminal: bool,
    /// What is counted when it is not bytes (`samples`).
    unit: Option<&'static str>,
    /// When the bar was last drawn, and the last tenth printed as a line.
    drawn: Mutex<(Instant, u64)>,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            total,
            done: AtomicU64::new(0),
            started: now,
            terminal: std::io::stderr().is_terminal(),
            unit: None,
            drawn: Mutex::new((now - REDRAW, 0)),
        }
    }

    /// A bar counting `unit`s (`samples`), not bytes.
    pub fn counting(what: &'static str, total: u64, unit: &'static str) -> Progress {
        Progress {
            unit: Some(unit),
            ..Progress::new(what, total)
        }
    }

    /// Sets how much is done (a count that may also restart lower, as a new render does).
    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.draw(done.min(self.total), false);
    }

    pub fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.draw(done.min(self.total), false);
    }

    /// Draws the final state and ends the line.
    pub fn finish(&self) {
        self.draw(self.done.load(Ordering::Relaxed).min(self.total), true);
    }

    fn draw(&self, done: u64, last: bool) {
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let tenth = (done * 10).checked_div(self.total).unwrap_or(10);
        let now = Instant::now();
        if self.terminal {
            if !last && now.duration_since(drawn.0) < REDRAW {
                return;
            }
        } else if tenth <= drawn.1 && !(last && drawn.1 < 10) {
            return;
        }
        *drawn = (now, tenth);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let percent = (done * 100).checked_div(self.total).unwrap_or(100);
        let filled = (done * BAR_CELLS)
            .checked_div(self.total)
            .unwrap_or(BAR_CELLS);
        let bar = format!(
            "{:<10} [{}{}] {percent:>3}%",
            self.what,
            "#".repeat(filled as usize),
            "-".repeat((BAR_CELLS - filled) as usize),
        );
        let line = match self.unit {
            Some(unit) => format!("{bar} {done}/{} {unit}", self.total),
            None => format!(
                "{bar} {:.1}/{:.1} MiB {:.0} MiB/s",
                mib(done),
                mib(self.total),
                mib(done) / secs
            ),
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{line}{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
