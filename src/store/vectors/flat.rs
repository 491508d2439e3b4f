//! A cosine collection's vectors once more, one row after another, for the search that
//! compares every vector, in two passes over numkong's `i8` dot product (the SIMD kernels
//! usearch itself is built on, chosen at run time):
//!
//! 1. Every vector less the mean of its block of [`BLOCK`] rows, in 8 bits a number with the
//!    largest in size as ±127 ([`centred`]): embeddings tend to share a large common direction
//!    (unrelated texts at cosine 0.7–0.9), and rows rounded on one scale for every vector keep
//!    little of what tells them apart. The query's dot product with the block's mean is added
//!    back, one number per block. The rows are split across the cores (rayon's threads). A
//!    block is made when a search first needs it; a row that changes or comes later is encoded
//!    against the block's mean as it is, and a block is made again once it has doubled.
//! 2. The first pass's best are ranked again on the unit vector's numbers scaled by 127 and
//!    rounded ([`code`]) with each one's rounding error beside it, scaled by 254 and rounded
//!    too ([`fine`]): together they give each number back to within 1/64 516, so the caller
//!    reads only the records it returns rather than every candidate's.
//!
//! See BENCHMARKS.md, "Vectors", for what each step bought.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;

use numkong::Dot;
use rayon::prelude::*;

/// Rows in one block of the first pass: one mean, and the unit made again after a change.
const BLOCK: usize = 8192;
/// Below this many rows one core scans them all (a thread costs more than it saves).
const SPLIT_FROM: usize = 16_384;
/// Candidates the first pass proposes per result asked for, and at least.
const FIRST_PASS_PER_RESULT: usize = 2;
const FIRST_PASS_MIN: usize = 64;

#[derive(Default)]
pub struct Flat {
    dimension: usize,
    /// `rows × dimension` codes.
    codes: Vec<i8>,
    /// `rows × dimension` rounding errors of the codes, times 254 ([`fine`]).
    fine: Vec<i8>,
    /// The slot of each row.
    slots: Vec<usize>,
    /// The row of each slot.
    rows: HashMap<usize, usize>,
    /// The first pass's blocks of rows, each made when a search first needs it.
    blocks: Vec<OnceLock<Block>>,
}

/// [`BLOCK`] rows (the last block fewer), each unit vector less the block's mean ([`centred`]).
struct Block {
    /// `rows × dimension` numbers.
    codes: Vec<i8>,
    /// What each row's numbers are multiplied by to give its vector less the mean back.
    scales: Vec<f32>,
    /// The mean of the block's unit vectors when it was made.
    mean: Vec<f32>,
    /// Its rows then.
    made_with: usize,
}

impl Block {
    /// `unit` less the block's mean, as a row and its scale ([`centred`]).
    fn encode(&self, unit: &[f32]) -> (Vec<i8>, f32) {
        let less_mean: Vec<f32> = unit.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        centred(&less_mean)
    }
}

