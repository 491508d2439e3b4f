//! claudemesh: a peer mesh for AI coding-agent sessions.
//!
//! The library is both sides of the wire: [`broker`] is the server, [`client`] the client that
//! the CLI and MCP server use, and [`protocol`] the messages they share.

pub mod archive;
pub mod broker;
pub mod child;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod dashboard;
pub mod identity;
pub mod mcp;
pub mod net;
pub mod protocol;
pub mod store;

/// The hash maps and sets on the hot paths (the queues, the router, presence, read caches,
/// rate limits). Keyed at random as std's are, so keys a member chooses cannot be made to
/// collide, but hashed with aHash, several times cheaper than std's SipHash on the short
/// strings they hold.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;
