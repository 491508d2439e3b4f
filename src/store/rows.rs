//! Row helpers for the per-mesh tables keyed `(mesh_id, …)`: every row of a mesh, a page of
//! them in key order, and their count (used by the areas of PROTOCOL.md §6 and §7).

use redb::ReadableTable;

use super::{StoreError, decode};

/// Every row of one mesh in a `(mesh_id, …)` table, decoded.
pub(crate) fn mesh_rows<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// Visits one mesh's rows of a `(mesh_id, key)` table in key order, starting just after key
/// `after`, until `visit` returns false: a page is read by key range, never the whole mesh.
pub(crate) fn scan_mesh_rows<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    after: Option<&str>,
    mut visit: impl FnMut(&str, T) -> bool,
) -> Result<(), StoreError> {
    use std::ops::Bound;
    let start = match after {
        Some(key) => Bound::Excluded((mesh_id, key)),
        None => Bound::Included((mesh_id, "")),
    };
    for row in table.range((start, Bound::Unbounded))? {
        let (k, v) = row?;
        let (mesh, key) = k.value();
        if mesh != mesh_id {
            break;
        }
        if !visit(key, decode(v.value())?) {
            break;
        }
    }
    Ok(())
}

/// How many rows one mesh has in a `(mesh_id, …)` table.
pub(crate) fn mesh_row_count<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    mesh_id: &str,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for row in table.range((mesh_id, "")..)? {
        let (k, _) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Deletes the rows of one mesh in a `(mesh_id, id)` table whose record `matches`; how many.
pub(crate) fn remove_mesh_rows<T: serde::de::DeserializeOwned>(
    table: &mut redb::Table<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    matches: impl Fn(&T) -> bool,
) -> Result<usize, StoreError> {
    let mut doomed = Vec::new();
    for row in table.range((mesh_id, "")..)? {
        let (k, v) = row?;
        let (mesh, id) = k.value();
        if mesh != mesh_id {
            break;
        }
        if matches(&decode::<T>(v.value())?) {
            doomed.push(id.to_string());
        }
    }
    for id in &doomed {
        table.remove((mesh_id, id.as_str()))?;
    }
    Ok(doomed.len())
}
