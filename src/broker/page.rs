//! One page of a list reply. Lists are read in a fixed order from where the previous page
//! stopped (the `cursor`), and a page ends at whichever comes first: the asked (or default)
//! number of entries, [`PAGE_BYTES`] of encoded entries, or [`PAGE_SCAN_ROWS`] rows read. The
//! reply's `nextCursor` says where to go on; it is absent on the last page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::limits::{DEFAULT_PAGE_ITEMS, MAX_PAGE_ITEMS, PAGE_BYTES, PAGE_SCAN_ROWS};

/// A cursor the broker did not hand out (or that does not belong to this list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor;

impl std::fmt::Display for BadCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cursor is not one this broker handed out; start again without it")
    }
}

/// Cursors are opaque to clients: base64url of the position (the last key read).
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// The position a cursor stands for; `None` for no cursor (the first page).
pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, BadCursor> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    // Positions are keys of at most a few hundred bytes; a long cursor is not ours.
    if cursor.len() > 4096 {
        return Err(BadCursor);
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| BadCursor)?;
    String::from_utf8(bytes).map(Some).map_err(|_| BadCursor)
}

/// The entries a page may hold, from the request's `limit`.
pub fn page_items(limit: Option<usize>, default: usize) -> usize {
    limit.unwrap_or(default).clamp(1, MAX_PAGE_ITEMS)
}

/// Collects one page while rows are offered in list order.
pub struct Pager<T> {
    items: Vec<T>,
    bytes: usize,
    max_items: usize,
    scanned: usize,
    last_position: Option<String>,
    more: bool,
}

impl<T: Serialize> Pager<T> {
    /// A page of at most `limit` entries (default [`DEFAULT_PAGE_ITEMS`]).
    pub fn new(limit: Option<usize>) -> Self {
        Self::with_items(page_items(limit, DEFAULT_PAGE_ITEMS))
    }

    pub fn with_items(max_items: usize) -> Self {
        Pager {
            items: Vec::new(),
            bytes: 0,
            max_items,
            scanned: 0,
            last_position: None,
            more: false,
        }
    }

    /// Offers the row at `position`, with its entry when it passes the list's filter. Returns
    /// false once the page is complete: the caller stops reading.
    pub fn offer(&mut self, position: &str, entry: Option<T>) -> bool {
        if let Some(entry) = entry {
            // A row that does not fit starts the next page.
            let size = serde_json::to_vec(&entry).map_or(0, |v| v.len()) + 1;
            let full = self.items.len() >= self.max_items
                || (!self.items.is_empty() && self.bytes + size > PAGE_BYTES);
            if full {
                self.more = true;
                return false;
            }
            self.bytes += size;
            self.items.push(entry);
        }
        self.last_position = Some(position.to_string());
        self.scanned += 1;
        if self.scanned >= PAGE_SCAN_ROWS {
            self.more = true;
            return false;
        }
        true
    }

    /// The entries, and the cursor of the next page (`None` on the last page).
    pub fn finish(self) -> (Vec<T>, Option<String>) {
        let next = if self.more {
            self.last_position.as_deref().map(encode_cursor)
        } else {
            None
        };
        (self.items, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_by_count_and_by_bytes_and_say_where_to_go_on() {
        let mut p = Pager::with_items(2);
        assert!(p.offer("a", Some("x")));
        assert!(p.offer("b", None), "filtered-out rows move the position");
        assert!(p.offer("c", Some("y")));
        assert!(!p.offer("d", Some("z")));
        let (items, next) = p.finish();
        assert_eq!(items, ["x", "y"]);
        assert_eq!(decode_cursor(next.as_deref()), Ok(Some("c".to_string())));

        let big = "v".repeat(PAGE_BYTES);
        let mut p = Pager::with_items(100);
        assert!(
            p.offer("a", Some(big.clone())),
            "one large entry still goes"
        );
        assert!(!p.offer("b", Some(big)));
        assert_eq!(p.finish().0.len(), 1);

        let mut p = Pager::with_items(100);
        assert!(p.offer("a", Some(1)));
        assert_eq!(p.finish(), (vec![1], None), "no cursor on the last page");
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let key = "deploy/état|x";
        assert_eq!(
            decode_cursor(Some(&encode_cursor(key))),
            Ok(Some(key.to_string()))
        );
        assert_eq!(decode_cursor(None), Ok(None));
        assert_eq!(decode_cursor(Some("")), Ok(None));
        assert_eq!(decode_cursor(Some("not base64!")), Err(BadCursor));
        assert_eq!(decode_cursor(Some(&"A".repeat(5000))), Err(BadCursor));
    }
}