/// A unit vector as a row.
pub fn code(unit: &[f32]) -> Vec<i8> {
    unit.iter()
        .map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// What rounding `unit` to `code` left out, times 254 and rounded: at most ±0.5 before the
/// scaling, so it fits an `i8`.
fn fine(unit: &[f32], code: &[i8]) -> Vec<i8> {
    unit.iter()
        .zip(code)
        .map(|(x, c)| {
            ((x * 127.0 - f32::from(*c)) * 254.0)
                .round()
                .clamp(-127.0, 127.0) as i8
        })
        .collect()
}

/// A row's number `i` given back from its code and rounding error, times 127.
fn restored(code: i8, fine: i8) -> f32 {
    f32::from(code) + f32::from(fine) / 254.0
}

impl Flat {
    pub fn new(dimension: usize) -> Flat {
        Flat {
            dimension,
            ..Flat::default()
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Puts `unit` (a unit vector) under `slot`, replacing what was there.
    pub fn put(&mut self, slot: usize, unit: &[f32]) {
        let row = code(unit);
        if row.len() != self.dimension {
            return;
        }
        let error = fine(unit, &row);
        let d = self.dimension;
        match self.rows.get(&slot) {
            Some(&at) => {
                self.codes[at * d..(at + 1) * d].copy_from_slice(&row);
                self.fine[at * d..(at + 1) * d].copy_from_slice(&error);
                self.changed(at);
            }
            None => {
                self.rows.insert(slot, self.slots.len());
                self.slots.push(slot);
                self.codes.extend_from_slice(&row);
                self.fine.extend_from_slice(&error);
                self.changed(self.slots.len() - 1);
            }
        }
    }

    /// Row `row` is new or changed: encoded against its block's mean if the block is made,
    /// else left to the first search that needs the block. A block that has doubled since its
    /// mean was taken is made again, so its mean stays the mean of its rows.
    fn changed(&mut self, row: usize) {
        self.blocks
            .resize_with(self.slots.len().div_ceil(BLOCK), OnceLock::new);
        let (b, d) = (row / BLOCK, self.dimension);
        let unit: Vec<f32> = self.unit(row).collect();
        let Some(block) = self.blocks[b].get_mut() else {
            return;
        };
        let i = row - b * BLOCK;
        let (codes, scale) = block.encode(&unit);
        if i < block.scales.len() {
            block.codes[i * d..(i + 1) * d].copy_from_slice(&codes);
            block.scales[i] = scale;
        } else {
            // Rows come at the end, one at a time.
            debug_assert_eq!(i, block.scales.len());
            block.codes.extend(codes);
            block.scales.push(scale);
        }
        if block.scales.len() >= 2 * block.made_with {
            self.blocks[b] = OnceLock::new();
        }
    }

    /// Row `row`'s numbers restored from its code and rounding error (times 127).
    fn restored_row(&self, row: usize) -> impl Iterator<Item = f32> + '_ {
        let at = row * self.dimension..(row + 1) * self.dimension;
        self.codes[at.clone()]
            .iter()
            .zip(&self.fine[at])
            .map(|(c, f)| restored(*c, *f))
    }

    /// Row `row`'s unit vector, as restored from its code and rounding error.
    fn unit(&self, row: usize) -> impl Iterator<Item = f32> + '_ {
        self.restored_row(row).map(|x| x / 127.0)
    }

    /// Forgets `slot`: the last row takes its place.
    pub fn remove(&mut self, slot: usize) {
        let Some(at) = self.rows.remove(&slot) else {
            return;
        };
        let last = self.slots.len() - 1;
        let d = self.dimension;
        if at != last {
            self.codes.copy_within(last * d..(last + 1) * d, at * d);
            self.fine.copy_within(last * d..(last + 1) * d, at * d);
            self.slots[at] = self.slots[last];
            self.rows.insert(self.slots[at], at);
        }
        self.slots.pop();
        self.codes.truncate(last * d);
        self.fine.truncate(last * d);
        // The last row leaves its block, and row `at` holds what it held.
        let b = last / BLOCK;
        if let Some(block) = self.blocks.get_mut(b).and_then(OnceLock::get_mut) {
            block.codes.truncate((last - b * BLOCK) * d);
            block.scales.truncate(last - b * BLOCK);
        }
        self.blocks.truncate(self.slots.len().div_ceil(BLOCK));
        if at != last {
            self.changed(at);
        }
    }

    /// The `count` slots whose rows are nearest to `unit` (largest dot product): the first
    /// pass's best on the centred rows, ranked again on the restored numbers (to within
    /// 1/64 516 each), nearest first.
    pub fn nearest(&self, unit: &[f32], count: usize) -> Vec<usize> {
        let d = self.dimension;
        if unit.len() != d || count == 0 || self.slots.is_empty() {
            return Vec::new();
        }
        let (query, query_scale) = centred(unit);
        let first = (count * FIRST_PASS_PER_RESULT).max(FIRST_PASS_MIN);
        // Rows `rows` of block `b`, as (score, row).
        let scan_block = |b: usize, rows: std::ops::Range<usize>| {
            let block = self.blocks[b].get_or_init(|| self.block(b));
            // The query's dot product with the mean is the same for every row of the block.
            let offset: f32 = unit.iter().zip(&block.mean).map(|(q, m)| q * m).sum();
            let scores = block.codes[rows.start * d..rows.end * d]
                .chunks_exact(d)
                .zip(&block.scales[rows.clone()])
                .map(|(row, scale)| {
                    let dot = i8::dot(&query, row).unwrap_or(0) as f32;
                    dot * query_scale * scale + offset
                });
            best(scores, first, b * BLOCK + rows.start)
        };
        // One part per core, whatever the blocks: the parts end together.
        let parts = if self.slots.len() < SPLIT_FROM {
            1
        } else {
            rayon::current_num_threads()
        };
        let per_part = self.slots.len().div_ceil(parts);
        let scan = |p: usize| {
            // On many cores the last parts can start past the end (parts × rows a part > rows).
            let to = ((p + 1) * per_part).min(self.slots.len());
            let from = (p * per_part).min(to);
            let blocks = from / BLOCK..to.div_ceil(BLOCK);
            let found: Vec<(f32, usize)> = blocks
                .flat_map(|b| {
                    let rows = from.max(b * BLOCK) - b * BLOCK..to.min((b + 1) * BLOCK) - b * BLOCK;
                    scan_block(b, rows)
                })
                .collect();
            best_of(found, first)
        };
        // On rayon's threads, which wait for work: a thread started per search cost this
        // machine more than the scan of 20 000 rows itself (BENCHMARKS.md, "Vectors").
        let found: Vec<(f32, usize)> = if parts == 1 {
            scan(0)
        } else {
            (0..parts).into_par_iter().flat_map_iter(scan).collect()
        };
        let ranked = best_of(found, first)
            .into_iter()
            .map(|(_, row)| (self.restored_dot(unit, row), row))
            .collect();
        best_of(ranked, count)
            .into_iter()
            .map(|(_, row)| self.slots[row])
            .collect()
    }

    /// The dot product of `unit` with row `row`'s restored numbers (times 127).
    fn restored_dot(&self, unit: &[f32], row: usize) -> f32 {
        unit.iter()
            .zip(self.restored_row(row))
            .map(|(q, x)| q * x)
            .sum()
    }

    /// Block `b` of the first pass, from the rows' restored numbers.
    fn block(&self, b: usize) -> Block {
        let d = self.dimension;
        let rows = b * BLOCK..(b * BLOCK + BLOCK).min(self.slots.len());
        let mut mean = vec![0f32; d];
        for row in rows.clone() {
            mean.iter_mut()
                .zip(self.unit(row))
                .for_each(|(m, x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= rows.len() as f32);
        let mut block = Block {
            codes: Vec::with_capacity(rows.len() * d),
            scales: Vec::with_capacity(rows.len()),
            mean,
            made_with: rows.len(),
        };
        let mut unit = vec![0f32; d];
        for row in rows {
            unit.iter_mut()
                .zip(self.unit(row))
                .for_each(|(u, x)| *u = x);
            let (codes, scale) = block.encode(&unit);
            block.codes.extend(codes);
            block.scales.push(scale);
        }
        block
    }

    /// Writes the rows to `path`: the row count, then each row's slot, then the codes, then
    /// their rounding errors.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(&(self.slots.len() as u64).to_le_bytes())?;
        for slot in &self.slots {
            out.write_all(&(*slot as u64).to_le_bytes())?;
        }
        for part in [&self.codes, &self.fine] {
            let bytes: Vec<u8> = part.iter().map(|c| *c as u8).collect();
            out.write_all(&bytes)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Reads what [`Flat::save`] wrote; why not, if it does not hold rows of `dimension`.
    pub fn load(path: &Path, dimension: usize) -> Result<Flat, String> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let rows = word(0).ok_or("no row count")? as usize;
        let codes_at = rows
            .checked_mul(8)
            .and_then(|n| n.checked_add(8))
            .ok_or("a row count out of range")?;
        let size = rows
            .checked_mul(dimension)
            .ok_or("a row count out of range")?;
        if size.checked_mul(2).and_then(|n| n.checked_add(codes_at)) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes do not hold {rows} rows of {dimension}",
                bytes.len()
            ));
        }
        let mut flat = Flat::new(dimension);
        for row in 0..rows {
            let slot = word(8 + row * 8).ok_or("a short file")? as usize;
            if flat.rows.insert(slot, row).is_some() {
                return Err(format!("slot {slot} twice"));
            }
            flat.slots.push(slot);
        }
        let fine_at = codes_at + size;
        flat.codes = bytes[codes_at..fine_at].iter().map(|b| *b as i8).collect();
        flat.fine = bytes[fine_at..].iter().map(|b| *b as i8).collect();
        flat.blocks.resize_with(rows.div_ceil(BLOCK), OnceLock::new);
        Ok(flat)
    }
}

