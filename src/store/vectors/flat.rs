//! A cosine collection's 8-bit vectors once more, one row after another, for the search that
//! compares every vector: numkong's `i8` dot product (the SIMD kernels usearch itself is built
//! on, chosen at run time) over contiguous rows, split across the cores (rayon's threads). The
//! usearch index keeps each vector beside its graph node and compares them one core at a time;
//! this copy, a quarter of the f32 size, is scanned two to three times faster (BENCHMARKS.md,
//! "Vectors").
//!
//! Rows are the unit vectors scaled by 127 and rounded, so a dot product of two rows orders
//! candidates as their cosine does. Beside each row is its rounding error, scaled by 254 and
//! rounded too: the candidates the scan finds are ranked again on the two together, which give
//! each number back to within 1/64 516, so the caller reads only the records it returns
//! rather than every candidate's.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use numkong::Dot;
use rayon::prelude::*;

/// Below this many rows one core scans them all (a thread costs more than it saves).
const SPLIT_FROM: usize = 16_384;

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
            }
            None => {
                self.rows.insert(slot, self.slots.len());
                self.slots.push(slot);
                self.codes.extend_from_slice(&row);
                self.fine.extend_from_slice(&error);
            }
        }
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
    }

    /// The `count` slots whose rows are nearest to `unit` (largest dot product), ranked again
    /// on their restored numbers (to within 1/64 516 each), nearest first.
    pub fn nearest(&self, unit: &[f32], count: usize) -> Vec<usize> {
        let query = code(unit);
        if query.len() != self.dimension || count == 0 || self.slots.is_empty() {
            return Vec::new();
        }
        let d = self.dimension;
        let parts = if self.slots.len() < SPLIT_FROM {
            1
        } else {
            rayon::current_num_threads()
        };
        let per_part = self.slots.len().div_ceil(parts);
        let scan = |from: usize| {
            let to = (from + per_part).min(self.slots.len());
            best(&self.codes[from * d..to * d], d, &query, count, from)
        };
        // On rayon's threads, which wait for work: a thread started per search cost this
        // machine more than the scan of 20 000 rows itself (BENCHMARKS.md, "Vectors").
        let mut found: Vec<(i32, usize)> = if parts == 1 {
            scan(0)
        } else {
            (0..parts)
                .into_par_iter()
                .flat_map_iter(|p| scan(p * per_part))
                .collect()
        };
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        found.truncate(count);
        let mut ranked: Vec<(f32, usize)> = found
            .into_iter()
            .map(|(_, row)| {
                let (codes, fine) = (
                    &self.codes[row * d..(row + 1) * d],
                    &self.fine[row * d..(row + 1) * d],
                );
                let dot = unit
                    .iter()
                    .zip(codes.iter().zip(fine))
                    .map(|(q, (c, f))| q * restored(*c, *f))
                    .sum::<f32>();
                (dot, row)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.into_iter().map(|(_, row)| self.slots[row]).collect()
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
        Ok(flat)
    }
}

/// The `count` best rows of `codes` by dot product with `query`, as (score, row + `first`).
fn best(codes: &[i8], d: usize, query: &[i8], count: usize, first: usize) -> Vec<(i32, usize)> {
    let mut top: Vec<(i32, usize)> = Vec::with_capacity(count + 1);
    let mut floor = i32::MIN;
    for (row, v) in codes.chunks_exact(d).enumerate() {
        let score = i8::dot(query, v).unwrap_or(i32::MIN);
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
        // Replaced in place.
        flat.put(5, &[0.0, -1.0]);
        assert_eq!(flat.nearest(&unit(&[0.0, -1.0]), 1), vec![5]);
        assert_eq!(flat.len(), 39_999);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flat.bin");
        flat.save(&path).unwrap();
        let loaded = Flat::load(&path, 2).unwrap();
        assert_eq!(loaded.len(), flat.len());
        assert_eq!(loaded.nearest(&unit(&[0.0, -1.0]), 1), vec![5]);
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
}
