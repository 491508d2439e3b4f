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