/// `v`'s numbers in 8 bits, the largest in size as ±127, and what to multiply them by to give
/// `v` back.
fn centred(v: &[f32]) -> (Vec<i8>, f32) {
    let largest = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if largest == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let row = v
        .iter()
        .map(|x| (x * 127.0 / largest).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (row, largest / 127.0)
}

/// The `count` highest of `found` (score, row), highest first.
fn best_of(mut found: Vec<(f32, usize)>, count: usize) -> Vec<(f32, usize)> {
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    found.truncate(count);
    found
}

/// The `count` highest of `scores` (of rows from `first` on) as (score, row), highest first.
fn best(scores: impl Iterator<Item = f32>, count: usize, first: usize) -> Vec<(f32, usize)> {
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(count + 1);
    let mut floor = f32::NEG_INFINITY;
    for (row, score) in scores.enumerate() {
        if top.len() == count && score <= floor {
            continue;
        }
        let at = top.partition_point(|&(s, _)| s >= score);
        top.insert(at, (score, first + row));
        top.truncate(count);
        if top.len() == count {
            floor = top[count - 1].0;
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn finds_the_nearest_and_forgets_the_removed() {
        // Enough rows to be split across the cores; three stand out.
        let mut flat = Flat::new(2);
        for slot in 0..40_000usize {
            let v = match slot {
                10 => [0.6, 0.8],
                30_000 => [0.0, 1.0],
                39_999 => [-1.0, 0.0],
                _ => [1.0, 0.0],
            };
            flat.put(slot, &v);
        }
        // The halves are merged: the best of the second half comes first.
        assert_eq!(flat.nearest(&[0.0, 1.0], 2), vec![30_000, 10]);
        flat.remove(30_000);
        assert_eq!(flat.len(), 39_999);
        assert_eq!(flat.nearest(&[0.0, 1.0], 1), vec![10]);
        // The last row, moved into the hole, is still found under its own slot.
        assert_eq!(flat.nearest(&[-1.0, 0.0], 1), vec![39_999]);
        // Replaced in place, far from the first rows (which win ties among equal rows).
        flat.put(35_000, &[0.0, -1.0]);
        assert_eq!(flat.nearest(&unit(&[0.0, -1.0]), 1), vec![35_000]);
        assert_eq!(flat.len(), 39_999);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flat.bin");
        flat.save(&path).unwrap();
        let loaded = Flat::load(&path, 2).unwrap();
        assert_eq!(loaded.len(), flat.len());
        assert_eq!(loaded.nearest(&unit(&[0.0, -1.0]), 1), vec![35_000]);
        assert!(Flat::load(&path, 3).is_err(), "another dimension");
        std::fs::write(&path, [1u8; 9]).unwrap();
        assert!(Flat::load(&path, 2).is_err(), "a cut file");
    }

    #[test]
    fn ranks_by_the_dot_product_of_the_rows() {
        let mut flat = Flat::new(3);
        flat.put(7, &unit(&[1.0, 0.0, 0.0]));
        flat.put(8, &unit(&[1.0, 1.0, 0.0]));
        flat.put(9, &unit(&[0.0, 0.0, 1.0]));
        assert_eq!(flat.nearest(&unit(&[1.0, 0.2, 0.0]), 3), vec![7, 8, 9]);
        assert_eq!(flat.nearest(&unit(&[0.2, 1.0, 0.0]), 2), vec![8, 7]);
        assert_eq!(flat.nearest(&unit(&[0.0, 0.0, 1.0]), 1), vec![9]);
    }

    /// Two vectors with the same 8-bit row are told apart by their rounding errors, in the
    /// order their exact cosines give, and still after a save and a load.
    #[test]
    fn candidates_with_one_row_are_ranked_on_their_rounding_errors() {
        let (a, b) = (unit(&[1.0, 0.29]), unit(&[1.0, 0.291]));
        assert_eq!(code(&a), code(&b), "the test needs one row for both");
        let mut flat = Flat::new(2);
        flat.put(1, &a);
        flat.put(2, &b);
        let toward_b = unit(&[0.0, 1.0]);
        let toward_a = unit(&[1.0, -1.0]);
        assert_eq!(flat.nearest(&toward_b, 2), vec![2, 1]);
        assert_eq!(flat.nearest(&toward_a, 2), vec![1, 2]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flat.bin");
        flat.save(&path).unwrap();
        let loaded = Flat::load(&path, 2).unwrap();
        assert_eq!(loaded.nearest(&toward_b, 2), vec![2, 1]);
        assert_eq!(loaded.nearest(&toward_a, 2), vec![1, 2]);
        // Each number comes back to within half of 1/(127 × 254).
        for v in [&a, &b] {
            let (c, f) = (code(v), fine(v, &code(v)));
            for i in 0..2 {
                assert!(
                    (restored(c[i], f[i]) / 127.0 - v[i]).abs() <= 0.5 / (127.0 * 254.0) + 1e-7
                );
            }
        }
    }

    /// Embeddings share a large common direction (unrelated texts at cosine 0.7–0.9; here
    /// 0.98): the first pass scores each row less its block's mean, each row on its own scale,
    /// so the nearest are still found. The rows of the earlier first pass (one scale for every
    /// vector) held 0.01 of them here; rows on their own scale without the mean taken out, 0.18.
    #[test]
    fn vectors_sharing_a_common_direction_are_still_told_apart() {
        let (d, n, queries) = (128, 20_000, 20);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let common: Vec<f32> = (0..d)
            .map(|i| if i % 50 == 0 { 48.0 } else { 8.0 * uniform() })
            .collect();
        let mut vector = || unit(&common.iter().map(|c| c + uniform()).collect::<Vec<_>>());
        let data: Vec<Vec<f32>> = (0..n).map(|_| vector()).collect();
        // Searched while it fills: blocks made early are kept up to date row by row, and
        // made again as they grow.
        let mut flat = Flat::new(d);
        for (slot, v) in data.iter().enumerate() {
            flat.put(slot, v);
            if [1, 100, 5_000, 12_000].contains(&slot) {
                assert_eq!(flat.nearest(v, 1), vec![slot]);
            }
        }
        let mut found = 0;
        for _ in 0..queries {
            let q = vector();
            let mut exact: Vec<(f32, usize)> = data
                .iter()
                .map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>())
                .zip(0..)
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            // The 40 candidates a search for 10 asks for hold the 10 nearest...
            let candidates = flat.nearest(&q, 40);
            found += exact[..10]
                .iter()
                .filter(|(_, s)| candidates.contains(s))
                .count();
            // ...and the first 10 of them are as near as the 10th nearest, give or take the
            // restored numbers' precision (neighbours here differ by as little as 1e-6).
            let tenth = exact[9].0;
            for slot in &candidates[..10] {
                let score: f32 = data[*slot].iter().zip(&q).map(|(a, b)| a * b).sum();
                assert!(
                    score >= tenth - 1e-4,
                    "{score} ranked above the 10th, {tenth}"
                );
            }
        }
        let recall = found as f64 / (queries * 10) as f64;
        assert!(
            recall >= 0.99,
            "the candidates hold {recall} of the 10 nearest"
        );
    }

    /// With more cores than the square root of the rows, the last parts would start past the
    /// end (299 parts of 55 rows > 16 390).
    #[test]
    fn many_cores_split_the_rows_without_running_past_the_end() {
        let mut flat = Flat::new(2);
        for slot in 0..SPLIT_FROM + 6 {
            flat.put(
                slot,
                if slot == 16_000 {
                    &[0.0, 1.0]
                } else {
                    &[1.0, 0.0]
                },
            );
        }
        let cores = rayon::ThreadPoolBuilder::new()
            .num_threads(300)
            .build()
            .unwrap();
        assert_eq!(cores.install(|| flat.nearest(&[0.0, 1.0], 1)), vec![16_000]);
    }
}
