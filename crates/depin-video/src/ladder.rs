//! The rendition ladder: the sizes and bitrates a stream is transcoded to.

use serde::Serialize;

/// One rendition of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// `1080p`, `720p`, …: the name players show.
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// The rungs a stream may ask for (Livepeer's and YouTube's usual ladder, 16:9).
pub const RUNGS: [Rung; 5] = [
    Rung {
        name: "1080p",
        width: 1920,
        height: 1080,
        bitrate_kbps: 6000,
    },
    Rung {
        name: "720p",
        width: 1280,
        height: 720,
        bitrate_kbps: 3000,
    },
    Rung {
        name: "480p",
        width: 854,
        height: 480,
        bitrate_kbps: 1200,
    },
    Rung {
        name: "360p",
        width: 640,
        height: 360,
        bitrate_kbps: 700,
    },
    Rung {
        name: "240p",
        width: 426,
        height: 240,
        bitrate_kbps: 400,
    },
];

/// The rungs of one stream, largest first, each at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ladder(pub Vec<Rung>);

impl Ladder {
    /// Livepeer's default four: 1080p, 720p, 480p, 360p.
    pub fn standard() -> Ladder {
        Ladder(RUNGS[..4].to_vec())
    }

    pub fn rungs(&self) -> &[Rung] {
        &self.0
    }

    /// Output pixels of one frame across every rung.
    pub fn pixels_per_frame(&self) -> u64 {
        self.0
            .iter()
            .map(|r| u64::from(r.width) * u64::from(r.height))
            .sum()
    }
}

impl std::str::FromStr for Ladder {
    type Err = String;

    /// `1080p,720p,480p,360p`.
    fn from_str(text: &str) -> Result<Ladder, String> {
        let mut rungs: Vec<Rung> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let rung = RUNGS.iter().find(|r| r.name == name).ok_or_else(|| {
                format!(
                    "unknown rung {name:?}: the ladder takes {}",
                    RUNGS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            if rungs.contains(rung) {
                return Err(format!("rung {name} is named twice"));
            }
            rungs.push(*rung);
        }
        if rungs.is_empty() {
            return Err("the ladder needs at least one rung".into());
        }
        rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
        Ok(Ladder(rungs))
    }
}

impl std::fmt::Display for Ladder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|r| r.name).collect();
        f.write_str(&names.join(","))
    }
}
