//! A frame's commitment: a binary BLAKE3 Merkle tree over fixed-size pixel tiles of the decoded
//! image, row-major from the top left (edge tiles are cut to the frame). A renderer commits to
//! the root before any check is drawn; a verifier then fetches just the tiles under its check
//! regions, each with its path, and knows they are the committed pixels.

use depin_types::Hash;

use crate::blender::Region;
use crate::image::{Image, ImageError};

/// A frame's tiles and the tree over them.
#[derive(Debug, Clone)]
pub struct TileTree {
    width: u32,
    height: u32,
    tile_px: u32,
    /// Level 0 is the leaves; the last level holds the root alone.
    levels: Vec<Vec<Hash>>,
}

/// One tile with the sibling hashes from its leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TileProof {
    pub index: u32,
    pub siblings: Vec<Hash>,
}

impl TileTree {
    /// The tree of `image` cut into `tile_px` × `tile_px` tiles.
    pub fn new(image: &Image, tile_px: u32) -> Result<Self, ImageError> {
        let tile_px = tile_px.max(1);
        let mut leaves = Vec::new();
        for index in 0..tile_count(image.width, image.height, tile_px) {
            let region = tile_region(image.width, image.height, tile_px, index);
            leaves.push(leaf(index, &image.crop(region)?));
        }
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node(l, r),
                    [single] => *single,
                    _ => Hash::ZERO,
                })
                .collect();
            levels.push(above);
        }
        Ok(TileTree {
            width: image.width,
            height: image.height,
            tile_px,
            levels,
        })
    }

    /// What the renderer commits to: the frame's size, the tile size and the tree's root.
    pub fn root(&self) -> Hash {
        let top = self
            .levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(Hash::ZERO);
        frame_root(self.width, self.height, self.tile_px, &top)
    }

    pub fn proof(&self, index: u32) -> Option<TileProof> {
        let mut at = index as usize;
        if at >= self.levels.first().map_or(0, Vec::len) {
            return None;
        }
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = at ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            at /= 2;
        }
        Some(TileProof { index, siblings })
    }
}

/// How many tiles a `width` × `height` frame has.
pub fn tile_count(width: u32, height: u32, tile_px: u32) -> u32 {
    let tile_px = tile_px.max(1);
    width.div_ceil(tile_px) * height.div_ceil(tile_px)
}

/// The pixels tile `index` covers.
pub fn tile_region(width: u32, height: u32, tile_px: u32, index: u32) -> Region {
    let tile_px = tile_px.max(1);
    let columns = width.div_ceil(tile_px).max(1);
    let (x0, y0) = ((index % columns) * tile_px, (index / columns) * tile_px);
    Region {
        x0,
        y0,
        x1: (x0 + tile_px).min(width),
        y1: (y0 + tile_px).min(height),
    }
}

/// The tiles a region touches, in index order.
pub fn tiles_covering(width: u32, height: u32, tile_px: u32, region: Region) -> Vec<u32> {
    let tile_px = tile_px.max(1);
    let columns = width.div_ceil(tile_px);
    if !region.fits(width, height) {
        return Vec::new();
    }
    let (c0, c1) = (region.x0 / tile_px, (region.x1 - 1) / tile_px);
    let (r0, r1) = (region.y0 / tile_px, (region.y1 - 1) / tile_px);
    (r0..=r1)
        .flat_map(|r| (c0..=c1).map(move |c| r * columns + c))
        .collect()
}

/// Whether `tile` (the pixels of tile `proof.index`) is part of the frame committed as
/// `root`, a `width` × `height` frame cut into `tile_px` tiles.
pub fn verify_tile(
    root: &Hash,
    width: u32,
    height: u32,
    tile_px: u32,
    tile: &Image,
    proof: &TileProof,
) -> bool {
    let tile_px = tile_px.max(1);
    let count = tile_count(width, height, tile_px);
    if proof.index >= count {
        return false;
    }
    let expected = tile_region(width, height, tile_px, proof.index);
    if (tile.width, tile.height) != (expected.width(), expected.height())
        || tile.rgba.len() != tile.width as usize * tile.height as usize * 4
    {
        return false;
    }
    // Recompute the path, knowing which levels have no sibling for this index.
    let mut hash = leaf(proof.index, tile);
    let mut at = proof.index as usize;
    let mut len = count as usize;
    let mut siblings = proof.siblings.iter();
    while len > 1 {
        let sibling = at ^ 1;
        if sibling < len {
            let Some(s) = siblings.next() else {
                return false;
            };
            hash = if at.is_multiple_of(2) {
                node(&hash, s)
            } else {
                node(s, &hash)
            };
        }
        at /= 2;
        len = len.div_ceil(2);
    }
    siblings.next().is_none() && frame_root(width, height, tile_px, &hash) == *root
}

fn leaf(index: u32, tile: &Image) -> Hash {
    Hash::tagged(
        "depin render tile",
        &[
            &index.to_be_bytes(),
            &tile.width.to_be_bytes(),
            &tile.height.to_be_bytes(),
            &tile.rgba,
        ],
    )
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Hash::tagged("depin render node", &[left.as_bytes(), right.as_bytes()])
}

fn frame_root(width: u32, height: u32, tile_px: u32, top: &Hash) -> Hash {
    Hash::tagged(
        "depin render frame",
        &[
            &width.to_be_bytes(),
            &height.to_be_bytes(),
            &tile_px.to_be_bytes(),
            top.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32) -> Image {
        let rgba = (0..width * height * 4)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        Image {
            width,
            height,
            rgba,
        }
    }

    #[test]
    fn every_tile_proves_against_the_root_and_a_changed_pixel_does_not() {
        for (w, h, t) in [
            (100, 60, 32),
            (64, 64, 32),
            (33, 1, 32),
            (1, 1, 8),
            (97, 61, 16),
        ] {
            let img = image(w, h);
            let tree = TileTree::new(&img, t).expect("tiles");
            let root = tree.root();
            for index in 0..tile_count(w, h, t) {
                let tile = img.crop(tile_region(w, h, t, index)).expect("inside");
                let proof = tree.proof(index).expect("a tile");
                assert!(
                    verify_tile(&root, w, h, t, &tile, &proof),
                    "{w}x{h}/{t} #{index}"
                );
                let mut bad = tile.clone();
                bad.rgba[0] ^= 1;
                assert!(!verify_tile(&root, w, h, t, &bad, &proof));
                let mut moved = proof.clone();
                moved.index = (index + 1) % tile_count(w, h, t);
                if moved.index != index {
                    assert!(!verify_tile(&root, w, h, t, &tile, &moved));
                }
                assert!(
                    !verify_tile(&root, w + 1, h, t, &tile, &proof),
                    "size is bound"
                );
            }
            assert!(tree.proof(tile_count(w, h, t)).is_none());
        }
    }

    #[test]
    fn a_region_maps_to_the_tiles_under_it() {
        let r = Region {
            x0: 30,
            y0: 0,
            x1: 70,
            y1: 33,
        };
        // 100×60 in 32-px tiles: 4 columns, 2 rows.
        assert_eq!(tiles_covering(100, 60, 32, r), vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(
            tile_region(100, 60, 32, 7),
            Region {
                x0: 96,
                y0: 32,
                x1: 100,
                y1: 60
            }
        );
        let outside = Region {
            x0: 0,
            y0: 0,
            x1: 101,
            y1: 1,
        };
        assert!(tiles_covering(100, 60, 32, outside).is_empty());
    }
}
